"""Independent binary features: p(x | z = k) = Π_d p_kd^x_d (1 − p_kd)^(1 − x_d).

Log-densities of all components are one matrix product, Σ_d x_d logit(p_kd) + Σ_d log(1 − p_kd).
Statistics are N_k = Σ r and S_k = Σ r x; the M-step p_k = S_k / N_k is clipped to
[min_prob, 1 − min_prob], the exact maximiser over that box (the objective is concave in p), so
EM still never lowers the likelihood and a pixel never seen on in training keeps a finite
log-probability at test time.

For per-sample parameters (a VAE decoder's logits, one set per data point) the module-level
:func:`log_prob_logits`, :func:`sample_probs` and :func:`sample_logits` give the density and
draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lvmkit.distributed import draw
from lvmkit.families._base import EPS_NK, IndependentFeatures


@dataclass
class BernoulliParams:
    probs: Tensor  # (K, D)
    prepared: dict | None = None
    logits: Tensor | None = None  # kept by the gradient view, which moves the logits

    def to(self, dtype=None, device=None) -> BernoulliParams:
        return BernoulliParams(self.probs.to(dtype=dtype, device=device))


class Bernoulli(IndependentFeatures):
    """Bernoulli observation family for a K-component mixture of binary vectors.

    ``flip`` (D,) 0/1, optional: features computed as 1 − x, with probabilities q = 1 − p. The
    log-density X Wᵀ + c (W the logits, c = Σ_d log(1 − q_kd)) cancels large terms when q is near
    1 (float32 lost up to 0.04 nats per 784-pixel row); flipping the features whose mode is 1 keeps
    q mostly near 0, where c and the nonzero entries of X are small. Parameters and statistics
    of a flipped family are in the flipped frame; the estimator converts at its boundary.
    """

    params_class = BernoulliParams

    def __init__(self, min_prob: float = 1e-6, flip: Tensor | None = None):
        self.min_prob = float(min_prob)
        self.flip = flip

    def features(self, X: Tensor) -> Tensor:
        if self.flip is None:
            return X
        f = self.flip.to(device=X.device, dtype=X.dtype)
        return X + f - 2 * f * X  # |x − f| for 0/1 data: exact

    def lecture_params(self, rows: Tensor, single_stats, n_components: int):
        return super().lecture_params(self.features(rows), single_stats, n_components)

    def flipped(self, probs: Tensor) -> Tensor:
        """``probs`` moved between the data's frame and the flipped one (its own inverse)."""
        if self.flip is None:
            return probs
        f = self.flip.to(device=probs.device, dtype=torch.bool)
        return torch.where(f, 1.0 - probs, probs)

    def data_of(self, features: Tensor) -> Tensor:
        return features

    def prepare(self, params: BernoulliParams) -> dict:
        if params.prepared is None:
            p = params.probs
            params.prepared = {
                "W": (torch.log(p) - torch.log1p(-p)).T.contiguous(),
                "c": torch.log1p(-p).sum(1),
            }
        return params.prepared

    def maximize(self, stats: dict[str, Tensor], reference=None) -> Tensor:
        """Probabilities (K, D), float64."""
        p = stats["sx"] / (stats["nk"] + EPS_NK)[:, None]
        return p.clamp(self.min_prob, 1.0 - self.min_prob)

    # gradient view
    def unconstrained(self, params: BernoulliParams) -> dict[str, Tensor]:
        return {"prob_logits": torch.logit(params.probs)}

    def constrained(self, u: dict[str, Tensor]) -> BernoulliParams:
        return BernoulliParams(torch.sigmoid(u["prob_logits"]), logits=u["prob_logits"])

    def expected_log_likelihood(self, summary, params: BernoulliParams) -> Tensor:
        """Σ_n Σ_k r_nk log p(x_n | p_k) = Σ_kd [S_kd η_kd − N_k softplus(η_kd)], η = logit p."""
        p = params.probs
        eta = params.logits if params.logits is not None else torch.log(p) - torch.log1p(-p)
        return (summary["sx"] * eta).sum() - (
            summary["nk"][:, None] * torch.nn.functional.softplus(eta)
        ).sum()

    def sample(self, labels: Tensor, probs: Tensor, generator) -> Tensor:
        return torch.bernoulli(probs[labels], generator=generator)


# Per-sample parameters: logits that come with each sample, as a VAE decoder produces them.


def log_prob_logits(logits: Tensor, x: Tensor) -> Tensor:
    """log p(x | logits) = Σ_d [x_d l_d − softplus(l_d)], summed over the last axis.

    ``logits`` (..., B, D) broadcasts against ``x`` (B, D). When the shapes are equal this is
    ``binary_cross_entropy_with_logits`` (one fused kernel); otherwise the broadcast form.
    """
    if logits.shape == x.shape:
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    return (logits * x).sum(-1) - F.softplus(logits).sum(-1)


def sample_probs(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x ~ Bernoulli(probs) elementwise, as (u < p) with u ~ U(0, 1), in probs' dtype.

    The same distribution as ``torch.bernoulli``, whose CPU kernel draws element by element and
    took 1.2 ms for one MNIST batch of 100 images (about 15% of a VAE training step); this takes
    ~0.06 ms. (The mixture's :meth:`Bernoulli.sample` keeps ``torch.bernoulli``.)
    """
    u = draw(
        torch.rand, probs.shape, 0, generator=generator, device=probs.device, dtype=probs.dtype
    )
    return (u < probs).to(probs.dtype)


def sample_logits(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x ~ Bernoulli(sigmoid(logits)) elementwise (see :func:`sample_probs`)."""
    return sample_probs(torch.sigmoid(logits), generator)
