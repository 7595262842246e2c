"""``lvmkit fit KIND 'shards/*.parquet'``: a fit streamed from files equals the in-memory fit."""

import json

import numpy as np
import pandas as pd
import pytest

import lvmkit
from lvmkit.cli.main import main
from tests.conftest import blobs


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    def call(*args, code=0):
        status = main([str(a) for a in args])
        out, err = capsys.readouterr()
        assert status == code, (status, out, err)
        return out, err

    return call


def write_parquet_shards(X, folder, columns):
    folder.mkdir()
    for i, part in enumerate(np.array_split(X, 3)):
        pd.DataFrame(part, columns=columns).to_parquet(folder / f"part{i}.parquet", index=False)


@pytest.mark.parametrize(
    "kind, data",
    [
        ("gmm", lambda: blobs(n=300, d=3, k=3)[0]),
        ("poisson", lambda: np.random.default_rng(0).poisson(3.0, size=(300, 3)).astype(float)),
        ("bernoulli", lambda: (np.random.default_rng(0).random((300, 3)) < 0.3).astype(float)),
    ],
)
def test_glob_fit_equals_the_in_memory_fit(run, tmp_path, kind, data):
    X = data()
    columns = ["a", "b", "c"]
    write_parquet_shards(X, tmp_path / "shards", columns)
    pd.DataFrame(X, columns=columns).to_csv("all.csv", index=False, float_format="%.17g")
    common = ["-k", "2", "--dtype", "float64", "--no-progress"]
    out, _ = run("fit", kind, "shards/*.parquet", *common, "-o", "streamed.lvm", "--json")
    info = json.loads(out)
    assert info["n_samples"] == 300 and "3 Parquet files" in info["source"]
    run("fit", kind, "all.csv", *common, "-o", "memory.lvm")
    streamed, memory = lvmkit.load("streamed.lvm"), lvmkit.load("memory.lvm")
    np.testing.assert_allclose(streamed.score_samples(X), memory.score_samples(X), rtol=1e-10)
    out, _ = run("score", "streamed.lvm", "all.csv")  # the model file knows its columns
    assert len(out.splitlines()) == 301


def test_stream_flag_and_stepwise(run, tmp_path):
    X = blobs(n=400, d=2, k=2)[0]
    np.save("x.npy", X)
    out, _ = run(
        "fit",
        "gmm",
        "x.npy",
        "--stream",
        "-k",
        "2",
        "--algorithm",
        "stepwise",
        "--batch-size",
        "50",
        "--max-iter",
        "3",
        "--no-progress",
        "-o",
        "m.lvm",
    )
    assert "streamed from" in out
    model = lvmkit.load("m.lvm")
    assert model.algorithm == "stepwise" and model.batch_size == 50 and model.n_iter_ == 3


def test_streamed_fit_errors_are_one_line(run, tmp_path):
    _, err = run("fit", "gmm", "nothing/*.parquet", "-k", "2", code=2)
    assert err.startswith("error: no files match") and len(err.strip().splitlines()) == 1
    np.save("x.npy", np.zeros((10, 2)))
    _, err = run("fit", "gmm", "*.npy", "--columns", "0", code=2)
    assert "--columns is not available when the data is streamed" in err
    _, err = run("fit", "vae", "*.npy", code=2)
    assert "reads its data into memory" in err
