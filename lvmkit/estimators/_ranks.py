"""What a mixture estimator does differently across processes (see :mod:`lvmkit.distributed`).

Each rank checks its own data, then every rank learns every other rank's outcome before the first
pass (:func:`prepare_together`): one rank's bad data, or ranks that disagree on the columns, dtype
or settings, stop every rank with the same error. A rank's later failure is first recorded for the
others (:func:`collectively`), and the random state is made the same on every rank
(:func:`random_state`).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import check_random_state

from lvmkit import _validation as v
from lvmkit.data.chunks import DataChunks
from lvmkit.data.sources import ArraySource, Source, merge_moments
from lvmkit.data.sources import moments as source_moments


def collectively(comm, fn, *args):
    """Run ``fn(*args)``; if it raises on this rank, first record the error where the other
    ranks (blocked in a collective with this one) will read it (:mod:`lvmkit.distributed`)."""
    try:
        return fn(*args)
    except BaseException as exc:
        comm.failed(exc)
        raise


# Hyperparameters that may differ between ranks (where each rank computes, what it prints).
_PER_RANK = ("device", "verbose", "verbose_interval")


def prepare_together(comm, estimator, prepare):
    """This rank's checks (``prepare() -> (data, weights)``), and across processes the
    agreement of every rank before any pass: if one rank's checks failed, or the ranks disagree
    on the data's features or dtype or on the estimator's settings, every rank raises (the
    failing rank its own error). Returns ``((data, weights), total rows, this rank's offset)``."""
    if not comm.active:
        data, weights = prepare()
        return (data, weights), _n_of(data), 0
    error = None
    try:
        data, weights = prepare()
        mine = {"error": None, "n": _n_of(data), "signature": _signature(estimator, data, weights)}
    except Exception as exc:  # told to every rank below, then raised here
        error, mine = exc, {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
    outcomes = comm.gather(mine)
    failed = [(r, o["error"]) for r, o in enumerate(outcomes) if o["error"]]
    if error is not None:
        raise _agreed(error)
    if failed:
        rank, message = failed[0]
        raise _agreed(
            ValueError(
                f"rank {rank} cannot fit its data ({message}); every rank stops before the first "
                f"pass."
            )
        )
    first = outcomes[0]["signature"]
    for rank, outcome in enumerate(outcomes[1:], start=1):
        for key, value in outcome["signature"].items():
            if value != first[key]:
                raise _agreed(
                    ValueError(
                        f"the ranks disagree before the first pass: rank {rank} has {key} = "
                        f"{value}, rank 0 has {key} = {first[key]}. Give every rank rows with the "
                        f"same columns and dtype, and the same estimator settings."
                    )
                )
    counts = [o["n"] for o in outcomes]
    return (data, weights), float(sum(counts)), int(sum(counts[: comm.rank]))


def _agreed(error: BaseException) -> BaseException:
    """Mark an error every rank raises together (no rank waits for another to hear of it)."""
    error.lvmkit_agreed = True
    return error


def _n_of(data) -> int:
    return int(data.n_samples if isinstance(data, Source) else data.shape[0])


def _signature(estimator, data, weights) -> dict:
    """What every rank must share: the data's width, dtype and weighting, and the settings."""
    dtype = getattr(data, "dtype", None)
    settings = {
        name: "a RandomState" if isinstance(value, np.random.RandomState) else repr(value)
        for name, value in sorted(estimator.get_params(deep=False).items())
        if name not in _PER_RANK
    }
    return {
        "n_features": int(estimator.n_features_in_),
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else type(data).__name__,
        "sample weights": weights is not None,
        "settings": settings,
    }


def random_state(random_state, comm):
    """The estimator's NumPy RandomState; across processes the same on every rank (an integer
    seed already is; otherwise rank 0 draws a seed and broadcasts it)."""
    rng = check_random_state(random_state)
    if comm.active and not isinstance(random_state, (int, np.integer)):
        seed = torch.tensor([rng.randint(np.iinfo(np.int32).max)], dtype=torch.int64)
        rng = np.random.RandomState(int(comm.broadcast(seed)[0]))
    return rng


def moments(data, comm) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and variance (float64) of the rows of every rank: this rank's in one
    pass (a tensor on its device, an array, or a source read in chunks), merged in rank order
    with Chan's update."""
    if isinstance(data, torch.Tensor):  # on its device, without a copy to the host
        zero = torch.zeros(data.shape[1], dtype=torch.float64)
        mean, variance, total = DataChunks(data, zero, torch.float64, data.device).moments()
        mean, variance, total = v.to_numpy(mean), v.to_numpy(variance), float(total)
    else:
        mean, variance, total = source_moments(
            data if isinstance(data, Source) else ArraySource(data)
        )
    if comm.active:
        mine = np.concatenate([mean, variance * total, [total]])[None]
        merged = (np.zeros_like(mean), np.zeros_like(mean), 0.0)
        for part in comm.gather_rows(mine):
            m, m2 = part[0, :-1].reshape(2, -1)
            merged = merge_moments(merged, (m, m2, float(part[0, -1])))
        mean, variance = merged[0], merged[1] / max(merged[2], 1e-300)
    return mean, variance
