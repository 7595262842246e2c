"""What every objective returns: one bound's terms, per data point.

Training minimises ``terms.loss()`` (= −surrogate.mean()) whatever the objective; logging reads
``bound``, ``reconstruction`` and ``kl``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class BoundTerms:
    """Per-data-point terms of a lower bound on log p(x), in nats.

    surrogate : (B,) the tensor gradients flow through: its gradient (of its batch mean) is the
        objective's gradient estimate. Its value equals ``bound`` for every objective except the
        doubly-reparameterized IWAE gradient (DReG), whose surrogate is Σ_i w̃_i log w_i.
    bound : (B,) detached: the bound's value (the ELBO, or the importance-weighted L_k).
    reconstruction : (B,) E_q[log p(x | z)] (its Monte Carlo estimate), or None where the
        objective does not separate it (the exact ELBO given only log p(x, z)).
    kl : (B,) KL(q(z | x) ‖ p(z)), closed form or its Monte Carlo estimate (IWAE: the sample
        average of log q − log p(z)), or None with ``reconstruction``.
        For the reparameterized ELBO (:func:`~lvmkit.objectives.elbo.elbo_terms`) both carry
        gradients and surrogate = reconstruction − kl, so a caller may re-weight them (β, KL
        warm-up, free bits); elsewhere they are detached, for logging.
    mu, log_sigma : (B, L) the Gaussian q(z | x) the terms were computed at (with gradients), for
        the objectives that have one; else None.
    """

    surrogate: Tensor
    bound: Tensor
    reconstruction: Tensor | None = None
    kl: Tensor | None = None
    mu: Tensor | None = None
    log_sigma: Tensor | None = None

    def loss(self) -> Tensor:
        """The scalar to minimise: −surrogate.mean() over the batch."""
        return -self.surrogate.mean()
