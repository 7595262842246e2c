"""Stepwise (online) EM: mini-batch statistics blended into running ones, then the usual M-step.

Cappé & Moulines (2009). After the E-step of mini-batch t, its statistics per sample ŝ_t are
blended into the running statistics,

    s_t = (1 − γ_t) s_{t−1} + γ_t ŝ_t,      γ_t = (t + t0)^(−κ),  κ ∈ (0.5, 1],

and the model's own M-step maps s_t to parameters. The first step (t = 1) takes γ = 1: the running
statistics start as the first batch's. With κ ∈ (0.5, 1] the step sizes satisfy Robbins–Monro's
conditions (Σ γ = ∞, Σ γ² < ∞), and the iterates converge to a stationary point of the
likelihood; a smaller κ forgets the early batches faster. Each batch's statistics
(sums over its rows) are first put in the parameter-independent frame (``model.portable``), which
is what makes the blend mean anything. The same loop serves ``partial_fit`` (one step per call) and
a whole-data fit that makes
stepwise passes over a source, for data too large for many batch-EM passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lvmkit.distributed import LOCAL, Local
from lvmkit.fit.em import EMResult, check_finite, e_pass, worst_point
from lvmkit.models.stats import Stats


def step_size(t: int, offset: float, decay: float) -> float:
    """γ_t = (t + t0)^(−κ) for t ≥ 2; the first step takes γ_1 = 1."""
    return 1.0 if t <= 1 else float((t + offset) ** (-decay))


@dataclass
class StepwiseState:
    """What stepwise EM carries from one mini-batch to the next."""

    running: Stats | None = None  # blended statistics per sample
    t: int = 0  # steps taken


class Batch:
    """One mini-batch given as a list of ``(X, weights)`` chunks (the ``iter_weighted`` protocol)
    of rows with ``n_features`` features on ``device``; an empty list is a rank with no rows."""

    def __init__(self, parts, n_features: int, device):
        self.parts = list(parts)
        self.n_features, self.device = int(n_features), torch.device(device)

    def iter_weighted(self):
        return iter(self.parts)


def stepwise_step(
    model,
    batch,
    params,
    state: StepwiseState,
    decay: float,
    offset: float,
    comm: Local = LOCAL,
):
    """One stepwise-EM step on one mini-batch (``batch.iter_weighted()`` gives its chunks; on
    every rank its own rows, ``comm`` adds them up).

    Returns ``(params, log_likelihood, n_samples)``: the new parameters, and the batch's summed
    log-likelihood and weight under the parameters entering the step. ``state`` is updated.
    """
    stats = e_pass(model, batch, params, comm)
    n = stats.scalar("n_samples")
    ll = stats.scalar("log_likelihood")
    if n <= 0:
        return params, ll, n
    state.t += 1
    per_sample = model.portable(stats, params) * (1.0 / n)
    gamma = step_size(state.t, offset, decay)
    state.running = per_sample if state.running is None else state.running.blend(per_sample, gamma)
    reseed = None
    empty = model.empty_components(state.running) if hasattr(model, "empty_components") else None
    if empty is not None and empty.numel():
        reseed = (empty, worst_point(model, batch, params, comm))
    return model.m_step(state.running, params, reseed), ll, n


def run_stepwise(
    model,
    chunks,
    params,
    max_passes: int,
    tol: float,
    decay: float,
    offset: float,
    state: StepwiseState | None = None,
    lower_bound: float = -math.inf,
    on_iteration: Callable[[int, float, float], None] | None = None,
    generator: torch.Generator | None = None,
    comm: Local = LOCAL,
) -> EMResult:
    """Stepwise passes over ``chunks`` (one mini-batch per chunk) until the bound of a pass changes
    by less than ``tol``.

    The bound recorded for a pass is the mean log-likelihood per sample of its mini-batches, each
    under the parameters entering its step (an online estimate, as batch EM's bound is taken
    before its M-step). Resident data is visited in a random order of its mini-batches every pass
    (from ``generator``); streamed data in the source's order, so rows on disk should not be
    sorted by cluster. Across processes, step i adds up mini-batch i of every rank; a rank with
    fewer mini-batches joins the last steps with none. Returns the record with the final parameters
    in ``result.params`` and the
    running statistics in ``result.state``.
    """
    state = state or StepwiseState()
    result = EMResult(params=params, state=state)
    for n_pass in range(1, max_passes + 1):
        previous = lower_bound
        total_ll = total_n = 0.0
        for part in _batches(chunks, generator, comm):
            batch = Batch(part, chunks.n_features, chunks.device)
            params, ll, n = stepwise_step(model, batch, params, state, decay, offset, comm)
            total_ll += ll
            total_n += n
        lower_bound = total_ll / max(total_n, 1e-300)
        check_finite(lower_bound, n_pass, "Standardize X, or increase reg_covar.")
        result.params = params
        if result.record(n_pass, lower_bound, previous, tol, on_iteration):
            break
    return result


def _batches(chunks, generator, comm: Local):
    """Each step's chunks on this rank: ``[(X, w)]``, or ``[]`` once this rank has run out, for
    as many steps as the rank with the most mini-batches has (one small collective per step)."""
    if chunks.streamed or generator is None:
        mine = iter(chunks.iter_weighted())
    else:
        batches = list(chunks.iter_weighted())
        order = torch.randperm(len(batches), generator=generator, device=generator.device).tolist()
        mine = (batches[i] for i in order)
    while True:
        part = next(mine, None)
        if not comm.max(part is not None):
            return
        yield [] if part is None else [part]
