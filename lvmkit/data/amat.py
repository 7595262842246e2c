"""Larochelle's ``.amat`` text matrices (binarized MNIST and friends), gzipped or not.

One sample per line, values separated by whitespace. ``read_amat`` checks every row has the same
number of values and that every value is a number, and names the file, row and column otherwise.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def read_amat(path, dtype=np.float32) -> np.ndarray:
    """Read an ``.amat`` or ``.amat.gz`` file into an (n_samples, n_features) array."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file. Check the path to the .amat data.")
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[np.ndarray] = []
    width = None
    try:
        with opener(path, "rt") as fh:
            for line_no, line in enumerate(fh, start=1):
                fields = line.split()
                if not fields:
                    continue
                if width is None:
                    width = len(fields)
                elif len(fields) != width:
                    raise ValueError(
                        f"{path}: row {line_no} has {len(fields)} values but row 1 has {width}; "
                        "every row of an .amat file must have the same length (a truncated or "
                        "corrupted file?)."
                    )
                try:
                    rows.append(np.asarray(fields, dtype=dtype))
                except ValueError:
                    col = next(i for i, f in enumerate(fields) if not _is_number(f))
                    raise ValueError(
                        f"{path}: row {line_no}, column {col + 1} is {fields[col]!r}, not a "
                        "number. .amat files hold whitespace-separated numbers only."
                    ) from None
    except (OSError, EOFError) as exc:
        raise ValueError(
            f"{path}: could not be read ({exc}); is it a truncated download?"
        ) from None
    if not rows:
        raise ValueError(f"{path}: the file is empty; expected one sample per line.")
    return np.stack(rows)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
