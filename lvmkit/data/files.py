"""Data sources on disk: ``.npy`` files (plain reads), Parquet (a row group at a time) and CSV (in
blocks), each a :class:`lvmkit.data.sources.Source` (see that module for the contract: chunks,
shards, the numbering of rows in messages). Import them from :mod:`lvmkit.data.sources` or
:mod:`lvmkit.data`.
"""

from __future__ import annotations

import copy
import glob
import gzip
import os
import warnings
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from lvmkit.data.readers import _is_row_name_header, _row_names_note, _row_numbers_start
from lvmkit.data.sources import (
    _SUFFIXES,
    Chunk,
    DataFileNotFoundError,
    Source,
    _check_finite,
    _labels,
    _shard_range,
)


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
        f"{path}: unsupported file type (suffix {suffix!r}); data sources read {_SUFFIXES}: "
        f"convert the file, or load it and pass the array."
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
            pieces = [
                (i, 0, c if c is not None else self._count(i)) for i, c in enumerate(self._counts)
            ]
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
                raise ValueError(
                    f"{p} holds values of type {arr.dtype}, not real numbers: save numbers."
                )
            if arr.ndim != 2:
                raise ValueError(
                    f"{p} holds an array of shape {arr.shape}; expected 2-D (rows, features): "
                    f"re-save it, e.g. np.save(path, x.reshape(len(x), -1))."
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
                X = np.ascontiguousarray(arr[s : min(s + rows, b)], dtype=np.float64)
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
                view = memoryview(buf)[: n * row_bytes]
                got = 0
                while got < len(view):
                    k = fh.readinto(view[got:])
                    if not k:
                        raise ValueError(
                            f"{p} is not a readable .npy file (it ends inside row "
                            f"{s + got // row_bytes:,}, before the {self._counts[i]:,} rows its "
                            f"header promises); is it truncated? Re-save it with np.save."
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
                f"{p} holds Python objects (a pickle, which lvmkit never loads): save a numeric "
                f"array."
            ) from None
        raise ValueError(
            f"{p} is not a readable .npy file ({_brief(exc)}); is it truncated? Re-save it with "
            f"np.save."
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
                    raise ValueError(
                        f"{p} has no numeric columns (its columns: {', '.join(schema.names)})."
                    )
                if names is not None and len(theirs) != len(names):
                    raise _mismatch(p, len(theirs), first, len(names))
                if names is not None and theirs != names:
                    raise ValueError(
                        f"{p} has feature columns {theirs} but {first} has {names}: every file of "
                        f"a data set must have the same columns."
                    )
                names = theirs
            elif names is None:
                n = len(schema.names)
                names = [
                    schema.names[c] if isinstance(c, (int, np.integer)) and 0 <= c < n else c
                    for c in columns
                ]
            for name in names:
                if name not in types:
                    raise ValueError(
                        f"{p} has no column {name!r} (its columns: {', '.join(schema.names)}): "
                        f"every file of a data set must have the same columns."
                    )
                if not _is_numeric(types[name]):
                    raise ValueError(
                        f"{p}: column {name!r} holds {types[name]}, not numbers: leave it out of "
                        f"columns=, or encode it as numbers."
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
            for batch in pf.iter_batches(
                batch_size=rows, row_groups=groups, columns=self.feature_names
            ):
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

    return any(
        f(t)
        for f in (
            pa.types.is_integer,
            pa.types.is_floating,
            pa.types.is_boolean,
            pa.types.is_decimal,
        )
    )


def _corrupt(p, exc) -> ValueError:
    return ValueError(
        f"{p} is not a readable Parquet file (corrupt or truncated: {_brief(exc)}): re-write it "
        f"from the original data."
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

    Row names: when ``columns`` is None, the first column is left out (with a warning) if its
    header is empty (read as ``Unnamed: 0``), ``rownames``, ``row.names``, ``index`` or ``...1`` and
    the first file's first rows number themselves 0, 1, 2, ... or 1, 2, 3, ... (pandas' ``to_csv``,
    R's ``write.csv``). Every chunk read checks that the numbering goes on (each file counting
    on from the one before, or afresh); ``keep_index=True`` keeps the column as a feature.
    """

    _kind = "CSV"
    _PROBE_ROWS = 10_000  # rows of the first file that decide whether its first column is row names

    def __init__(
        self,
        paths,
        header: bool = True,
        columns=None,
        sep: str | None = None,
        keep_index: bool = False,
    ):
        self._setup(paths)
        self.header, self._sep = bool(header), sep
        self._names, self._width = self._head(0)
        self._index_start = None if columns is not None or keep_index else self._row_names()
        first, cols = self.paths[0], []
        skip = 0 if self._index_start is None else 1
        for c in range(skip, self._width) if columns is None else columns:
            if isinstance(c, str) and self._names is None:
                raise ValueError(
                    f"{first}: no header row (header=False), so column {c!r} cannot be found by "
                    f"name: choose columns by 0-based position."
                )
            if isinstance(c, str) and c not in self._names:
                raise ValueError(
                    f"{first}: no column named {c!r} (its columns: {', '.join(self._names)}): "
                    f"check the spelling."
                )
            if not isinstance(c, str) and not (
                isinstance(c, (int, np.integer)) and 0 <= c < self._width
            ):
                raise ValueError(
                    f"{first}: column {c!r} is neither a column name nor a position in "
                    f"0..{self._width - 1}."
                )
            cols.append(self._names.index(c) if isinstance(c, str) else int(c))
        self._cols = cols
        self.feature_names = None if self._names is None else [self._names[c] for c in cols]
        self.n_features = len(cols)
        self._labels = _labels(cols, self.feature_names)

    def _row_names(self) -> int | None:
        """0 or 1 (where the numbering starts) when the first column holds row names, else None."""
        if not self.header or self._width < 2 or not _is_row_name_header(self._names[0]):
            return None
        import pandas as pd

        p = self.paths[0]
        try:
            frame = self._frames(p, usecols=[0], nrows=self._PROBE_ROWS)
        except Exception:  # unreadable rows: reading the chunks reports them
            return None
        values = pd.to_numeric(frame.iloc[:, 0], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        start = _row_numbers_start(values)
        if start is not None:
            warnings.warn(
                _row_names_note(p, self._names[0], start, None), UserWarning, stacklevel=3
            )
        return start

    def _check_row_names(self, i: int, col, pos: int, first: list) -> None:
        """Raise unless the first column of the rows from ``pos`` of file ``i`` goes on numbering
        them; ``first`` holds the file's first value once seen."""
        import pandas as pd

        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if not values.size:
            return
        start, wanted = self._index_start, None
        if not first:
            before = self._counts[:i]
            allowed = [start] + ([start + sum(before)] if i and None not in before else [])
            first.append(values[0] if values[0] in allowed else start)
            wanted = " or ".join(f"{v:,}" for v in allowed)
        expected = first[0] + pos + np.arange(values.size)
        bad = np.flatnonzero(values != expected)
        if bad.size:
            k = int(bad[0])
            v, cell = values[k], col.iloc[k]
            got = (
                (f"{int(v):,}" if v == int(v) else f"{float(v)!r}")
                if np.isfinite(v)
                else (repr(cell) if isinstance(cell, str) else "no value")
            )
            wanted = wanted if pos + k == 0 and wanted else f"{int(expected[k]):,}"
            raise ValueError(
                f"{self.paths[i]}: the first column ({self._names[0]!r}) was left out as row "
                f"names, but at row {pos + k:,} it holds {got} instead of {wanted}; if it is a "
                f"feature, pass keep_index=True (command line: --keep-index-column) to keep it."
            )

    def _sep_of(self, p: str) -> str:
        if self._sep is not None:
            return self._sep
        name = p.lower().removesuffix(".gz")
        if name.endswith((".tsv", ".csv")):
            return "\t" if name.endswith(".tsv") else ","
        with _csv_errors(p), gzip.open(p, "rt") if p.lower().endswith(".gz") else open(p) as fh:
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
                f"{p} has columns {names} but {first} has {self._names}: every file of a data set "
                f"must have the same columns."
            )
        pos, first_value = 0, []
        with _csv_errors(p):
            for frame in self._frames(p, chunksize=rows):
                if self._index_start is not None:
                    self._check_row_names(i, frame.iloc[:, 0], pos, first_value)
                s, e = max(a, pos), pos + len(frame) if b is None else min(b, pos + len(frame))
                if e > s:
                    X = np.empty((e - s, self.n_features))
                    for j, c in enumerate(self._cols):
                        col = frame.iloc[s - pos : e - pos, c]
                        if col.dtype.kind not in "biuf":
                            num = pd.to_numeric(col, errors="coerce")
                            bad = np.flatnonzero(num.isna().to_numpy() & col.notna().to_numpy())
                            if bad.size:
                                raise ValueError(
                                    f"{p}: row {s + bad[0]:,}, {self._labels[j]} is "
                                    f"{col.iloc[bad[0]]!r}, not a number: leave non-numeric "
                                    f"columns out with columns=, or encode them as numbers."
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
            f"{p} could not be read as CSV ({_brief(exc)}): every row needs the same number of "
            f"fields; is the file complete, and text?"
        ) from None
