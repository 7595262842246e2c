"""The finite mixture p(x, z) = π_z p(x | z, θ_z), for any observation family.

A family (see :mod:`lvmkit.families`) supplies log p(x | z = k) for all k at once, additive
sufficient statistics and weighted maximum likelihood. This model adds the mixing weights, the
exact E-step and the statistics of one chunk of rows; the EM loop in :mod:`lvmkit.fit.em` sums
chunk statistics and calls :meth:`Mixture.maximize` once per iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from lvmkit.families._base import EPS_NK
from lvmkit.posteriors.exact import responsibilities


@dataclass
class ChunkStatistics:
    """What one pass of the E-step over some rows returns; chunks add with ``+=``.

    Everything stays a tensor on the compute device, so summing chunks never waits for the
    device; :meth:`finish` reads the totals once per pass.
    """

    log_likelihood: Tensor | float = 0.0  # Σ_n w_n log p(x_n), float64
    n_samples: Tensor | float = 0.0  # Σ_n w_n (the number of rows when unweighted)
    family: dict[str, Tensor] = field(default_factory=dict)
    worst_log_likelihood: Tensor | float = float("inf")
    worst_point: Tensor | None = None  # the row with the lowest log p(x), for re-seeding

    def __iadd__(self, other: "ChunkStatistics") -> "ChunkStatistics":
        self.log_likelihood = self.log_likelihood + other.log_likelihood
        self.n_samples += other.n_samples
        for key, value in other.family.items():
            self.family[key] = self.family[key] + value if key in self.family else value
        if self.worst_point is None:
            self.worst_log_likelihood = other.worst_log_likelihood
            self.worst_point = other.worst_point
        else:
            better = other.worst_log_likelihood < self.worst_log_likelihood
            self.worst_log_likelihood = torch.where(
                better, other.worst_log_likelihood, self.worst_log_likelihood
            )
            self.worst_point = torch.where(better, other.worst_point, self.worst_point)
        return self

    def finish(self) -> "ChunkStatistics":
        """Bring the scalar totals to the host (one synchronisation per pass)."""
        self.log_likelihood = float(self.log_likelihood)
        self.n_samples = float(self.n_samples)
        self.worst_log_likelihood = float(self.worst_log_likelihood)
        return self


class Mixture:
    """K-component mixture over an observation family.

    Parameters
    ----------
    family : observation family (e.g. :class:`lvmkit.families.gaussian.Gaussian`)
    weights : Tensor (K,), float64, mixing proportions
    params : the family's parameters, float64 (the master copy)
    dtype : compute dtype of the E-step
    """

    def __init__(self, family, weights: Tensor, params, dtype: torch.dtype):
        self.family = family
        self.dtype = dtype
        self.workspace: dict = {}  # buffers the family reuses from chunk to chunk
        self.set_parameters(weights, params)

    def set_parameters(self, weights: Tensor, params) -> None:
        self.weights = weights
        self.params = params
        self._compute_params = params.to(dtype=self.dtype)
        self.family.prepare(self._compute_params)
        self._log_weights = torch.log(weights).to(self.dtype)

    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    def log_joint(self, X: Tensor) -> tuple[Tensor, object]:
        """log p(x_n, z_n = k) (n, K) and the family's cache for :meth:`statistics`."""
        log_prob, cache = self.family.log_prob(X, self._compute_params, self.workspace)
        return log_prob.add_(self._log_weights), cache

    def log_evidence(self, X: Tensor) -> Tensor:
        """log p(x_n) for every row (n,)."""
        return torch.logsumexp(self.log_joint(X)[0], dim=1)

    def e_step(self, X: Tensor, weights: Tensor | None = None) -> ChunkStatistics:
        """Exact posterior over one chunk and the chunk's sufficient statistics.

        With sample ``weights`` every row counts ``w_n`` times: its responsibilities, hence its
        statistics, and its log-likelihood are scaled by ``w_n`` (a weight of 2 is a duplicate).
        """
        log_joint, cache = self.log_joint(X)
        log_evidence, resp = responsibilities(log_joint, inplace=True)
        if weights is None:
            total = log_evidence.sum(dtype=torch.float64)
            n = float(X.shape[0])
            candidates = log_evidence
        else:
            resp.mul_(weights[:, None])
            total = (log_evidence * weights).sum(dtype=torch.float64)
            n = weights.sum(dtype=torch.float64)
            candidates = torch.where(weights > 0, log_evidence, torch.inf)
        stats = self.family.statistics(X, resp, self._compute_params, cache, self.workspace)
        worst = torch.argmin(candidates)
        return ChunkStatistics(
            log_likelihood=total,
            n_samples=n,
            family=stats,
            worst_log_likelihood=log_evidence[worst].to(torch.float64),
            worst_point=self.family.data_of(X[worst]).to(torch.float64),
        )

    def empty_components(self, stats: ChunkStatistics) -> Tensor:
        """Indices of components whose total responsibility is numerically zero."""
        nk = stats.family["nk"]
        threshold = max(float(torch.finfo(self.dtype).eps) * stats.n_samples, 1e-12)
        return torch.nonzero(nk < threshold).reshape(-1)

    def maximize(self, stats: ChunkStatistics):
        """Closed-form M-step: mixing weights and the family's maximiser (float64)."""
        nk = stats.family["nk"] + EPS_NK
        return nk / nk.sum(), self.family.maximize(stats.family, self.params)
