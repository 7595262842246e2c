"""Latent Dirichlet allocation by variational EM, on the EM protocol of :mod:`lvmkit.fit.em`.

Blei, Ng & Jordan (2003); Hoffman, Blei & Bach (2010). Topic k has word distribution β_k with
q(β_k) = Dir(λ_k); document d has topic proportions θ_d with q(θ_d) = Dir(γ_d), and each of its
words a topic with q(z = k) = φ_dwk ∝ exp(E[log θ_dk] + E[log β_kw]). The E-step is coordinate
ascent per document on (φ_d, γ_d) with the topics fixed:

    γ_d ← α + exp(E[log θ_d]) ⊙ Σ_w (c_dw / n_dw) exp(E[log β_·w]),
    n_dw = Σ_k exp(E[log θ_dk]) exp(E[log β_kw]),

until the mean absolute change of γ_d falls below ``mean_change_tol``, exactly as scikit-learn's
(the same updates, the same per-document stopping rule). It has two implementations with the same
numbers: on the CPU a compiled loop per document, documents in parallel
(:mod:`lvmkit.models.lda_kernels`); elsewhere (a GPU) every document of a batch moves at once over
the batch's non-zero entries (no loop over documents): the entries of the documents still moving
are gathered, their normalizers formed, and scattered back, and converged documents leave the
working set. The expected topic-word counts Σ_d c_dw φ_dwk are sums over documents, so
they add over chunks and processes, and the M-step is λ = η + (those counts), or the online
blend of Hoffman et al. (stepwise EM on the same statistics).

The bound (the ELBO; scikit-learn's ``_approx_bound``) is Σ_dw c_dw log n_dw + Σ_d E[log p(θ_d)
− log q(θ_d)] + Σ_k E[log p(β_k) − log q(β_k)]; the first two parts are the documents', summed
with the statistics, the last is the topics' alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from lvmkit.models.documents import Documents, csr
from lvmkit.models.stats import Stats

f64 = torch.float64
#: the padded layout's size limit (entries × topics), beyond which the E-step uses sparse products
PADDED_BUDGET = 2**24


def dirichlet_expectation(alpha: Tensor) -> Tensor:
    """E[log x] under Dir(alpha) along the last axis: ψ(α) − ψ(Σ α)."""
    return torch.digamma(alpha) - torch.digamma(alpha.sum(-1, keepdim=True))


def dirichlet_terms(prior: float, q: Tensor) -> Tensor:
    """E_q[log Dir(x | prior) − log Dir(x | q)] of every row of ``q`` (float64)."""
    q = q.to(f64)
    elog = dirichlet_expectation(q)
    size = q.shape[-1]
    prior_t = torch.tensor(prior, dtype=f64, device=q.device)
    return (
        ((prior - q) * elog).sum(-1)
        + (torch.lgamma(q) - torch.lgamma(prior_t)).sum(-1)
        + torch.lgamma(prior_t * size)
        - torch.lgamma(q.sum(-1))
    )


def dirichlet_term(prior: float, q: Tensor, elog: Tensor) -> Tensor:
    """Σ over rows of E_q[log Dir(x | prior) − log Dir(x | q)] (float64)."""
    q, elog = q.to(f64), elog.to(f64)
    size = q.shape[-1]
    prior_t = torch.tensor(prior, dtype=f64)
    return (
        ((prior - q) * elog).sum()
        + (torch.lgamma(q) - torch.lgamma(prior_t)).sum()
        + (torch.lgamma(prior_t * size) - torch.lgamma(q.sum(-1))).sum()
    )


@dataclass
class TopicParams:
    """The topics' variational Dirichlet parameters λ (K, V), float64, and cached derivatives."""

    components: Tensor
    compute: dict = field(default_factory=dict, repr=False, compare=False)

    def elog_beta(self) -> Tensor:
        if "elog" not in self.compute:
            self.compute["elog"] = dirichlet_expectation(self.components)
        return self.compute["elog"]

    def exp_beta(self, dtype) -> Tensor:
        """exp(E[log β]) (K, V) in ``dtype``."""
        key = ("exp", dtype)
        if key not in self.compute:
            if self.components.device.type == "cpu":  # the compiled exp(ψ), transposed back
                self.compute[key] = self.exp_beta_t(dtype).T.contiguous()
            else:
                self.compute[key] = torch.exp(self.elog_beta()).to(dtype)
        return self.compute[key]

    def exp_beta_t(self, dtype) -> Tensor:
        """exp(E[log β])ᵀ (V, K), contiguous, in ``dtype``."""
        key = ("exp_t", dtype)
        if key not in self.compute:
            if self.components.device.type == "cpu":  # at every word
                every = torch.arange(self.components.shape[1])
                self.compute[key] = self.exp_beta_t_at(every, dtype)
            else:
                self.compute[key] = self.exp_beta(dtype).T.contiguous()
        return self.compute[key]

    def exp_beta_t_padded(self, dtype) -> Tensor:
        """exp(E[log β])ᵀ with a row of zeros for the padding word (V + 1, K)."""
        key = ("exp_t_pad", dtype)
        if key not in self.compute:
            t = self.exp_beta_t(dtype)
            self.compute[key] = torch.cat([t, torch.zeros_like(t[:1])])
        return self.compute[key]

    def exp_beta_t_at(self, words: Tensor, dtype) -> Tensor:
        """exp(E[log β])ᵀ at ``words`` only (U, K), in ``dtype`` (CPU): the E-step's topic
        factors for the words of one batch (an online mini-batch touches a fraction of a large
        vocabulary)."""
        from lvmkit.models import lda_kernels

        cached = self.compute.get(("at", dtype, id(words)))
        if cached is not None and cached[0] is words:
            return cached[1]
        out = torch.empty(words.numel(), self.components.shape[0], dtype=dtype)
        with lda_kernels.threads(torch.get_num_threads()):
            lda_kernels.exp_dirichlet_expectation_at(
                self.components.numpy(), words.numpy(), out.numpy()
            )
        self.compute[("at", dtype, id(words))] = (words, out)
        return out


@dataclass
class Inferred:
    """The end of a batch's E-step: every document's γ and exp(E[log θ]) (n, K) (compute dtype),
    the statistics' weights c_dw / (n_dw + eps) at every entry (nnz,) and every document's part
    of the bound (n,) float64."""

    gamma: Tensor
    exp_theta: Tensor
    ratios: Tensor
    bounds: Tensor


class LDAModel:
    """The variational EM model (see the module docstring).

    Parameters
    ----------
    n_topics : K
    alpha, eta : the document-topic and topic-word Dirichlet priors
    dtype : compute dtype of the E-step (statistics and bounds are float64)
    max_doc_update_iter, mean_change_tol : the per-document coordinate ascent's limits
    doc_init : ``(start, n) -> (n, K)`` float64 starting γ of documents ``start … start + n − 1``
    guard : batch EM's guard on the bound (see :meth:`bound`): every E-step starts from
        ``doc_init`` (fresh random starts, as scikit-learn's), and a pass whose bound would fall
        below the previous pass's keeps, document by document, the better of its fresh γ and the
        previous pass's, so the bound never decreases
    scale : the M-step's λ = η + scale · counts / n_samples (the corpus size: 1 · totals for batch
        EM, D / B for the online step on per-document statistics)
    compiled : the E-step's implementation: the compiled per-document loop of
        :mod:`lvmkit.models.lda_kernels` (True), the batched torch one (False), or the compiled one
        on the CPU and torch's elsewhere (None). Both make the same updates with the same stopping
        rule.
    """

    advice = "Check the counts, or lower doc_topic_prior and topic_word_prior."

    def __init__(
        self,
        n_topics,
        alpha,
        eta,
        dtype,
        max_doc_update_iter,
        mean_change_tol,
        doc_init,
        guard=False,
        scale=None,
        compiled=None,
    ):
        self.n_topics, self.alpha, self.eta = int(n_topics), float(alpha), float(eta)
        self.dtype = dtype
        self.max_doc_update_iter, self.mean_change_tol = max_doc_update_iter, mean_change_tol
        self.doc_init, self.guard, self.scale = doc_init, guard, scale
        self.compiled = compiled
        # the guard: every batch's γ of the last pass (fresh, guarded), which of the two the
        # pass kept, and the bound it recorded
        self._candidates: dict[int, tuple[Tensor, Tensor]] = {}
        self._kept: dict[int, Tensor] = {}
        self._fresh_chosen = True
        self._pass_bound: float | None = None
        self._reference: float | None = None
        self._topic_term = None

    # ------------------------------------------------------------------ E-step
    def infer(self, docs: Documents, params: TopicParams, gamma: Tensor, max_iter=None):
        """Coordinate ascent of every document's γ (n, K) from ``gamma``; returns the final γ
        and exp(E[log θ]) (compute dtype).

        Per iteration, the normalizers n_dw of the documents still moving are one sampled
        product (exp E[log θ] · exp E[log β], only at their entries) and the sums
        Σ_w (c_dw / n_dw) exp E[log β_·w] one sparse-dense product; a document stops when its γ
        moves by less than ``mean_change_tol``, and the working set shrinks as they do."""
        dtype, eps = self.dtype, torch.finfo(self.dtype).eps
        beta, beta_t = params.exp_beta(dtype), params.exp_beta_t(dtype)
        gamma = gamma.to(dtype).clone()
        exp_theta = torch.exp(dirichlet_expectation(gamma))
        # the working set: documents still moving, their γ and exp E[log θ] side by side
        ids = torch.arange(docs.n_docs, device=gamma.device)
        g, et = gamma.clone(), exp_theta.clone()
        crow, words, counts = docs.crow, docs.words, docs.counts
        active = torch.ones(docs.n_docs, dtype=torch.bool, device=gamma.device)
        v = docs.n_vocabulary
        k = beta.shape[0]
        padded = docs.padded_words is not None and docs.padded_words.numel() * k <= PADDED_BUDGET
        if padded:  # every entry's topic factors, documents as rows: (n, L, K)
            by_word = params.exp_beta_t_padded(dtype)[docs.padded_words]
            padded_counts = docs.padded_counts[:, None, :]
        max_iter = self.max_doc_update_iter if max_iter is None else max_iter
        for _ in range(max_iter):
            if padded:  # two batched products; padding has count 0, so ratio 0
                norm = torch.bmm(by_word, et[:, :, None]).add_(eps).transpose(1, 2)
                acc = torch.bmm(padded_counts / norm, by_word)[:, 0, :]
            else:
                shape = (ids.numel(), v)
                norm = torch.sparse.sampled_addmm(
                    csr(crow, words, counts, shape), et, beta, beta=0.0
                ).values()
                acc = csr(crow, words, counts / norm.add_(eps), shape) @ beta_t
            new = (et * acc).add_(self.alpha)
            still = (new - g).abs_().mean(1) >= self.mean_change_tol
            # a document that stopped keeps the γ of the step where it stopped
            g = torch.where(active[:, None], new, g)
            et = torch.where(active[:, None], torch.exp(dirichlet_expectation(new)), et)
            active &= still
            left = int(active.sum())
            if left == 0:
                break
            if left < 0.8 * ids.numel():  # write the stopped ones back; shrink the working set
                gamma[ids], exp_theta[ids] = g, et
                if padded:
                    by_word = by_word[active]
                    padded_counts = padded_counts[active]
                else:
                    lengths = crow[1:] - crow[:-1]
                    entries = torch.repeat_interleave(active, lengths)
                    crow = torch.zeros(left + 1, dtype=crow.dtype, device=crow.device)
                    crow[1:] = torch.cumsum(lengths[active], 0)
                    words, counts = words[entries], counts[entries]
                ids, g, et, active = ids[active], g[active], et[active], active[active]
        gamma[ids], exp_theta[ids] = g, et
        return gamma, exp_theta

    def solve(self, docs: Documents, params: TopicParams, start: Tensor, max_iter=None) -> Inferred:
        """Every document's E-step from ``start`` (n, K), at most ``max_iter`` steps
        (``max_doc_update_iter`` by default; 0 evaluates ``start``)."""
        max_iter = self.max_doc_update_iter if max_iter is None else int(max_iter)
        if self._compiled(docs):
            return self._solve_compiled(docs, params, start, max_iter)
        return self._finish(docs, params, *self.infer(docs, params, start, max_iter))

    def _compiled(self, docs: Documents) -> bool:
        on_cpu = docs.counts.device.type == "cpu"
        if self.compiled and not on_cpu:
            raise ValueError(
                f"The compiled LDA E-step runs on the CPU; these documents are on "
                f"{docs.counts.device}. Use compiled=None (the batched torch E-step there)."
            )
        return on_cpu if self.compiled is None else bool(self.compiled)

    def _solve_compiled(self, docs, params, start, max_iter) -> Inferred:
        from lvmkit.models import lda_kernels

        dtype = self.dtype
        with lda_kernels.threads(torch.get_num_threads()):
            gamma, exp_theta, ratios, bounds, _ = lda_kernels.infer(
                docs.crow.numpy(),
                docs.local_words.numpy(),
                docs.counts.numpy(),
                params.exp_beta_t_at(docs.unique_words, dtype).numpy(),
                start.to(dtype).contiguous().numpy(),
                self.alpha,
                max_iter,
                float(self.mean_change_tol),
                float(torch.finfo(dtype).eps),
            )
        return Inferred(*(torch.from_numpy(a) for a in (gamma, exp_theta, ratios, bounds)))

    def _finish(self, docs, params, gamma, exp_theta) -> Inferred:
        """The weights and bounds of the torch E-step's end."""
        eps = torch.finfo(self.dtype).eps
        norm = self._normalizers(docs, params, exp_theta)
        ratios = docs.counts / (norm + eps)
        words = torch.zeros(docs.n_docs, dtype=f64, device=norm.device).index_add_(
            0, docs.rows, docs.counts.to(f64) * torch.log(norm.to(f64).clamp(min=1e-300))
        )
        return Inferred(gamma, exp_theta, ratios, words + dirichlet_terms(self.alpha, gamma))

    def _remember(self, params: TopicParams) -> None:
        """At the first E-step under new parameters: a new pass (new random starts; the guard's
        reference is the bound the last pass recorded, its γ the ones it kept)."""
        if self._topic_term is None or self._topic_term[0] is not params:
            self._topic_term = (params, None)  # computed by bound(), when a pass asks for it
            refresh = getattr(self.doc_init, "refresh", None)
            if refresh is not None:  # a new pass: new random starts
                refresh()
            if self.guard and self._pass_bound is not None:
                self._reference = self._pass_bound
                which = 0 if self._fresh_chosen else 1
                self._kept = {start: pair[which] for start, pair in self._candidates.items()}
            self._pass_bound = None

    def e_step(self, docs: Documents, weights, params: TopicParams) -> Stats:
        self._remember(params)
        found = self.solve(docs, params, self.doc_init(docs.start, docs.n_docs))
        stats = self.statistics(docs, params, found)
        if not self.guard:
            return stats
        # the guarded alternative: each document keeps the better of its fresh γ and the one
        # it kept last pass (evaluated under the new topics, no steps)
        guarded = found
        kept = self._kept.get(docs.start)
        if kept is not None:
            guarded = _better(docs, found, self.solve(docs, params, kept, max_iter=0))
        self._candidates[docs.start] = (found.gamma, guarded.gamma)
        alternative = stats if guarded is found else self.statistics(docs, params, guarded)
        return Stats(
            stats,
            guarded_counts=alternative["counts"],
            guarded_log_likelihood=alternative["log_likelihood"],
        )

    def _normalizers(self, docs, params, exp_theta) -> Tensor:
        beta = params.exp_beta(self.dtype)
        shape = (docs.n_docs, docs.n_vocabulary)
        return torch.sparse.sampled_addmm(
            csr(docs.crow, docs.words, docs.counts, shape), exp_theta, beta, beta=0.0
        ).values()

    def statistics(self, docs, params, found: Inferred) -> Stats:
        """The expected topic-word counts (K, V) and the documents' part of the bound."""
        if self._compiled(docs):
            from lvmkit.models import lda_kernels

            with lda_kernels.threads(torch.get_num_threads()):
                counts = lda_kernels.topic_word_counts(
                    docs.crow.numpy(),
                    docs.local_words.numpy(),
                    docs.unique_words.numpy(),
                    found.ratios.numpy(),
                    found.exp_theta.numpy(),
                    params.exp_beta_t_at(docs.unique_words, self.dtype).numpy(),
                    docs.n_vocabulary,
                )
            counts = torch.from_numpy(counts)
        else:
            raw = docs.transposed(found.ratios) @ found.exp_theta  # (V, K)
            counts = raw.T.to(f64) * params.exp_beta(f64)
        device = counts.device
        return Stats(
            counts=counts,
            log_likelihood=found.bounds.sum().to(device),
            n_samples=torch.tensor(float(docs.n_docs), dtype=f64, device=device),
            n_words=docs.counts.sum(dtype=f64),
        )

    def zero_stats(self, chunks, params: TopicParams) -> Stats:
        self._remember(params)
        k, v = params.components.shape
        zero = dict(dtype=f64, device=params.components.device)
        stats = Stats(
            counts=torch.zeros(k, v, **zero),
            log_likelihood=torch.zeros((), **zero),
            n_samples=torch.zeros((), **zero),
            n_words=torch.zeros((), **zero),
        )
        if self.guard:
            stats = Stats(
                stats,
                guarded_counts=stats["counts"],
                guarded_log_likelihood=stats["log_likelihood"],
            )
        return stats

    def portable(self, stats: Stats, params: TopicParams) -> Stats:
        return stats  # expected counts: the same whatever the topics they were computed under

    # ------------------------------------------------------------------ bound and M-step
    def topic_term(self, params: TopicParams) -> float:
        """E[log p(β | η) − log q(β | λ)] summed over the topics."""
        return float(dirichlet_term(self.eta, params.components, params.elog_beta()))

    def bound(self, stats: Stats) -> float:
        """The ELBO per word (nats) of the documents in ``stats`` under the topics of the last
        E-step (−log of the perplexity).

        With the guard (batch EM): the bound of the fresh E-step if it is at least the previous
        pass's, else that of the guarded one, which is at least the previous pass's: the
        previous γ under the new topics bound at least as much as under the old ones (the M-step
        maximised the bound over the topics at that γ), and each document keeps the better of
        its fresh γ and that one."""
        fresh, guarded = self._bounds(stats)
        chosen = fresh if self._choose_fresh(stats) else guarded
        self._pass_bound = chosen
        return chosen

    def _bounds(self, stats: Stats) -> tuple[float, float | None]:
        params, term = self._topic_term
        if term is None:  # the K x V lgamma term, once per parameters (not per mini-batch)
            term = self.topic_term(params)
            self._topic_term = (params, term)
        words = max(stats.scalar("n_words"), 1e-300)
        fresh = (stats.scalar("log_likelihood") + term) / words
        if "guarded_log_likelihood" not in stats:
            return fresh, None
        return fresh, (stats.scalar("guarded_log_likelihood") + term) / words

    def _choose_fresh(self, stats: Stats) -> bool:
        """Whether this pass keeps its fresh E-step (else the guarded one)."""
        if "guarded_log_likelihood" not in stats or self._reference is None:
            self._fresh_chosen = True
            return True  # no guard (online steps: no bound computed here), or its first pass
        fresh, _ = self._bounds(stats)
        keep = fresh >= self._reference
        self._fresh_chosen = keep
        return keep

    def m_step(self, stats: Stats, params: TopicParams, reseed=None) -> TopicParams:
        n = stats.scalar("n_samples")
        scale = 1.0 if self.scale is None else self.scale / max(n, 1e-300)
        counts = stats["counts"] if self._choose_fresh(stats) else stats["guarded_counts"]
        return TopicParams(self.eta + counts * scale)


def _better(docs: Documents, one: Inferred, other: Inferred) -> Inferred:
    """Per document, the end (of ``one`` or ``other``) with the higher bound."""
    take = other.bounds > one.bounds
    entries = torch.repeat_interleave(take, docs.lengths)
    return Inferred(
        torch.where(take[:, None], other.gamma, one.gamma),
        torch.where(take[:, None], other.exp_theta, one.exp_theta),
        torch.where(entries, other.ratios, one.ratios),
        torch.where(take, other.bounds, one.bounds),
    )


# ---------------------------------------------------------------------- held-out likelihood
def left_to_right(X: sp.csr_matrix, topics: Tensor, alpha: float, n_particles: int, generator):
    """Wallach et al.'s (2009) left-to-right estimate of log p(w_d | topics, α) of every document
    (float64 (n,)), the topics held at point estimates (K, V) rows summing to 1.

    Each document's words, in the matrix's order (any order gives the same p(w): the model is
    exchangeable), are visited left to right; at position n every particle first re-samples the
    topics of the words before n (one Gibbs sweep) and then predicts w_n with
    Σ_k (N_k + α) / (n + K α) φ_k,w_n; the log of the particles' average adds up, and the
    particles are resampled in proportion to their predictions before w_n's topic is drawn.
    Wallach's algorithm omits that resampling, which biases it (Buntine 2009); with it this is
    sequential Monte Carlo, unbiased for p(w_d). Documents and particles run side by side
    (positions are padded); the cost is quadratic in the document length, so this is for a small
    held-out set."""
    k = topics.shape[0]
    device = topics.device
    lengths = np.asarray(X.sum(1)).ravel().astype(np.int64)
    n_docs, longest = X.shape[0], int(lengths.max()) if X.shape[0] else 0
    tokens = np.zeros((n_docs, longest), dtype=np.int64)
    for d in range(n_docs):  # set-up only: the words of each document as a sequence
        row = slice(X.indptr[d], X.indptr[d + 1])
        tokens[d, : lengths[d]] = np.repeat(X.indices[row], X.data[row].astype(np.int64))
    tokens = torch.as_tensor(tokens, device=device)
    lengths = torch.as_tensor(lengths, device=device)
    r = int(n_particles)
    counts = torch.zeros(n_docs, r, k, dtype=f64, device=device)
    z = torch.zeros(n_docs, r, max(longest, 1), dtype=torch.int64, device=device)
    total = torch.zeros(n_docs, dtype=f64, device=device)
    rows = torch.arange(n_docs, device=device)[:, None].expand(n_docs, r)
    parts = torch.arange(r, device=device)[None, :].expand(n_docs, r)

    def draw(position, live):
        """Topics of the words at ``position`` for every document and particle, from
        (N_k + α) φ_k,w; documents not ``live`` keep theirs."""
        weights = (counts + alpha) * topics[:, tokens[:, position]].T[:, None, :]
        new = torch.multinomial(weights.reshape(-1, k), 1, generator=generator).reshape(n_docs, r)
        return torch.where(live[:, None], new, z[:, :, position])

    for n in range(longest):
        live = lengths > n
        for m in range(n):  # one Gibbs sweep over the words before n
            counts[rows, parts, z[:, :, m]] -= live[:, None].to(f64)
            z[:, :, m] = draw(m, live)
            counts[rows, parts, z[:, :, m]] += live[:, None].to(f64)
        phi = topics[:, tokens[:, n]].T  # (n_docs, K)
        predictive = ((counts + alpha) * phi[:, None, :]).sum(-1) / (n + k * alpha)
        total += torch.where(live, torch.log(predictive.mean(1)), 0.0)
        # the particles resampled by how well they predicted w_n (sequential Monte Carlo: this
        # makes the product of the averages an unbiased estimate of p(w))
        keep = torch.multinomial(predictive, r, replacement=True, generator=generator)
        keep = torch.where(live[:, None], keep, parts)
        counts, z = counts[rows, keep], z[rows, keep]
        z[:, :, n] = draw(n, live)
        counts[rows, parts, z[:, :, n]] += live[:, None].to(f64)
    return total
