"""Data sources: rows read one bounded chunk at a time, and split across processes.

An EM loop over data larger than memory, or over a torch.distributed job, reads its rows through
a :class:`Source`. A source knows its number of features when built and yields :class:`Chunk`\\ s of
at most ``rows`` rows, in the same order on every pass; ``shard(rank, world)`` gives one process
a contiguous, balanced share of the rows (by row count, not whole files).

======================  ====================================================================
source                  reads
======================  ====================================================================
:class:`ArraySource`    a NumPy array (a ``np.memmap`` too: its rows are read per chunk), a
                        torch tensor (brought to the CPU), a numeric pandas DataFrame
:class:`NpySource`      ``.npy`` files of 2-D numeric arrays, a chunk of rows per file read
:class:`ParquetSource`  Parquet files, a row group at a time (needs pyarrow)
:class:`CsvSource`      CSV files in blocks (``.csv``, ``.tsv``, ``.txt``, gzipped too)
======================  ====================================================================

:func:`as_source` picks one for what it is given: an array, a tensor, a frame, a path, a glob
pattern or a list of paths. :func:`moments` (weighted mean and variance) and :func:`reservoir`
(a bounded uniform sample of rows) each take one streaming pass.

Rows and columns in messages are counted from 0 within their file (data rows: a CSV header is
not counted), as ``Chunk.start`` counts them. A chunk never spans two files. Structural problems
(missing files, an empty glob, an unknown suffix, ``.npy``/Parquet files whose columns differ,
unreadable Parquet footers) are raised when a source is built; problems in the rows (NaN or inf,
text in a CSV column, a CSV file whose columns differ) when the chunk holding them is read.
"""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ArraySource",
    "Chunk",
    "CsvSource",
    "DataFileNotFoundError",
    "NpySource",
    "ParquetSource",
    "Source",
    "as_source",
    "merge_moments",
    "moments",
    "reservoir",
]

_SUFFIXES = ".npy, .parquet/.pq, .csv/.tsv/.txt (CSV optionally gzipped, e.g. .csv.gz)"


class DataFileNotFoundError(FileNotFoundError, ValueError):
    """A data file that does not exist (both a FileNotFoundError and a ValueError)."""


@dataclass
class Chunk:
    """Rows read from one place.

    ``X`` is (n, D) float64, C-contiguous (a view of in-memory float64 data: do not modify it);
    ``weights`` (n,) float64 or None; ``origin`` the file path, or ``"X"`` for in-memory data;
    ``start`` the 0-based row number of ``X[0]`` in that file or array.
    """

    X: np.ndarray
    weights: np.ndarray | None
    origin: str
    start: int

    def __len__(self) -> int:
        return int(self.X.shape[0])


class Source(ABC):
    """Rows read in chunks of bounded size, the same order on every pass.

    Attributes: ``n_features``; ``n_samples`` (None for CSV until a pass or ``shard`` counted
    the rows); ``feature_names`` (list or None); ``weights`` ((n,) float64 for a weighted
    :class:`ArraySource`, else None); ``resident`` (True only for data held in memory whole).
    """

    n_features: int
    n_samples: int | None = None
    feature_names: list[str] | None = None
    weights: np.ndarray | None = None
    resident: bool = False

    def chunks(self, rows: int) -> Iterator[Chunk]:
        """Chunks of at most ``rows`` rows, in order; each is checked for NaN and inf."""
        if (
            isinstance(rows, (bool, np.bool_))
            or not isinstance(rows, (int, np.integer))
            or rows < 1
        ):
            raise ValueError(
                f"rows must be a positive integer (the most rows per chunk); got {rows!r}."
            )
        return self._chunks(int(rows))

    @abstractmethod
    def _chunks(self, rows: int) -> Iterator[Chunk]: ...

    @abstractmethod
    def shard(self, rank: int, world: int) -> Source:
        """Rows ``[rank*N//world, (rank+1)*N//world)`` of this source's N rows (maybe none)."""

    @abstractmethod
    def describe(self) -> str:
        """A short description, e.g. '3 Parquet files (1,200,000 rows, 16 features)'."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"


def _shard_range(n: int, rank, world) -> tuple[int, int]:
    ok = all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
        for v in (rank, world)
    )
    if not ok or world < 1 or not 0 <= rank < world:
        raise ValueError(
            f"shard(rank={rank!r}, world={world!r}): need integers with world >= 1 and 0 <= rank < "
            f"world."
        )
    return int(rank) * n // int(world), (int(rank) + 1) * n // int(world)


def _labels(positions, names) -> list[str]:
    names = names or [None] * len(positions)
    return [
        f"column {p}" + (f" ({n!r})" if n is not None else "")
        for p, n in zip(positions, names, strict=False)
    ]


def _check_finite(X: np.ndarray, origin: str, start: int, labels: list[str]) -> None:
    finite = np.isfinite(X)
    if finite.all():
        return
    r, c = divmod(int(np.argmin(finite.ravel())), X.shape[1])  # first bad value, row-major
    v = X[r, c]
    what, fix = (
        ("NaN", "remove or impute missing values")
        if np.isnan(v)
        else ("inf" if v > 0 else "-inf", "remove or replace infinite values")
    )
    raise ValueError(f"{what} in {origin} at row {start + r:,}, {labels[c]}: {fix} before fitting.")


# ====================================================================== in memory
class ArraySource(Source):
    """In-memory rows: a NumPy array, a torch tensor (any device), or a numeric DataFrame.

    ``array`` is the 2-D numeric array: NumPy input as given (no copy, dtype kept), a tensor as
    ``.detach().cpu().numpy()`` (bfloat16 as float32), a DataFrame as float64. Chunks are float64
    slices of it. A ``np.memmap`` stays a memmap (``resident`` is False): rows are read per chunk.
    ``sample_weight`` (n,) must be finite and non-negative; it becomes ``weights`` (float64).
    """

    def __init__(self, X, sample_weight=None):
        names = None
        if hasattr(X, "iloc") and hasattr(X, "columns"):
            names = [str(c) for c in X.columns]
            for name, dtype in zip(names, X.dtypes, strict=True):
                if getattr(dtype, "kind", "O") not in "biuf":
                    raise ValueError(
                        f"DataFrame column {name!r} has dtype {dtype}, not numbers: drop it or "
                        f"encode it as numbers."
                    )
            X = X.to_numpy(dtype=np.float64, na_value=np.nan)
        elif _is_tensor(X):
            X = _tensor_numpy(X)
        elif not isinstance(X, np.ndarray):
            X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise ValueError(
                f"X holds values of type {X.dtype}, not real numbers: convert it to a numeric "
                f"array (e.g. X.astype(float))."
            )
        if X.ndim != 2:
            hint = (
                "use X.reshape(-1, 1) for one feature"
                if X.ndim == 1
                else "flatten each sample with X.reshape(len(X), -1)"
            )
            raise ValueError(f"X must be 2-D (rows, features); got shape {tuple(X.shape)}: {hint}.")
        self.array = X
        self.weights = None if sample_weight is None else _check_weights(sample_weight, X.shape[0])
        self.n_samples, self.n_features = int(X.shape[0]), int(X.shape[1])
        self.feature_names = names
        self.resident = not isinstance(X, np.memmap)
        self._labels = _labels(range(self.n_features), names)
        self._offset, self._note = 0, ""

    def _chunks(self, rows):
        for s in range(0, self.n_samples, rows):
            X = np.ascontiguousarray(self.array[s : s + rows], dtype=np.float64)
            _check_finite(X, "X", self._offset + s, self._labels)
            w = None if self.weights is None else self.weights[s : s + rows]
            yield Chunk(X, w, "X", self._offset + s)

    def shard(self, rank, world):
        lo, hi = _shard_range(self.n_samples, rank, world)
        new = copy.copy(self)
        new.array = self.array[lo:hi]
        new.weights = None if self.weights is None else self.weights[lo:hi]
        new.n_samples, new._offset = hi - lo, self._offset + lo
        new._note = f"{self._note}, shard {rank} of {world}"
        return new

    def describe(self):
        kind = "in-memory array" if self.resident else "memory-mapped array"
        weighted = ", weighted" if self.weights is not None else ""
        return f"{kind}{self._note} ({self.n_samples:,} rows, {self.n_features} features{weighted})"


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _tensor_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    return (t.to(torch.float32) if t.dtype == torch.bfloat16 else t).numpy()


def _check_weights(w, n: int) -> np.ndarray:
    try:
        w = np.asarray(_tensor_numpy(w) if _is_tensor(w) else w, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"sample_weight must be numbers, one per row; got {type(w).__name__}."
        ) from None
    if w.shape != (n,):
        raise ValueError(
            f"sample_weight must have shape ({n},), one weight per row; got shape {w.shape}."
        )
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        raise ValueError(
            f"sample_weight[{bad[0]}] is {w[bad[0]]}: weights must be finite and >= 0."
        )
    return w


# ====================================================================== entry points
def as_source(data, sample_weight=None) -> Source:
    """A :class:`Source` for ``data``: a Source (as is), an array / memmap / tensor / DataFrame
    (:class:`ArraySource`), or a path, glob pattern (sorted) or list of paths, whose suffix picks
    :class:`NpySource`, :class:`ParquetSource` or :class:`CsvSource`."""
    if isinstance(data, Source):
        if sample_weight is not None:
            raise ValueError(
                "sample_weight cannot be given with a Source: build the source with its weights, "
                "ArraySource(X, sample_weight)."
            )
        return data
    is_path = lambda p: isinstance(p, (str, os.PathLike))  # noqa: E731
    if not (is_path(data) or isinstance(data, (list, tuple)) and data and all(map(is_path, data))):
        return ArraySource(data, sample_weight)
    if sample_weight is not None:
        raise ValueError(
            "sample_weight is not supported yet for data read from files (nor as a column): load "
            "the rows into an in-memory array (or np.load(path, mmap_mode='r')) to pass weights."
        )
    paths = _expand(data)
    kinds = sorted({_kind(p) for p in paths})
    if len(kinds) > 1:
        raise ValueError(
            f"the data files are of different kinds ({', '.join(kinds)}): give one format."
        )
    return {"npy": NpySource, "parquet": ParquetSource, "csv": CsvSource}[kinds[0]](paths)


def moments(source, rows: int = 65536) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-feature weighted mean, population variance (divided by the total weight) and the
    total weight (the row count when unweighted), in one streaming pass.

    Each chunk's mean and centred sum of squares are merged with Chan et al.'s parallel update
    (:func:`merge_moments`), all on rows shifted by the first row, so values near 1e8 with unit
    spread keep their variance to ~1e-15 relative. An empty source (or zero total weight) gives
    zeros and weight 0.0.
    """
    source = as_source(source)
    D = source.n_features
    mean, m2, total, shift = np.zeros(D), np.zeros(D), 0.0, None
    for chunk in source.chunks(rows):
        if shift is None:
            shift = chunk.X[0].copy()
        Y, w = chunk.X - shift, chunk.weights
        if w is None:
            wc, mc = float(len(Y)), Y.mean(axis=0)
            m2c = ((Y - mc) ** 2).sum(axis=0)
        else:
            wc = float(w.sum())
            if wc == 0.0:
                continue
            mc = (w @ Y) / wc
            m2c = w @ ((Y - mc) ** 2)
        mean, m2, total = merge_moments((mean, m2, total), (mc, m2c, wc))
    if total == 0.0:
        return np.zeros(D), np.zeros(D), 0.0
    return mean + shift, m2 / total, total


def merge_moments(a, b):
    """Chan et al.'s merge of two parts' ``(mean, m2, weight)`` (m2: the weighted sum of squares
    about the part's mean) into the union's; a part of weight 0 leaves the other unchanged."""
    (mean_a, m2_a, wa), (mean_b, m2_b, wb) = a, b
    if wb == 0.0:
        return a
    if wa == 0.0:
        return b
    new = wa + wb
    delta = mean_b - mean_a
    return mean_a + delta * (wb / new), m2_a + m2_b + delta**2 * (wa * wb / new), new


def reservoir(
    source, size: int, rng: np.random.Generator, rows: int = 65536
) -> tuple[np.ndarray, np.ndarray | None]:
    """At most ``size`` rows drawn uniformly without replacement, in one streaming pass, with
    their weights (None when the source is unweighted).

    Algorithm R, vectorized per chunk: the first ``size`` rows fill the reservoir in order; row
    ``i`` (0-based, counted over the pass) after that draws ``j = rng.integers(0, i + 1)`` and
    replaces slot ``j`` when ``j < size`` (within a chunk a later row wins a slot, as in the
    sequential algorithm). So a source of at most ``size`` rows comes back whole, in source
    order, and no randomness is consumed. Rows are sampled uniformly whatever their weights;
    weights are carried along for the caller to use.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); got "
            f"{type(rng).__name__}."
        )
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(
            f"size must be a non-negative integer (the most rows to keep); got {size!r}."
        )
    source = as_source(source)
    fill, seen, buf, wbuf, weighted = [], 0, None, None, source.weights is not None
    for chunk in source.chunks(rows):
        X, w, n = chunk.X, chunk.weights, len(chunk)
        weighted = w is not None
        take = min(n, size - seen) if buf is None else 0
        if take:
            fill.append((X[:take], w[:take] if weighted else None))
        if buf is None and seen + take >= size:
            buf, wbuf = _stack(fill, source.n_features, weighted)
        if n > take:
            j = rng.integers(0, np.arange(seen + take, seen + n) + 1)
            hit = np.flatnonzero(j < size) + take
            if hit.size:
                slots = j[hit - take]
                _, last = np.unique(slots[::-1], return_index=True)
                keep = hit[::-1][last]
                buf[j[keep - take]] = X[keep]
                if weighted:
                    wbuf[j[keep - take]] = w[keep]
        seen += n
    if buf is None:
        buf, wbuf = _stack(fill, source.n_features, weighted)
    return buf, wbuf if weighted else None


def _stack(parts, D: int, weighted: bool):
    X = np.concatenate([x for x, _ in parts]) if parts else np.empty((0, D))
    w = (np.concatenate([w for _, w in parts]) if parts else np.empty(0)) if weighted else None
    return X, w


# The file sources live in lvmkit/data/files.py (they import the base above).
from lvmkit.data.files import CsvSource, NpySource, ParquetSource, _expand, _kind  # noqa: E402
