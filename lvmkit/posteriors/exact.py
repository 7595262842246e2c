"""The exact posterior q(z | x) = p(z | x) of a model with a discrete latent variable.

For a mixture, the E-step *is* this posterior: the responsibilities. Setting q to it makes the
evidence lower bound touch log p(x) (see :mod:`lvmkit.objectives.exact`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def exact_posterior(log_joint: Tensor) -> tuple[Tensor, Tensor]:
    """Normalise log p(x, z=k) over k.

    Parameters
    ----------
    log_joint : Tensor of shape (n, K)
        log p(x_n, z_n = k).

    Returns
    -------
    log_evidence : Tensor (n,)
        log p(x_n) = logsumexp_k log p(x_n, z_n = k).
    log_resp : Tensor (n, K)
        log p(z_n = k | x_n).
    """
    log_evidence = torch.logsumexp(log_joint, dim=1)
    return log_evidence, log_joint - log_evidence[:, None]


def responsibilities(log_joint: Tensor, inplace: bool = False) -> tuple[Tensor, Tensor]:
    """The E-step's fast path: ``(log_evidence, resp)`` with resp = p(z | x) itself, not its log.

    One ``exp`` of the max-shifted log-joint, clamped at log(tiny)/2 of the dtype (-43.7 in
    float32), so no value passes through the subnormal range, where exp, sqrt and products run
    tens of times slower on CPUs. The clamp changes each responsibility by less than 1e-19
    (float32) or 1e-154 (float64) relative to its row's total. With ``inplace=True`` the
    responsibilities overwrite ``log_joint``.
    """
    floor = 0.5 * math.log(torch.finfo(log_joint.dtype).tiny)
    top = log_joint.amax(dim=1, keepdim=True)
    shifted = log_joint.sub_(top) if inplace else log_joint.sub(top)
    p = shifted.clamp_(min=floor).exp_()
    total = p.sum(dim=1, keepdim=True)
    log_evidence = (top + total.log()).squeeze(1)
    return log_evidence, p.div_(total)
