"""The evidence lower bound for a discrete latent variable, computed exactly (no sampling).

ELBO(q) = E_q[log p(x, z)] + H[q] = log p(x) − KL(q ‖ p(z | x)). With q the exact posterior (the
EM E-step) the KL term is zero and the bound equals the log-likelihood, which is why a mixture's
``lower_bound_`` is its mean log-likelihood per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor


def elbo(log_joint: Tensor, log_q: Tensor) -> Tensor:
    """Per-sample ELBO Σ_k q_k (log p(x, z=k) − log q_k), with 0·log 0 = 0.

    Parameters
    ----------
    log_joint : Tensor (n, K)
        log p(x_n, z_n = k).
    log_q : Tensor (n, K)
        log q(z_n = k | x_n); each row must normalise.
    """
    q = log_q.exp()
    terms = torch.where(q > 0, q * (log_joint - log_q), torch.zeros_like(q))
    return terms.sum(1)
