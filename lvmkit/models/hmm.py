"""The hidden Markov model p(x, z) = π_{z_1} p(x_1 | z_1) Π_t A_{z_{t−1} z_t} p(x_t | z_t), with the
EM protocol of :mod:`lvmkit.fit.em`.

Baum-Welch *is* EM: the E-step is the exact posterior over each sequence's chain of states
(forward-backward, :mod:`lvmkit.posteriors.chain`), and its additive statistics are the expected
first states Σ γ_1, the expected transitions Σ ξ, and the emission's statistics of the rows
weighted by γ. So the one EM loop serves HMMs as it serves mixtures: chunked (chunks of whole
sequences), stepwise (``partial_fit``) and across processes (one ``all_reduce`` of the statistics).

The M-step is hmmlearn's: start and transition probabilities are max(prior − 1 + counts, 0),
normalised, keeping the zeros of the current parameters (a left-right model stays one); a row
with no counts keeps its previous values (hmmlearn leaves zeros, which later break it). A state
no sequence visits (Σ γ ≈ 0) is re-seeded at the worst-explained row, with incoming and outgoing
transitions and a start probability of 1/K, and the estimator warns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from lvmkit.families._base import column_sums
from lvmkit.models.stats import Stats
from lvmkit.posteriors import chain

f64 = torch.float64


@dataclass
class HMMParams:
    """Start probabilities (K,), transition matrix (K, K) and the emission's parameters, float64."""

    startprob: Tensor
    transmat: Tensor
    emission: object
    compute: dict = field(default_factory=dict, repr=False, compare=False)


class HMM:
    """K-state hidden Markov model over an emission (:mod:`lvmkit.models.emissions`).

    ``update`` holds hmmlearn's letters of the parameters the M-step changes ('s' start, 't'
    transitions, and the emission's); ``startprob_prior`` (K,) and ``transmat_prior`` (K, K) are
    Dirichlet parameters (float64 tensors, broadcastable). ``counts_scale`` turns stepwise EM's
    running statistics (per-row averages) back into counts before the priors are added.
    """

    def __init__(
        self,
        emission,
        n_states: int,
        dtype,
        startprob_prior=1.0,
        transmat_prior=1.0,
        update: str = "stmc",
    ):
        self.emission = emission
        self.n_components = int(n_states)
        self.dtype = dtype
        self.startprob_prior = torch.as_tensor(startprob_prior, dtype=f64)
        self.transmat_prior = torch.as_tensor(transmat_prior, dtype=f64)
        self.update = update
        self.counts_scale = None
        self.workspace: dict = {}

    # ------------------------------------------------------------------ densities
    def _compute(self, params: HMMParams):
        cached = params.compute.get(self.dtype)
        if cached is None:
            cached = (
                params.startprob.to(self.dtype),
                params.transmat.to(self.dtype),
                self.emission.compute(params.emission, self.dtype),
            )
            params.compute[self.dtype] = cached
        return cached

    def log_emission(self, F: Tensor, params: HMMParams):
        """log p(x_t | z_t = k) (n, K) of features ``F`` and the emission's cache."""
        _, _, ep = self._compute(params)
        if F.shape[0] == 1:  # one row computed as the first of two (the BLAS mat-vec path differs)
            lp, cache = self.emission.log_prob(F.expand(2, -1), ep)
            return lp[:1], None
        return self.emission.log_prob(F, ep)

    def posterior(self, batch, params: HMMParams) -> chain.Posterior:
        """Forward-backward over one packed batch of sequences (weighted by their weights)."""
        pi, A, _ = self._compute(params)
        log_e, _ = self.log_emission(batch.features, params)
        return chain.forward_backward(log_e, pi, A, batch.packing, batch.row_weights)

    # ------------------------------------------------------------------ E-step
    def e_step(self, batch, weights, params: HMMParams) -> Stats:
        """The exact posterior of every sequence of ``batch`` and the batch's statistics."""
        pi, A, ep = self._compute(params)
        log_e, cache = self.emission.log_prob(batch.features, ep, self.workspace)
        post = chain.forward_backward(
            log_e, pi, A, batch.packing, batch.row_weights, self.workspace
        )
        stats = self.emission.statistics(batch.features, post.gamma, ep, cache)
        ll = post.log_likelihood
        if batch.seq_weights is None:
            total = ll.sum()
            n = torch.tensor(float(batch.features.shape[0]), dtype=f64, device=ll.device)
            n_seq = torch.tensor(float(ll.numel()), dtype=f64, device=ll.device)
        else:
            w = batch.seq_weights.to(f64)
            # a sequence of weight 0 counts for nothing, even if its likelihood is -inf
            total = torch.where(w > 0, ll * w, torch.zeros_like(ll)).sum()
            n = batch.row_weights.sum(dtype=f64)
            n_seq = w.sum()
        return Stats(
            stats,
            start=post.first.to(f64),
            trans=post.xi.to(f64),
            occupancy=stats["nk"] if "nk" in stats else column_sums(post.gamma),
            log_likelihood=total,
            n_samples=n,
            n_sequences=n_seq,
        )

    def zero_stats(self, chunks, params: HMMParams) -> Stats:
        """Statistics of no sequences (a rank without data still joins every collective)."""
        from lvmkit.data.sequences import SequenceBatch

        F = self.emission.features(
            torch.zeros(0, chunks.n_features, dtype=self.dtype, device=chunks.device)
        )
        empty = SequenceBatch(F, chain.pack([], chunks.device), None, None, 0)
        return self.e_step(empty, None, params)

    def worst(self, batch, weights, params: HMMParams) -> tuple[float, Tensor]:
        """The row that the state explaining it best explains worst: the lowest max_k
        log p(x_t | k), and that row's data (float64)."""
        log_e, _ = self.log_emission(batch.features, params)
        best = log_e.amax(1)
        if weights is not None:
            best = torch.where(weights > 0, best, torch.inf)
        i = torch.argmin(best)
        return float(best[i]), self.emission.data_of(batch.features[i]).to(f64)

    advice = (
        "The data may hold values no state can explain (check for outliers), or a symbol or "
        "count outside every state's support: standardize X or check the data."
    )

    @staticmethod
    def bound(stats: Stats) -> float:
        """The total log-likelihood of the sequences (hmmlearn's ``monitor_.history``)."""
        return stats.scalar("log_likelihood")

    def portable(self, stats: Stats, params: HMMParams) -> Stats:
        """Already in the parameter-free frame (the emission maps its statistics there)."""
        return stats

    # ------------------------------------------------------------------ M-step
    def empty_components(self, stats: Stats) -> Tensor:
        """States whose expected number of visits is numerically zero."""
        occ = stats["occupancy"]
        threshold = max(float(torch.finfo(self.dtype).eps) * stats.scalar("n_samples"), 1e-12)
        return torch.nonzero(occ < threshold).reshape(-1)

    def m_step(self, stats: Stats, params: HMMParams, reseed=None) -> HMMParams:
        if self.counts_scale is not None:  # stepwise EM: per-row averages back to counts
            stats = stats * (self.counts_scale / max(stats.scalar("n_samples"), 1e-300))
        startprob, transmat = params.startprob, params.transmat
        if "s" in self.update:
            startprob = _dirichlet_map(self.startprob_prior, stats["start"], startprob)
        if "t" in self.update:
            transmat = _dirichlet_map(self.transmat_prior, stats["trans"], transmat)
        emission = self.emission.m_step(stats, params.emission, reseed, self.update)
        if reseed is not None:
            empty = reseed[0]
            k = self.n_components
            startprob, transmat = startprob.clone(), transmat.clone()
            startprob[empty] = 1.0 / k
            startprob = startprob / startprob.sum()
            transmat[:, empty] = 1.0 / k
            transmat[empty] = 1.0 / k
            transmat = transmat / transmat.sum(1, keepdim=True)
        return HMMParams(startprob, transmat, emission)


def _dirichlet_map(prior: Tensor, counts: Tensor, current: Tensor) -> Tensor:
    """max(prior − 1 + counts, 0) normalised along the last axis, zero where ``current`` is zero;
    a row with nothing left keeps ``current``."""
    value = torch.clamp(prior.to(counts) - 1.0 + counts, min=0.0)
    value = torch.where(current == 0, torch.zeros_like(value), value)
    total = value.sum(-1, keepdim=True)
    return torch.where(total > 0, value / torch.where(total > 0, total, 1.0), current)


def label_counts(labels: Tensor, packing: chain.Packing, k: int, weights: Tensor | None = None):
    """Start and transition counts of per-row state labels (packed): ``(start (K,), trans
    (K, K))`` in float64, weighted by the rows' sequence weights."""
    w = (
        torch.ones(labels.shape[0], dtype=f64, device=labels.device)
        if weights is None
        else weights.to(f64)
    )
    n0 = packing.sizes[0]
    first = torch.zeros(k, dtype=f64, device=labels.device).index_add_(
        0, chain.first_rows(labels, packing), chain.first_rows(w, packing)
    )
    left, right = chain.boundary_pairs(packing)  # transitions across block boundaries too
    pairs = torch.cat([labels[packing.prev] * k + labels[n0:], labels[left] * k + labels[right]])
    pair_w = torch.cat([w[n0:], w[right]])
    trans = torch.zeros(k * k, dtype=f64, device=labels.device).index_add_(0, pairs, pair_w)
    return first, trans.view(k, k)
