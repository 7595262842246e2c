"""Two Monte Carlo estimators of the ELBO's gradient with respect to the encoder: reparameterized
and score function (REINFORCE), the latter with or without a baseline.

Both are written as *surrogates*: a per-point tensor whose value is the Monte Carlo ELBO estimate
(nats per data point) and whose gradient, by autograd, is the estimator's gradient. Each function
returns :class:`~lvmkit.objectives.terms.BoundTerms` holding it as ``surrogate``; training
minimizes ``terms.loss()`` = ``-surrogate.mean()`` whichever estimator is chosen.

With q(z | x) = N(mu, diag(sigma²)) and the KL in closed form,

    ELBO = E_q[f(z)] − KL(q ‖ N(0, I)),     f(z) = log p(x | z),

only the reconstruction term E_q[f] needs an estimator: the KL's gradient is exact in both.

- reparameterized: z = mu + sigma·eps, gradient (1/S) Σ_s ∇_φ f(mu + sigma·eps_s). Needs f
  differentiable in z; usually of far lower variance.
- score function: ∇_φ E_q[f] = E_q[f(z) ∇_φ log q(z)], estimated by (1/S) Σ_s (f(z_s) − b_s)
  ∇_φ log q(z_s) with z_s drawn and held fixed (no gradient through the draw). Needs only f's
  values (discrete latents, non-differentiable decoders). Any b_s that does not depend on z_s
  leaves it unbiased, because E_q[∇_φ log q(z)] = 0.

Baselines (``baseline=``):

- ``'leave-one-out'`` (the default of the diagnostics): b_s = the mean of f over the other S − 1
  draws of the same data point (Mnih & Rezende 2016; Kool, van Hoof & Welling 2019). Chosen because
  it is unbiased exactly (b_s is independent of z_s), has no state and nothing to tune, and is
  *per data point*: the score function's variance is dominated by the level of f, which differs
  between data points by far more than between draws for one point, so a baseline shared across
  points (a running average of f over batches, as in NVIL without its input-dependent network)
  removes little of it. Needs S >= 2; the estimate equals (1/(S−1)) Σ_s (f_s − f̄) ∇ log q_s.
- ``'mean'``: b = f(mu), the reconstruction at the posterior mean (no gradient through it). Also
  per point and unbiased (it does not depend on the draws), and usable with S = 1; costs one more
  decoder pass.
- a tensor of shape (B,) (or broadcastable to (S, B)): a baseline computed elsewhere, for example
  by a baseline network or a running average; it is detached here. It must not depend on the draws.

Gradients with respect to the decoder are the usual ones, ∇_θ f(z_s) at the drawn z_s, in both.
"""

from __future__ import annotations

import numbers

import torch

from lvmkit.objectives.elbo import gaussian_kl
from lvmkit.objectives.terms import BoundTerms
from lvmkit.posteriors.amortized import log_prob as log_q
from lvmkit.posteriors.amortized import rsample

__all__ = ["ESTIMATORS", "elbo_surrogate", "reparameterized_surrogate", "score_function_surrogate"]

#: name -> (kind, baseline) for :func:`elbo_surrogate` and the gradient diagnostics.
ESTIMATORS = {
    "reparameterization": ("reparameterization", None),
    "score": ("score", None),
    "score-baseline": ("score", "leave-one-out"),
    "score-mean-baseline": ("score", "mean"),
}


def _check_samples(n_samples) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ValueError(
            f"n_samples must be an int >= 1 (draws of z per data point); got {n_samples!r}."
        )
    return int(n_samples)


def reparameterized_surrogate(
    encoder, model, x: torch.Tensor, generator=None, n_samples: int = 1
) -> BoundTerms:
    """Per-point ELBO estimate (B,), nats, differentiable through z = mu + sigma·eps (pathwise),
    as :class:`BoundTerms` (surrogate = reconstruction − kl, both differentiable).

    ``x`` has the encoder's input shape (B, ...); the likelihood sees it flattened.
    """
    n_samples = _check_samples(n_samples)
    mu, log_sigma = encoder(x)
    flat = x.reshape(x.shape[0], -1)
    z = rsample(mu, log_sigma, n_samples, generator=generator)
    reconstruction, kl = model.log_likelihood(flat, z).mean(0), gaussian_kl(mu, log_sigma)
    value = reconstruction - kl
    return BoundTerms(value, value.detach(), reconstruction, kl, mu, log_sigma)


def score_function_surrogate(
    encoder, model, x: torch.Tensor, generator=None, n_samples: int = 1, baseline=None
) -> BoundTerms:
    """Per-point ELBO estimate (B,), nats, whose gradient in the encoder's parameters is the
    score-function (REINFORCE) estimate of the reconstruction term's gradient plus the exact
    gradient of the closed-form KL; as :class:`BoundTerms` whose ``reconstruction`` (the plain
    Monte Carlo mean of log p(x | z)) and ``kl`` are detached.

    baseline : None, 'leave-one-out' (needs n_samples >= 2), 'mean' (f at z = mu) or a tensor
        broadcastable to (n_samples, B); see the module's docstring.

    The value equals the plain Monte Carlo ELBO: the score term is added as
    (f − b)·(log q − stop_gradient(log q)), which is zero in value and has the right gradient.
    The draws use the same ``generator`` calls as :func:`reparameterized_surrogate`, so the two
    see the same z from the same generator state (common random numbers).
    """
    n_samples = _check_samples(n_samples)
    mu, log_sigma = encoder(x)
    flat = x.reshape(x.shape[0], -1)
    with torch.no_grad():
        z = rsample(
            mu, log_sigma, n_samples, generator=generator
        )  # held fixed: no pathwise gradient
    f = model.log_likelihood(flat, z)  # (S, B): gradients to the decoder only
    if baseline is None:
        b = 0.0
    elif isinstance(baseline, str) and baseline == "leave-one-out":
        if n_samples < 2:
            raise ValueError(
                "baseline='leave-one-out' needs n_samples >= 2 (the baseline of each draw is the "
                "mean of the other draws of the same point); got n_samples=1. Use n_samples=2 or "
                "more, or baseline='mean' (f at the posterior mean), which works with one draw."
            )
        fd = f.detach()
        b = (fd.sum(0, keepdim=True) - fd) / (n_samples - 1)
    elif isinstance(baseline, str) and baseline == "mean":
        with torch.no_grad():
            b = model.log_likelihood(flat, mu)
    elif isinstance(baseline, torch.Tensor):
        b = baseline.detach()
    else:
        raise ValueError(
            f"baseline must be None, 'leave-one-out', 'mean' or a tensor broadcastable to "
            f"(n_samples, batch) = ({n_samples}, {x.shape[0]}); got {baseline!r}."
        )
    log_q_z = log_q(z, mu, log_sigma)  # (S, B): gradients to the encoder only
    score = (f.detach() - b) * (log_q_z - log_q_z.detach())  # zero in value
    kl = gaussian_kl(mu, log_sigma)
    value = (f + score).mean(0) - kl
    return BoundTerms(value, value.detach(), f.detach().mean(0), kl.detach(), mu, log_sigma)


def elbo_surrogate(
    encoder,
    model,
    x: torch.Tensor,
    estimator: str = "reparameterization",
    generator=None,
    n_samples: int = 1,
) -> BoundTerms:
    """The :class:`BoundTerms` of a named estimator (a key of :data:`ESTIMATORS`); its
    ``surrogate`` is the per-point ELBO (B,), nats, differentiable as the estimator says."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {tuple(ESTIMATORS)}; got {estimator!r}.")
    kind, baseline = ESTIMATORS[estimator]
    if kind == "reparameterization":
        return reparameterized_surrogate(encoder, model, x, generator, n_samples)
    return score_function_surrogate(encoder, model, x, generator, n_samples, baseline)
