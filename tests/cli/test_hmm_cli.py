"""``lvmkit fit hmm`` and the commands that use a fitted HMM, in-process: sequences from an id
column (remembered in the saved model), per-row states, per-sequence scores, one sampled
sequence, the plot and the report; and the errors, one line each with exit status 2."""

import json
import re

import numpy as np
import pandas as pd
import pytest

import lvmkit
from lvmkit import GaussianHMM
from lvmkit._persist import describe
from tests.cli.conftest import one_error_line
from tests.conftest import quiet


def _gaussian_sequences(lengths, seed=0):
    """Rows of a 2-state, 2-feature Gaussian HMM, one sequence per length."""
    truth = GaussianHMM(2, covariance_type="diag")
    truth.startprob_ = np.array([0.6, 0.4])
    truth.transmat_ = np.array([[0.9, 0.1], [0.15, 0.85]])
    truth.means_ = np.array([[0.0, 0.0], [4.0, -3.0]])
    truth.covars_ = np.array([[1.0, 0.5], [0.8, 1.2]])
    return [truth.sample(n, random_state=seed + i)[0] for i, n in enumerate(lengths)]


@pytest.fixture
def cli(tmp_path, run_cli):
    run = run_cli
    # three sequences with text ids and a time column left out by --columns
    lengths = [40, 55, 35]
    parts = _gaussian_sequences(lengths)
    frame = pd.concat(
        [
            pd.DataFrame({"id": f"s{i}", "t": np.arange(len(p)), "a": p[:, 0], "b": p[:, 1]})
            for i, p in enumerate(parts)
        ]
    )
    frame.to_csv(tmp_path / "walks.csv", index=False, float_format="%.10g")
    back = pd.read_csv(tmp_path / "walks.csv")
    run.X = back[["a", "b"]].to_numpy()
    run.lengths = lengths
    run.ids = ["s0", "s1", "s2"]
    return run


def _bounds(lengths):
    ends = np.cumsum(lengths)
    return list(zip(ends - np.asarray(lengths), ends, strict=True))


def test_gaussian_fit_predict_score_sample_plot_report(cli, tmp_path):
    X, lengths = cli.X, cli.lengths
    out, _ = cli(
        "fit", "hmm", "walks.csv", "--states", "2", "--lengths-column", "id",
        "--columns", "a,b", "--dtype", "float64", "-o", "h.lvm", "--json",
    )  # fmt: skip
    fit = json.loads(out)
    assert fit["class"] == "GaussianHMM" and fit["n_sequences"] == 3 and fit["n_features"] == 2
    assert fit["lengths_column"] == "id" and fit["n_samples"] == 130
    recipe = describe("h.lvm")["metadata"]["data"]
    assert recipe["lengths_column"] == "id" and recipe["columns"] == ["a", "b"]

    model = lvmkit.load("h.lvm")
    assert model.covariance_type == "diag" and model.n_iter == 100 and model.random_state == 0
    # the command line fits what Python fits with the same settings (and save/load keeps it)
    same = quiet(
        GaussianHMM(2, n_iter=100, tol=1e-2, random_state=0, dtype="float64").fit, X, lengths
    )
    np.testing.assert_allclose(model.transmat_, same.transmat_, rtol=1e-10)
    np.testing.assert_allclose(model.means_, same.means_, rtol=1e-10)
    assert model.lower_bounds_ == same.lower_bounds_

    # predict: the model's id column and columns are remembered
    cli("predict", "h.lvm", "walks.csv", "-o", "states.csv")
    table = pd.read_csv(tmp_path / "states.csv")
    assert list(table.columns) == ["state"]
    np.testing.assert_array_equal(table["state"], model.predict(X, lengths))
    out, _ = cli("predict", "h.lvm", "walks.csv", "--proba", "--json")
    np.testing.assert_allclose(
        json.loads(out)["probabilities"], model.predict_proba(X, lengths), atol=1e-12
    )
    # '-': the whole file as one sequence
    out, _ = cli("predict", "h.lvm", "walks.csv", "--lengths-column", "-", "--json")
    np.testing.assert_array_equal(json.loads(out)["states"], model.predict(X))

    # score: one log-likelihood per sequence, summing to the model's total
    out, _ = cli("score", "h.lvm", "walks.csv")
    scores = pd.read_csv(pd.io.common.StringIO(out))
    assert list(scores.columns) == ["sequence", "length", "log_likelihood"]
    assert scores["sequence"].tolist() == cli.ids and scores["length"].tolist() == lengths
    for (a, b), value in zip(_bounds(lengths), scores["log_likelihood"], strict=True):
        assert value == pytest.approx(model.score(X[a:b]), rel=1e-12)
    total = model.score(X, lengths)
    assert scores["log_likelihood"].sum() == pytest.approx(total, rel=1e-9)
    out, _ = cli("score", "h.lvm", "walks.csv", "--json")
    summary = json.loads(out)
    assert summary["total"] == pytest.approx(total, rel=1e-9) and summary["n_sequences"] == 3

    # sample: one sequence of N steps and its states
    cli("sample", "h.lvm", "-n", "25", "-o", "drawn.csv", "--seed", "3")
    drawn = pd.read_csv(tmp_path / "drawn.csv")
    assert list(drawn.columns) == ["a", "b", "state"] and len(drawn) == 25
    expected_x, expected_states = model.sample(25, random_state=3)
    np.testing.assert_array_equal(drawn["state"], expected_states)
    np.testing.assert_allclose(drawn[["a", "b"]].to_numpy(), expected_x, rtol=1e-15)
    out, _ = cli("sample", "h.lvm", "-n", "12", "--json")
    assert len(json.loads(out)["states"]) == 12
    cli("sample", "h.lvm", "-n", "60", "-o", "drawn.png")
    assert (tmp_path / "drawn.png").stat().st_size > 5000

    out, _ = cli("plot", "h.lvm", "walks.csv", "-o", "seq.png", "--sequence", "s1")
    assert (tmp_path / "seq.png").stat().st_size > 10000
    cli("plot", "h.lvm", "walks.csv", "-o", "seq2.png", "--sequence", "2", "--dims", "1")

    out, _ = cli("report", "h.lvm", "walks.csv", "-o", "r.html")
    page = (tmp_path / "r.html").read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles == [
        "Summary",
        "Log-likelihood curve",
        "Sequence and states",
        "Transition matrix",
        "Emission parameters",
    ]
    assert page.count('src="data:image/png;base64,') == 3  # curve, sequence, transitions
    assert "sequence s0 (40 steps)" not in page  # titles are in the pictures, not the text
    assert "<th>sequences</th><td>3 (35 to 55 rows)</td>" in page
    assert f"{total:.6g}" in page  # the total log-likelihood in the summary
    assert f"{model.means_[0, 0]:.4g} ± " in page  # the means table

    out, _ = cli("info", "h.lvm")
    assert "hidden states: 2" in out and "final log-likelihood" in out


def test_categorical_with_numeric_ids(cli, tmp_path):
    rng = np.random.default_rng(1)
    ids = np.repeat([7, 3, 12], [30, 45, 25])  # numeric ids, not sorted: only contiguity counts
    symbols = np.concatenate([rng.choice(3, size=30), rng.choice(3, 45, p=[0.8, 0.1, 0.1]),
                              rng.choice(3, size=25)])  # fmt: skip
    pd.DataFrame({"seq": ids, "symbol": symbols}).to_csv(tmp_path / "sym.csv", index=False)
    out, _ = cli(
        "fit", "hmm", "sym.csv", "--emission", "categorical", "--states", "2",
        "--lengths-column", "seq", "-o", "c.lvm",
    )  # fmt: skip
    assert "CategoricalHMM fitted on 100 rows x 1 features in 3 sequence(s)" in out
    model = lvmkit.load("c.lvm")
    assert model.emissionprob_.shape == (2, 3) and model.n_features_in_ == 1
    X, lengths = symbols.reshape(-1, 1), [30, 45, 25]

    out, _ = cli("predict", "c.lvm", "sym.csv", "--json")
    np.testing.assert_array_equal(json.loads(out)["states"], model.predict(X, lengths))
    out, _ = cli("score", "c.lvm", "sym.csv", "--json")
    result = json.loads(out)
    assert result["sequences"] == ["7", "3", "12"] and result["lengths"] == lengths
    assert sum(result["scores"]) == pytest.approx(model.score(X, lengths), rel=1e-9)
    cli("sample", "c.lvm", "-n", "10", "-o", "s.csv")
    drawn = pd.read_csv(tmp_path / "s.csv")
    assert list(drawn.columns) == ["symbol", "state"] and set(drawn["symbol"]) <= {0, 1, 2}
    cli("plot", "c.lvm", "sym.csv", "-o", "c.png")
    cli("report", "c.lvm", "sym.csv", "-o", "c.html")
    page = (tmp_path / "c.html").read_text()
    assert "<h2>Emission parameters</h2>" in page
    assert page.count('src="data:image/png;base64,') == 4  # + the symbol probabilities


def test_poisson_headerless_id_by_position(cli, tmp_path):
    rng = np.random.default_rng(2)
    rates = np.repeat([[1.0, 6.0], [8.0, 2.0], [1.0, 6.0]], [20, 25, 15], axis=0)
    counts = rng.poisson(rates)
    ids = np.repeat([1, 2], [45, 15])
    np.savetxt(tmp_path / "c.csv", np.column_stack([counts, ids]), delimiter=",", fmt="%d")
    cli("fit", "hmm", "c.csv", "--emission", "poisson", "-k", "2",
        "--lengths-column", "2", "-o", "p.lvm")  # fmt: skip
    model = lvmkit.load("p.lvm")
    assert type(model).__name__ == "PoissonHMM" and model.lambdas_.shape == (2, 2)
    assert describe("p.lvm")["metadata"]["data"]["lengths_column"] == 2
    X, lengths = counts.astype(float), [45, 15]
    out, _ = cli("score", "p.lvm", "c.csv")
    scores = pd.read_csv(pd.io.common.StringIO(out))
    assert scores["length"].tolist() == lengths
    assert scores["log_likelihood"].sum() == pytest.approx(model.score(X, lengths), rel=1e-9)
    out, _ = cli("predict", "p.lvm", "c.csv", "--json")
    np.testing.assert_array_equal(json.loads(out)["states"], model.predict(X, lengths))
    cli("plot", "p.lvm", "c.csv", "-o", "p.png", "--sequence", "1")


@pytest.mark.parametrize(
    "options, cls",
    [
        (["--emission", "gaussian", "--covariance-type", "full"], "GaussianHMM"),
        (["--emission", "gmm", "--n-mix", "2", "--covariance", "spherical"], "GMMHMM"),
        (["--emission", "bernoulli", "--binarize", "2"], "BernoulliHMM"),
    ],
)
def test_other_emissions_round_trip(cli, tmp_path, options, cls):
    cli("fit", "hmm", "walks.csv", "--lengths-column", "id", "--columns", "a,b",
        "--n-iter", "5", "-o", "m.lvm", *options)  # fmt: skip
    model = lvmkit.load("m.lvm")
    assert type(model).__name__ == cls
    X = (cli.X > 2).astype(float) if cls == "BernoulliHMM" else cli.X
    out, _ = cli("predict", "m.lvm", "walks.csv", "--json")  # --binarize remembered too
    np.testing.assert_array_equal(json.loads(out)["states"], model.predict(X, cli.lengths))
    if cls == "GMMHMM":  # a table of the components of every state
        cli("report", "m.lvm", "walks.csv", "-o", "m.html")
        assert "<th>component</th><th>weight</th>" in (tmp_path / "m.html").read_text()


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["fit", "hmm", "shuffled.csv", "--lengths-column", "id"],
         ["sequence 's0' (column 'id') are not together", "rows 1-3, then again from row 6",
          "Sort the file by the 'id' column"]),
        (["fit", "hmm", "walks.csv", "--lengths-column", "nope", "--columns", "a,b"],
         ["no column named 'nope'", "'id', 't', 'a', 'b'"]),
        (["fit", "hmm", "walks.csv", "--lengths-column", "id", "--columns", "id,a"],
         ["--columns includes the sequence id column 'id'"]),
        (["fit", "hmm", "walks.csv", "--lengths-column", "id", "--emission", "poisson",
          "--covariance-type", "full"], ["--covariance-type applies to --emission gaussian"]),
        (["fit", "hmm", "walks.csv", "--lengths-column", "id", "--states", "0"],
         ["'--states'", "0 is not in the range x>=1"]),
        (["fit", "hmm", "walks.csv", "--lengths-column", "id", "--emission", "poisson",
          "--columns", "a,b"], ["PoissonHMM needs non-negative counts"]),
        (["fit", "hmm", "walks.csv", "--columns", "a,b", "--n-iter", "1", "--tol", "-1"],
         ["'--tol'"]),
    ],
)  # fmt: skip
def test_user_errors_are_one_line_exit_2(cli, tmp_path, args, fragments):
    rows = ["id,a,b", "s0,1,2", "s0,2,3", "s0,3,4", "s1,4,5", "s1,5,6", "s0,6,7"]
    (tmp_path / "shuffled.csv").write_text("\n".join(rows) + "\n")
    _, err = cli(*args, code=2)
    line = one_error_line(err)
    for fragment in fragments:
        assert fragment in line, line


def test_errors_of_the_commands_using_a_model(cli):
    cli("fit", "hmm", "walks.csv", "--lengths-column", "id", "--columns", "a,b", "--n-iter", "3",
        "-o", "h.lvm")  # fmt: skip
    _, err = cli("plot", "h.lvm", "walks.csv", "-o", "x.png", "--sequence", "s9", code=2)
    assert "--sequence 's9': no such sequence; the data has 3 ('s0', 's1', 's2')" in (
        one_error_line(err)
    )
    _, err = cli("score", "h.lvm", "walks.csv", "--lengths-column", "missing", code=2)
    assert "no column named 'missing'" in one_error_line(err)
    _, err = cli("plot", "h.lvm", "walks.csv", "-o", "x.png", "--dims", "0,1,0,1", code=2)
    assert "(for an HMM one to three)" in one_error_line(err)
    cli("fit", "gmm", "walks.csv", "--columns", "a,b", "-k", "2", "-o", "g.lvm")
    _, err = cli("predict", "g.lvm", "walks.csv", "--lengths-column", "id", code=2)
    assert "--lengths-column is for sequence models (hmm)" in one_error_line(err)


def test_help_lists_the_hmm_kind(cli):
    out, _ = cli("fit", "--help")
    assert "hmm" in out
    out, _ = cli("fit", "hmm", "--help")
    for option in ("--states", "--emission", "--covariance-type", "--n-iter", "--tol",
                   "--n-init", "--lengths-column", "--dtype"):  # fmt: skip
        assert option in out
