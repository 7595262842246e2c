"""Amortized posteriors: q(z | x) = N(mu(x), diag(sigma(x)²)) given by an encoder network.

The encoder network outputs 2·L numbers per data point, the mean and the log standard deviation
concatenated. ``rsample`` draws z = mu + sigma·eps (the reparameterization trick), so gradients
flow to the encoder through the sample.

The density, the sampler and the KL to N(0, I) are the diagonal Gaussian's of
:mod:`lvmkit.families.diagonal` (per-sample forms); the names here are kept for their callers.
"""

from __future__ import annotations

import torch
from torch import nn

from lvmkit.families.diagonal import (
    diagonal_kl_to_standard,
    diagonal_kl_to_standard_per_dim,
    diagonal_log_prob,
    diagonal_rsample,
)


class GaussianEncoder(nn.Module):
    """Wraps a network x -> (B, 2L) into q(z | x); ``forward`` returns (mu, log_sigma)."""

    def __init__(self, net: nn.Module, latent_dim: int):
        super().__init__()
        self.net = net
        self.latent_dim = int(latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        if out.ndim != 2 or out.shape[1] != 2 * self.latent_dim:
            raise ValueError(
                f"the encoder network returned shape {tuple(out.shape)}; expected (batch, "
                f"{2 * self.latent_dim}): the mean and the log standard deviation of "
                f"{self.latent_dim} latent dimensions, concatenated."
            )
        return out[:, : self.latent_dim], out[:, self.latent_dim :]


def rsample(mu, log_sigma, n_samples: int | None = None, generator=None) -> torch.Tensor:
    """z = mu + sigma·eps with eps ~ N(0, I); shape (n_samples, B, L), or
    (B, L) when n_samples is None."""
    return diagonal_rsample(mu, log_sigma, n_samples, generator)


def log_prob(z, mu, log_sigma) -> torch.Tensor:
    """log q(z | x), summed over latent dimensions."""
    return diagonal_log_prob(z, mu, log_sigma)


def gaussian_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(sigma²)) ‖ N(0, I)) per data point (summed over the last dimension)."""
    return diagonal_kl_to_standard(mu, log_sigma)


def gaussian_kl_per_dim(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """The same KL, one value per latent dimension (for free bits)."""
    return diagonal_kl_to_standard_per_dim(mu, log_sigma)
