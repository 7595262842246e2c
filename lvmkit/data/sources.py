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
import glob
import gzip
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ArraySource", "Chunk", "CsvSource", "DataFileNotFoundError", "NpySource", "ParquetSource",
    "Source", "as_source", "moments", "reservoir",
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
        if isinstance(rows, (bool, np.bool_)) or not isinstance(rows, (int, np.integer)) or rows < 1:
            raise ValueError(f"rows must be a positive integer (the most rows per chunk); got {rows!r}.")
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
    ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in (rank, world))
    if not ok or world < 1 or not 0 <= rank < world:
        raise ValueError(
            f"shard(rank={rank!r}, world={world!r}): need integers with world >= 1 and 0 <= rank < world."
        )
    return int(rank) * n // int(world), (int(rank) + 1) * n // int(world)


def _labels(positions, names) -> list[str]:
    names = names or [None] * len(positions)
    return [f"column {p}" + (f" ({n!r})" if n is not None else "") for p, n in zip(positions, names)]


def _check_finite(X: np.ndarray, origin: str, start: int, labels: list[str]) -> None:
    finite = np.isfinite(X)
    if finite.all():
        return
    r, c = divmod(int(np.argmin(finite.ravel())), X.shape[1])  # first bad value, row-major
    v = X[r, c]
    what, fix = ("NaN", "remove or impute missing values") if np.isnan(v) else (
        "inf" if v > 0 else "-inf", "remove or replace infinite values")
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
            for name, dtype in zip(names, X.dtypes):
                if getattr(dtype, "kind", "O") not in "biuf":
                    raise ValueError(
                        f"DataFrame column {name!r} has dtype {dtype}, not numbers: drop it or encode it "
                        "as numbers."
                    )
            X = X.to_numpy(dtype=np.float64, na_value=np.nan)
        elif _is_tensor(X):
            X = _tensor_numpy(X)
        elif not isinstance(X, np.ndarray):
            X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise ValueError(
                f"X holds values of type {X.dtype}, not real numbers: convert it to a numeric array "
                "(e.g. X.astype(float))."
            )
        if X.ndim != 2:
            hint = ("use X.reshape(-1, 1) for one feature" if X.ndim == 1
                    else "flatten each sample with X.reshape(len(X), -1)")
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
            X = np.ascontiguousarray(self.array[s:s + rows], dtype=np.float64)
            _check_finite(X, "X", self._offset + s, self._labels)
            w = None if self.weights is None else self.weights[s:s + rows]
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
        raise ValueError(f"sample_weight must be numbers, one per row; got {type(w).__name__}.") from None
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per row; got shape {w.shape}.")
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        raise ValueError(f"sample_weight[{bad[0]}] is {w[bad[0]]}: weights must be finite and >= 0.")
    return w


# ====================================================================== files
def _expand(paths) -> list[str]:
    """File paths: globs expanded (sorted), each checked to exist."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for p in paths:
        if not isinstance(p, (str, os.PathLike)):
            raise ValueError(f"expected paths to data files; got {p!r} ({type(p).__name__}).")
        p = os.fspath(p)
        if any(ch in p for ch in "*?[") and not os.path.exists(p):
            found = sorted(f for f in glob.glob(p, recursive=True) if os.path.isfile(f))
            if not found:
                where = os.path.abspath(os.path.dirname(p) or ".")
                raise ValueError(f"no files match {p!r} (looked in {where}): check the pattern.")
            out.extend(found)
        elif os.path.isdir(p):
            example = os.path.join(p, "*.parquet")
            raise ValueError(f"{p} is a folder: give the data files in it, e.g. {example!r}.")
        elif not os.path.isfile(p):
            raise DataFileNotFoundError(f"{p}: no such file; check the path to the data.")
        else:
            out.append(p)
    if not out:
        raise ValueError("no data files given: pass a path, a glob pattern or a list of paths.")
    return out


def _kind(path: str) -> str:
    name = path.lower()
    base = name[:-3] if name.endswith(".gz") else name
    if name.endswith(".npy"):
        return "npy"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if base.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    suffix = "".join(os.path.splitext(os.path.basename(path))[1:]) or "none"
    raise ValueError(
        f"{path}: unsupported file type (suffix {suffix!r}); data sources read {_SUFFIXES}: convert "
        "the file, or load it and pass the array."
    )


def _mismatch(path, n, first, n_first, what="features") -> ValueError:
    return ValueError(
        f"{path} has {n} {what} but {first} has {n_first}: every file of a data set must have the "
        "same columns."
    )


def _brief(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text[:200]


class _FileSource(Source):
    """Rows of one or several files, read in file order; a shard is a list of file-local ranges."""

    _kind = "data"

    def _setup(self, paths):
        self.paths = _expand(paths)
        self._counts: list[int | None] = [None] * len(self.paths)
        self._pieces: list[tuple[int, int, int]] | None = None  # None: every file whole
        self._note = ""

    def _count(self, i: int) -> int:  # CSV counts; npy and Parquet know theirs when built
        return self._counts[i]

    def _chunks(self, rows):
        whole = [(i, 0, c) for i, c in enumerate(self._counts)]
        for i, a, b in whole if self._pieces is None else self._pieces:
            yield from self._read(i, a, b, rows)
        if self._pieces is None and None not in self._counts:
            self.n_samples = sum(self._counts)

    def shard(self, rank, world):
        if self._pieces is None:
            pieces = [(i, 0, c if c is not None else self._count(i)) for i, c in enumerate(self._counts)]
            self.n_samples = sum(b for _, _, b in pieces)
        else:
            pieces = self._pieces
        lo, hi = _shard_range(sum(b - a for _, a, b in pieces), rank, world)
        out, pos = [], 0
        for i, a, b in pieces:
            s, e = max(lo, pos), min(hi, pos + b - a)
            if e > s:
                out.append((i, a + s - pos, a + e - pos))
            pos += b - a
        new = copy.copy(self)
        new._pieces, new.n_samples = out, hi - lo
        new._note = f"{self._note}, shard {rank} of {world}"
        return new

    def describe(self):
        what = self.paths[0] if len(self.paths) == 1 else f"{len(self.paths)} {self._kind} files"
        rows = "rows not counted yet" if self.n_samples is None else f"{self.n_samples:,} rows"
        return f"{what}{self._note} ({rows}, {self.n_features} features)"

    @abstractmethod
    def _read(self, i: int, a: int, b: int | None, rows: int) -> Iterator[Chunk]:
        """Chunks of file ``i``'s rows ``[a, b)`` (``b`` None: to the end, counting them)."""


class NpySource(_FileSource):
    """``.npy`` files of 2-D numeric arrays; each chunk reads only its rows.

    ``paths``: a path, a glob pattern, or a list of them. Every file's shape and dtype are read
    from its header when the source is built; all must have the same number of columns.

    Rows are read with plain ``read`` calls into one reused buffer per pass (then converted to a
    float64 chunk), not through a memory map: pages of a map that the process has touched count
    in its resident memory, so a pass over a file larger than RAM would push the resident size
    towards all free memory, while pages read with ``read`` stay in the kernel's page cache and
    do not. Fortran-ordered files (rare: ``np.save`` writes C order) are still read through a
    memory map, since their rows are not contiguous.
    """

    _kind = ".npy"

    def __init__(self, paths):
        self._setup(paths)
        self._layout: list[tuple[np.dtype, int, bool]] = []
        for i, p in enumerate(self.paths):
            arr = _open_npy(p)
            if arr.dtype.kind not in "biuf":
                raise ValueError(f"{p} holds values of type {arr.dtype}, not real numbers: save numbers.")
            if arr.ndim != 2:
                raise ValueError(
                    f"{p} holds an array of shape {arr.shape}; expected 2-D (rows, features): re-save it, "
                    "e.g. np.save(path, x.reshape(len(x), -1))."
                )
            if i == 0:
                self.n_features = int(arr.shape[1])
            elif arr.shape[1] != self.n_features:
                raise _mismatch(p, arr.shape[1], self.paths[0], self.n_features)
            self._counts[i] = int(arr.shape[0])
            # (dtype, byte offset of the data, Fortran order): the header, checked by np.load
            self._layout.append((arr.dtype, int(arr.offset), not arr.flags.c_contiguous))
            del arr
        self.n_samples = sum(self._counts)
        self._labels = _labels(range(self.n_features), None)

    def _read(self, i, a, b, rows):
        p = self.paths[i]
        dtype, offset, fortran = self._layout[i]
        if fortran:  # rows are not contiguous on disk: read them through a memory map
            arr = _open_npy(p)
            for s in range(a, b, rows):
                X = np.ascontiguousarray(arr[s:min(s + rows, b)], dtype=np.float64)
                _check_finite(X, p, s, self._labels)
                yield Chunk(X, None, p, s)
            return
        D = self.n_features
        row_bytes = dtype.itemsize * D
        buf = np.empty(min(rows, max(b - a, 0)) * row_bytes, dtype=np.uint8)
        try:
            fh = open(p, "rb", buffering=0)
        except OSError:
            _open_npy(p)  # raises the error of a file np.load cannot open
            raise
        with fh:
            if hasattr(os, "posix_fadvise"):  # a sequential scan: let the kernel read further ahead
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            fh.seek(offset + a * row_bytes)
            for s in range(a, b, rows):
                n = min(s + rows, b) - s
                view = memoryview(buf)[:n * row_bytes]
                got = 0
                while got < len(view):
                    k = fh.readinto(view[got:])
                    if not k:
                        raise ValueError(
                            f"{p} is not a readable .npy file (it ends inside row {s + got // row_bytes:,}, "
                            f"before the {self._counts[i]:,} rows its header promises); is it truncated? "
                            "Re-save it with np.save."
                        )
                    got += k
                X = np.frombuffer(buf, dtype=dtype, count=n * D).reshape(n, D).astype(np.float64)
                _check_finite(X, p, s, self._labels)
                yield Chunk(X, None, p, s)


def _open_npy(p: str) -> np.ndarray:
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        if "Python objects" in str(exc) or "allow_pickle" in str(exc):
            raise ValueError(
                f"{p} holds Python objects (a pickle, which lvmkit never loads): save a numeric array."
            ) from None
        raise ValueError(
            f"{p} is not a readable .npy file ({_brief(exc)}); is it truncated? Re-save it with np.save."
        ) from None


class ParquetSource(_FileSource):
    """Parquet files read a row group at a time (``iter_batches``), so memory stays bounded.

    ``columns``: names (or 0-based positions in the first file) of the feature columns; by
    default every numeric column (integer, floating, boolean, decimal) except a pandas index.
    Every file must have the same feature columns; nulls read as NaN and are reported as such.
    """

    _kind = "Parquet"

    def __init__(self, paths, columns=None):
        self._setup(paths)
        self._groups: list[list[int]] = []
        first, names = self.paths[0], None
        for i, p in enumerate(self.paths):
            pf = _open_parquet(p)
            schema = pf.schema_arrow
            types = {f.name: f.type for f in schema}
            if columns is None:
                index = (schema.pandas_metadata or {}).get("index_columns", [])
                theirs = [f.name for f in schema if _is_numeric(f.type) and f.name not in index]
                if not theirs:
                    raise ValueError(f"{p} has no numeric columns (its columns: {', '.join(schema.names)}).")
                if names is not None and len(theirs) != len(names):
                    raise _mismatch(p, len(theirs), first, len(names))
                if names is not None and theirs != names:
                    raise ValueError(
                        f"{p} has feature columns {theirs} but {first} has {names}: every file of a data "
                        "set must have the same columns."
                    )
                names = theirs
            elif names is None:
                n = len(schema.names)
                names = [schema.names[c] if isinstance(c, (int, np.integer)) and 0 <= c < n else c
                         for c in columns]
            for name in names:
                if name not in types:
                    raise ValueError(
                        f"{p} has no column {name!r} (its columns: {', '.join(schema.names)}): every file "
                        "of a data set must have the same columns."
                    )
                if not _is_numeric(types[name]):
                    raise ValueError(
                        f"{p}: column {name!r} holds {types[name]}, not numbers: leave it out of columns=, "
                        "or encode it as numbers."
                    )
            if i == 0:
                self.feature_names, self.n_features = [str(n) for n in names], len(names)
                self._labels = _labels([schema.get_field_index(n) for n in names], names)
            meta = pf.metadata
            self._groups.append([meta.row_group(k).num_rows for k in range(meta.num_row_groups)])
            self._counts[i] = int(meta.num_rows)
        self.n_samples = sum(self._counts)

    def _read(self, i, a, b, rows):
        import pyarrow as pa

        p, pf = self.paths[i], _open_parquet(self.paths[i])
        starts = np.concatenate([[0], np.cumsum(self._groups[i])]).astype(int)
        groups = [k for k in range(len(self._groups[i])) if starts[k] < b and starts[k + 1] > a]
        if not groups:
            return
        pos = int(starts[groups[0]])
        try:
            for batch in pf.iter_batches(batch_size=rows, row_groups=groups, columns=self.feature_names):
                s, e = max(a, pos), min(b, pos + batch.num_rows)
                if e > s:
                    X = np.empty((e - s, self.n_features))
                    for j, col in enumerate(batch.slice(s - pos, e - s).columns):
                        X[:, j] = col.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
                    _check_finite(X, p, s, self._labels)
                    yield Chunk(X, None, p, s)
                pos += batch.num_rows
                if pos >= b:
                    break
        except (pa.ArrowException, OSError) as exc:  # damaged pages behind an intact footer
            raise _corrupt(p, exc) from None


def _is_numeric(t) -> bool:
    import pyarrow as pa

    return any(f(t) for f in (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean,
                              pa.types.is_decimal))


def _corrupt(p, exc) -> ValueError:
    return ValueError(
        f"{p} is not a readable Parquet file (corrupt or truncated: {_brief(exc)}): re-write it from the "
        "original data."
    )


def _open_parquet(p: str):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "reading Parquet needs pyarrow: pip install 'lvmkit[parquet]' (or pip install pyarrow)."
        ) from None
    try:
        return pq.ParquetFile(p)
    except Exception as exc:  # pyarrow's ArrowInvalid, OSError and friends
        raise _corrupt(p, exc) from None


class CsvSource(_FileSource):
    """CSV files read in blocks of ``rows`` rows with pandas, so memory stays bounded.

    ``header``: whether each file starts with a header row (names). ``columns``: header names or
    0-based positions of the feature columns (default: all, each must hold numbers). ``sep``: the
    field separator; by default tab for ``.tsv``, ',' for ``.csv``, and for ``.txt`` the first of
    ',', tab, ';' found in its first line, else whitespace. Blank lines are skipped and not
    counted. ``n_samples`` is None until a full pass or ``shard`` (which counts rows first).
    A shard starting inside a file parses (and discards) that file's earlier rows on each pass.
    """

    _kind = "CSV"

    def __init__(self, paths, header: bool = True, columns=None, sep: str | None = None):
        self._setup(paths)
        self.header, self._sep = bool(header), sep
        self._names, self._width = self._head(0)
        first, cols = self.paths[0], []
        for c in range(self._width) if columns is None else columns:
            if isinstance(c, str) and self._names is None:
                raise ValueError(
                    f"{first}: no header row (header=False), so column {c!r} cannot be found by name: "
                    "choose columns by 0-based position."
                )
            if isinstance(c, str) and c not in self._names:
                raise ValueError(
                    f"{first}: no column named {c!r} (its columns: {', '.join(self._names)}): check the "
                    "spelling."
                )
            if not isinstance(c, str) and not (isinstance(c, (int, np.integer)) and 0 <= c < self._width):
                raise ValueError(
                    f"{first}: column {c!r} is neither a column name nor a position in 0..{self._width - 1}."
                )
            cols.append(self._names.index(c) if isinstance(c, str) else int(c))
        self._cols = cols
        self.feature_names = None if self._names is None else [self._names[c] for c in cols]
        self.n_features = len(cols)
        self._labels = _labels(cols, self.feature_names)

    def _sep_of(self, p: str) -> str:
        if self._sep is not None:
            return self._sep
        name = p.lower().removesuffix(".gz")
        if name.endswith((".tsv", ".csv")):
            return "\t" if name.endswith(".tsv") else ","
        with _csv_errors(p), (gzip.open(p, "rt") if p.lower().endswith(".gz") else open(p)) as fh:
            line = next((ln for ln in fh if ln.strip()), "")
        return next((d for d in (",", "\t", ";") if d in line), r"\s+")

    def _frames(self, p: str, **kwargs):
        import pandas as pd

        return pd.read_csv(p, sep=self._sep_of(p), header=0 if self.header else None, **kwargs)

    def _head(self, i: int):
        p = self.paths[i]
        with _csv_errors(p):
            frame = self._frames(p, nrows=0 if self.header else 1)
        return ([str(c) for c in frame.columns] if self.header else None), frame.shape[1]

    def _count(self, i):
        with _csv_errors(self.paths[i]):
            frames = self._frames(self.paths[i], usecols=[0], dtype=str, chunksize=1 << 18)
            self._counts[i] = sum(len(f) for f in frames)
        return self._counts[i]

    def _read(self, i, a, b, rows):
        import pandas as pd

        p, first = self.paths[i], self.paths[0]
        names, width = (self._names, self._width) if i == 0 else self._head(i)
        if width != self._width:
            raise _mismatch(p, width, first, self._width, "columns")
        if names != self._names:
            raise ValueError(
                f"{p} has columns {names} but {first} has {self._names}: every file of a data set must "
                "have the same columns."
            )
        pos = 0
        with _csv_errors(p):
            for frame in self._frames(p, chunksize=rows):
                s, e = max(a, pos), pos + len(frame) if b is None else min(b, pos + len(frame))
                if e > s:
                    X = np.empty((e - s, self.n_features))
                    for j, c in enumerate(self._cols):
                        col = frame.iloc[s - pos:e - pos, c]
                        if col.dtype.kind not in "biuf":
                            num = pd.to_numeric(col, errors="coerce")
                            bad = np.flatnonzero(num.isna().to_numpy() & col.notna().to_numpy())
                            if bad.size:
                                raise ValueError(
                                    f"{p}: row {s + bad[0]:,}, {self._labels[j]} is {col.iloc[bad[0]]!r}, "
                                    "not a number: leave non-numeric columns out with columns=, or encode "
                                    "them as numbers."
                                )
                            col = num
                        X[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
                    _check_finite(X, p, s, self._labels)
                    yield Chunk(X, None, p, s)
                pos += len(frame)
                if b is not None and pos >= b:
                    break
        if b is None:
            self._counts[i] = pos


@contextmanager
def _csv_errors(p: str):
    import pandas as pd

    try:
        yield
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{p} is empty: expected rows of numbers (after a header row, by default)."
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise ValueError(
            f"{p} could not be read as CSV ({_brief(exc)}): every row needs the same number of fields; "
            "is the file complete, and text?"
        ) from None


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
            "sample_weight is not supported yet for data read from files (nor as a column): load the "
            "rows into an in-memory array (or np.load(path, mmap_mode='r')) to pass weights."
        )
    paths = _expand(data)
    kinds = sorted({_kind(p) for p in paths})
    if len(kinds) > 1:
        raise ValueError(f"the data files are of different kinds ({', '.join(kinds)}): give one format.")
    return {"npy": NpySource, "parquet": ParquetSource, "csv": CsvSource}[kinds[0]](paths)


def moments(source, rows: int = 65536) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-feature weighted mean, population variance (divided by the total weight) and the
    total weight (the row count when unweighted), in one streaming pass.

    Each chunk's mean and centred sum of squares are merged with Chan et al.'s parallel update,
    all on rows shifted by the first row, so values near 1e8 with unit spread keep their variance
    to ~1e-15 relative. An empty source (or zero total weight) gives zeros and weight 0.0.
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
        new = total + wc
        delta = mc - mean
        mean = mean + delta * (wc / new)
        m2 = m2 + m2c + delta**2 * (total * wc / new)
        total = new
    if total == 0.0:
        return np.zeros(D), np.zeros(D), 0.0
    return mean + shift, m2 / total, total


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
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); got {type(rng).__name__}."
        )
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"size must be a non-negative integer (the most rows to keep); got {size!r}.")
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
