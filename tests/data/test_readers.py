"""read_data / read_dataset: every format, and errors that name the file, row and column."""

import gzip

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lvmkit.data import Dataset, read_data, read_dataset

X = np.array([[1.5, 2.0, -3.0], [4.0, 5.25, 6.0], [7.0, 8.0, 9.5]])


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# ====================================================================== CSV
def test_csv_with_header_and_column_choice(tmp_path):
    path = write(tmp_path, "d.csv", "a,b,label\n1.5,2,x\n4,5.25,y\n")
    ds = read_dataset(path, columns=["a", 1])
    np.testing.assert_array_equal(ds.X, [[1.5, 2.0], [4.0, 5.25]])
    assert ds.feature_names == ["a", "b"]
    assert ds.X.dtype == np.float64 and ds.image_shape is None


def test_csv_without_header(tmp_path):
    path = write(tmp_path, "d.csv", "\n".join(",".join(f"{v:g}" for v in row) for row in X) + "\n")
    ds = read_dataset(path)
    np.testing.assert_array_equal(ds.X, X)
    assert ds.feature_names is None


def test_csv_first_row_text_in_a_text_column_is_data(tmp_path):
    # 'x' sits in a column that is text in every row: no header.
    path = write(tmp_path, "d.csv", "1,2,x\n3,4,y\n")
    np.testing.assert_array_equal(read_data(path, columns=[0, 1]), [[1, 2], [3, 4]])


@pytest.mark.parametrize("sep", ["\t", ";", " ", "  "])
def test_other_delimiters(tmp_path, sep):
    text = f"a{sep}b\n1{sep}2\n3{sep}4\n"
    np.testing.assert_array_equal(read_data(write(tmp_path, "d.txt", text)), [[1, 2], [3, 4]])


def test_gzipped_csv(tmp_path):
    path = tmp_path / "d.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("a,b\n1,2\n3,4\n")
    np.testing.assert_array_equal(read_data(path), [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    "text, match",
    [
        ("a,b\n1,2\n3,abc\n", r"d\.csv: row 3, column 2 \('b'\) is 'abc', not a number"),
        ("1,2\n3,abc\n", r"row 2, column 2 is 'abc', not a number"),
        ("a,b\n1,2\n3,4,5\n", r"row 3 has 3 value\(s\) but row 1 \(the header\) has 2"),
        ("a,b\n1,2\n3\n", r"row 3 has 1 value\(s\) but row 1 \(the header\) has 2"),
        ("a,b\n1,2\n\n3,\n", r"row 4, column 2 \('b'\) is missing"),
        ("a,b\n1,2\nNaN,4\n", r"row 3, column 1 \('a'\) is missing"),
        ("", r"d\.csv: the file is empty"),
        ("\n  \n", r"the file is empty"),
        ("a,b\n", r"has a header row \(a, b\) but no data rows"),
    ],
)
def test_csv_errors_name_file_row_and_column(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_data(write(tmp_path, "d.csv", text))


def test_csv_bad_columns(tmp_path):
    path = write(tmp_path, "d.csv", "a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"no column named 'c'; its columns are 'a', 'b'"):
        read_data(path, columns=["c"])
    with pytest.raises(ValueError, match=r"column position 5 is out of range.*positions 0\.\.1"):
        read_data(path, columns=[5])
    nohead = write(tmp_path, "n.csv", "1,2\n3,4\n")
    with pytest.raises(
        ValueError, match="has no header row, so column 'a' cannot be found by name"
    ):
        read_data(nohead, columns=["a"])
    with pytest.raises(ValueError, match="column names .* or 0-based positions"):
        read_data(path, columns=[1.5])


def test_truncated_gzip_csv(tmp_path):
    path = tmp_path / "d.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("1,2,3\n" * 5000)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match="could not be read"):
        read_data(path)


# ====================================================================== NumPy
def test_npy_is_memory_mapped(tmp_path):
    np.save(tmp_path / "x.npy", X)
    out = read_data(tmp_path / "x.npy")
    assert isinstance(out, np.memmap)
    np.testing.assert_array_equal(out, X)
    np.testing.assert_array_equal(read_data(tmp_path / "x.npy", columns=[2, 0]), X[:, [2, 0]])


def test_npy_errors(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects .* never loads"):
        read_data(tmp_path / "o.npy")
    np.save(tmp_path / "t.npy", np.zeros((100, 10)))
    (tmp_path / "t.npy").write_bytes((tmp_path / "t.npy").read_bytes()[:300])
    with pytest.raises(ValueError, match="t.npy: could not be read as .npy"):
        read_data(tmp_path / "t.npy")
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(ValueError, match="not numbers"):
        read_data(tmp_path / "s.npy")
    np.save(tmp_path / "z.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="holds no samples"):
        read_data(tmp_path / "z.npy")


def test_npz(tmp_path):
    np.savez(tmp_path / "one.npz", X)
    np.testing.assert_array_equal(read_data(tmp_path / "one.npz"), X)
    np.savez(tmp_path / "two.npz", train=X, test=X[:1])
    np.testing.assert_array_equal(read_data(tmp_path / "two.npz", key="test"), X[:1])
    with pytest.raises(ValueError, match=r"holds 2 arrays \(train, test\); choose one with key="):
        read_data(tmp_path / "two.npz")
    with pytest.raises(ValueError, match="no array named 'val'; its arrays are train, test"):
        read_data(tmp_path / "two.npz", key="val")


# ====================================================================== Parquet
def test_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4], "name": ["x", "y"]})
    frame.to_parquet(tmp_path / "d.parquet")
    ds = read_dataset(tmp_path / "d.parquet", columns=["a", "b"])
    np.testing.assert_array_equal(ds.X, [[1, 3], [2, 4]])
    assert ds.feature_names == ["a", "b"]
    with pytest.raises(ValueError, match=r"d\.parquet: row 1, column 'name' is 'x', not a number"):
        read_data(tmp_path / "d.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match="could not be read as Parquet"):
        read_data(tmp_path / "bad.parquet")


# ====================================================================== IDX, amat
@pytest.mark.parametrize("gz", [False, True])
def test_idx_and_amat(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 0x08, 3]) + b"".join(int(s).to_bytes(4, "big") for s in images.shape)
    raw += images.tobytes()
    name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    (tmp_path / name).write_bytes(gzip.compress(raw) if gz else raw)
    ds = read_dataset(tmp_path / name)
    np.testing.assert_array_equal(ds.X, images)
    assert ds.image_shape == (3, 4) and ds.matrix().shape == (2, 12)
    (tmp_path / "b.amat").write_text("0 1 1\n1 0 0\n")
    np.testing.assert_array_equal(read_data(tmp_path / "b.amat"), [[0, 1, 1], [1, 0, 0]])


# ====================================================================== images
def _save_image(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def test_grey_image_folder(tmp_path):
    for i in range(3):
        _save_image(tmp_path / f"im{i}.png", np.full((4, 5), 10 * i))
    (tmp_path / "notes.txt").write_text("not an image")
    ds = read_dataset(tmp_path)
    assert ds.X.shape == (3, 4, 5) and ds.X.dtype == np.uint8
    assert ds.X[2, 0, 0] == 20
    assert ds.image_shape == (4, 5) and ds.matrix().shape == (3, 20)


def test_colour_image_folder(tmp_path):
    _save_image(tmp_path / "a.png", np.zeros((4, 5)))
    _save_image(tmp_path / "b.png", np.full((4, 5, 3), 200))
    X_ = read_data(tmp_path)
    assert X_.shape == (2, 4, 5, 3)
    assert (X_[1] == 200).all()


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no image files in this folder"):
        read_data(tmp_path)
    _save_image(tmp_path / "a.png", np.zeros((4, 5)))
    _save_image(tmp_path / "b.png", np.zeros((6, 5)))
    with pytest.raises(ValueError, match=r"b\.png: is 5x6 pixels but a\.png is 5x4"):
        read_data(tmp_path)
    (tmp_path / "b.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"b\.png: could not be read as an image"):
        read_data(tmp_path)


# ====================================================================== DataFrame and others
def test_dataframe():
    frame = pd.DataFrame({"a": [1, 2], "flag": [True, False], "name": ["x", "y"]}, index=[10, 11])
    ds = read_dataset(frame, columns=["a", "flag"])
    np.testing.assert_array_equal(ds.X, [[1, 1], [2, 0]])
    assert ds.feature_names == ["a", "flag"] and ds.source == "DataFrame"
    with pytest.raises(ValueError, match=r"row 0 \(index 10\), column 'name' is 'x', not a number"):
        read_data(frame)
    with pytest.raises(ValueError, match=r"row 1 \(index 11\), column 'a' is missing"):
        read_data(pd.DataFrame({"a": [1.0, np.nan]}, index=[10, 11]))
    numeric_text = pd.DataFrame({"a": ["1.5", "2"]})
    np.testing.assert_array_equal(read_data(numeric_text), [[1.5], [2.0]])


def test_unknown_format_and_missing_path(tmp_path):
    (tmp_path / "d.xlsx").write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"unknown data format \(suffix '\.xlsx'\).*reads CSV"):
        read_data(tmp_path / "d.xlsx")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        read_data(tmp_path / "missing.csv")


def test_dataset_matrix_shapes():
    assert Dataset(np.zeros(5)).matrix().shape == (5, 1)
    assert Dataset(np.zeros((5, 2, 3, 3))).image_shape == (2, 3, 3)
