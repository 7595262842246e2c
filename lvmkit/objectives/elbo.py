"""The Monte Carlo ELBO of an amortized Gaussian posterior, with the KL term in closed form.

    ELBO(x) = E_q[log p(x | z)] − KL(q(z | x) ‖ N(0, I))

The expectation is estimated with reparameterized samples; the KL between diagonal Gaussians is
exact: ½ Σ_j (mu_j² + sigma_j² − 1 − log sigma_j²). Both terms are sums over dimensions, per data
point, in nats.
"""

from __future__ import annotations

import torch

from lvmkit.posteriors.amortized import gaussian_kl, gaussian_kl_per_dim, rsample

__all__ = ["elbo_terms", "gaussian_kl", "gaussian_kl_per_dim"]


def elbo_terms(encoder, model, x: torch.Tensor, generator=None, n_samples: int = 1):
    """(reconstruction, kl, mu, log_sigma): E_q log p(x | z) by ``n_samples`` draws, and the exact KL.

    ``x`` has the encoder's input shape (B, ...); the likelihood sees it flattened.
    """
    mu, log_sigma = encoder(x)
    flat = x.reshape(x.shape[0], -1)
    if n_samples == 1:
        reconstruction = model.log_likelihood(flat, rsample(mu, log_sigma, generator=generator))
    else:
        z = rsample(mu, log_sigma, n_samples, generator=generator)
        reconstruction = model.log_likelihood(flat, z).mean(0)
    return reconstruction, gaussian_kl(mu, log_sigma), mu, log_sigma
