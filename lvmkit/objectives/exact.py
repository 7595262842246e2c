"""The evidence lower bound for a discrete latent variable, computed exactly (no sampling).

ELBO(q) = E_q[log p(x, z)] + H[q] = log p(x) − KL(q ‖ p(z | x)). With q the exact posterior (the
EM E-step) the KL term is zero and the bound equals the log-likelihood, which is why a mixture's
``lower_bound_`` is its mean log-likelihood per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lvmkit.objectives.terms import BoundTerms


def _expect(q: Tensor, values: Tensor) -> Tensor:
    """Σ_k q_k values_k per row, with terms where q_k = 0 contributing 0 (0·log 0 = 0)."""
    terms = torch.where(q > 0, q * values, torch.zeros_like(q))
    return terms.sum(1)


def elbo(log_joint: Tensor, log_q: Tensor, log_prior: Tensor | None = None) -> BoundTerms:
    """Per-sample ELBO Σ_k q_k (log p(x, z=k) − log q_k), with 0·log 0 = 0, as :class:`BoundTerms`.

    Parameters
    ----------
    log_joint : Tensor (n, K)
        log p(x_n, z_n = k).
    log_q : Tensor (n, K)
        log q(z_n = k | x_n); each row must normalise.
    log_prior : Tensor broadcastable to (n, K), optional
        log p(z = k) (for a mixture, the log weights). Given, the bound is also split into
        ``reconstruction`` = E_q[log p(x | z)] and ``kl`` = KL(q ‖ p(z)); without it those are None.

    ``surrogate`` is the ELBO, differentiable in the inputs; ``bound`` the same values, detached.
    """
    q = log_q.exp()
    value = _expect(q, log_joint - log_q)
    reconstruction = kl = None
    if log_prior is not None:
        reconstruction = _expect(q, log_joint - log_prior)
        kl = _expect(q, log_q - log_prior)
    return BoundTerms(value, value.detach(), reconstruction, kl)
