"""The importance-weighted bound (Burda, Grosse and Salakhutdinov 2015) as a training objective.

    L_k(x) = E[ log (1/k) Σ_i w_i ],   w_i = p(x, z_i) / q(z_i | x),   z_i ~ q(z | x)

L_1 is the ELBO; L_k rises with k towards log p(x). Its reparameterized gradient weights each
sample by its normalized weight w̃_i. For the encoder that estimator's signal-to-noise ratio falls
as k grows (Rainforth et al. 2018); the doubly-reparameterized estimator (DReG, Tucker et al.
2019) removes the score term and weights the path derivative by w̃_i² instead, with the same
expectation and much lower variance. Here both come from one decoder pass: the surrogate
Σ_i stopgrad(w̃_i)·log w_i gives the decoder its exact IWAE gradient, and for DReG a hook on z
multiplies the path gradient by w̃_i once more while q's density is evaluated with its
parameters detached.
"""

from __future__ import annotations

import math

import torch

from lvmkit.objectives.terms import BoundTerms
from lvmkit.posteriors.amortized import log_prob as log_q
from lvmkit.posteriors.amortized import rsample


def iwae_terms(
    encoder, model, x: torch.Tensor, k: int, generator=None, dreg: bool = False
) -> BoundTerms:
    """:class:`BoundTerms` of L_k for a batch.

    ``surrogate`` (B,): the gradient of its batch mean is the IWAE (or DReG) gradient of the
    batch-mean bound (for IWAE it is L_k itself; for DReG Σ_i stopgrad(w̃_i) log w_i, whose value
    is not the bound); ``bound`` is L_k per data point (nats, detached); ``reconstruction`` and
    ``kl`` are the sample-average log p(x | z) and log q(z | x) − log p(z), detached (their
    difference is the k-sample average ELBO); ``mu``, ``log_sigma`` the encoder's.
    """
    mu, log_sigma = encoder(x)
    flat = x.reshape(x.shape[0], -1)
    z = rsample(mu, log_sigma, k, generator=generator)  # (k, B, L)
    log_lik = model.log_likelihood(flat, z)
    log_prior = model.log_prior(z)
    if dreg:
        log_qz = log_q(z, mu.detach(), log_sigma.detach())
    else:
        log_qz = log_q(z, mu, log_sigma)
    log_w = log_lik + log_prior - log_qz  # (k, B)
    bound = torch.logsumexp(log_w, dim=0) - math.log(k)
    if dreg:
        w_norm = torch.softmax(log_w.detach(), dim=0)
        if z.requires_grad:
            z.register_hook(lambda grad: grad * w_norm.unsqueeze(-1))
        surrogate = (w_norm * log_w).sum(0)
    else:
        surrogate = bound
    return BoundTerms(
        surrogate,
        bound.detach(),
        log_lik.mean(0).detach(),
        (log_qz - log_prior).mean(0).detach(),
        mu,
        log_sigma,
    )
