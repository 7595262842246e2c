"""Reading a data set from disk (or a DataFrame) into the array an estimator fits.

``read_data(source)`` dispatches on what ``source`` is:

==========================================  ========================================================
source                                      result
==========================================  ========================================================
``.csv``, ``.tsv``, ``.txt`` (``.gz`` too)  (n, d) float64; a header row is detected (see below)
``.npy``                                    the array, memory-mapped (read a chunk at a time by fit)
``.npz``                                    its one array, or the one named by ``key``
``.parquet``, ``.pq``                       (n, d) float64; needs pyarrow (``lvmkit[parquet]``)
IDX (``-ubyte``, ``.idx``; ``.gz`` too)     the array as stored, e.g. MNIST's (n, 28, 28) uint8
``.amat`` (``.gz`` too)                     (n, d) float32, Larochelle's binarized MNIST format
a folder of images                          (n, H, W) uint8; (n, H, W, 3) if any image has colour
a pandas DataFrame                          (n, d) float64
==========================================  ========================================================

Images keep their raw values (0..255): scale or binarize them as the model needs. Colour images
are converted to RGB (alpha dropped, palettes expanded); a folder mixing grey and colour images
reads all as RGB. Every image must have the size of the first (in file-name order).

A CSV file's first row is a header when it holds a value that is not a number in a column whose
next row is a number (or when the file has only that row). ``columns`` chooses columns by header
name or by 0-based position (as ``DataFrame.iloc``); only the chosen columns must be numeric.

A CSV file's first column is taken for row names and left out, with a warning, when its header is
empty, ``Unnamed: 0``, ``rownames``, ``row.names``, ``index`` or ``...1`` (as pandas' ``to_csv``
and R's ``write.csv`` write them) and it holds exactly 0..n-1 or 1..n in file order. Pass
``keep_index=True`` to keep it; naming ``columns`` turns the check off.

Errors name the file, the row and the column, counted from 1 as a person counts lines and fields in
the file (rows of a DataFrame are named by position and index label instead): non-numeric cells,
missing values, ragged rows, empty files, unknown column names. :func:`read_dataset` also returns
the column names and the image shape, for the command line.

Missing values (an empty cell, ``NA``, ``NaN``, ``n/a``, ``null``, ``none`` or ``?`` in a CSV file,
a null in a DataFrame or Parquet file) are an error unless ``allow_missing=True``: then they are
read as NaN, for the models that take missing values (``ProbabilisticPCA``, ``FactorAnalysis``,
``MixtureOfFactorAnalyzers``, ``GaussianMixture``) and their ``impute``. A CSV row must still
have every field (``1,,3`` has three); its delimiters say where the gaps are. NumPy files are read
as stored, NaN included.
"""

from __future__ import annotations

import csv
import gzip
import math
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvmkit.data.amat import read_amat
from lvmkit.data.idx import read_idx

__all__ = ["Dataset", "read_data", "read_dataset"]

IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".pbm",
)
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
_MISSING = ("", "na", "nan", "n/a", "null", "none", "?")
_MISSING_ADVICE = (
    "ProbabilisticPCA, FactorAnalysis, MixtureOfFactorAnalyzers and GaussianMixture take missing "
    "values (read_data(..., allow_missing=True); on the command line the kinds ppca, fa, mfa and "
    "gmm), and 'lvmkit impute' fills them."
)
_FORMATS = (
    "CSV (.csv, .tsv, .txt), NumPy (.npy, .npz), Parquet (.parquet), IDX (-ubyte, .idx), "
    ".amat, each optionally gzipped (.gz) except .npy/.npz/.parquet, or a folder of images"
)


@dataclass
class Dataset:
    """A data set as read: the array, its column names (tables) and its source.

    ``X`` is (n, d) for tables and (n, H, W) or (n, H, W, C) for images; :meth:`matrix` gives
    the (n, features) view an estimator fits, and ``image_shape`` the shape of one sample when
    the samples are images.
    """

    X: np.ndarray
    feature_names: list[str] | None = None
    source: str = ""

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        return tuple(int(s) for s in self.X.shape[1:]) if self.X.ndim > 2 else None

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    def matrix(self) -> np.ndarray:
        """(n_samples, n_features): images flattened, a single column as (n, 1)."""
        X = self.X
        if X.ndim == 1:
            return X.reshape(-1, 1)
        if X.ndim > 2:
            return X.reshape(X.shape[0], -1)
        return X


def read_data(
    source,
    columns=None,
    *,
    key: str | None = None,
    delimiter: str | None = None,
    keep_index: bool = False,
    allow_missing: bool = False,
) -> np.ndarray:
    """The array in ``source`` (a path, a folder of images or a DataFrame); see the module doc.

    Parameters
    ----------
    source : str, Path or pandas.DataFrame
    columns : list of str or int, optional
        Columns to keep (tables and 2-D arrays): header names or 0-based positions.
    key : str, optional
        The array of an ``.npz`` file holding several.
    delimiter : str, optional
        CSV field separator; by default ',' (or tab, ';', whitespace, detected from the first line).
    keep_index : bool, default False
        CSV files: keep a first column of row names (see the module doc) as a feature instead of
        leaving it out.
    allow_missing : bool, default False
        Read missing values (empty cells, NA, nulls) as NaN instead of refusing them, for the
        models that take missing values.
    """
    return read_dataset(
        source,
        columns,
        key=key,
        delimiter=delimiter,
        keep_index=keep_index,
        allow_missing=allow_missing,
    ).X


def read_dataset(
    source,
    columns=None,
    *,
    key: str | None = None,
    delimiter: str | None = None,
    keep_index: bool = False,
    allow_missing: bool = False,
) -> Dataset:
    """Like :func:`read_data`, returning a :class:`Dataset` (array, column names, source)."""
    columns = _normalise_columns(columns)
    if hasattr(source, "iloc") and hasattr(source, "columns"):
        X, names = _from_frame(source, columns, "DataFrame", False, allow_missing)
        return Dataset(X, names, "DataFrame")
    if isinstance(source, np.ndarray):
        X = _select_array_columns(source, columns, "array")
        return Dataset(_check_array(X, "array"), None, "array")
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder. Check the path to the data.")
    if path.is_dir():
        if columns is not None:
            raise ValueError(
                f"{path}: columns apply to tables; a folder of images has none. Drop columns."
            )
        return Dataset(_read_image_folder(path), None, str(path))
    kind = _kind(path)
    if kind == "csv":
        X, names = _read_csv(path, columns, delimiter, keep_index, allow_missing)
        return Dataset(X, names, str(path))
    if kind == "parquet":
        X, names = _read_parquet(path, columns, allow_missing)
        return Dataset(X, names, str(path))
    if kind == "npy":
        X = _read_npy(path)
    elif kind == "npz":
        X = _read_npz(path, key)
    elif kind == "amat":
        X = read_amat(path)
    elif kind == "idx":
        X = read_idx(path)
    else:
        raise ValueError(
            f"{path}: unknown data format (suffix {''.join(path.suffixes) or 'none'!r}). lvmkit "
            f"reads {_FORMATS}. Rename the file with the right suffix, or convert it."
        )
    X = _select_array_columns(X, columns, str(path))
    return Dataset(_check_array(X, str(path)), None, str(path))


# ====================================================================== dispatch
def _kind(path: Path) -> str | None:
    name = path.name.lower()
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if base.endswith((".parquet", ".pq")) and not name.endswith(".gz"):
        return "parquet"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".npz"):
        return "npz"
    if base.endswith(".amat"):
        return "amat"
    if base.endswith("-ubyte") or ".idx" in base:
        return "idx"
    return None


def _normalise_columns(columns):
    if columns is None:
        return None
    if isinstance(columns, (str, int, np.integer)):
        columns = [columns]
    out = []
    for c in columns:
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (str, int, np.integer)):
            raise ValueError(
                f"columns must be column names (str) or 0-based positions (int); got {c!r} "
                f"({type(c).__name__})."
            )
        out.append(int(c) if isinstance(c, (int, np.integer)) else c)
    if not out:
        raise ValueError(
            "columns is empty; give at least one column name or position, or None for all."
        )
    return out


def _resolve_columns(columns, names: list[str] | None, width: int, where: str) -> list[int]:
    """0-based positions of ``columns`` in a table of ``width`` columns named ``names``."""
    if columns is None:
        return list(range(width))
    out = []
    for c in columns:
        if isinstance(c, str):
            if names is None:
                raise ValueError(
                    f"{where}: has no header row, so column {c!r} cannot be found by name. Choose "
                    f"columns by 0-based position (0..{width - 1}) instead."
                )
            unnamed = c.startswith("Unnamed: ") and c[9:].isdigit() and int(c[9:]) < len(names)
            if c not in names and unnamed and names[int(c[9:])] == "":
                out.append(int(c[9:]))  # pandas' name for an empty header (a streamed fit's)
                continue
            if c not in names:
                shown = ", ".join(repr(n) for n in names[:20]) + (
                    ", ..." if len(names) > 20 else ""
                )
                raise ValueError(
                    f"{where}: no column named {c!r}; its columns are {shown}. Check the spelling "
                    "(names are case-sensitive)."
                )
            out.append(names.index(c))
        else:
            if not 0 <= c < width:
                raise ValueError(
                    f"{where}: column position {c} is out of range; the data has {width} "
                    f"column(s), positions 0..{width - 1} (0-based)."
                )
            out.append(c)
    return out


def _select_array_columns(X: np.ndarray, columns, where: str) -> np.ndarray:
    if columns is None:
        return X
    if X.ndim != 2:
        raise ValueError(
            f"{where}: columns apply to 2-D data (rows x columns); this array has shape "
            f"{tuple(X.shape)}. Drop columns."
        )
    return X[:, _resolve_columns(columns, None, X.shape[1], where)]


def _check_array(X: np.ndarray, where: str) -> np.ndarray:
    if X.dtype.kind not in "biuf":
        raise ValueError(
            f"{where}: holds values of type {X.dtype}, not numbers. Convert it to a numeric "
            "array (e.g. X.astype(float))."
        )
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError(
            f"{where}: holds no samples (shape {tuple(X.shape)}); give a non-empty data set."
        )
    return X


# ====================================================================== CSV
def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")


def _is_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return not math.isnan(value) and text.strip().lower() not in _MISSING


def _detect_delimiter(line: str) -> str | None:
    for d in (",", "\t", ";"):
        if d in line:
            return d
    return None  # whitespace


def _records(fh, delimiter, keep_empty: bool = False):
    """(line number, fields) of every non-blank line (with ``keep_empty``, also the lines of
    empty fields only, such as ``,,``: a row whose every value is missing)."""
    if delimiter is None:
        for line_no, line in enumerate(fh, start=1):
            fields = line.split()
            if fields:
                yield line_no, fields
        return
    reader = csv.reader(fh, delimiter=delimiter, skipinitialspace=True)
    for fields in reader:
        if not fields or (all(not f.strip() for f in fields) and not keep_empty):
            continue
        yield reader.line_num, [f.strip() for f in fields]


def _read_csv(path: Path, columns, delimiter, keep_index: bool = False, allow_missing=False):
    try:
        with _open_text(path) as fh:
            head = fh.read(1 << 16)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path}: could not be read as text ({exc}). Is it a CSV file, complete?"
        ) from None
    if not head.strip():
        raise ValueError(f"{path}: the file is empty; expected rows of comma-separated numbers.")
    first_line = next(line for line in head.splitlines() if line.strip())
    if delimiter is None:
        delimiter = _detect_delimiter(first_line)
    with _open_text(path) as fh:
        records = _records(fh, delimiter)
        first = next(records)
        second = next(records, None)
    (_, row1) = first
    row2 = second[1] if second else None
    has_header = _looks_like_header(row1, row2)
    names = row1 if has_header else None
    width = len(row1)
    if has_header and second is None:
        raise ValueError(
            f"{path}: has a header row ({', '.join(row1[:5])}{', ...' if width > 5 else ''}) but "
            "no data rows."
        )
    picked = _resolve_columns(columns, names, width, str(path))
    X = _read_csv_fast(path, delimiter, has_header, width, picked)
    if X is None:
        try:
            X = _read_csv_checked(path, delimiter, has_header, width, picked, names, allow_missing)
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(
                f"{path}: could not be read ({exc}); is the file truncated or not text?"
            ) from None
    chosen = [names[i] for i in picked] if names is not None else None
    if columns is None and not keep_index and chosen is not None and len(chosen) > 1:
        start = _row_numbers_start(X[:, 0]) if _is_row_name_header(chosen[0]) else None
        if start is not None:
            warnings.warn(
                _row_names_note(path, chosen[0], start, X.shape[0]), UserWarning, stacklevel=3
            )
            X, chosen = np.ascontiguousarray(X[:, 1:]), chosen[1:]
    return X, chosen


# Headers pandas' to_csv (empty; read back as 'Unnamed: 0'; 'index' after reset_index), R's
# write.csv (empty), R's as.data.frame/tibble ('rownames', 'row.names') and readr ('...1') give
# a column of row names.
_ROW_NAME_HEADERS = ("", "unnamed: 0", "rownames", "row.names", "index", "...1")


def _is_row_name_header(name) -> bool:
    return str(name).strip().lower() in _ROW_NAME_HEADERS


def _row_numbers_start(values: np.ndarray) -> int | None:
    """0 or 1 when ``values`` are exactly 0..n-1 or 1..n, in order; else None."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or values[0] not in (0.0, 1.0):
        return None
    start = int(values[0])
    return (
        start
        if np.array_equal(values, np.arange(start, start + values.size, dtype=np.float64))
        else None
    )


def _row_names_note(path, name, start: int, n: int | None) -> str:
    """The one-line warning for a first column left out as row names (``n`` rows, if known)."""
    held = (
        f"{start}, {start + 1}, {start + 2}, ..."
        if n is None
        else (f"{start}..{start + n - 1}" if n > 1 else f"{start}")
    )
    what = f"{name!r}, holding {held}" if str(name).strip() else f"unnamed, holding {held}"
    return (
        f"{path}: the first column ({what}) looks like row names written by pandas or R; it is "
        "left out. Pass keep_index=True (command line: --keep-index-column) to keep it as a "
        "feature."
    )


def _looks_like_header(row1: list[str], row2: list[str] | None) -> bool:
    non_numeric = [i for i, f in enumerate(row1) if not _is_number(f)]
    if not non_numeric:
        return False
    if row2 is None or len(non_numeric) == len(row1):
        return True
    return any(i < len(row2) and _is_number(row2[i]) for i in non_numeric)


def _read_csv_fast(path, delimiter, has_header, width, picked):
    """pandas' C parser for clean files; None when anything is off, missing values included
    (then the checked reader finds the exact row and column, and tells a missing value from a
    short row)."""
    import pandas as pd

    try:
        frame = pd.read_csv(
            path,
            sep=r"\s+" if delimiter is None else delimiter,
            header=0 if has_header else None,
            skipinitialspace=True,
            skip_blank_lines=True,
            engine="c",
            low_memory=False,
        )
    except Exception:  # ragged rows, quoting problems: let the checked reader explain
        return None
    if frame.shape[1] != width or frame.shape[0] == 0:
        return None
    selected = frame.iloc[:, picked]
    if not all(dtype.kind in "biuf" for dtype in selected.dtypes) or frame.isna().to_numpy().any():
        return None
    return selected.to_numpy(dtype=np.float64)


def _read_csv_checked(path, delimiter, has_header, width, picked, names, allow_missing=False):
    rows = []
    with _open_text(path) as fh:
        records = _records(fh, delimiter, keep_empty=allow_missing and delimiter is not None)
        if has_header:
            next(records)
        header_note = " (the header)" if has_header else ""
        for line_no, fields in records:
            if len(fields) != width:
                raise ValueError(
                    f"{path}: row {line_no} has {len(fields)} value(s) but row 1{header_note} has "
                    f"{width}; every row must have the same number of columns (a stray "
                    "delimiter, a missing value, or a truncated file?)."
                )
            values = []
            for i in picked:
                text = fields[i]
                label = f"column {i + 1}" + (f" ({names[i]!r})" if names else "")
                if text.strip().lower() in _MISSING:
                    if allow_missing:
                        values.append(math.nan)
                        continue
                    raise ValueError(
                        f"{path}: row {line_no}, {label} is missing ({text!r}); complete rows are "
                        "needed here. Drop or impute that row, or leave the column out "
                        f"(--columns / columns=). {_MISSING_ADVICE}"
                    )
                try:
                    values.append(float(text))
                except ValueError:
                    raise ValueError(
                        f"{path}: row {line_no}, {label} is {text!r}, not a number. Leave "
                        "non-numeric columns out with --columns (columns=), or encode them as "
                        "numbers."
                    ) from None
            rows.append(values)
    if not rows:
        raise ValueError(f"{path}: has no data rows.")
    return np.asarray(rows, dtype=np.float64)


# ====================================================================== DataFrame / Parquet
def _from_frame(frame, columns, where: str, file_rows: bool, allow_missing: bool = False):
    import pandas as pd

    names = [str(c) for c in frame.columns]
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise ValueError(f"{where}: holds no data (shape {frame.shape}); give a non-empty table.")
    picked = _resolve_columns(columns, names, frame.shape[1], where)
    out = np.empty((frame.shape[0], len(picked)), dtype=np.float64)
    for j, i in enumerate(picked):
        series = frame.iloc[:, i]
        kind = series.dtype.kind
        if kind == "b":
            values = series.to_numpy(dtype=np.float64)
        elif kind in "iuf":
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = pd.to_numeric(series, errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            bad = np.flatnonzero(np.isnan(values) & ~series.isna().to_numpy())
            if bad.size:
                r = int(bad[0])
                raise ValueError(
                    f"{where}: {_row_label(frame, r, file_rows)}, column {names[i]!r} is "
                    f"{series.iloc[r]!r}, not a number ({bad.size} such value(s) in that column). "
                    "Leave non-numeric columns out with --columns (columns=), or encode them as "
                    "numbers."
                )
        missing = np.flatnonzero(np.isnan(values))
        if missing.size and not allow_missing:
            r = int(missing[0])
            raise ValueError(
                f"{where}: {_row_label(frame, r, file_rows)}, column {names[i]!r} is missing "
                f"({missing.size} missing value(s) in that column); complete rows are needed "
                f"here. Drop or impute them (e.g. frame.dropna()). {_MISSING_ADVICE}"
            )
        out[:, j] = values
    return out, [names[i] for i in picked]


def _row_label(frame, r: int, file_rows: bool) -> str:
    if file_rows:
        return f"row {r + 1}"
    label = frame.index[r]
    label = label.item() if hasattr(label, "item") else label
    return f"row {r} (index {label!r})"


def _read_parquet(path: Path, columns, allow_missing: bool = False):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"{path}: reading Parquet needs pyarrow, which is not installed. Install it with "
            "pip install 'lvmkit[parquet]' (or pip install pyarrow)."
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow's ArrowInvalid and friends
        raise ValueError(
            f"{path}: could not be read as Parquet ({exc}). Is the file complete and really "
            f"Parquet?"
        ) from None
    return _from_frame(table.to_pandas(), columns, str(path), True, allow_missing)


# ====================================================================== NumPy
def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):
            raise ValueError(
                f"{path}: holds Python objects (a pickled array), which lvmkit never loads: a "
                "pickle can run code. Save a numeric array instead (np.save with a float or int "
                "array)."
            ) from None
        raise ValueError(
            f"{path}: could not be read as .npy ({exc}); is the file truncated?"
        ) from None
    except (OSError, EOFError) as exc:
        raise ValueError(
            f"{path}: could not be read as .npy ({exc}); is the file truncated?"
        ) from None


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if not keys:
                raise ValueError(f"{path}: the .npz archive holds no arrays.")
            if key is None:
                if len(keys) > 1:
                    raise ValueError(
                        f"{path}: holds {len(keys)} arrays ({', '.join(keys)}); choose one with "
                        "key= (--key on the command line)."
                    )
                key = keys[0]
            elif key not in keys:
                raise ValueError(
                    f"{path}: has no array named {key!r}; its arrays are {', '.join(keys)}."
                )
            return archive[key]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(
            f"{path}: could not be read as .npz ({exc}); is the file truncated?"
        ) from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(
                f"{path}: holds Python objects (pickled), which lvmkit never loads. Save numeric "
                "arrays instead."
            ) from None
        raise


# ====================================================================== images
def _read_image_folder(folder: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ValueError(
            f"{folder}: no image files in this folder (looked for "
            f"{', '.join(IMAGE_SUFFIXES)}). Point at a folder of images, or at a data file."
        )
    images, modes = [], []
    for p in files:
        try:
            with Image.open(p) as img:
                img.load()
                modes.append(img.mode)
                images.append(img.copy())
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(
                f"{p}: could not be read as an image ({exc}). Remove or replace it."
            ) from None
    grey = all(m in _GREY_MODES for m in modes)
    size = images[0].size
    arrays = []
    for p, img in zip(files, images, strict=True):
        if img.size != size:
            raise ValueError(
                f"{p}: is {img.size[0]}x{img.size[1]} pixels but {files[0].name} is "
                f"{size[0]}x{size[1]}; every image in the folder must have the same size. Resize "
                "them first."
            )
        arrays.append(np.asarray(img.convert("L" if grey else "RGB"), dtype=np.uint8))
    return np.stack(arrays)
