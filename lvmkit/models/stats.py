"""Sufficient statistics: one neutral, additive type for every model's E-step.

An E-step returns a :class:`Stats`: named float64 tensors, each a *sum over data points* (weighted
by sample weights). That one property is what every loop relies on:

- chunked EM adds the statistics of the chunks of one pass (``sum`` works, starting from 0);
- stepwise (online) EM blends a mini-batch's statistics into running ones, ``(1 − γ) s + γ ŝ``;
- EM across processes adds the statistics of every rank with a single float64 ``all_reduce`` of
  :meth:`Stats.flat`, and reads the sum back with :meth:`Stats.like`.

Anything that is not a sum (an argmin, a worst-explained point) does not belong here; models
compute it in a second pass (see :func:`lvmkit.fit.em.worst_point`). Two entries are conventional:
``"log_likelihood"`` (Σ_n w_n log p(x_n), or the bound for approximate E-steps) and ``"n_samples"``
(Σ_n w_n).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor


class Stats(Mapping):
    """Named additive statistics (float64 tensors on one device).

    ``Stats(nk=..., sx=...)``; supports ``a + b``, ``sum(list_of_stats)``, ``c * s``, ``s[name]``,
    and a flat view for one collective: ``s.like(s.flat())`` is ``s``.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Tensor] | None = None, **tensors: Tensor):
        merged = dict(data or {}, **tensors)
        self._data = {
            name: value
            if isinstance(value, Tensor)
            else torch.tensor(float(value), dtype=torch.float64)
            for name, value in merged.items()
        }

    # Mapping
    def __getitem__(self, name: str) -> Tensor:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self._data.items())
        return f"Stats({shapes})"

    # arithmetic
    def __add__(self, other) -> Stats:
        if isinstance(other, (int, float)) and other == 0:  # sum() starts from 0
            return self
        if not isinstance(other, Stats):
            return NotImplemented
        if self._data.keys() != other._data.keys():
            raise ValueError(
                f"cannot add statistics with different entries: {sorted(self._data)} and "
                f"{sorted(other._data)}."
            )
        return Stats({k: v + other._data[k] for k, v in self._data.items()})

    __radd__ = __add__

    def __mul__(self, scale: float) -> Stats:
        return Stats({k: v * scale for k, v in self._data.items()})

    __rmul__ = __mul__

    def blend(self, other: Stats, step: float) -> Stats:
        """``(1 − step) · self + step · other``: stepwise EM's update of running statistics."""
        return Stats(
            {
                k: torch.add(v * (1.0 - step), other._data[k], alpha=step)
                for k, v in self._data.items()
            }
        )

    # one collective
    def flat(self) -> Tensor:
        """Every entry, flattened and concatenated in name order, as one float64 vector."""
        return torch.cat([self._data[k].reshape(-1).to(torch.float64) for k in self._data])

    def like(self, flat: Tensor) -> Stats:
        """Statistics of this layout read back from a vector made by :meth:`flat`."""
        out, start = {}, 0
        for name, value in self._data.items():
            n = value.numel()
            out[name] = flat[start : start + n].reshape(value.shape).to(value.dtype)
            start += n
        return Stats(out)

    def to(self, device) -> Stats:
        return Stats({k: v.to(device) for k, v in self._data.items()})

    def scalar(self, name: str) -> float:
        """A scalar entry as a Python float (one device synchronisation)."""
        return float(self._data[name])
