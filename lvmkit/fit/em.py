"""The EM loop over chunks of rows.

Every iteration is one pass over the data: the E-step of each chunk returns additive sufficient
statistics (:class:`lvmkit.models.mixture.ChunkStatistics`), the chunks are summed, and one M-step
follows. The N x K responsibilities are never held at once, so N is limited by time, not memory;
chunked and unchunked fits are the same computation up to the order of floating-point sums.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from lvmkit._validation import as_tensor
from lvmkit.models.mixture import ChunkStatistics, Mixture

# Working memory one chunk may use, in bytes, when chunk_size is None. On a CPU ~16 MiB keeps
# the per-chunk intermediates (n x K x D for full covariances) in cache; a GPU wants big chunks.
CPU_CHUNK_BYTES = 16 * 2**20
GPU_CHUNK_BYTES = 512 * 2**20


class DataChunks:
    """Rows of a data set, centred on a fixed shift, served as compute-dtype chunks on a device.

    The shift (float64, subtracted before the cast to the compute dtype) keeps data such as
    values near 1e8 representable in float32; models fitted on chunks live in shifted
    coordinates.

    Parameters
    ----------
    X : Tensor (N, D) on any device, or a NumPy array (including ``np.memmap``)
    shift : Tensor (D,), float64
    dtype, device : compute dtype and device
    transform : optional function applied to every prepared chunk (e.g. a family's features);
        applied once to resident data, per chunk to memory-mapped data
    weights : optional (N,) non-negative sample weights, held on the device in the compute dtype
    chunk_size : rows per chunk, or None to size chunks from ``bytes_per_row``
    bytes_per_row : working memory one row needs in the E-step
    """

    def __init__(
        self,
        X,
        shift: Tensor,
        dtype,
        device,
        chunk_size=None,
        bytes_per_row=None,
        transform=None,
        weights=None,
    ):
        self.n_samples, self.n_features = X.shape
        self.dtype = dtype
        self.device = torch.device(device)
        self.shift = shift.to(device=self.device, dtype=torch.float64)
        if chunk_size is None:
            budget = GPU_CHUNK_BYTES if self.device.type == "cuda" else CPU_CHUNK_BYTES
            chunk_size = max(256, budget // max(int(bytes_per_row or 1), 1))
        self.chunk_size = int(min(chunk_size, self.n_samples))
        # Data that fits as a tensor is shifted and cast once; a memory-mapped array is read,
        # shifted and cast chunk by chunk on every pass.
        self._resident: Tensor | None = None
        self._source = X
        self._transform = transform
        self.weights = None if weights is None else as_tensor(weights, self.device, dtype)
        if isinstance(X, Tensor) or not isinstance(X, np.memmap):
            self._resident = self._prepare(X)

    def _prepare(self, rows) -> Tensor:
        out = (as_tensor(rows, self.device) - self.shift).to(self.dtype)
        return out if self._transform is None else self._transform(out)

    def mapped(self, transform) -> "DataChunks":
        """The same rows with ``transform`` applied (once, for resident data)."""
        other = object.__new__(DataChunks)
        other.__dict__.update(self.__dict__)
        other._transform = transform
        if self._resident is not None:
            other._resident = transform(self._resident)
        return other

    def __iter__(self) -> Iterator[Tensor]:
        for start in range(0, self.n_samples, self.chunk_size):
            stop = min(start + self.chunk_size, self.n_samples)
            if self._resident is not None:
                yield self._resident[start:stop]
            else:
                yield self._prepare(np.asarray(self._source[start:stop]))

    def iter_weighted(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Chunks with their sample weights (``None`` when unweighted)."""
        for start, X in zip(range(0, self.n_samples, self.chunk_size), self):
            w = None if self.weights is None else self.weights[start : start + X.shape[0]]
            yield X, w

    def rows(self, indices: Tensor) -> Tensor:
        """The rows at ``indices`` (global row numbers), shifted and cast."""
        if self._resident is not None:
            return self._resident[indices.to(self._resident.device)]
        return self._prepare(np.asarray(self._source[indices.cpu().numpy()]))

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n_samples / self.chunk_size)


def e_pass(model: Mixture, chunks: DataChunks) -> ChunkStatistics:
    """One E-step over all chunks: summed (sample-weighted) statistics and log-likelihood."""
    total = ChunkStatistics()
    for X, w in chunks.iter_weighted():
        total += model.e_step(X, w)
    return total.finish()


@dataclass
class EMResult:
    lower_bounds: list[float] = field(default_factory=list)
    seconds_at: list[float] = field(default_factory=list)  # cumulative, one per lower bound
    converged: bool = False
    n_iter: int = 0
    reseeded: list[tuple[int, list[int]]] = field(default_factory=list)
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def record(self, n_iter: int, lower_bound: float, previous: float, tol: float, on_iteration) -> bool:
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


def run_em(
    model: Mixture,
    chunks: DataChunks,
    m_step: Callable[[Mixture, ChunkStatistics, int], list[int]],
    max_iter: int,
    tol: float,
    lower_bound: float = -math.inf,
    on_iteration: Callable[[int, float, float], None] | None = None,
) -> EMResult:
    """Alternate E- and M-steps until the lower bound changes by less than ``tol``.

    The lower bound recorded for iteration t is the mean log-likelihood per sample under the
    parameters *entering* iteration t (the E-step makes the bound tight there), the convention of
    scikit-learn. ``m_step(model, stats, iteration)`` updates the model in place and returns the
    components it re-seeded.
    """
    result = EMResult()
    for n_iter in range(1, max_iter + 1):
        previous = lower_bound
        stats = e_pass(model, chunks)
        lower_bound = stats.log_likelihood / stats.n_samples
        if not math.isfinite(lower_bound):
            raise FloatingPointError(
                f"The log-likelihood became {lower_bound} at EM iteration {n_iter}. The data may "
                "contain enormous values: standardize X, or increase reg_covar."
            )
        reseeded = m_step(model, stats, n_iter)
        if reseeded:
            result.reseeded.append((n_iter, reseeded))
        if result.record(n_iter, lower_bound, previous, tol, on_iteration):
            break
    return result
