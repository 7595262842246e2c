"""Watching a fit from outside: progress bars, logging, without touching the estimator's API.

``observe(callback)`` is a context manager: every fit that runs inside it, in this thread or
task (fits inside ``select_components`` and ``MixtureAnomalyDetector`` included), calls
``callback(event)`` once per iteration with a :class:`FitProgress`. Outside any ``observe``
block nothing is called and the fitting loops pay nothing.

    >>> from lvmkit.fit.callbacks import observe
    >>> with observe(lambda e: print(e.restart, e.iteration, e.lower_bound)):   # doctest: +SKIP
    ...     GaussianMixture(3).fit(X)

A fitting loop reports with :func:`notify` (after checking :func:`observers` is not empty).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["FitProgress", "notify", "observe", "observers", "reporter"]


@dataclass(frozen=True)
class FitProgress:
    """One iteration of a fit.

    estimator : the estimator being fitted
    restart, n_restarts : which initialisation (0-based) of how many
    iteration, max_iter : the iteration (1-based) within that restart, and its budget (for a
        model trained by epochs, the epoch and the number of epochs)
    lower_bound : the bound after this iteration (nats per sample)
    change : its change since the previous iteration
    """

    estimator: object
    restart: int
    n_restarts: int
    iteration: int
    max_iter: int
    lower_bound: float
    change: float


_OBSERVERS: ContextVar[tuple] = ContextVar("lvmkit_fit_observers", default=())


@contextmanager
def observe(callback: Callable[[FitProgress], None]) -> Iterator[None]:
    """Call ``callback(event)`` on every iteration of every fit run inside the block."""
    token = _OBSERVERS.set(_OBSERVERS.get() + (callback,))
    try:
        yield
    finally:
        _OBSERVERS.reset(token)


def observers() -> tuple:
    """The callbacks in effect (empty outside any :func:`observe` block)."""
    return _OBSERVERS.get()


def notify(event: FitProgress) -> None:
    for callback in _OBSERVERS.get():
        callback(event)


def reporter(estimator, restart: int, n_restarts: int, max_iter: int, verbose=None):
    """An EM loop's ``on_iteration``: ``verbose(n_iter, bound, change)`` (if given) and an event
    to every observer; ``None`` when there is neither, so the loop pays nothing."""
    if not observers():
        return verbose

    def report(n_iter, lower_bound, change):
        if verbose is not None:
            verbose(n_iter, lower_bound, change)
        notify(FitProgress(estimator, restart, n_restarts, n_iter, max_iter, lower_bound, change))

    return report
