"""A CSV file's first column of row names (pandas' to_csv, R's write.csv) is left out, with one
warning, unless keep_index=True / --keep-index-column; a real feature holding 1..n is kept."""

import warnings

import numpy as np
import pandas as pd
import pytest

import lvmkit
from lvmkit.cli.main import main
from lvmkit.data import CsvSource, read_dataset

RNG = np.random.default_rng(7)
X = np.r_[RNG.normal(size=(20, 2)), RNG.normal(size=(20, 2)) + 6.0]


def _frame():
    return pd.DataFrame(X, columns=["a", "b"])


def _read(path, **kw):
    """(Dataset, the warnings read_dataset gave)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_dataset(path, **kw)
    return data, [w for w in caught if issubclass(w.category, UserWarning)]


def _source(path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = CsvSource(path, **kw)
    return source, [w for w in caught if issubclass(w.category, UserWarning)]


def _rows(source, rows=7):
    return np.concatenate([c.X for c in source.chunks(rows)])


def _pandas_file(tmp_path):
    path = tmp_path / "data.csv"
    _frame().to_csv(path, float_format="%.17g")  # index=True: header ',a,b', rows 0..n-1
    return path


def _reset_index_file(tmp_path):
    path = tmp_path / "reset.csv"
    _frame().reset_index().to_csv(path, index=False, float_format="%.17g")  # 'index' column
    return path


def _r_file(tmp_path):
    path = tmp_path / "r.csv"  # R's write.csv: quoted header and row names 1..n
    lines = ['"","a","b"'] + [f'"{i + 1}",{a!r},{b!r}' for i, (a, b) in enumerate(X.tolist())]
    path.write_text("\n".join(lines) + "\n")
    return path


WRITERS = {"pandas": _pandas_file, "reset_index": _reset_index_file, "R": _r_file}


@pytest.mark.parametrize("writer", WRITERS)
def test_row_names_are_left_out_with_one_warning(tmp_path, writer):
    path = WRITERS[writer](tmp_path)
    data, caught = _read(path)
    np.testing.assert_allclose(data.X, X)
    assert data.feature_names == ["a", "b"]
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "\n" not in text
    assert text.startswith(f"{path}: the first column (")
    assert "looks like row names" in text and "left out" in text
    assert "keep_index=True" in text and "--keep-index-column" in text
    held = "1..40" if writer == "R" else "0..39"
    assert held in text


@pytest.mark.parametrize("writer", WRITERS)
def test_keep_index_keeps_it(tmp_path, writer):
    path = WRITERS[writer](tmp_path)
    data, caught = _read(path, keep_index=True)
    assert caught == []
    assert data.X.shape == (40, 3)
    start = 1 if writer == "R" else 0
    np.testing.assert_array_equal(data.X[:, 0], np.arange(start, start + 40))
    np.testing.assert_allclose(data.X[:, 1:], X)


@pytest.mark.parametrize("name", ["id2", "age"])
def test_a_named_first_feature_counting_1_to_n_is_kept(tmp_path, name):
    path = tmp_path / "named.csv"
    frame = _frame()
    frame.insert(0, name, np.arange(1, 41))
    frame.to_csv(path, index=False, float_format="%.17g")
    data, caught = _read(path)
    assert caught == []
    assert data.feature_names == [name, "a", "b"]
    source, caught = _source(path)
    assert caught == [] and source.n_features == 3


def test_unnamed_first_column_not_counting_rows_is_kept(tmp_path):
    path = tmp_path / "odd.csv"
    frame = _frame()
    frame.index = np.arange(40) * 2  # 0, 2, 4, ...: not row numbers
    frame.to_csv(path, float_format="%.17g")
    data, caught = _read(path)
    assert caught == []
    assert data.X.shape == (40, 3)
    source, caught = _source(path)
    assert caught == [] and source.feature_names == ["Unnamed: 0", "a", "b"]


def test_header_less_first_column_of_row_numbers_is_kept(tmp_path):
    path = tmp_path / "plain.csv"
    np.savetxt(path, np.c_[np.arange(1, 41), X], delimiter=",", fmt="%.17g")
    data, caught = _read(path)
    assert caught == [] and data.X.shape == (40, 3)


def test_columns_named_by_the_user_win(tmp_path):
    path = _pandas_file(tmp_path)
    data, caught = _read(path, columns=[0, 1, 2])
    assert caught == [] and data.X.shape == (40, 3)
    data, caught = _read(path, columns=["b"])
    assert caught == [] and data.feature_names == ["b"]
    source, caught = _source(path, columns=[0, 2])
    assert caught == [] and source.feature_names == ["Unnamed: 0", "b"]


@pytest.mark.parametrize("writer", WRITERS)
def test_streamed_source_gives_the_rows_of_the_in_memory_reader(tmp_path, writer):
    path = WRITERS[writer](tmp_path)
    data, _ = _read(path)
    source, caught = _source(path)
    assert len(caught) == 1
    assert str(caught[0].message).startswith(f"{path}: the first column (")
    assert source.n_features == 2 and source.feature_names == ["a", "b"]
    np.testing.assert_array_equal(_rows(source), data.X)
    shards = [_rows(source.shard(r, 3), rows=4) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate(shards), data.X)
    kept, caught = _source(path, keep_index=True)
    assert caught == [] and kept.n_features == 3
    np.testing.assert_array_equal(_rows(kept), _read(path, keep_index=True)[0].X)


@pytest.mark.parametrize("restart", [True, False])
def test_streamed_files_numbered_afresh_or_on(tmp_path, restart):
    paths = []
    for k, (a, b) in enumerate([(0, 15), (15, 40)]):
        part = _frame().iloc[a:b]
        paths.append(tmp_path / f"part{k}.csv")
        (part.reset_index(drop=True) if restart else part).to_csv(paths[-1], float_format="%.17g")
    source, caught = _source(paths)
    assert len(caught) == 1 and source.n_features == 2
    np.testing.assert_array_equal(_rows(source, rows=6), X)
    np.testing.assert_array_equal(_rows(source.shard(1, 2), rows=6), X[20:])


def test_streamed_numbering_that_breaks_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(CsvSource, "_PROBE_ROWS", 10)  # decide on the first 10 rows
    path = tmp_path / "breaks.csv"
    frame = _frame()
    frame.index = list(range(30)) + [99] + list(range(31, 40))
    frame.to_csv(path, float_format="%.17g")
    source, caught = _source(path)
    assert len(caught) == 1 and source.n_features == 2
    with pytest.raises(ValueError) as err:
        _rows(source)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: the first column ('Unnamed: 0') was left out as row names")
    assert "at row 30 it holds 99 instead of 30" in text and "--keep-index-column" in text
    np.testing.assert_array_equal(_rows(CsvSource(path, keep_index=True))[:, 0], frame.index)


def test_streamed_later_file_numbered_otherwise_is_an_error(tmp_path):
    first, second = tmp_path / "p0.csv", tmp_path / "p1.csv"
    _frame().iloc[:20].to_csv(first, float_format="%.17g")
    _frame().iloc[25:40].to_csv(second, float_format="%.17g")  # neither 0 nor 20
    source, _ = _source([first, second])
    with pytest.raises(ValueError, match=r"p1\.csv: .* at row 0 it holds 25 instead of 0 or 20;"):
        _rows(source)


def test_fit_on_the_command_line(tmp_path, capsys):
    path = _pandas_file(tmp_path)
    out = tmp_path / "m.lvm"
    assert main(["fit", "gmm", str(path), "-k", "2", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    warned = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 1 and "--keep-index-column" in warned[0]
    assert lvmkit.load(out).n_features_in_ == 2
    assert main(["score", str(out), str(path), "-o", str(tmp_path / "s.csv")]) == 0

    kept = tmp_path / "k.lvm"
    assert main(["fit", "gmm", str(path), "-k", "2", "-o", str(kept), "--keep-index-column"]) == 0
    assert "warning:" not in capsys.readouterr().err
    assert lvmkit.load(kept).n_features_in_ == 3
    assert main(["score", str(kept), str(path), "-o", str(tmp_path / "s.csv")]) == 0


@pytest.mark.parametrize("keep", [False, True])
def test_streamed_fit_on_the_command_line(tmp_path, capsys, keep):
    path = _pandas_file(tmp_path)
    out = tmp_path / "m.lvm"
    args = ["fit", "gmm", str(path), "-k", "2", "-o", str(out), "--stream"]
    assert main(args + (["--keep-index-column"] if keep else [])) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert len(warned) == (0 if keep else 1)
    assert lvmkit.load(out).n_features_in_ == (3 if keep else 2)
    # the in-memory reader finds the columns the streamed fit used
    assert main(["score", str(out), str(path), "-o", str(tmp_path / "s.csv")]) == 0
