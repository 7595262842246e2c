"""Data sources: every kind yields exactly the rows in order, shards partition them, one-pass
moments and reservoir sampling, and errors that name the file, the row and the column."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lvmkit.data.sources import (
    ArraySource,
    Chunk,
    CsvSource,
    DataFileNotFoundError,
    NpySource,
    ParquetSource,
    Source,
    as_source,
    moments,
    reservoir,
)

SIZES = (37, 1, 50)  # rows per file: uneven, one file of a single row
D = 3


N = sum(SIZES)


def data(n=N, d=D, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) * 10


def split(X):
    return np.split(X, np.cumsum(SIZES)[:-1])


def write_npy(tmp_path, X, name="part"):
    paths = []
    for k, part in enumerate(split(X)):
        paths.append(str(tmp_path / f"{name}{k}.npy"))
        np.save(paths[-1], part)
    return paths


def write_parquet(tmp_path, X, name="part", columns=None):
    paths = []
    for k, part in enumerate(split(X)):
        paths.append(str(tmp_path / f"{name}{k}.parquet"))
        frame = pd.DataFrame(part, columns=columns or [f"x{j}" for j in range(X.shape[1])])
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), paths[-1], row_group_size=8
        )
    return paths


def write_csv(tmp_path, X, name="part", header=True):
    paths = []
    for k, part in enumerate(split(X)):
        paths.append(str(tmp_path / f"{name}{k}.csv"))
        frame = pd.DataFrame(part, columns=[f"x{j}" for j in range(X.shape[1])])
        frame.to_csv(paths[-1], index=False, header=header, float_format="%.17g")
    return paths


def make(kind, tmp_path, X):
    if kind == "array":
        return ArraySource(X)
    if kind == "npy":
        return NpySource(write_npy(tmp_path, X))
    if kind == "parquet":
        return ParquetSource(write_parquet(tmp_path, X))
    return CsvSource(write_csv(tmp_path, X))


KINDS = ["array", "npy", "parquet", "csv"]


def collect(source, rows):
    chunks = list(source.chunks(rows))
    for c in chunks:
        assert isinstance(c, Chunk) and 0 < len(c) <= rows
        assert (
            c.X.dtype == np.float64 and c.X.flags.c_contiguous and c.X.shape[1] == source.n_features
        )
    return chunks


# ====================================================================== rows, in order
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows", [1, 5, 8, 1000])
def test_chunks_give_the_rows_in_order(tmp_path, kind, rows):
    X = data()
    source = make(kind, tmp_path, X)
    assert source.n_features == D and source.resident == (kind == "array")
    chunks = collect(source, rows)
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), X)
    # origin and file-local start point back to the rows; chunks never cross files
    offsets = dict(zip(getattr(source, "paths", ["X"]), np.cumsum((0,) + SIZES), strict=False))
    for c in chunks:
        np.testing.assert_array_equal(c.X, X[offsets[c.origin] + c.start :][: len(c)])
        if kind != "array":
            assert c.start + len(c) <= SIZES[source.paths.index(c.origin)]
    assert source.n_samples == len(X)  # CSV: counted by the pass
    again = np.concatenate([c.X for c in source.chunks(rows)])
    np.testing.assert_array_equal(again, X)


def test_parquet_batches_never_exceed_rows(tmp_path):
    X = data(200)
    path = str(tmp_path / "big.parquet")
    pq.write_table(
        pa.Table.from_pandas(pd.DataFrame(X, columns=list("abc"))), path, row_group_size=64
    )
    source = ParquetSource(path)
    chunks = collect(source, 10)
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), X)
    assert source.feature_names == ["a", "b", "c"]


def test_csv_counts_rows_lazily_and_options(tmp_path):
    X = data()
    source = CsvSource(write_csv(tmp_path, X, header=False), header=False, columns=[2, 0])
    assert source.n_samples is None and "not counted" in source.describe()
    np.testing.assert_array_equal(np.concatenate([c.X for c in source.chunks(7)]), X[:, [2, 0]])
    assert source.n_samples == len(X)
    tsv = tmp_path / "t.tsv"
    pd.DataFrame(X, columns=["a", "b", "c"]).to_csv(
        tsv, sep="\t", index=False, float_format="%.17g"
    )
    source = as_source(str(tsv))
    assert isinstance(source, CsvSource) and source.feature_names == ["a", "b", "c"]
    np.testing.assert_array_equal(np.concatenate([c.X for c in source.chunks(9)]), X)
    txt = tmp_path / "w.txt"
    np.savetxt(txt, X, fmt="%.17g", header="a b c", comments="")
    np.testing.assert_array_equal(np.concatenate([c.X for c in as_source(str(txt)).chunks(9)]), X)


def test_array_inputs(tmp_path):
    X = data()
    w = np.random.default_rng(1).uniform(size=len(X))
    for given in (
        X,
        torch.as_tensor(X),
        pd.DataFrame(X, columns=["a", "b", "c"]),
        X.astype(np.float32),
    ):
        source = as_source(given, sample_weight=w)
        assert isinstance(source, ArraySource) and source.array.shape == X.shape
        expected = np.asarray(given if isinstance(given, np.ndarray) else X, dtype=np.float64)
        np.testing.assert_array_equal(np.concatenate([c.X for c in source.chunks(16)]), expected)
        np.testing.assert_array_equal(np.concatenate([c.weights for c in source.chunks(16)]), w)
    assert as_source(X.astype(np.float32)).array.dtype == np.float32  # no copy of NumPy input
    assert as_source(X).array is X
    np.save(tmp_path / "m.npy", X)
    mm = np.load(tmp_path / "m.npy", mmap_mode="r")
    source = as_source(mm)
    assert isinstance(source, ArraySource) and source.array is mm and not source.resident
    np.testing.assert_array_equal(np.concatenate([c.X for c in source.chunks(10)]), X)
    assert as_source(source) is source


def test_as_source_paths_globs_and_kinds(tmp_path):
    X = data()
    npy, parquet, csv = write_npy(tmp_path, X), write_parquet(tmp_path, X), write_csv(tmp_path, X)
    assert isinstance(as_source(npy[0]), NpySource)
    assert isinstance(as_source(tmp_path / "part0.parquet"), ParquetSource)
    assert isinstance(as_source(tuple(csv)), CsvSource)
    source = as_source(str(tmp_path / "part*.npy"))
    assert source.paths == sorted(npy) and source.n_samples == len(X)
    assert source.describe() == f"3 .npy files ({len(X)} rows, 3 features)"
    assert "3 Parquet files" in as_source(parquet).describe()
    with pytest.raises(ValueError, match="different kinds"):
        as_source([npy[0], parquet[0]])
    with pytest.raises(ValueError, match="not supported yet for data read from files"):
        as_source(npy, sample_weight=np.ones(len(X)))
    with pytest.raises(ValueError, match="cannot be given with a Source"):
        as_source(ArraySource(X), sample_weight=np.ones(len(X)))


# ====================================================================== shards
@pytest.mark.parametrize("kind", KINDS)
def test_shards_partition_the_rows(tmp_path, kind):
    X = data()
    source = make(kind, tmp_path, X)
    for world in range(1, 5):
        parts = [source.shard(r, world) for r in range(world)]
        got = [np.concatenate([c.X for c in p.chunks(6)] or [np.empty((0, D))]) for p in parts]
        for r, (p, g) in enumerate(zip(parts, got, strict=True)):
            lo, hi = r * len(X) // world, (r + 1) * len(X) // world
            np.testing.assert_array_equal(g, X[lo:hi])
            assert p.n_samples == hi - lo and f"shard {r} of {world}" in p.describe()
    # a shard of a shard, and more ranks than rows: empty shards yield nothing
    quarter = source.shard(1, 2).shard(0, 2)
    np.testing.assert_array_equal(np.concatenate([c.X for c in quarter.chunks(4)]), X[44:66])
    if kind == "array":
        shards = [ArraySource(X[:3]).shard(r, 5) for r in range(5)]
        assert [s.n_samples for s in shards] == [0, 1, 0, 1, 1]
        assert list(shards[0].chunks(2)) == [] and [c.start for c in shards[3].chunks(2)] == [1]


@pytest.mark.parametrize("kind", ["npy", "parquet", "csv"])
def test_more_ranks_than_rows(tmp_path, kind):
    X = data(4)
    name = str(tmp_path / f"small.{kind}")
    if kind == "npy":
        np.save(name, X)
    elif kind == "parquet":
        pq.write_table(pa.table({f"x{j}": X[:, j] for j in range(D)}), name)
    else:
        pd.DataFrame(X).to_csv(name, index=False, float_format="%.17g")
    source = as_source(name)
    shards = [source.shard(r, 7) for r in range(7)]
    rows = [list(s.chunks(3)) for s in shards]
    assert sum(len(r) == 0 for r in rows) == 3 and [s.n_samples for s in shards].count(0) == 3
    np.testing.assert_array_equal(np.concatenate([c.X for r in rows for c in r]), X)
    starts = [c.start for r in rows for c in r]
    assert starts == [0, 1, 2, 3] and all(c.origin == name for r in rows for c in r)


def test_shard_arguments_checked():
    with pytest.raises(ValueError, match="0 <= rank < world"):
        ArraySource(data()).shard(4, 4)


# ====================================================================== moments, reservoir
@pytest.mark.parametrize("kind", KINDS)
def test_moments_match_numpy(tmp_path, kind):
    X = data() + 5.0
    mean, var, total = moments(make(kind, tmp_path, X), rows=7)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, X.var(axis=0), rtol=1e-12)
    assert total == len(X)


def test_moments_weighted_and_near_1e8():
    rng = np.random.default_rng(3)
    X = 1e8 + rng.normal(size=(5000, 2))
    mean, var, total = moments(X, rows=333)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, X.var(axis=0), rtol=1e-12)
    w = rng.uniform(size=len(X)) * (rng.uniform(size=len(X)) > 0.2)
    mean, var, total = moments(ArraySource(X, w), rows=333)
    avg = np.average(X, axis=0, weights=w)
    np.testing.assert_allclose(mean, avg, rtol=1e-12)
    np.testing.assert_allclose(var, np.average((X - avg) ** 2, axis=0, weights=w), rtol=1e-12)
    assert total == pytest.approx(w.sum(), rel=1e-14)
    empty = moments(ArraySource(X).shard(0, 6000))
    assert empty[2] == 0.0 and np.all(empty[0] == 0) and np.all(empty[1] == 0)


def test_reservoir_small_source_is_returned_whole_without_randomness(tmp_path):
    X = data()
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    rows, w = reservoir(NpySource(write_npy(tmp_path, X)), len(X), rng, rows=9)
    np.testing.assert_array_equal(rows, X)
    assert w is None and rng.bit_generator.state == state
    wts = np.arange(len(X), dtype=float)
    rows, w = reservoir(ArraySource(X, wts), 500, rng, rows=9)
    np.testing.assert_array_equal(rows, X)
    np.testing.assert_array_equal(w, wts)


def test_reservoir_sample_is_uniform_sized_and_deterministic():
    X = np.arange(1000, dtype=float)[:, None] * np.ones((1, 2))
    w = np.arange(1000, dtype=float)
    a, wa = reservoir(ArraySource(X, w), 100, np.random.default_rng(7), rows=64)
    b, wb = reservoir(ArraySource(X, w), 100, np.random.default_rng(7), rows=64)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (100, 2) and len(np.unique(a[:, 0])) == 100
    np.testing.assert_array_equal(wa, a[:, 0])  # weights travel with their rows
    # the same draws whatever the chunk size (vectorized Algorithm R = sequential Algorithm R)
    c, _ = reservoir(ArraySource(X, w), 100, np.random.default_rng(7), rows=1)
    np.testing.assert_array_equal(a, c)
    # uniform: every row equally likely to be kept (mean inclusion 0.1, over many seeds)
    counts = np.zeros(1000)
    for seed in range(200):
        counts[reservoir(X, 100, np.random.default_rng(seed), rows=128)[0][:, 0].astype(int)] += 1
    assert abs(counts[:500].mean() - counts[500:].mean()) < 2.0
    assert abs(counts.mean() - 20.0) < 1e-9


# ====================================================================== errors
def test_feature_mismatch_is_found_when_built(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 4)))
    np.save(tmp_path / "b.npy", np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"b\.npy has 5 features but .*a\.npy has 4: every file"):
        as_source(str(tmp_path / "*.npy"))
    write_parquet(tmp_path, data(), name="p")
    pq.write_table(pa.table({"x0": [1.0], "x1": [2.0]}), tmp_path / "p9.parquet")
    with pytest.raises(ValueError, match=r"p9\.parquet has 2 features but .*p0\.parquet has 3"):
        ParquetSource(str(tmp_path / "p*.parquet"))
    pd.DataFrame(np.zeros((2, 2))).to_csv(tmp_path / "c9.csv", index=False)
    source = CsvSource(write_csv(tmp_path, data(), name="c") + [str(tmp_path / "c9.csv")])
    with pytest.raises(ValueError, match=r"c9\.csv has 2 columns but .*c0\.csv has 3"):
        list(source.chunks(10))


def test_corrupt_and_truncated_parquet(tmp_path):
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"this is not parquet at all" * 10)
    with pytest.raises(
        ValueError, match=r"garbage\.parquet is not a readable Parquet file \(corrupt"
    ):
        as_source(str(garbage))
    good = write_parquet(tmp_path, data())[2]
    blob = open(good, "rb").read()
    for cut in (len(blob) // 2, len(blob) - 3):
        bad = tmp_path / f"cut{cut}.parquet"
        bad.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="not a readable Parquet file"):
            list(ParquetSource(str(bad)).chunks(10))


def test_corrupt_parquet_page_found_while_reading(tmp_path):
    X = data(64)
    path = tmp_path / "pages.parquet"
    pq.write_table(
        pa.table({"a": X[:, 0], "b": X[:, 1]}), path, row_group_size=16, compression="snappy"
    )
    blob = bytearray(path.read_bytes())
    blob[200:600] = np.random.default_rng(0).bytes(400)  # damage the data pages, keep the footer
    path.write_bytes(bytes(blob))
    source = ParquetSource(str(path))  # the footer is intact: the damage shows while reading
    with pytest.raises(
        ValueError, match=r"pages\.parquet is not a readable Parquet file \(corrupt or"
    ):
        list(source.chunks(8))


@pytest.mark.parametrize("kind", ["npy", "parquet", "csv"])
def test_nan_reported_with_file_row_and_column(tmp_path, kind):
    X = data()
    X[37 + 1 + 23, 2] = np.nan  # third file, file-local row 23, in its third chunk of 10
    source = make(kind, tmp_path, X)
    chunks = source.chunks(10)
    next(chunks)  # the first chunks are fine: errors come while reading
    with pytest.raises(ValueError) as info:
        list(chunks)
    message = str(info.value)
    assert message.startswith(f"NaN in {source.paths[2]} at row 23, column 2")
    assert "remove or impute missing values before fitting." in message
    if kind != "npy":
        assert "('x2')" in message


def test_inf_in_array_and_large_row_numbers():
    X = np.zeros((40000, 2))
    X[36012, 1] = -np.inf
    with pytest.raises(
        ValueError, match=r"-inf in X at row 36,012, column 1: remove or replace infinite"
    ):
        list(ArraySource(X).chunks(4096))


def test_non_numeric_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3,4\n5,oops\n")
    with pytest.raises(
        ValueError, match=r"t\.csv: row 2, column 1 \('b'\) is 'oops', not a number"
    ):
        list(CsvSource(str(path)).chunks(10))
    pq.write_table(pa.table({"a": [1.0, 2.0], "name": ["u", "v"]}), tmp_path / "s.parquet")
    source = ParquetSource(str(tmp_path / "s.parquet"))  # numeric columns only, by default
    assert source.feature_names == ["a"]
    with pytest.raises(ValueError, match=r"s\.parquet: column 'name' holds string, not numbers"):
        ParquetSource(str(tmp_path / "s.parquet"), columns=["a", "name"])
    with pytest.raises(ValueError, match="DataFrame column 'name' has dtype"):
        as_source(pd.DataFrame({"a": [1.0], "name": ["u"]}))


def test_path_errors(tmp_path):
    pattern = r"no files match '.*shards/\*\.parquet' \(looked in .*shards\): check the pattern\."
    with pytest.raises(ValueError, match=pattern):
        as_source(str(tmp_path / "shards" / "*.parquet"))
    with pytest.raises(DataFileNotFoundError, match=r"missing\.npy: no such file"):
        as_source(str(tmp_path / "missing.npy"))
    assert issubclass(DataFileNotFoundError, ValueError) and issubclass(
        DataFileNotFoundError, OSError
    )
    (tmp_path / "data.h5").write_bytes(b"x")
    with pytest.raises(
        ValueError, match=r"unsupported file type \(suffix '\.h5'\); data sources read"
    ):
        as_source(str(tmp_path / "data.h5"))


def test_bad_arrays(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(5))
    with pytest.raises(ValueError, match=r"one\.npy holds an array of shape \(5,\); expected 2-D"):
        NpySource(str(tmp_path / "one.npy"))
    (tmp_path / "short.npy").write_bytes(open(tmp_path / "one.npy", "rb").read()[:-8])
    with pytest.raises(ValueError, match=r"short\.npy is not a readable \.npy file"):
        NpySource(str(tmp_path / "short.npy"))
    with pytest.raises(ValueError, match=r"X must be 2-D \(rows, features\); got shape \(5,\)"):
        ArraySource(np.zeros(5))
    with pytest.raises(ValueError, match="not real numbers"):
        ArraySource(np.array([["a"]]))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(2,\)"):
        ArraySource(np.zeros((2, 1)), sample_weight=np.ones(3))
    with pytest.raises(ValueError, match=r"sample_weight\[1\] is -1.0"):
        ArraySource(np.zeros((2, 1)), sample_weight=[1.0, -1.0])
    with pytest.raises(ValueError, match="rows must be a positive integer"):
        ArraySource(np.zeros((2, 1))).chunks(0)
    assert isinstance(ArraySource(np.zeros((2, 1))), Source)
