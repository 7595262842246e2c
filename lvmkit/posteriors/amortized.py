"""Amortized posteriors: q(z | x) = N(mu(x), diag(sigma(x)²)) given by an encoder network.

The encoder network outputs 2·L numbers per data point, the mean and the log standard deviation
concatenated. ``rsample`` draws z = mu + sigma·eps (the reparameterization trick), so gradients
flow to the encoder through the sample.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


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
    """z = mu + sigma·eps with eps ~ N(0, I); shape (n_samples, B, L), or (B, L) when n_samples is None."""
    shape = mu.shape if n_samples is None else (n_samples, *mu.shape)
    eps = torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(log_sigma) * eps


def log_prob(z, mu, log_sigma) -> torch.Tensor:
    """log q(z | x), summed over latent dimensions."""
    return -0.5 * (((z - mu) * torch.exp(-log_sigma)).square() + 2 * log_sigma + LOG_2PI).sum(-1)


def gaussian_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(sigma²)) ‖ N(0, I)) per data point (summed over the last dimension)."""
    return 0.5 * (mu.square() + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(-1)


def gaussian_kl_per_dim(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """The same KL, one value per latent dimension (for free bits)."""
    return 0.5 * (mu.square() + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma)
