"""The Monte Carlo ELBO of an amortized Gaussian posterior, with the KL term in closed form.

    ELBO(x) = E_q[log p(x | z)] − KL(q(z | x) ‖ N(0, I))

The expectation is estimated with reparameterized samples; the KL between diagonal Gaussians is
exact: ½ Σ_j (mu_j² + sigma_j² − 1 − log sigma_j²). Both terms are sums over dimensions, per data
point, in nats.
"""

from __future__ import annotations

import torch

from lvmkit.objectives.terms import BoundTerms
from lvmkit.posteriors.amortized import gaussian_kl, gaussian_kl_per_dim
from lvmkit.posteriors.local import local_elbo_terms

__all__ = ["BoundTerms", "elbo_terms", "elbo_terms_at", "gaussian_kl", "gaussian_kl_per_dim"]


def elbo_terms(encoder, model, x: torch.Tensor, generator=None, n_samples: int = 1) -> BoundTerms:
    """The ELBO at the encoder's q(z | x): E_q log p(x | z) by
    ``n_samples`` draws, and the exact KL.

    Returns :class:`BoundTerms` with ``reconstruction`` and ``kl`` differentiable (surrogate =
    reconstruction − kl), and the encoder's ``mu``, ``log_sigma``. ``x`` has the encoder's input
    shape (B, ...); the likelihood sees it flattened.
    """
    mu, log_sigma = encoder(x)
    return elbo_terms_at(model, x, mu, log_sigma, n_samples=n_samples, generator=generator)


def elbo_terms_at(
    model,
    x: torch.Tensor,
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    *,
    n_samples: int = 1,
    generator=None,
) -> BoundTerms:
    """The ELBO at a given q(z) = N(mu, diag(exp(log_sigma)²)) per point (free, or an encoder's),
    as :func:`elbo_terms`; differentiable in mu, log_sigma and the model's parameters."""
    reconstruction, kl = local_elbo_terms(
        model, x, mu, log_sigma, n_samples=n_samples, generator=generator
    )
    value = reconstruction - kl
    return BoundTerms(value, value.detach(), reconstruction, kl, mu, log_sigma)
