"""One categorical feature: p(x | z = k) = p_k[x] for a symbol x in {0, …, M − 1}.

Observations are one column of integer symbols (n,) or (n, 1), as floats or integers; several
independent categorical features are not supported here (one family per column). The features are
the one-hot encoding (n, M), so the log-densities of all components are one matrix product,
onehot(x) @ log(p)ᵀ, and the statistics are N_k = Σ r and S_k = Σ r onehot(x) (the weighted
symbol counts, (K, M)).

The M-step maximises Σ_m S_km log p_km over the clipped simplex {p : Σ_m p_m = 1, p_m ≥ min_prob}
exactly: by the KKT conditions the maximiser is p_m = max(min_prob, S_m / λ) with λ such that the
row sums to one, found by clipping the symbols below the bound and renormalising the rest until no
more fall below it (at most M rounds). A symbol never seen in a component's data so keeps a finite
log-probability, and EM never lowers the likelihood. (Needs 0 < min_prob < 1 / M.)

The probabilities must be positive for :meth:`Categorical.log_prob` (a zero would give 0·log 0 in
the matrix product); every maximiser here is, and the gradient view's softmax is.

For per-sample parameters (a decoder's or a topic model's logits, one set per data point) the
module-level :func:`log_prob_logits` and :func:`sample_logits` give the density and draws.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from lvmkit.families._base import IndependentFeatures


@dataclass
class CategoricalParams:
    probs: Tensor  # (K, M), rows summing to one
    prepared: dict | None = None
    logits: Tensor | None = None  # kept by the gradient view, which moves the logits

    def to(self, dtype=None, device=None) -> CategoricalParams:
        return CategoricalParams(self.probs.to(dtype=dtype, device=device))


class Categorical(IndependentFeatures):
    """Categorical observation family for a K-component mixture of one symbol column.

    Parameters
    ----------
    n_symbols : M, the number of symbols; observations lie in {0, …, M − 1}.
    min_prob : the lower bound of every fitted probability (< 1 / M).
    """

    params_class = CategoricalParams

    def __init__(self, n_symbols: int, min_prob: float = 1e-6):
        if (
            isinstance(n_symbols, bool)
            or not isinstance(n_symbols, numbers.Integral)
            or n_symbols < 1
        ):
            raise ValueError(
                f"n_symbols must be an int >= 1 (the number of symbols M); got {n_symbols!r}."
            )
        if not 0.0 < float(min_prob) < 1.0 / n_symbols:
            raise ValueError(
                f"min_prob must lie in (0, 1/n_symbols) = (0, {1.0 / n_symbols:.3g}): positive, so "
                f"every log-probability stays finite, and small enough that {n_symbols} "
                f"probabilities of at least min_prob can sum to one; got {min_prob!r}."
            )
        self.n_symbols = int(n_symbols)
        self.min_prob = float(min_prob)

    def symbols(self, X: Tensor) -> Tensor:
        """The symbols of ``X`` ((n,) or (n, 1)) as a long tensor (n,),
        checked to lie in {0, …, M − 1}."""
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(
                f"Categorical observations must be one column of symbols, shape (n,) or (n, 1); "
                f"got shape {tuple(X.shape)}. Model several categorical features with one family "
                f"each."
            )
        if X.dtype.is_floating_point:
            if X.numel() and not bool((X == torch.round(X)).all()):
                raise ValueError(
                    "Categorical observations must be integer symbols; got non-integer values."
                )
        idx = X.long()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n_symbols):
            raise ValueError(
                f"Categorical symbols must lie in [0, {self.n_symbols}); got values from "
                f"{int(idx.min())} to {int(idx.max())}."
            )
        return idx

    def features(self, X: Tensor) -> Tensor:
        """The one-hot encoding (n, M) of the symbols, in X's floating
        dtype (else torch's default)."""
        dtype = X.dtype if X.dtype.is_floating_point else torch.get_default_dtype()
        return torch.nn.functional.one_hot(self.symbols(X), self.n_symbols).to(dtype)

    def data_of(self, features: Tensor) -> Tensor:
        return features

    def prepare(self, params: CategoricalParams) -> dict:
        if params.prepared is None:
            p = params.probs
            params.prepared = {
                "W": torch.log(p).T.contiguous(),
                "c": torch.zeros(p.shape[0], dtype=p.dtype, device=p.device),
            }
        return params.prepared

    def maximize(self, stats: dict[str, Tensor], reference=None) -> Tensor:
        """Probabilities (K, M), float64: the exact maximiser of Σ_m S_km log p_km over the simplex
        clipped below at ``min_prob`` (see the module's docstring). A component without data
        (S_k = 0) gets the uniform distribution."""
        s = stats["sx"].to(torch.float64)
        low = self.min_prob
        M = s.shape[1]
        total = s.sum(1, keepdim=True)
        empty = total[:, 0] <= 0
        s = torch.where(empty[:, None], torch.ones_like(s), s)
        clipped = torch.zeros_like(s, dtype=torch.bool)
        for _ in range(M):
            free_mass = 1.0 - low * clipped.sum(1, keepdim=True, dtype=s.dtype)
            free_sum = torch.where(clipped, torch.zeros_like(s), s).sum(1, keepdim=True)
            p = torch.where(clipped, torch.full_like(s, low), s * (free_mass / free_sum))
            newly = (p < low) & ~clipped
            if not bool(newly.any()):
                break
            clipped |= newly
        return p

    # gradient view
    def unconstrained(self, params: CategoricalParams) -> dict[str, Tensor]:
        """Softmax logits log p (K, M); defined up to a constant per row."""
        return {"prob_logits": torch.log(params.probs)}

    def constrained(self, u: dict[str, Tensor]) -> CategoricalParams:
        return CategoricalParams(torch.softmax(u["prob_logits"], dim=1), logits=u["prob_logits"])

    def expected_log_likelihood(self, summary, params: CategoricalParams) -> Tensor:
        """Σ_n Σ_k r_nk log p_k[x_n] = Σ_km S_km log p_km (from the logits when
        the gradient view has them)."""
        if params.logits is not None:
            log_p = torch.log_softmax(params.logits, dim=1)
        else:
            log_p = torch.log(params.probs)
        return (summary["sx"] * log_p).sum()

    def sample(self, labels: Tensor, probs: Tensor, generator) -> Tensor:
        """Symbols (n, 1), in probs' dtype: x_n ~ Categorical(probs[labels[n]])."""
        if labels.numel() == 0:
            return torch.empty(0, 1, dtype=probs.dtype, device=probs.device)
        return torch.multinomial(probs[labels], 1, replacement=True, generator=generator).to(
            probs.dtype
        )

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """K (M − 1) free probabilities (``n_features`` is not used: the one-hot width is M)."""
        return n_components * (self.n_symbols - 1)


# Per-sample parameters: logits that come with each sample (a decoder's, or a topic model's).


def log_prob_logits(logits: Tensor, x: Tensor) -> Tensor:
    """log p(x | logits) = Σ_d log softmax(logits[..., d, :])[x_d], summed over the features d.

    ``logits`` (..., D, M) are unnormalised log-probabilities of M symbols for each of D
    independent features; ``x`` (..., D) holds integer symbols (any dtype) and broadcasts against
    ``logits.shape[:-1]`` (for example logits (S, B, D, M) against x (B, D)). Returns shape
    broadcast(logits.shape[:-2], x.shape[:-1]).
    """
    log_p = torch.log_softmax(logits, dim=-1)
    shape = torch.broadcast_shapes(log_p.shape[:-1], x.shape)
    index = x.long().expand(shape).unsqueeze(-1)
    return torch.gather(log_p.expand(*shape, log_p.shape[-1]), -1, index).squeeze(-1).sum(-1)


def sample_logits(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Symbols x ~ Categorical(softmax(logits)), one per row of the last axis: shape
    logits.shape[:-1], long."""
    probs = torch.softmax(logits, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    if flat.shape[0] == 0:
        return torch.empty(probs.shape[:-1], dtype=torch.long, device=probs.device)
    return torch.multinomial(flat, 1, replacement=True, generator=generator).reshape(
        probs.shape[:-1]
    )
