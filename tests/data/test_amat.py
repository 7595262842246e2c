import gzip
from pathlib import Path

import numpy as np
import pytest

from lvmkit.data import read_amat
from tests.conftest import IN_CI

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binarized-mnist"


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip(tmp_path, gz):
    X = (np.random.default_rng(0).random((5, 7)) < 0.5).astype(np.float32)
    text = "\n".join(" ".join(f"{v:g}" for v in row) for row in X) + "\n"
    path = tmp_path / ("x.amat.gz" if gz else "x.amat")
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    np.testing.assert_array_equal(read_amat(path), X)


@pytest.mark.parametrize(
    "text, match",
    [
        ("1 0 1\n0 1\n", r"row 2 has 2 values but row 1 has 3"),
        ("1 0 1\n0 x 1\n", r"row 2, column 2 is 'x', not a number"),
        ("", "empty"),
    ],
)
def test_bad_files_name_row_and_column(tmp_path, text, match):
    path = tmp_path / "bad.amat"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_amat(path)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "t.amat.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("1 0 1\n" * 1000)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="could not be read"):
        read_amat(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_amat(tmp_path / "nope.amat")


@pytest.mark.data
def test_binarized_mnist_test_split():
    path = SHARED / "binarized_mnist_test.amat.gz"
    if not path.exists():
        if IN_CI:
            pytest.fail(f"CI must have {path} (see ../shared/data/README.md)")
        pytest.skip(
            f"{path} not found: the shared data sets live beside the project, not in a fresh clone"
        )
    X = read_amat(path)
    assert X.shape == (10_000, 784)
    assert set(np.unique(X)) == {0.0, 1.0}
