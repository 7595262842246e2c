"""Rows as the E-step reads them: a source centred on a float64 shift, cast, on a device, in chunks.

:class:`DataChunks` is the one view every loop consumes. In-memory data (an array or tensor) is
shifted, cast and transformed once and kept *resident* on the device; any other source (a
memory-mapped ``.npy``, Parquet or CSV shards, see :mod:`lvmkit.data.sources`) is read, shifted and
cast chunk by chunk on every pass, so memory stays bounded by one chunk whatever the data's size.

The shift (float64, subtracted before the cast to the compute dtype) keeps data such as values
near 1e8 representable in float32; models fitted on chunks live in shifted coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from lvmkit._validation import as_tensor
from lvmkit.data.sources import ArraySource, Source, as_source, reservoir
from lvmkit.distributed import LOCAL, Local

# Working memory one chunk may use, in bytes, when chunk_size is None. On a CPU ~16 MiB keeps
# the per-chunk intermediates (n x K x D for full covariances) in cache; a GPU wants big chunks.
CPU_CHUNK_BYTES = 16 * 2**20
GPU_CHUNK_BYTES = 512 * 2**20
# Rows that seeding (k-means++, Lloyd's k-means, random rows) may hold when the data is streamed.
SEEDING_ROWS = 2**17


class DataChunks:
    """Rows of a data set, centred on a fixed shift, served as compute-dtype chunks on a device.

    Parameters
    ----------
    X : an array or tensor (N, D), a ``np.memmap``, or a :class:`lvmkit.data.sources.Source`
    shift : Tensor (D,), float64
    dtype, device : compute dtype and device
    chunk_size : rows per chunk, or None to size chunks from ``bytes_per_row``
    bytes_per_row : working memory one row needs in the E-step
    transform : optional function applied to every prepared chunk (e.g. a family's features);
        applied once to resident data, per chunk to streamed data
    weights : optional (N,) non-negative sample weights of in-memory ``X``
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
        self.dtype = dtype
        self.device = torch.device(device)
        self.shift = shift.to(device=self.device, dtype=torch.float64)
        self._transform = transform
        self._resident: Tensor | None = None
        self.weights: Tensor | None = None
        self.offset = 0  # global number of the first row (a shard's place among the ranks')
        source = X if isinstance(X, Source) else None
        if source is not None and source.resident:
            X, weights = source.array, source.weights
        if source is None or source.resident:
            self.n_samples, self.n_features = X.shape
            self.weights = None if weights is None else as_tensor(weights, self.device, dtype)
            if not isinstance(X, np.memmap):
                self.source = source
                self._resident = self._prepare(X)
            else:  # a memory map: read a chunk at a time
                self.source = ArraySource(X, weights) if source is None else source
        else:
            self.source = source
            self.n_samples, self.n_features = source.n_samples, source.n_features
        if chunk_size is None:
            budget = GPU_CHUNK_BYTES if self.device.type == "cuda" else CPU_CHUNK_BYTES
            chunk_size = max(256, budget // max(int(bytes_per_row or 1), 1))
        self.chunk_size = int(min(chunk_size, max(self.n_samples or 1, 1)))

    @property
    def streamed(self) -> bool:
        """True when rows are read from disk on every pass (not resident)."""
        return self._resident is None

    def _prepare(self, rows) -> Tensor:
        out = (as_tensor(rows, self.device) - self.shift).to(self.dtype)
        return out if self._transform is None else self._transform(out)

    def mapped(self, transform) -> DataChunks:
        """The same rows with ``transform`` applied (once, for resident data)."""
        other = object.__new__(DataChunks)
        other.__dict__.update(self.__dict__)
        other._transform = transform
        if self._resident is not None:
            other._resident = transform(self._resident)
        return other

    def iter_weighted(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Chunks with their sample weights (``None`` when unweighted)."""
        if self._resident is not None:
            for start in range(0, self.n_samples, self.chunk_size):
                stop = min(start + self.chunk_size, self.n_samples)
                w = None if self.weights is None else self.weights[start:stop]
                yield self._resident[start:stop], w
            return
        for chunk in self.source.chunks(self.chunk_size):
            w = None if chunk.weights is None else as_tensor(chunk.weights, self.device, self.dtype)
            yield self._prepare(chunk.X), w

    def __iter__(self) -> Iterator[Tensor]:
        for X, _ in self.iter_weighted():
            yield X

    def all_rows(self) -> tuple[Tensor, Tensor | None]:
        """Every row (as served) and its weight (``None`` when unweighted) at once: the resident
        tensor itself, without a copy; streamed rows are read and concatenated (seeding reads the
        bounded sample of :meth:`seeding_view`, which is resident)."""
        if self._resident is not None:
            return self._resident, self.weights
        parts = list(self.iter_weighted())
        if not parts:
            empty = torch.zeros(0, self.n_features, dtype=self.dtype, device=self.device)
            return empty, None
        X = torch.cat([p[0] for p in parts])
        w = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        return X, w

    def rows(self, indices: Tensor) -> Tensor:
        """The rows at ``indices`` (global row numbers), shifted and cast (in-memory data only)."""
        if self._resident is not None:
            return self._resident[indices.to(self._resident.device)]
        array = getattr(self.source, "array", None)
        if array is None:
            raise TypeError("random access to rows needs in-memory data; use seeding_view().")
        return self._prepare(np.asarray(array[indices.cpu().numpy()]))

    def seeding_view(
        self, generator: torch.Generator, comm: Local = LOCAL, max_rows: int = SEEDING_ROWS
    ) -> DataChunks:
        """The rows seeding may read at random: these chunks when resident or small, else a
        bounded uniform reservoir sample (at most ``max_rows`` rows, one streaming pass; see
        :func:`lvmkit.data.sources.reservoir`). The sample's randomness comes from
        ``generator.initial_seed()`` and does not advance ``generator``, so a small streamed data
        set (all of it in the reservoir, in order) seeds exactly as the same rows in memory.

        Across processes (``comm`` of several ranks) every rank samples its share of the rows
        (all of them when the ranks hold at most ``max_rows`` together, else a share in
        proportion to its rows) and every rank gets the same gathered sample, in rank order: so
        ranks holding the pieces of a small data set seed exactly as one process holding it all.
        """
        if not comm.active:
            if self._resident is not None:
                return self
            rng = np.random.default_rng(generator.initial_seed())
            rows, weights = reservoir(self.source, max_rows, rng)
            view = DataChunks(
                rows, self.shift, self.dtype, self.device, self.chunk_size, weights=weights
            )
            return view if self._transform is None else view.mapped(self._transform)
        counts = comm.gather(int(self.n_samples))
        total = sum(counts)
        share = (
            counts[comm.rank] if total <= max_rows else int(max_rows * counts[comm.rank] // total)
        )
        rng = np.random.default_rng([generator.initial_seed(), comm.rank])
        if self._resident is not None:
            pick = (
                np.sort(rng.choice(self.n_samples, share, replace=False))
                if share < self.n_samples
                else None
            )
            index = slice(None) if pick is None else torch.as_tensor(pick, device=self.device)
            rows = self._resident[index].to(torch.float64).cpu().numpy()
            weights = (
                None
                if self.weights is None
                else self.weights[index].to(torch.float64).cpu().numpy()
            )
        else:
            raw, weights = reservoir(self.source, share, rng)
            prepared = (as_tensor(raw, self.device) - self.shift).to(self.dtype)
            rows = prepared.to(torch.float64).cpu().numpy()
        if comm.max(weights is not None):  # then every rank gathers weights (ones if it has none)
            weights = np.ones(rows.shape[0]) if weights is None else np.asarray(weights)
            weights = np.concatenate(comm.gather_rows(weights.reshape(-1, 1)))[:, 0]
        rows = np.concatenate(comm.gather_rows(rows))
        zero = torch.zeros(rows.shape[1], dtype=torch.float64, device=self.device)
        # float64 copies of compute-dtype values: the cast back to the compute dtype is exact
        view = DataChunks(rows, zero, self.dtype, self.device, self.chunk_size, weights=weights)
        # resident rows were gathered as served (transformed already); streamed ones raw
        return (
            view
            if self._transform is None or self._resident is not None
            else view.mapped(self._transform)
        )

    def moments(self) -> tuple[Tensor, Tensor, Tensor]:
        """Sample-weighted per-feature mean and variance (float64) of the rows as served
        (shifted, cast), and the total weight: one pass, sums accumulated in float64."""
        first = second = total = 0.0
        for X, w in self.iter_weighted():
            X64 = X.to(torch.float64)
            if w is None:
                w64 = torch.ones(X.shape[0], dtype=torch.float64, device=X.device)
            else:
                w64 = w.to(torch.float64)
            first = first + w64 @ X64
            second = second + w64 @ X64.square()
            total = total + w64.sum()
        mean = first / total
        return mean, (second / total - mean.square()).clamp(min=0), total

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n_samples / self.chunk_size)


def chunks_of(data, sample_weight=None, **kwargs) -> DataChunks:
    """:class:`DataChunks` over anything :func:`lvmkit.data.sources.as_source` accepts."""
    return DataChunks(as_source(data, sample_weight), **kwargs)
