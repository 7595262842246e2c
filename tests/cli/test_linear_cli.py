"""``lvmkit fit ppca|fa|mfa``, ``lvmkit transform`` and ``lvmkit impute``, in-process: the fits
are the library's, the latent coordinates and the filled data are the saved model's own to the
last bit, missing cells reach the model; ``info``, ``score``, ``predict``, ``sample``, ``plot``
and ``report`` work for these kinds; errors are one line with exit status 2."""

import json
import re

import numpy as np
import pytest

import lvmkit
from lvmkit.data.readers import read_data
from tests.cli.conftest import one_error_line

NAMES = ["a", "b", "c", "d", "e", "f"]


def _low_rank(n=200, d=6, q=2, seed=0):
    """Rows of a q-factor model with unequal noise, shifted away from 0."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, q))
    return rng.normal(size=(n, q)) @ W.T + rng.normal(size=(n, d)) * np.linspace(0.2, 0.6, d) + 3.0


def _write(path, X):
    """A CSV with a header; NaN written as an empty cell."""
    lines = [",".join(NAMES[: X.shape[1]])]
    for row in X:
        lines.append(",".join("" if np.isnan(v) else f"{v:.10g}" for v in row))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def cli(tmp_path, run_cli):
    run = run_cli
    X = _low_rank()
    _write(tmp_path / "data.csv", X)
    gappy = X.copy()
    gappy[np.random.default_rng(1).random(X.shape) < 0.1] = np.nan
    gappy[7] = np.nan  # a row with no observed value
    gappy[7, 2] = X[7, 2]
    _write(tmp_path / "gaps.csv", gappy)
    run.X = read_data(tmp_path / "data.csv")  # as written
    run.gappy = read_data(tmp_path / "gaps.csv", allow_missing=True)
    return run


def _table(path):
    header = path.read_text().splitlines()[0].split(",")
    return header, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def test_ppca_fit_info_score_transform_sample(cli, tmp_path):
    out, _ = cli("fit", "ppca", "data.csv", "--components", "2", "-o", "p.lvm", "--json")
    fit = json.loads(out)
    assert fit["class"] == "ProbabilisticPCA" and fit["n_components"] == 2
    assert fit["n_features"] == 6 and fit["n_samples"] == 200
    model = lvmkit.load("p.lvm")
    same = lvmkit.ProbabilisticPCA(2).fit(cli.X)
    np.testing.assert_allclose(model.loadings_, same.loadings_, rtol=1e-10, atol=1e-12)
    assert fit["lower_bound"] == pytest.approx(same.loglike_, rel=1e-12)  # tight: log L itself

    out, _ = cli("info", "p.lvm")
    assert "latent dimension: 2" in out and "explained variance ratio:" in out
    assert re.search(r"noise variance σ²: [0-9.]+", out)
    info = json.loads(cli("info", "p.lvm", "--json")[0])
    assert info["summary"]["latent dimension"] == "2"

    out, _ = cli("score", "p.lvm", "data.csv")
    np.testing.assert_array_equal(np.array(out.split()[1:], float), model.score_samples(cli.X))

    out, _ = cli("transform", "p.lvm", "data.csv", "-o", "z.csv")
    assert out.strip() == "wrote 200 rows of latent coordinates (z1 .. z2) to z.csv"
    header, Z = _table(tmp_path / "z.csv")
    assert header == ["z1", "z2"] and Z.shape == (200, 2)
    np.testing.assert_allclose(Z, model.transform(cli.X), rtol=0, atol=1e-10)
    got = json.loads(cli("transform", "p.lvm", "data.csv", "--json")[0])
    assert got["n_latent"] == 2 and got["columns"] == ["z1", "z2"]
    np.testing.assert_allclose(got["latent"], model.transform(cli.X), rtol=0, atol=1e-10)
    # --columns as the other commands: two columns are not the model's six
    _, err = cli("transform", "p.lvm", "data.csv", "--columns", "a,b", code=2)
    assert "has 2 feature(s)" in one_error_line(err)

    out, _ = cli("sample", "p.lvm", "-n", "5", "--seed", "3")
    lines = out.splitlines()
    assert lines[0] == ",".join(NAMES) and len(lines) == 6  # the draws, not their latent z

    # 'mle' chooses the dimension
    fit = json.loads(cli("fit", "ppca", "data.csv", "-k", "mle", "-o", "m.lvm", "--json")[0])
    assert fit["n_components"] == lvmkit.load("m.lvm").n_components_ >= 1


def test_fa_fit_with_rotation(cli, tmp_path):
    out, _ = cli("fit", "fa", "data.csv", "-k", "2", "--rotation", "varimax", "-o", "f.lvm")
    assert out.startswith("FactorAnalysis fitted on 200 samples x 6 features, 2 components")
    model = lvmkit.load("f.lvm")
    assert model.rotation == "varimax" and model.n_components == 2
    same = lvmkit.FactorAnalysis(2, rotation="varimax").fit(cli.X)
    np.testing.assert_allclose(model.loadings_, same.loadings_, rtol=1e-8, atol=1e-10)
    out, _ = cli("info", "f.lvm")
    assert "rotation of the loadings: varimax" in out and "noise variances Ψ" in out
    out, _ = cli("transform", "f.lvm", "data.csv")
    Z = np.array([line.split(",") for line in out.splitlines()[1:]], float)
    np.testing.assert_allclose(Z, model.transform(cli.X), rtol=0, atol=1e-10)


def test_missing_cells_reach_the_model_and_impute_fills_them(cli, tmp_path):
    gaps = np.isnan(cli.gappy)
    out, _ = cli("fit", "ppca", "gaps.csv", "-k", "2", "-o", "pg.lvm")
    model = lvmkit.load("pg.lvm")
    assert hasattr(model, "lower_bounds_")  # EM, the gaps marginalized
    # transform and score read the gaps too
    out, _ = cli("transform", "pg.lvm", "gaps.csv", "-o", "z.csv")
    np.testing.assert_allclose(
        _table(tmp_path / "z.csv")[1], model.transform(cli.gappy), atol=1e-10
    )
    if not hasattr(model, "impute"):
        pytest.skip("ProbabilisticPCA has no impute in this lvmkit")
    out, _ = cli("impute", "pg.lvm", "gaps.csv", "-o", "filled.csv")
    rows = int(gaps.any(1).sum())
    assert (
        out.strip()
        == f"filled {int(gaps.sum())} missing value(s) in {rows} of 200 rows; wrote filled.csv"
    )
    header, filled = _table(tmp_path / "filled.csv")
    assert header == NAMES and not np.isnan(filled).any()
    np.testing.assert_array_equal(filled, model.impute(cli.gappy))
    np.testing.assert_array_equal(filled[~gaps], cli.gappy[~gaps])  # observed values kept
    # to stdout: the table alone, the summary on stderr
    out, err = cli("impute", "pg.lvm", "gaps.csv")
    assert out.splitlines()[0] == "a,b,c,d,e,f" and len(out.splitlines()) == 201
    assert err.startswith("filled ")
    got = json.loads(cli("impute", "pg.lvm", "gaps.csv", "--json", "-o", "f2.csv")[0])
    assert got["n_filled"] == int(gaps.sum()) and got["rows_filled"] == rows
    assert got["filled_per_column"] == dict(zip(NAMES, gaps.sum(0).tolist(), strict=True))
    # a factor analysis fitted on complete rows imputes them too, into .npy
    cli("fit", "fa", "data.csv", "-k", "2", "-o", "f.lvm")
    cli("impute", "f.lvm", "gaps.csv", "-o", "filled.npy")
    np.testing.assert_array_equal(
        np.load(tmp_path / "filled.npy"), lvmkit.load("f.lvm").impute(cli.gappy)
    )


def test_mfa_fit_predict_transform_impute(cli, tmp_path):
    pytest.importorskip("lvmkit.estimators.mfa")
    out, _ = cli(
        "fit", "mfa", "gaps.csv", "--components", "2", "--factors", "2", "--noise", "diagonal",
        "--max-iter", "30", "-o", "m.lvm", "--json",
    )  # fmt: skip
    fit = json.loads(out)
    assert fit["class"] == "MixtureOfFactorAnalyzers" and fit["n_components"] == 2
    assert fit["n_factors"] == 2
    model = lvmkit.load("m.lvm")
    assert model.random_state == 0 and model.loadings_.shape == (2, 6, 2)
    out, _ = cli("info", "m.lvm")
    assert "2 factors in each of 2 components" in out and "mixing weights" in out
    labels = np.array(cli("predict", "m.lvm", "gaps.csv")[0].split()[1:], int)
    np.testing.assert_array_equal(labels, model.predict(cli.gappy))
    _, Z = (cli("transform", "m.lvm", "gaps.csv", "-o", "z.csv"), _table(tmp_path / "z.csv"))[1]
    np.testing.assert_allclose(Z, model.transform(cli.gappy), rtol=0, atol=1e-10)
    cli("impute", "m.lvm", "gaps.csv", "-o", "filled.csv")
    np.testing.assert_array_equal(_table(tmp_path / "filled.csv")[1], model.impute(cli.gappy))
    out, _ = cli("sample", "m.lvm", "-n", "40", "-o", "s.csv")
    assert out.strip() == "wrote 40 samples to s.csv"
    cli("plot", "m.lvm", "gaps.csv", "-o", "m.png")
    assert (tmp_path / "m.png").stat().st_size > 5000


def test_errors_are_one_line(cli, tmp_path):
    cli("fit", "gmm", "data.csv", "-k", "2", "-o", "g.lvm")
    _, err = cli("transform", "g.lvm", "data.csv", code=2)
    line = one_error_line(err)
    assert "GaussianMixture has no latent coordinates" in line and "ProbabilisticPCA" in line
    assert "predict g.lvm DATA --proba" in line

    counts = np.random.default_rng(0).poisson(3.0, size=(60, 3)).astype(float)
    lvmkit.PoissonMixture(2, random_state=0).fit(counts).save(tmp_path / "pm.lvm")
    np.savetxt(tmp_path / "counts.csv", counts, delimiter=",", header="a,b,c", comments="")
    _, err = cli("impute", "pm.lvm", "counts.csv", "-o", "x.csv", code=2)
    line = one_error_line(err)
    assert "PoissonMixture cannot impute" in line and "lvmkit fit ppca" in line
    assert not (tmp_path / "x.csv").exists()

    cli("fit", "ppca", "data.csv", "-k", "2", "-o", "p.lvm")
    _, err = cli("predict", "p.lvm", "data.csv", code=2)
    line = one_error_line(err)
    assert "no components to predict" in line and "lvmkit transform p.lvm DATA" in line

    _, err = cli("fit", "ppca", "data.csv", "-k", "two", code=2)
    assert "'two' is not a latent dimension" in one_error_line(err)
    _, err = cli("fit", "fa", "data.csv", "-k", "6", code=2)
    assert "--components 6" in one_error_line(err)  # the library's advice in the option's words
    _, err = cli("impute", "p.lvm", "data.csv", "-o", "filled.txt.gz", code=2)
    assert "-o filled.txt.gz" in one_error_line(err)
    # a kind that does not read missing values still refuses them, saying which do
    _, err = cli("fit", "poisson", "gaps.csv", code=2)
    assert "is missing" in one_error_line(err) and "ppca" in one_error_line(err)


def test_plot_and_report(cli, tmp_path):
    cli("fit", "ppca", "data.csv", "-k", "2", "-o", "p.lvm")
    cli("fit", "fa", "gaps.csv", "-k", "2", "-o", "f.lvm")
    out, _ = cli("plot", "p.lvm", "data.csv", "-o", "p.png")
    assert out.strip() == "wrote p.png" and (tmp_path / "p.png").stat().st_size > 5000
    _, err = cli("plot", "f.lvm", "gaps.csv", "--dims", "0,5", "-o", "f.png", code=2)
    assert "latent coordinates" in one_error_line(err)
    cli("report", "f.lvm", "gaps.csv", "-o", "f.html")
    page = (tmp_path / "f.html").read_text()
    for title in ("What the model learned", "Training curve", "Explained variance", "Loadings",
                  "Latent map", "Samples"):  # fmt: skip
        assert f"<h2>{title}</h2>" in page, title
    assert ("Imputations beside the truth" in page) == hasattr(lvmkit.load("f.lvm"), "impute")
