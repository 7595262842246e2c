"""IDX files (MNIST's format), gzipped or not.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values in C order. ``read_idx`` checks each part and
names the file and what was wrong otherwise.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path) -> np.ndarray:
    """Read an IDX (``.idx``, ``-ubyte``) file, optionally gzipped, into a NumPy array.

    MNIST's image files give an (n, 28, 28) uint8 array, its label files an (n,) uint8 array.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file. Check the path to the IDX data.")
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(
            f"{path}: could not be read ({exc}); is it a truncated download?"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise ValueError(
            f"{path}: not an IDX file (its first bytes are {raw[:4].hex() or 'missing'}; an IDX "
            f"file starts with 00 00, a type code 08-0e, and the number of dimensions)."
        )
    dtype, ndim = _TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(
            f"{path}: the IDX header is cut short ({len(raw)} bytes); the file is truncated."
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: the header promises shape {shape} ({expected} bytes of data) but the file "
            f"holds {len(raw) - header}; the file is truncated or corrupted."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def load_mnist(folder, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST images (n, 28, 28) uint8 and labels (n,) from a folder of
    the four original IDX files."""
    folder = Path(folder)
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")

    def find(kind: str) -> Path:
        for name in (
            f"{prefix}-{kind}-ubyte.gz",
            f"{prefix}-{kind}-ubyte",
            f"{prefix}-{kind}.idx3-ubyte",
        ):
            if (folder / name).exists():
                return folder / name
        raise FileNotFoundError(
            f"{folder}: no {prefix}-{kind}-ubyte[.gz] file; expected the original MNIST IDX files "
            f"there."
        )

    images = read_idx(find("images-idx3"))
    labels = read_idx(find("labels-idx1"))
    if len(images) != len(labels):
        raise ValueError(
            f"{folder}: {len(images)} images but {len(labels)} labels for split {split!r}."
        )
    return images, labels
