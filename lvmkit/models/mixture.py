"""The finite mixture p(x, z) = π_z p(x | z, θ_z), for any observation family, with the EM protocol.

A family (see :mod:`lvmkit.families`) supplies log p(x | z = k) for all k at once, additive
sufficient statistics and the closed-form M-step. This model adds the mixing weights and the three
things the EM loop of :mod:`lvmkit.fit.em` asks of every model:

- :meth:`Mixture.initialize` ``(chunks, method, generator, user) -> params``;
- :meth:`Mixture.e_step` ``(X, weights, params) -> Stats``: the exact posterior (responsibilities)
  of one chunk and that chunk's additive statistics, log-likelihood included;
- :meth:`Mixture.m_step` ``(stats, params, reseed) -> params``: closed form, re-seeding empty
  components (at the worst-explained point the loop finds in a second pass, :meth:`worst`),
  escalating covariance jitter, clipping probabilities.

Parameters are a :class:`MixtureParams` in float64 (the master copy); the E-step runs on a copy in
the compute dtype, made once per parameter set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from lvmkit.distributed import LOCAL, Local
from lvmkit.families._base import EPS_NK
from lvmkit.models import kmeans
from lvmkit.models.stats import Stats
from lvmkit.posteriors.exact import responsibilities

INIT_METHODS = ("kmeans", "kmeans++", "k-means++", "random", "random_from_data", "lecture")


@dataclass
class MixtureParams:
    """Mixing weights (K,) and the family's component parameters, float64."""

    weights: Tensor
    components: object
    # compute-dtype copies {dtype: (log_weights, components)}, made on first use
    compute: dict = field(default_factory=dict, repr=False, compare=False)


class Mixture:
    """K-component mixture over an observation family.

    Parameters
    ----------
    family : observation family (e.g. :class:`lvmkit.families.gaussian.Gaussian`)
    n_components : int
    dtype : compute dtype of the E-step
    """

    def __init__(self, family, n_components: int, dtype: torch.dtype):
        self.family = family
        self.n_components = int(n_components)
        self.dtype = dtype
        self.workspace: dict = {}  # buffers the family reuses from chunk to chunk

    # ------------------------------------------------------------------ densities
    def features(self, X: Tensor) -> Tensor:
        """What the E-step reads for each row of the (shifted, compute-dtype) data: the
        family's features, computed once per data set."""
        return self.family.features(X)

    def _compute(self, params: MixtureParams):
        cached = params.compute.get(self.dtype)
        if cached is None:
            components = params.components.to(dtype=self.dtype)
            self.family.prepare(components)
            cached = (torch.log(params.weights).to(self.dtype), components)
            params.compute[self.dtype] = cached
        return cached

    def log_joint(self, X: Tensor, params: MixtureParams) -> tuple[Tensor, object]:
        """log p(x_n, z_n = k) (n, K) of features ``X``, and the family's cache for statistics.

        A single row is computed as the first of two: a one-row matrix product takes the BLAS
        matrix-vector path, whose different summation order changed float32 results by ~1e-6
        relative, so a row's log p(x) would depend on how many rows came with it.
        """
        log_weights, components = self._compute(params)
        if X.shape[0] == 1:
            log_prob, cache = self.family.log_prob(X.expand(2, -1), components, self.workspace)
            log_prob = log_prob[:1]
            cache = cache[:, :1].contiguous() if isinstance(cache, torch.Tensor) else cache
        else:
            log_prob, cache = self.family.log_prob(X, components, self.workspace)
        return log_prob.add_(log_weights), cache

    def log_evidence(self, X: Tensor, params: MixtureParams) -> Tensor:
        """log p(x_n) for every row (n,)."""
        return torch.logsumexp(self.log_joint(X, params)[0], dim=1)

    # ------------------------------------------------------------------ E-step
    def e_step(self, X: Tensor, weights: Tensor | None, params: MixtureParams) -> Stats:
        """Exact posterior over one chunk of features and the chunk's sufficient statistics.

        With sample ``weights`` every row counts ``w_n`` times: its responsibilities, hence its
        statistics, and its log-likelihood are scaled by ``w_n`` (a weight of 2 is a duplicate).
        """
        log_joint, cache = self.log_joint(X, params)
        log_evidence, resp = responsibilities(log_joint, inplace=True)
        if weights is None:
            total = log_evidence.sum(dtype=torch.float64)
            n = torch.full((), float(X.shape[0]), dtype=torch.float64, device=X.device)
        else:
            resp.mul_(weights[:, None])
            total = (log_evidence * weights).sum(dtype=torch.float64)
            n = weights.sum(dtype=torch.float64)
        _, components = self._compute(params)
        stats = self.family.statistics(X, resp, components, cache, self.workspace)
        return Stats(stats, log_likelihood=total, n_samples=n)

    def zero_stats(self, chunks, params: MixtureParams) -> Stats:
        """Statistics of no rows (an empty shard still joins every collective with these)."""
        empty = torch.zeros(0, chunks.n_features, dtype=self.dtype, device=chunks.device)
        return self.e_step(self.family.features(empty), None, params)

    def worst(
        self, X: Tensor, weights: Tensor | None, params: MixtureParams
    ) -> tuple[float, Tensor]:
        """The lowest log p(x) of a chunk's rows of positive weight,
        and that row's data (float64)."""
        log_evidence = self.log_evidence(X, params)
        if weights is not None:
            log_evidence = torch.where(weights > 0, log_evidence, torch.inf)
        i = torch.argmin(log_evidence)
        return float(log_evidence[i]), self.family.data_of(X[i]).to(torch.float64)

    def portable(self, stats: Stats, params: MixtureParams) -> Stats:
        """``stats`` (computed under ``params``) in the frame that does not depend on the
        parameters, where statistics of different iterations may be blended (stepwise EM)."""
        _, components = self._compute(params)
        return Stats(self.family.portable(stats, components))

    # ------------------------------------------------------------------ M-step
    def empty_components(self, stats: Stats) -> Tensor:
        """Indices of components whose total responsibility is numerically zero."""
        nk = stats["nk"]
        threshold = max(float(torch.finfo(self.dtype).eps) * stats.scalar("n_samples"), 1e-12)
        return torch.nonzero(nk < threshold).reshape(-1)

    def m_step(self, stats: Stats, params: MixtureParams, reseed=None) -> MixtureParams:
        """Closed-form M-step (float64): mixing weights and the family's maximiser.

        ``stats`` were computed under ``params`` (batch EM), or are portable (stepwise EM).
        ``reseed = (empty, point)`` re-seeds the empty components at ``point`` with weight 1/K.
        """
        nk = stats["nk"] + EPS_NK
        weights = nk / nk.sum()
        components = self.family.m_step(stats, weights, params.components, reseed)
        if reseed is not None:
            weights = weights.clone()
            weights[reseed[0]] = 1.0 / len(weights)
            weights = weights / weights.sum()
        return MixtureParams(weights, components)

    # ------------------------------------------------------------------ initialisation
    def initialize(
        self,
        chunks,
        method: str,
        generator: torch.Generator,
        user: dict | None = None,
        comm: Local = LOCAL,
    ):
        """Initial parameters from the raw (shifted, compute-dtype) ``chunks``.

        ``method`` is one of :data:`INIT_METHODS` (see ``GaussianMixture``'s ``init_params``);
        ``user`` holds given values in model coordinates (``weights``, and the family's: ``means``
        and ``P`` for a Gaussian, ``values`` for Poisson and Bernoulli), which take precedence.
        Seeding reads rows at random from :meth:`DataChunks.seeding_view` (all the data when it
        is in memory, a bounded reservoir sample when it is streamed; across processes, a sample
        gathered from every rank, the same on all); the statistics come from full passes, summed
        over ranks by ``comm``. Every rank returns the same parameters.
        """
        user = dict(user or {})
        k = self.n_components
        family = self.family
        if "weights" in user and family.user_complete(user):
            return MixtureParams(user["weights"], family.initial_params(None, user))
        f64 = dict(dtype=torch.float64, device=chunks.device)
        if method == "lecture":
            weights = torch.full((k,), 1.0 / k, **f64)
            seeding = chunks.seeding_view(generator, comm)
            rows = comm.broadcast(kmeans.random_rows(seeding, k, generator).to(torch.float64))
            single = family.single_family()
            stats = statistics_under(chunks, single, _all_ones, comm=comm)
            estimate = family.lecture_params(rows, stats, k)
        else:
            resp_of = self._initial_responsibilities(chunks, generator, method, comm)
            stats = statistics_under(chunks, family, resp_of, comm=comm)
            nk = stats["nk"] + EPS_NK
            weights = nk / nk.sum()
            reference = family.reference_at(stats)
            if reference is not None:  # a second pass, centred on the first pass's means
                stats = statistics_under(chunks, family, resp_of, reference, comm)
            estimate = family.maximize(stats)
        return MixtureParams(user.get("weights", weights), family.initial_params(estimate, user))

    def _initial_responsibilities(self, chunks, generator, method: str, comm: Local = LOCAL):
        return initial_responsibilities(chunks, self.n_components, generator, method, comm)


def initial_responsibilities(chunks, k: int, generator, method: str, comm: Local = LOCAL):
    """A function (chunk, its first row's global number) -> initial responsibilities (n, K),
    the same on every pass; the seeds are rank 0's, broadcast.

    Every choice depends on the rows' values and weights, not on their order: seeds are drawn
    from the canonical rows (:func:`lvmkit.models.kmeans.canonical`), and a row's random
    responsibilities are a function of its values (:class:`_RandomResponsibilities`), so a
    row of weight 2 starts as the same row twice, wherever the copies are.
    """
    if method == "random":
        base = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
        origin, scale = _value_range(chunks, comm)
        return _RandomResponsibilities(k, base, origin, scale)
    seeding = chunks.seeding_view(generator, comm)
    if method == "kmeans":
        centers, _ = kmeans.kmeans(seeding, k, generator, with_labels=False)
    elif method in ("kmeans++", "k-means++"):
        centers = kmeans.kmeans_plusplus(seeding, k, generator)
    elif method == "random_from_data":
        centers = kmeans.random_rows(seeding, k, generator)
    else:
        raise ValueError(f"unknown initialisation {method!r}; expected one of {INIT_METHODS}.")
    centers = comm.broadcast(centers)

    def one_hot(X, start):
        return torch.nn.functional.one_hot(kmeans.nearest(X, centers), k).to(X.dtype)

    return one_hot


def _value_range(chunks, comm: Local = LOCAL) -> tuple[Tensor, Tensor]:
    """Per-feature minimum and range (max − min, 1 where 0) of the rows of positive weight over
    every rank, float64 (one pass)."""
    d = chunks.n_features
    lo = torch.full((d,), torch.inf, dtype=torch.float64)
    hi = torch.full((d,), -torch.inf, dtype=torch.float64)
    for X, w in chunks.iter_weighted():
        if w is not None:
            X = X[w > 0]
        if X.shape[0]:
            lo = torch.minimum(lo, X.amin(0).to(torch.float64).cpu())
            hi = torch.maximum(hi, X.amax(0).to(torch.float64).cpu())
    if comm.active:
        parts = comm.gather_rows(torch.cat([lo, hi]).numpy().reshape(1, -1))
        both = torch.as_tensor(np.concatenate(parts), dtype=torch.float64)
        lo, hi = both[:, :d].amin(0), both[:, d:].amax(0)
    lo = torch.where(torch.isfinite(lo), lo, 0.0)
    span = hi - lo
    scale = torch.where(torch.isfinite(span) & (span > 0), span, 1.0)
    return lo.to(chunks.device), scale.to(chunks.device)


_MASK32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x · c) mod 2³² for int64 ``x`` in [0, 2³²), without overflowing int64."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (Wellons' lowbias32) of int64 ``x`` in [0, 2³²), elementwise."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


class _RandomResponsibilities:
    """Random soft responsibilities, a function of each row's values and the seed.

    Every feature is cut into :attr:`CELLS` equal cells over the range of the data (rows of
    positive weight, over every rank: ``origin`` and ``scale``, see :func:`_value_range`); the
    row's cell numbers are hashed with the seed ``base`` into K uniforms, normalised. Rows in the
    same cell of every feature (closer than 1/65536 of the range), duplicates above all, get the
    same responsibilities, whatever their place in the data, their chunk or the pass: so a row of
    weight 2 starts as the same row twice. Cells relative to the data's own range make this
    independent of the shift the data is centred on, up to rounding: in float64 a value falls in
    another cell with probability ~1e-11; in float32, whose rounding depends on the shift, ~1e-3.
    """

    CELLS = 2**16

    def __init__(self, k: int, base: int, origin: Tensor, scale: Tensor):
        self.k, self.base = k, int(base) & _MASK32
        self.origin, self.scale = origin.to(torch.float64), scale.to(torch.float64)

    def __call__(self, X: Tensor, start: int) -> Tensor:
        dev = X.device
        cells = torch.floor(
            (X.to(torch.float64) - self.origin.to(dev)) / self.scale.to(dev) * self.CELLS
        )
        bound = float(2**40)
        cells = (cells.clamp(-bound, bound) + bound).to(torch.int64)  # in [0, 2^41]
        h = _mix32(torch.full((X.shape[0],), self.base, dtype=torch.int64, device=dev))
        for j in range(X.shape[1]):
            h = _mix32(h ^ (cells[:, j] & _MASK32))
            h = _mix32(h ^ (cells[:, j] >> 32))
        salt = _mix32((torch.arange(self.k, dtype=torch.int64, device=dev) + 0x9E3779B9) & _MASK32)
        bits = _mix32(h[:, None] ^ salt[None, :])  # (n, K) in [0, 2^32)
        r = (bits.to(torch.float64) + 0.5) / 2.0**32
        return (r / r.sum(1, keepdim=True)).to(X.dtype)


def _all_ones(X: Tensor, start: int) -> Tensor:
    """Responsibilities of a single component: every row belongs to it."""
    return torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)


def statistics_under(chunks, family, resp_of, reference=None, comm: Local = LOCAL) -> Stats:
    """Family statistics of the (weighted) raw chunks under given responsibilities, summed (over
    every rank's chunks), in the portable frame.

    ``resp_of(X, start)`` gives the responsibilities of the chunk starting at row ``start`` (global:
    counted from ``chunks.offset``, this rank's first row);
    ``reference`` is where the 'full' Gaussian scatter is accumulated before each chunk's sum is
    mapped to the portable frame (default: the origin): it changes the rounding, not the result.
    """
    total = None
    start = chunks.offset
    empty = torch.zeros(0, chunks.n_features, dtype=chunks.dtype, device=chunks.device)
    for X, w in _or_one_empty(chunks.iter_weighted(), empty):
        resp = resp_of(X, start)
        if w is not None:
            resp = resp * w[:, None]
        ref = family.default_reference(resp.shape[1], X) if reference is None else reference
        ref = None if ref is None else ref.to(dtype=X.dtype)
        stats = Stats(family.portable(family.statistics(family.features(X), resp, ref, None), ref))
        total = stats if total is None else total + stats
        start += X.shape[0]
    return comm.reduce(total)


def _or_one_empty(parts, empty: Tensor):
    """The chunks ``(X, w)``, or one chunk of no rows when there are none (an empty shard still
    has statistics: zeros of the right layout)."""
    seen = False
    for part in parts:
        seen = True
        yield part
    if not seen:
        yield empty, None
