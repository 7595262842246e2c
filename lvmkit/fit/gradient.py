"""The gradient-ascent views of EM: generalised EM and direct gradient ascent on log p(x).

Both start from the same E-step as EM. Its statistics give, in closed form, the expected
complete-data log-likelihood

    Q(θ) = Σ_n Σ_k r_nk [log π_k + log p(x_n | θ_k)]     (the ELBO minus the θ-free entropy of q)

as a differentiable function of the parameters (each family's ``expected_log_likelihood``), so a
gradient step costs no pass over the data.

- ``'gem'`` (generalised EM): with the responsibilities fixed, ``steps`` gradient-ascent steps on
  Q. Each step raises Q, hence (by the EM argument) never lowers log p(x).
- ``'gradient'``: gradient ascent on the log-likelihood itself. By Fisher's identity its gradient
  at θ equals ∇Q at the responsibilities of θ, so each iteration is one E-pass and one step; a
  step is accepted only if the log-likelihood (a further E-pass at the trial point) rises.

Parameters move in an unconstrained parameterisation (softmax logits of the weights, and the
family's own: means and log-diagonal Cholesky factors, log rates, logits). Steps use a
backtracking line search (Armijo's condition) whose step size grows after every success, so no
learning rate needs tuning; ``learning_rate`` is only the first trial step. A component that loses
all its points is re-seeded as EM re-seeds it (one closed-form M-step, the empty components at the
worst-explained row): the gradient of an empty component is zero, so it would never come back.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from lvmkit.distributed import LOCAL, Local
from lvmkit.fit.em import EMResult, check_finite, e_pass, worst_point
from lvmkit.models.mixture import Mixture, MixtureParams
from lvmkit.models.stats import Stats

_ARMIJO = 1e-4
_MAX_HALVINGS = 40


def _objective(model: Mixture, summary: dict, nk: Tensor, n: float, u: dict[str, Tensor]) -> Tensor:
    """Q(θ(u)) per sample: Σ_k N_k log π_k + E[log p(x | z)], divided by Σ_k N_k."""
    log_pi = torch.log_softmax(u["logits"], dim=0)
    params = model.family.constrained(u)
    return ((nk * log_pi).sum() + model.family.expected_log_likelihood(summary, params)) / n


def _gradient(model, summary, nk, n, u) -> tuple[float, dict[str, Tensor]]:
    leaves = {name: t.detach().requires_grad_(True) for name, t in u.items()}
    value = _objective(model, summary, nk, n, leaves)
    grads = torch.autograd.grad(value, list(leaves.values()))
    return float(value.detach()), {name: g.detach() for name, g in zip(leaves, grads, strict=True)}


def _moved(u: dict, grads: dict, step: float) -> dict:
    return {name: u[name] + step * grads[name] for name in u}


def _sq_norm(grads: dict) -> float:
    return float(sum(g.square().sum() for g in grads.values()))


def _unconstrained(model: Mixture, params: MixtureParams) -> dict[str, Tensor]:
    """The coordinates the gradient moves: mixing logits and the family's unconstrained ones."""
    u = {"logits": torch.log(params.weights), **model.family.unconstrained(params.components)}
    return {name: t.detach().to(torch.float64) for name, t in u.items()}


def _params(model: Mixture, u: dict) -> MixtureParams:
    with torch.no_grad():
        return MixtureParams(torch.softmax(u["logits"], dim=0), model.family.constrained(u))


def run_gradient(
    model: Mixture,
    chunks,
    params: MixtureParams,
    algorithm: str,
    max_iter: int,
    tol: float,
    steps: int = 10,
    learning_rate: float = 1.0,
    after_step: Callable[[object], object] | None = None,
    lower_bound: float = -math.inf,
    on_iteration: Callable[[int, float, float], None] | None = None,
    comm: Local = LOCAL,
) -> EMResult:
    """Fit by 'gem' or 'gradient' (see the module docstring); same result record as EM, with the
    final parameters in ``result.params``. ``after_step(components)`` may complete the family's
    parameters after a gradient update (e.g. covariances from the moved Cholesky factors)."""
    if algorithm not in ("gem", "gradient"):
        raise ValueError(f"algorithm must be 'gem' or 'gradient'; got {algorithm!r}.")
    family = model.family
    u = _unconstrained(model, params)
    step = float(learning_rate)
    result = EMResult(params=params)
    stats: Stats | None = None
    for n_iter in range(1, max_iter + 1):
        previous = lower_bound
        if stats is None:
            stats = e_pass(model, chunks, params, comm)
        n = stats.scalar("n_samples")
        lower_bound = stats.scalar("log_likelihood") / n
        check_finite(
            lower_bound,
            n_iter,
            f"(algorithm={algorithm!r}) Try a smaller learning_rate or algorithm='em'.",
        )
        empty = model.empty_components(stats)
        if empty.numel():  # as EM does: the empty components restart at the worst-explained row
            reseed = (empty, worst_point(model, chunks, params, comm))
            result.reseeded.append((n_iter, empty.tolist()))
            params = model.m_step(stats, params, reseed)
            u = _unconstrained(model, params)
            stats = None
            result.params = params
            if result.record(n_iter, lower_bound, previous, tol, on_iteration):
                break
            continue
        summary = family.summarize(stats, params.components)
        nk = stats["nk"]
        if algorithm == "gem":
            for _ in range(steps):
                u, step = _ascend_q(model, summary, nk, n, u, step)
            params = _params(model, u)
            stats = None
        else:
            u, step, params, stats = _ascend_likelihood(
                model, chunks, params, summary, nk, n, u, step, lower_bound, comm
            )
        if after_step is not None:
            params.components = after_step(params.components)
        result.params = params
        if result.record(n_iter, lower_bound, previous, tol, on_iteration):
            break
    return result


def _ascend_q(model, summary, nk, n, u, step):
    """One backtracking gradient step on Q (no data pass)."""
    value, grads = _gradient(model, summary, nk, n, u)
    norm = _sq_norm(grads)
    if norm == 0.0:
        return u, step
    with torch.no_grad():
        for _ in range(_MAX_HALVINGS):
            trial = _moved(u, grads, step)
            new = float(_objective(model, summary, nk, n, trial))
            if math.isfinite(new) and new >= value + _ARMIJO * step * norm:
                return trial, step * 2.0
            step *= 0.5
    return u, step


def _ascend_likelihood(model, chunks, params, summary, nk, n, u, step, current, comm):
    """One backtracking gradient step on log p(x); returns the accepted point and its E-step."""
    _, grads = _gradient(model, summary, nk, n, u)  # = ∇ log p(x) / N (Fisher's identity)
    norm = _sq_norm(grads)
    if norm > 0.0:
        for _ in range(_MAX_HALVINGS):
            trial = _moved(u, grads, step)
            trial_params = _params(model, trial)
            stats = e_pass(model, chunks, trial_params, comm)
            new = stats.scalar("log_likelihood") / stats.scalar("n_samples")
            if math.isfinite(new) and new >= current + _ARMIJO * step * norm:
                return trial, step * 2.0, trial_params, stats
            step *= 0.5
    return u, step, _params(model, u), None
