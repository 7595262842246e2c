"""The exact posterior q(z | x) = p(z | x) of a model with a discrete latent variable.

For a mixture, the E-step *is* this posterior: the responsibilities. Setting q to it makes the
evidence lower bound touch log p(x) (see :mod:`lvmkit.objectives.exact`).
"""

from __future__ import annotations

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
