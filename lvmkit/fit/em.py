"""One EM loop for every model: batch EM over chunks, restarts, tolerance, history, progress.

The loop knows nothing of the model it runs. A model supplies (see :mod:`lvmkit.models.mixture`)::

    e_step(X, weights, params) -> Stats        # additive statistics of one chunk
    m_step(stats, params, reseed=None) -> params
    empty_components(stats) -> indices         # optional: components to re-seed
    worst(X, weights, params) -> (value, row)  # optional: the worst-explained row of a chunk

Every iteration is one pass over the data: the E-step statistics of the chunks are summed, summed
again over processes by ``comm`` (:mod:`lvmkit.distributed`: nothing in one process, one float64
``all_reduce`` across processes), and one M-step follows, the same on every rank. The N x K
responsibilities are never held at once, so N is limited by time, not
memory; chunked and unchunked fits are the same computation up to the order of floating-point sums.
A component that lost its points is re-seeded at the worst-explained row, found by a second,
cheap pass (an argmin is not a sum, so it is not smuggled into the statistics).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lvmkit.distributed import LOCAL, Local
from lvmkit.models.stats import Stats


def e_pass(model, chunks, params, comm: Local = LOCAL) -> Stats:
    """One E-step over all chunks (of every rank): summed (sample-weighted) statistics and
    log-likelihood."""
    total = None
    for X, w in chunks.iter_weighted():
        stats = model.e_step(X, w, params)
        total = stats if total is None else total + stats
    if total is None:  # no rows here (an empty shard): zeros of the right layout
        total = model.zero_stats(chunks, params)
    return comm.reduce(total)


def worst_point(model, chunks, params, comm: Local = LOCAL) -> torch.Tensor:
    """The row with the lowest log p(x) under ``params`` (float64), by one pass over the chunks
    (of every rank; ties go to the lowest rank)."""
    best_value, best_row = math.inf, None
    for X, w in chunks.iter_weighted():
        value, row = model.worst(X, w, params)
        if best_row is None or value < best_value:
            best_value, best_row = value, row
    return comm.argmin(best_value, best_row)[1]


@dataclass
class EMResult:
    lower_bounds: list[float] = field(default_factory=list)
    seconds_at: list[float] = field(default_factory=list)  # cumulative, one per lower bound
    converged: bool = False
    n_iter: int = 0
    reseeded: list[tuple[int, list[int]]] = field(default_factory=list)
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    params: object = None
    state: object = None  # what an online loop carries on (stepwise EM's running statistics)

    def reseed_summary(self) -> tuple[list[int], str]:
        """The components re-seeded in this run (sorted) and the iterations, as text for a
        warning (the first ten)."""
        components = sorted({c for _, comps in self.reseeded for c in comps})
        iterations = [it for it, _ in self.reseeded]
        return components, f"{iterations[:10]}{'...' if len(iterations) > 10 else ''}"

    @property
    def final(self) -> float:
        return self.lower_bounds[-1] if self.lower_bounds else -math.inf

    def record(
        self, n_iter: int, lower_bound: float, previous: float, tol: float, on_iteration
    ) -> bool:
        """Log one iteration's bound; report it; return True once the change is below ``tol``."""
        self.lower_bounds.append(lower_bound)
        self.seconds_at.append(time.perf_counter() - self.started)
        self.n_iter = n_iter
        change = lower_bound - previous
        if on_iteration is not None:
            on_iteration(n_iter, lower_bound, change)
        self.converged = abs(change) < tol
        self.seconds = self.seconds_at[-1]
        return self.converged


ADVICE = "The data may contain enormous values: standardize X, or increase reg_covar."


def bound_of(model, stats: Stats) -> float:
    """The bound a model reports for summed statistics: the mean log-likelihood per sample
    (scikit-learn's convention), or the model's own ``bound(stats)`` (an HMM reports the total,
    hmmlearn's convention, so that ``tol`` means what it means there)."""
    if hasattr(model, "bound"):
        return model.bound(stats)
    return stats.scalar("log_likelihood") / stats.scalar("n_samples")


def check_finite(lower_bound: float, n_iter: int, advice: str) -> None:
    if not math.isfinite(lower_bound):
        raise FloatingPointError(
            f"The log-likelihood became {lower_bound} at EM iteration {n_iter}. {advice}"
        )


def run_em(
    model,
    chunks,
    params,
    max_iter: int,
    tol: float,
    lower_bound: float = -math.inf,
    on_iteration: Callable[[int, float, float], None] | None = None,
    comm: Local = LOCAL,
) -> EMResult:
    """Alternate E- and M-steps until the lower bound changes by less than ``tol``.

    The lower bound recorded for iteration t is the mean log-likelihood per sample under the
    parameters *entering* iteration t (the E-step makes the bound tight there), the convention of
    scikit-learn. Returns the record, with the final parameters in ``result.params``.
    """
    result = EMResult(params=params)
    for n_iter in range(1, max_iter + 1):
        previous = lower_bound
        stats = e_pass(model, chunks, params, comm)
        lower_bound = bound_of(model, stats)
        check_finite(lower_bound, n_iter, getattr(model, "advice", ADVICE))
        reseed = None
        empty = model.empty_components(stats) if hasattr(model, "empty_components") else None
        if empty is not None and empty.numel():
            reseed = (empty, worst_point(model, chunks, params, comm))
            result.reseeded.append((n_iter, empty.tolist()))
        params = model.m_step(stats, params, reseed)
        result.params = params
        if result.record(n_iter, lower_bound, previous, tol, on_iteration):
            break
    return result


def best_of_restarts(
    n_init: int, run_one: Callable[[int], EMResult]
) -> tuple[EMResult, list[float]]:
    """Run ``run_one(i)`` for every restart; return the best result (highest final bound) and
    every restart's final bound, in order."""
    best, finals = None, []
    for i in range(n_init):
        result = run_one(i)
        finals.append(result.final)
        if best is None or result.final > best.final:
            best = result
    return best, finals
