"""Diagonal Gaussians with per-sample parameters: a mean and scale that come with each sample, as
an encoder's q(z | x) or a VAE decoder produces them, and the standard normal prior N(0, I).

Every density is summed over the last axis (the features or latent dimensions); the arguments
broadcast, for example draws z (S, B, L) against an encoder's mean and log_std (B, L). (The
mixture family, with parameters per component, is :mod:`lvmkit.families.gaussian`.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from lvmkit.distributed import draw
from lvmkit.families._base import LOG_2PI


def diagonal_log_prob(x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log N(x; mean, diag(exp(log_std)²)), summed over the last axis."""
    return -0.5 * (((x - mean) * torch.exp(-log_std)).square() + 2 * log_std + LOG_2PI).sum(-1)


def shared_std_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(x; mean, diag(std²)), summed over the last axis, with ``std`` shared by all samples:
    a 0-d tensor (one for every feature) or one per feature (D,), as a VAE decoder's likelihood
    with a fixed or learned noise level has it.

    The same density as ``diagonal_log_prob(x, mean, log(std))``; written with the
    log-normaliser formed once (Σ_d log std_d, or D log std) instead of once per sample.
    """
    z = (x - mean) / std
    d = mean.shape[-1]
    log_norm = torch.log(std).sum() if std.ndim else d * torch.log(std)
    return -0.5 * z.square().sum(-1) - log_norm - 0.5 * d * LOG_2PI


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I), summed over the last axis."""
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * LOG_2PI)


def diagonal_kl_to_standard_per_dim(mean: Tensor, log_std: Tensor) -> Tensor:
    """KL(N(mean, diag(exp(log_std)²)) ‖ N(0, I)), one value per dimension (no sum):
    ½ (mean² + std² − 1 − log std²)."""
    return 0.5 * (mean.square() + torch.exp(2 * log_std) - 1 - 2 * log_std)


def diagonal_kl_to_standard(mean: Tensor, log_std: Tensor) -> Tensor:
    """KL(N(mean, diag(exp(log_std)²)) ‖ N(0, I)), summed over the last axis (nats)."""
    return diagonal_kl_to_standard_per_dim(mean, log_std).sum(-1)


def diagonal_rsample(
    mean: Tensor, log_std: Tensor, n_samples: int | None = None, generator=None
) -> Tensor:
    """Reparameterized draws mean + exp(log_std)·eps with eps ~ N(0, I), differentiable in mean
    and log_std; shape (n_samples, *mean.shape), or mean.shape when ``n_samples`` is None."""
    shape = mean.shape if n_samples is None else (n_samples, *mean.shape)
    # rows: axis 0 of mean (a rank's share of a batch draws the whole batch's noise, see draw)
    eps = draw(
        torch.randn,
        shape,
        0 if n_samples is None else 1,
        generator=generator,
        device=mean.device,
        dtype=mean.dtype,
    )
    return mean + torch.exp(log_std) * eps
