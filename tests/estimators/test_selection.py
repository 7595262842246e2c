"""select_components and restart_report: the table, the choice, the refit, the errors, the plots."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.mixture import GaussianMixture as SklearnGM

from lvmkit import GaussianMixture
from lvmkit.estimators.selection import COLUMNS, restart_report, select_components
from tests.conftest import blobs, quiet

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def three_blobs():
    X, labels, *_ = blobs(n=500, d=2, k=3, separation=6)
    return X


@pytest.fixture(scope="module")
def bic_run(three_blobs):
    est = GaussianMixture(n_init=2, random_state=0, dtype="float64")
    return quiet(select_components, est, three_blobs, range(1, 6), "bic", random_state=0)


def test_table_has_one_row_per_k_and_documented_columns(bic_run, three_blobs):
    table, _ = bic_run
    assert list(table.columns) == list(COLUMNS)
    assert table["n_components"].tolist() == [1, 2, 3, 4, 5]
    n_heldout = math.ceil(0.2 * len(three_blobs))
    assert table.attrs["n_heldout"] == n_heldout
    assert table.attrs["n_train"] == len(three_blobs) - n_heldout
    assert table.attrs["criterion"] == "bic"
    assert sorted(table.attrs["restarts"]) == [1, 2, 3, 4, 5]
    assert all(len(b) == 2 for b in table.attrs["restarts"].values())
    assert (table["restarts_min"] <= table["restarts_max"] + 1e-12).all()
    # lower_bound_ is the best restart's final bound.
    np.testing.assert_allclose(table["restarts_max"], table["lower_bound"], rtol=1e-12)
    assert (table["fit_seconds"] > 0).all() and (table["n_iter"] >= 1).all()


def test_bic_picks_the_true_k_and_refits_on_all_rows(bic_run, three_blobs):
    table, best = bic_run
    assert table.attrs["best_n_components"] == 3
    assert table.loc[table["bic"].idxmin(), "n_components"] == 3
    assert best.n_components == 3
    # Refitted on all of X: the same as fitting the clone on X directly.
    direct = GaussianMixture(3, n_init=2, random_state=0, dtype="float64").fit(three_blobs)
    np.testing.assert_allclose(np.sort(best.means_, 0), np.sort(direct.means_, 0), rtol=1e-10)


def test_bic_and_aic_are_computed_on_the_training_rows(bic_run):
    # BIC - AIC = p (log n - 2), with n the rows the model was fitted on and p its parameters.
    table, _ = bic_run
    n = table.attrs["n_train"]
    d = 2
    k = table["n_components"].to_numpy()
    p = k * d + k * d * (d + 1) / 2 + k - 1  # full covariances
    np.testing.assert_allclose(table["bic"] - table["aic"], p * (np.log(n) - 2), rtol=1e-9)
    # And -2 n * (train log-likelihood) is what is left: it is close to the EM bound.
    loglik = -(table["aic"] - 2 * p) / (2 * n)
    np.testing.assert_allclose(loglik, table["lower_bound"], atol=1e-2)


def test_heldout_column_is_the_score_of_the_heldout_rows(three_blobs):
    # The split is documented: a permutation by random_state, the first ceil(f n) rows held out.
    table, fitted = quiet(
        select_components,
        GaussianMixture(random_state=0, dtype="float64"),
        three_blobs,
        [2],
        random_state=7,
        refit=False,
    )
    order = np.random.RandomState(7).permutation(len(three_blobs))
    heldout = three_blobs[np.sort(order[: table.attrs["n_heldout"]])]
    train = three_blobs[np.sort(order[table.attrs["n_heldout"] :])]
    assert table.loc[0, "heldout_loglik"] == pytest.approx(fitted.score(heldout), rel=1e-12)
    assert table.loc[0, "bic"] == pytest.approx(fitted.bic(train), rel=1e-12)


@pytest.mark.parametrize(
    "criterion, column, pick",
    [
        ("aic", "aic", "idxmin"),
        ("heldout", "heldout_loglik", "idxmax"),
    ],
)
def test_other_criteria_pick_their_optimum(three_blobs, criterion, column, pick):
    table, best = quiet(
        select_components,
        GaussianMixture(random_state=0),
        three_blobs,
        [1, 2, 3, 4],
        criterion,
        random_state=0,
        refit=False,
    )
    want = int(table.loc[getattr(table[column], pick)(), "n_components"])
    assert table.attrs["best_n_components"] == want == best.n_components
    assert want >= 3


def test_ties_go_to_the_smallest_k(monkeypatch, three_blobs):
    monkeypatch.setattr(GaussianMixture, "bic", lambda self, X: 1.0)
    table, best = quiet(
        select_components,
        GaussianMixture(random_state=0),
        three_blobs,
        [3, 1, 2, 2],
        random_state=0,
        refit=False,
    )
    assert table["n_components"].tolist() == [1, 2, 3]  # sorted, duplicates dropped
    assert best.n_components == 1


@pytest.mark.parametrize("kind", ["torch", "pandas", "list"])
def test_accepts_tensors_frames_and_lists(three_blobs, kind):
    X = {
        "torch": torch.as_tensor(three_blobs),
        "pandas": pd.DataFrame(three_blobs, columns=["a", "b"]),
        "list": three_blobs.tolist(),
    }[kind]
    table, best = quiet(
        select_components,
        GaussianMixture(random_state=0, dtype="float64"),
        X,
        [1, 3],
        random_state=0,
    )
    ref, _ = quiet(
        select_components,
        GaussianMixture(random_state=0, dtype="float64"),
        three_blobs,
        [1, 3],
        random_state=0,
    )
    np.testing.assert_allclose(table["heldout_loglik"], ref["heldout_loglik"], rtol=1e-9)
    assert best.n_features_in_ == 2


def test_works_with_scikit_learn_mixture(three_blobs):
    table, best = quiet(
        select_components, SklearnGM(random_state=0), three_blobs, [1, 2, 3, 4], random_state=0
    )
    assert isinstance(best, SklearnGM) and best.n_components == 3
    assert table["restarts_min"].isna().all()  # scikit-learn records no restarts_


def test_verbose_prints_one_line_per_k(three_blobs, capsys):
    quiet(
        select_components,
        GaussianMixture(random_state=0),
        three_blobs,
        [1, 2],
        random_state=0,
        refit=False,
        verbose=True,
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("K=1") and "BIC" in lines[0]


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(criterion="bick"), r"'criterion' must be one of 'bic', 'aic', 'heldout'; got 'bick'"),
        (dict(criterion=["bic"]), r"'criterion' must be one of.*got \['bic'\]"),
        (dict(n_components=[]), r"'n_components' must be a non-empty iterable.*got \[\]"),
        (dict(n_components=5), r"iterable of ints.*single int 5.*range\(1, 6\)"),
        (dict(n_components=[1, 0]), r"int >= 1; got \[0\]"),
        (dict(n_components=[2.5]), r"int >= 1; got \[2.5\]"),
        (
            dict(n_components=[1, 9]),
            r"at most the number of training rows, 8.*"
            r"got max\(n_components\) = 9.*smaller validation_fraction",
        ),
        (
            dict(validation_fraction=0),
            r"'validation_fraction' must be a number in \(0, 1\).*got 0\b",
        ),
        (dict(validation_fraction=1.0), r"'validation_fraction'.*got 1.0"),
        (dict(validation_fraction="0.2"), r"'validation_fraction'.*got '0.2'"),
    ],
)
def test_bad_arguments_get_clear_errors(kwargs, match):
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match=match):
        select_components(GaussianMixture(), X, **kwargs)


def test_estimator_without_n_components_is_rejected():
    from sklearn.neighbors import KernelDensity

    with pytest.raises(ValueError, match="GaussianMixture API.*KernelDensity"):
        select_components(KernelDensity(), np.zeros((10, 2)))


# ----------------------------------------------------------------------------- restart_report
def test_restart_report_sorts_restarts_and_measures_the_gap(three_blobs):
    gm = quiet(
        GaussianMixture(5, n_init=6, init_params="random_from_data", random_state=0).fit,
        three_blobs,
    )
    report = restart_report(gm)
    assert list(report.columns) == ["restart", "lower_bound", "gap_to_best", "is_best"]
    assert sorted(report["restart"]) == list(range(6))
    assert report["lower_bound"].is_monotonic_decreasing
    np.testing.assert_allclose(report["lower_bound"], np.sort(gm.restarts_)[::-1])
    np.testing.assert_allclose(report["gap_to_best"], gm.restarts_.max() - report["lower_bound"])
    assert report.loc[0, "is_best"] and report.loc[0, "gap_to_best"] == 0
    assert report.loc[0, "lower_bound"] == gm.lower_bound_
    pd.testing.assert_frame_equal(restart_report(gm.restarts_), report)


def test_restart_report_needs_restarts():
    with pytest.raises(ValueError, match="must be fitted and record 'restarts_'.*Fit it first"):
        restart_report(GaussianMixture())


# ----------------------------------------------------------------------------- plots
def test_plot_selection_marks_the_chosen_k(bic_run):
    import matplotlib.pyplot as plt

    from lvmkit.plot.selection import plot_selection

    table, _ = bic_run
    fig, ax = plt.subplots()
    assert plot_selection(table, ax=ax) is ax
    star = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(star) == 1 and star[0].get_xdata().tolist() == [3]
    assert len(fig.axes) == 2  # twin axis with the per-sample log-likelihoods
    assert "BIC" in ax.get_ylabel()
    plt.close(fig)

    heldout = table.copy()
    heldout.attrs = {**table.attrs, "criterion": "heldout"}
    ax = plot_selection(heldout)  # a new figure when no ax is given
    assert len(ax.figure.axes) == 1 and len(ax.get_legend().get_texts()) == 3
    plt.close(ax.figure)


def test_plot_restarts_from_estimator_and_table(bic_run, three_blobs):
    import matplotlib.pyplot as plt

    from lvmkit.plot.selection import plot_restarts

    table, best = bic_run
    ax = plot_restarts(best)
    assert len(ax.lines[0].get_xdata()) == best.n_init
    plt.close(ax.figure)
    ax = plot_restarts(table)
    offsets = ax.collections[0].get_offsets()
    assert len(offsets) == sum(len(b) for b in table.attrs["restarts"].values())
    assert (offsets[:, 1] >= 0).all()
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="attrs\\['restarts'\\]"):
        plot_restarts(pd.DataFrame(table.to_dict()))


def test_sample_weight_is_used_by_every_fit_and_every_criterion(three_blobs):
    # Unit weights: the same table (K <= 3, fitted to convergence: a weighted fit may start
    # elsewhere, but reaches the same optimum of these well-separated clusters).
    est = GaussianMixture(n_init=1, random_state=0, dtype="float64", tol=1e-12, max_iter=1000)
    plain, _ = quiet(select_components, est, three_blobs, range(1, 4), "bic", random_state=0)
    ones, _ = quiet(
        select_components,
        est,
        three_blobs,
        range(1, 4),
        "bic",
        random_state=0,
        sample_weight=np.ones(len(three_blobs)),
    )
    for column in ("lower_bound", "heldout_loglik", "bic", "aic"):
        np.testing.assert_allclose(ones[column], plain[column], rtol=1e-8, err_msg=column)
    # Weight 0 on one of the three clusters: two clusters remain, and BIC says so.
    labels = (
        GaussianMixture(3, random_state=0, dtype="float64").fit(three_blobs).predict(three_blobs)
    )
    w = np.where(labels == labels[0], 0.0, 1.0)
    table, best = quiet(
        select_components, est, three_blobs, range(1, 5), "bic", random_state=0, sample_weight=w
    )
    assert table.attrs["best_n_components"] == 2 and best.n_components == 2
    # the weighted criteria: BIC - AIC = p (log Σw - 2) on the training rows
    order = np.random.RandomState(0).permutation(len(three_blobs))
    n_heldout = table.attrs["n_heldout"]
    n = w[np.sort(order[n_heldout:])].sum()
    p = np.array(
        [6 * k - 1 for k in range(1, 5)]
    )  # full, D = 2: 2 + 3 per component, k - 1 weights
    np.testing.assert_allclose(table["bic"] - table["aic"], p * (np.log(n) - 2), rtol=1e-10)


def test_sample_weight_of_the_wrong_shape_is_a_clear_error(three_blobs):
    with pytest.raises(ValueError, match="sample_weight must be 500 finite, non-negative numbers"):
        select_components(GaussianMixture(), three_blobs, [1, 2], sample_weight=np.ones(3))
