"""How the command line reads sequences for a sequence model (an HMM): the rows of a data file
split into sequences by a column of ids (``--lengths-column``), kept in the model's recipe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lvmkit.cli.common import UserError, _keep_index, _load_data, _parse_columns


@dataclass
class Sequences:
    """How the rows of a data file split into sequences: ``lengths`` (rows per sequence, in
    order) and each sequence's id (its value in the lengths column, or its position)."""

    lengths: list[int]
    ids: list[str]
    column: str | int | None = None

    def bounds(self) -> list[tuple[int, int]]:
        import numpy as np

        ends = np.cumsum(self.lengths).tolist()
        return list(zip([0, *ends[:-1]], ends, strict=True))

    def find(self, which: str | None) -> int:
        """The position of sequence ``which``: an id of the lengths column, else a 0-based
        position (None: the first)."""
        if which is None:
            return 0
        if which in self.ids:
            return self.ids.index(which)
        text = which.strip()
        if text.lstrip("-").isdigit() and -len(self.ids) <= int(text) < len(self.ids):
            return int(text) % len(self.ids)
        shown = ", ".join(repr(i) for i in self.ids[:10]) + (", ..." if len(self.ids) > 10 else "")
        raise UserError(
            f"--sequence {which!r}: no such sequence; the data has {len(self.ids)} "
            f"({shown}). Give an id or a 0-based position."
        )


def _load_sequences(
    path: str,
    columns: str | None,
    key: str | None,
    binarize: float | None,
    lengths_column: str | None,
    meta: dict | None = None,
):
    """``(X, Sequences, recipe)`` for a sequence model: the features of ``path`` and how its rows
    split into sequences, by ``lengths_column`` (else the model's recipe's; none or '-': the
    whole file is one sequence). The recipe records the lengths column for the commands that
    use the model."""
    recipe = dict((meta or {}).get("data") or {})
    spec = lengths_column if lengths_column is not None else recipe.get("lengths_column")
    if isinstance(spec, str):
        spec = spec.strip()
        spec = int(spec) if spec.isdigit() else (None if spec in ("", "-") else spec)
    cols = _parse_columns(columns)
    if cols is None and recipe.get("columns") is not None:
        cols = recipe["columns"]
    if spec is None:
        X, _, new_recipe = _load_data(path, cols, key, binarize, meta)
        new_recipe["lengths_column"] = None
        return X, Sequences([int(X.shape[0])], ["0"]), new_recipe
    ids, names, position, row_names, width = _sequence_ids(path, spec, key, cols is None)
    column = names[position] if names is not None else position
    if cols is None:  # every column but the ids (and a first column of row names)
        picked = [i for i in range(width) if i not in (position, row_names)]
        cols = [names[i] for i in picked] if names is not None else picked
    elif column in cols or position in cols:
        raise UserError(
            f"--columns includes the sequence id column {column!r} (--lengths-column); the id "
            "is not a feature: leave it out of --columns."
        )
    X, _, new_recipe = _load_data(path, cols, key, binarize, meta)
    if len(ids) != X.shape[0]:
        raise UserError(
            f"{path}: read {len(ids)} sequence ids but {X.shape[0]} rows of features; check the "
            "file for rows of a different length."
        )
    lengths, run_ids = _runs(ids, path, column)
    new_recipe["lengths_column"] = column
    return X, Sequences(lengths, run_ids, column), new_recipe


def _runs(ids, path, column):
    """Lengths and ids of the runs of equal consecutive ids; an id in two runs is an error."""
    import numpy as np

    ids = np.asarray(ids)
    starts = np.concatenate([[0], np.flatnonzero(ids[1:] != ids[:-1]) + 1])
    lengths = np.diff(np.concatenate([starts, [len(ids)]]))
    seen: dict[str, int] = {}
    for i, start in enumerate(starts):
        name = str(ids[start])
        if name in seen:
            j = seen[name]
            raise UserError(
                f"{path}: the rows of sequence {name!r} (column {column!r}) are not together: "
                f"data rows {starts[j] + 1}-{starts[j] + lengths[j]}, then again from row "
                f"{start + 1}. Sort the file by the {column!r} column keeping each sequence's "
                f"time order (a stable sort, e.g. pandas' sort_values({column!r}, kind='stable'))."
            )
        seen[name] = i
    return [int(n) for n in lengths], [str(ids[s]) for s in starts]


def _sequence_ids(path: str, spec, key: str | None, row_names: bool):
    """``(ids as str, column names or None, the id column's position, the position of a first
    column of row names to leave out (looked for when ``row_names``) or None, the number of
    columns)``."""
    import numpy as np

    from lvmkit.data import readers

    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{file}: no such file or folder. Check the path to the data.")
    kind = readers._kind(file) if file.is_file() else None
    if kind == "csv":
        return _csv_ids(file, spec, row_names)
    if kind == "parquet":
        import pandas as pd

        try:
            import pyarrow  # noqa: F401
        except ImportError:
            readers._read_parquet(file, None)  # raises the reader's advice
        frame = pd.read_parquet(file)
        names = [str(c) for c in frame.columns]
        (position,) = readers._resolve_columns([spec], names, len(names), str(file))
        ids = frame.iloc[:, position]
        _check_ids(ids.isna().to_numpy(), file, names[position])
        return ids.astype(str).to_numpy(), names, position, None, len(names)
    if isinstance(spec, str):
        raise UserError(
            f"--lengths-column {spec!r}: {file} has no column names; give the id column's "
            "0-based position."
        )
    values = readers.read_dataset(file, [spec], key=key).matrix()[:, 0]
    width = readers.read_dataset(file, None, key=key).matrix().shape[1]
    return np.array([f"{v:.17g}" for v in values]), None, int(spec), None, int(width)


def _csv_ids(file: Path, spec, look_for_row_names: bool):
    import numpy as np
    import pandas as pd

    from lvmkit.data import readers

    with readers._open_text(file) as fh:
        head = fh.read(1 << 16)
    lines = [line for line in head.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{file}: the file is empty; expected rows of comma-separated numbers.")
    delimiter = readers._detect_delimiter(lines[0])
    with readers._open_text(file) as fh:
        records = readers._records(fh, delimiter)
        row1 = next(records)[1]
        second = next(records, None)
    has_header = readers._looks_like_header(row1, second[1] if second else None)
    names = row1 if has_header else None
    (position,) = readers._resolve_columns([spec], names, len(row1), str(file))
    wanted = sorted({0, position})
    try:
        frame = pd.read_csv(
            file,
            sep=r"\s+" if delimiter is None else delimiter,
            header=0 if has_header else None,
            usecols=wanted,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=True,
        )
    except Exception as exc:  # ragged rows and the like: the feature reader explains them
        raise ValueError(f"{file}: could not read the sequence ids ({exc}).") from None
    ids = frame.iloc[:, wanted.index(position)].str.strip()
    _check_ids(ids.str.lower().isin(readers._MISSING).to_numpy(), file, spec)
    row_names = None
    look = look_for_row_names and not _keep_index() and position != 0
    if look and names and readers._is_row_name_header(names[0]):
        first = pd.to_numeric(frame.iloc[:, 0], errors="coerce").to_numpy(dtype=np.float64)
        if len(names) > 2 and readers._row_numbers_start(first) is not None:
            import warnings

            row_names = 0
            warnings.warn(
                readers._row_names_note(file, names[0], int(first[0]), len(first)),
                UserWarning,
                stacklevel=3,
            )
    return ids.to_numpy(), names, position, row_names, len(row1)


def _check_ids(missing, file, column) -> None:
    import numpy as np

    bad = np.flatnonzero(missing)
    if bad.size:
        raise UserError(
            f"{file}: data row {int(bad[0]) + 1} has no sequence id in column {column!r} "
            f"({bad.size} such row(s)); every row needs one."
        )
