"""GaussianMixture against scikit-learn and scipy (float64, explicit tolerances)."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as st
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGM

from lvmkit import GaussianMixture
from lvmkit.estimators._mixture import ComponentReseedWarning
from lvmkit.families.gaussian import CovarianceJitterWarning
from tests.conftest import blobs, quiet

CTS = ("full", "tied", "diag", "spherical")


def shared_start(X, k, ct, seed=0):
    """Initial parameters both libraries start from: one sklearn EM step from random points."""
    sk = quiet(
        SklearnGM(
            k, covariance_type=ct, max_iter=1, init_params="random_from_data", random_state=seed
        ).fit,
        X,
    )
    return dict(weights_init=sk.weights_, means_init=sk.means_, precisions_init=sk.precisions_)


# ----------------------------------------------------------------------------- correctness
@pytest.mark.parametrize("ct", CTS)
@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_every_iteration_matches_sklearn(ct, offset):
    X, *_ = blobs(n=800, d=4, k=4, separation=3)
    X = X + offset
    start = shared_start(X, 4, ct)
    ours = quiet(
        GaussianMixture(4, covariance_type=ct, tol=0, max_iter=40, dtype="float64", **start).fit, X
    )
    ref = quiet(SklearnGM(4, covariance_type=ct, tol=0, max_iter=40, **start).fit, X)
    assert len(ours.lower_bounds_) == len(ref.lower_bounds_) == 40
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-8, atol=0)
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-8)
    for name in ("weights_", "means_", "covariances_", "precisions_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    assert ours.bic(X) == pytest.approx(ref.bic(X), rel=1e-8)
    assert ours.aic(X) == pytest.approx(ref.aic(X), rel=1e-8)


@pytest.mark.parametrize("ct", CTS)
def test_float32_follows_float64(ct):
    X, *_ = blobs(n=2000, d=4, k=3)
    start = shared_start(X, 3, ct)
    kw = dict(covariance_type=ct, tol=0, max_iter=30, **start)
    a = quiet(GaussianMixture(3, dtype="float64", **kw).fit, X)
    b = quiet(GaussianMixture(3, dtype="float32", **kw).fit, X)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=1e-5)


@pytest.mark.parametrize("ct", CTS)
def test_score_samples_matches_scipy_mixture(ct):
    X, *_ = blobs(n=300, d=3, k=3)
    gm = quiet(GaussianMixture(3, covariance_type=ct, random_state=0, dtype="float64").fit, X)
    k, d = 3, 3
    cov = gm.covariances_
    dense = {
        "full": cov,
        "tied": np.broadcast_to(cov, (k, d, d)),
        "diag": np.stack([np.diag(c) for c in cov]) if ct == "diag" else None,
        "spherical": np.stack([np.eye(d) * c for c in cov]) if ct == "spherical" else None,
    }[ct]
    comp = np.stack([st.multivariate_normal(gm.means_[j], dense[j]).logpdf(X) for j in range(k)], 1)
    want = logsumexp(comp + np.log(gm.weights_), axis=1)
    np.testing.assert_allclose(gm.score_samples(X), want, rtol=1e-10)
    assert gm.score(X) == pytest.approx(want.mean(), rel=1e-10)


def test_recovers_parameters_of_separated_clusters():
    X, labels, weights, means, covs = blobs(n=20_000, d=3, k=3, separation=25)
    gm = GaussianMixture(3, random_state=0, n_init=2, dtype="float64").fit(X)
    cost = np.linalg.norm(means[:, None] - gm.means_[None], axis=-1)
    truth, found = linear_sum_assignment(cost)
    # Against the generating parameters, at the sampling error of 20,000 points ...
    np.testing.assert_allclose(gm.means_[found], means[truth], atol=0.05)
    np.testing.assert_allclose(gm.weights_[found], weights[truth], atol=0.015)
    np.testing.assert_allclose(gm.covariances_[found], covs[truth], atol=0.1)
    # ... and, the clusters being separated, exactly the per-cluster sample statistics.
    for t, f in zip(truth, found, strict=True):
        rows = X[labels == t]
        np.testing.assert_allclose(gm.weights_[f], len(rows) / len(X), rtol=1e-6)
        np.testing.assert_allclose(gm.means_[f], rows.mean(0), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(
            gm.covariances_[f], np.cov(rows.T, bias=True) + 1e-6 * np.eye(3), rtol=1e-5, atol=1e-8
        )
    assert gm.converged_


@pytest.mark.parametrize(
    "init_params", ["kmeans", "kmeans++", "k-means++", "random", "random_from_data", "lecture"]
)
def test_every_init_method_fits(init_params):
    X, labels, *_ = blobs(n=600, d=2, k=3, separation=10)
    # 'random' starts every component near the global mean: with a loose tol EM stops at that
    # symmetric saddle (scikit-learn does too), so the test asks for a tight tol.
    gm = GaussianMixture(
        3, init_params=init_params, random_state=0, n_init=3, max_iter=2000, tol=1e-8
    ).fit(X)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(labels, gm.predict(X)) > 0.95
    assert gm.restarts_.shape == (3,)
    assert gm.lower_bound_ == pytest.approx(gm.restarts_.max())


def test_lecture_initialisation_is_the_textbook_one():
    X, *_ = blobs(n=400, d=3, k=3)
    gm = quiet(
        GaussianMixture(3, init_params="lecture", max_iter=0, random_state=0, dtype="float64").fit,
        X,
    )
    np.testing.assert_allclose(gm.weights_, np.full(3, 1 / 3))
    # Means are data points; every covariance is the single-Gaussian estimate.
    assert all(np.isclose(X, m).all(1).any() for m in gm.means_)
    single = np.cov(X.T, bias=True) + 1e-6 * np.eye(3)
    for c in gm.covariances_:
        np.testing.assert_allclose(c, single, rtol=1e-8)


def test_restarts_expose_different_local_optima():
    # Many overlapping clusters and random starts: restarts end at different bounds.
    X, *_ = blobs(n=600, d=2, k=8, separation=3, seed=3)
    gm = GaussianMixture(
        8, init_params="random_from_data", n_init=6, random_state=0, max_iter=500
    ).fit(X)
    assert len(np.unique(np.round(gm.restarts_, 6))) > 1
    assert gm.lower_bound_ == gm.restarts_.max()


def test_fit_predict_equals_fit_then_predict():
    X, *_ = blobs(n=500)
    a = GaussianMixture(3, random_state=0, max_iter=5, tol=0)
    labels = quiet(a.fit_predict, X)
    np.testing.assert_array_equal(labels, a.predict(X))


def test_warm_start_continues_from_the_fitted_parameters():
    X, *_ = blobs(n=500)
    kw = dict(random_state=0, tol=0, dtype="float64")
    once = quiet(GaussianMixture(3, max_iter=20, **kw).fit, X)
    warm = GaussianMixture(3, max_iter=10, warm_start=True, **kw)
    quiet(warm.fit, X)
    quiet(warm.fit, X)
    np.testing.assert_allclose(warm.means_, once.means_, rtol=1e-8)


def test_inputs_numpy_torch_pandas_give_the_same_fit():
    X, *_ = blobs(n=300)
    kw = dict(random_state=0, dtype="float64", max_iter=20)
    a = GaussianMixture(3, **kw).fit(X)
    b = GaussianMixture(3, **kw).fit(torch.as_tensor(X))
    c = GaussianMixture(3, **kw).fit(pd.DataFrame(X, columns=["a", "b", "c"]))
    for other in (b, c):
        np.testing.assert_allclose(other.means_, a.means_, rtol=1e-10)
    np.testing.assert_array_equal(c.feature_names_in_, ["a", "b", "c"])
    np.testing.assert_allclose(b.score_samples(torch.as_tensor(X)), a.score_samples(X), rtol=1e-12)


def test_sample_shapes_labels_and_moments():
    X, *_ = blobs(n=3000, d=2, k=2, separation=10)
    gm = GaussianMixture(2, random_state=0).fit(X)
    S, y = gm.sample(20_000)
    assert S.shape == (20_000, 2) and y.shape == (20_000,)
    for j in range(2):
        np.testing.assert_allclose(S[y == j].mean(0), gm.means_[j], atol=0.1)
    np.testing.assert_allclose(np.bincount(y) / len(y), gm.weights_, atol=0.02)
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        gm.sample(0)


def test_bic_aic_formula():
    X, *_ = blobs(n=300)
    gm = GaussianMixture(3, random_state=0).fit(X)
    p = 3 * 6 + 3 * 3 + 2
    assert gm.bic(X) == pytest.approx(-2 * gm.score(X) * 300 + p * np.log(300))
    assert gm.aic(X) == pytest.approx(-2 * gm.score(X) * 300 + 2 * p)


def test_convergence_warning_names_the_remedy():
    X, *_ = blobs(n=300)
    with pytest.warns(ConvergenceWarning, match="Increase max_iter"):
        GaussianMixture(3, max_iter=1, random_state=0).fit(X)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    X, *_ = blobs(n=2000)
    kw = dict(random_state=0, dtype="float64", tol=0, max_iter=20, **shared_start(X, 3, "full"))
    cpu = GaussianMixture(3, **kw).fit(X)
    gpu = GaussianMixture(3, device="cuda", **kw).fit(X)
    np.testing.assert_allclose(gpu.lower_bounds_, cpu.lower_bounds_, rtol=1e-10)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[0.0, 1.0], [np.inf, 2.0], [3.0, 1.0]]), "inf value.*row 1, column 0"),
        (np.array([1.0, 2.0, 3.0]), "(?s)Expected 2D array.*Reshape"),
        (np.empty((0, 3)), "0 sample"),
        (np.empty((5, 0)), "0 feature"),
        (torch.tensor([1.0, 2.0, 3.0]), "Expected 2D array"),
    ],
)
def test_bad_data_raises_clear_value_error(X, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(1).fit(X)


def test_fewer_samples_than_components():
    with pytest.raises(
        ValueError, match="n_samples >= n_components.*n_components = 5, n_samples = 3"
    ):
        GaussianMixture(5).fit(np.random.rand(3, 2))


@pytest.mark.parametrize(
    "params, match",
    [
        (
            dict(covariance_type="ful"),
            r"'covariance_type' must be one of 'full', 'tied', 'diag', 'spherical'; got 'ful'",
        ),
        (dict(init_params="kmeanz"), r"'init_params' must be one of .*'lecture'; got 'kmeanz'"),
        (dict(n_components=0), r"'n_components' must be an int >= 1; got 0"),
        (dict(tol=-1.0), r"'tol' must be a number >= 0"),
        (dict(dtype="float16"), r"'dtype' must be one of"),
        (dict(max_iter=2.5), r"'max_iter' must be an int >= 0"),
    ],
)
def test_bad_hyperparameters_name_the_parameter(params, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**params).fit(np.random.rand(20, 2))


def test_feature_count_at_predict_time():
    gm = GaussianMixture(2, random_state=0).fit(np.random.rand(50, 3))
    for method in ("predict", "predict_proba", "score_samples", "score"):
        with pytest.raises(
            ValueError, match="X has 4 features, but GaussianMixture is expecting 3"
        ):
            getattr(gm, method)(np.random.rand(5, 4))
        with pytest.raises(ValueError, match="X has 4 features"):
            getattr(gm, method)(torch.rand(5, 4))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(weights_init=[0.5, 0.6]), "sum to 1"),
        (dict(weights_init=[1.0]), r"weights_init must have shape \(n_components,\)"),
        (dict(means_init=np.zeros((2, 5))), "means_init must have shape"),
        (dict(precisions_init=-np.ones((2, 3)), covariance_type="diag"), "must be positive"),
        (dict(precisions_init=np.array([np.eye(3), -np.eye(3)])), "positive-definite"),
    ],
)
def test_bad_initial_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, **params).fit(np.random.rand(20, 3))


def test_predict_before_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        GaussianMixture().predict(np.zeros((2, 2)))


# ----------------------------------------------------------------------------- degenerate data
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ct", CTS)
def test_duplicate_points_fit_without_nan(ct, dtype):
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 2.0]]), 30, axis=0)
    gm = quiet(GaussianMixture(3, covariance_type=ct, dtype=dtype, random_state=0).fit, X)
    assert np.isfinite(gm.score_samples(X)).all() and np.isfinite(gm.covariances_).all()


@pytest.mark.parametrize("ct", CTS)
def test_constant_feature_fits_without_nan(ct):
    X, *_ = blobs(n=300, d=3)
    X[:, 1] = 7.0
    gm = quiet(GaussianMixture(3, covariance_type=ct, random_state=0).fit, X)
    assert np.isfinite(gm.score_samples(X)).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_near_1e8_keep_their_precision(dtype):
    X, labels, _, means, _ = blobs(n=3000, d=2, k=2, separation=10)
    gm = GaussianMixture(2, dtype=dtype, random_state=0).fit(X + 1e8)
    ref = GaussianMixture(2, dtype="float64", random_state=0).fit(X)
    # float32 cannot hold 1e8 + x to better than 8: the fit must work on shifted data.
    assert gm.score(X + 1e8) == pytest.approx(ref.score(X), abs=1e-3)
    np.testing.assert_allclose(np.sort(gm.means_[:, 0] - 1e8), np.sort(ref.means_[:, 0]), atol=1e-2)


def test_values_near_1e_minus_8_warn_about_reg_covar():
    X, *_ = blobs(n=300, d=2, k=2)
    with pytest.warns(UserWarning, match="reg_covar=1e-06 exceeds the variance"):
        gm = GaussianMixture(2, random_state=0).fit(X * 1e-8)
    assert np.isfinite(gm.score_samples(X * 1e-8)).all()
    # With reg_covar scaled to the data the fit is the same as on unit-scale data.
    small = GaussianMixture(2, random_state=0, reg_covar=1e-22, dtype="float64").fit(X * 1e-8)
    unit = GaussianMixture(2, random_state=0, reg_covar=1e-6, dtype="float64").fit(X)
    assert small.score(X * 1e-8) - unit.score(X) == pytest.approx(-2 * np.log(1e-8), rel=1e-6)


def points_on_a_line() -> np.ndarray:
    """200 points on a line in 3-D: with no regularisation every covariance is singular."""
    t = np.linspace(0, 1, 200)[:, None]
    return np.hstack([t, 2 * t, -t])


def test_jitter_escalation_warns_and_stays_finite():
    X = points_on_a_line()
    with pytest.warns(CovarianceJitterWarning, match="added .* to its diagonal"):
        gm = quiet_except(
            CovarianceJitterWarning,
            GaussianMixture(2, reg_covar=0.0, random_state=0, dtype="float64").fit,
            X,
        )
    assert np.isfinite(gm.score_samples(X)).all()


def test_jitter_is_reported_once_per_fit_with_the_count():
    X = points_on_a_line()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GaussianMixture(2, reg_covar=0.0, random_state=0, dtype="float64", max_iter=20).fit(X)
    jitter = [w for w in caught if issubclass(w.category, CovarianceJitterWarning)]
    assert len(jitter) == 1, [str(w.message) for w in jitter]
    message = str(jitter[0].message)
    assert "factorisations during this fit" in message and "added up to" in message
    times = int(message.split(" factorisations")[0].split()[-1])
    assert times > 1  # every M-step needed it: counted, not repeated


def test_component_that_loses_its_points_is_reseeded():
    X, *_ = blobs(n=400, d=2, k=2, separation=10)
    far = np.array([[1e3, 1e3]])
    # Start one component far from all data: it gets no responsibility at the first E-step.
    means = np.vstack([X[:2], far])
    with pytest.warns(ComponentReseedWarning, match=r"Component\(s\) \[2\] lost all their points"):
        gm = quiet_except(
            ComponentReseedWarning,
            GaussianMixture(3, means_init=means, random_state=0, max_iter=50, dtype="float64").fit,
            X,
        )
    assert np.isfinite(gm.means_).all() and np.isfinite(gm.covariances_).all()
    assert np.abs(gm.means_).max() < 100


def quiet_except(category, fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", category)
        return fn(*args)


@pytest.mark.parametrize("ct", CTS)
def test_float32_final_loglik_within_1e_4_of_sklearn(ct):
    """The benchmark's accuracy claim, at test size: same start, same iterations."""
    X, *_ = blobs(n=20_000, d=8, k=6, separation=4, seed=7)
    start = shared_start(X, 6, ct, seed=1)
    kw = dict(covariance_type=ct, tol=0, max_iter=60, **start)
    ours = quiet(GaussianMixture(6, dtype="float32", **kw).fit, X)
    ref = quiet(SklearnGM(6, **kw).fit, X)
    assert abs(ours.score(X) - ref.score(X)) < 1e-4
    assert abs(ours.lower_bound_ - ref.lower_bound_) < 1e-4


def test_verbose_reports_initialisations_and_iterations(capsys):
    X, *_ = blobs(n=200)
    quiet(
        GaussianMixture(
            3, verbose=2, verbose_interval=1, max_iter=3, tol=0, n_init=2, random_state=0
        ).fit,
        X,
    )
    out = capsys.readouterr().out
    assert out.count("Initialization 0") == 1 and out.count("Initialization 1") == 1
    assert "Iteration 3" in out and "ll change" in out and "lower bound" in out


def test_warnings_point_at_the_callers_line():
    X = points_on_a_line()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GaussianMixture(2, reg_covar=0.0, random_state=0, dtype="float64", max_iter=3).fit(X)
    assert caught and all(w.filename == __file__ for w in caught), {
        (w.filename, w.lineno) for w in caught
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_data_near_1e30_fits_exactly_in_float64_and_is_refused_clearly_in_float32(dtype):
    X, *_ = blobs(n=300, d=3, k=2)
    scale = 1e30
    gm = GaussianMixture(2, random_state=0, dtype=dtype, reg_covar=1e-6 * scale**2)
    if dtype == "float32":
        with pytest.raises(ValueError, match=r"too large for float32 arithmetic.*dtype='float64'"):
            gm.fit(X * scale)
        assert not hasattr(gm, "means_")
        return
    gm.fit(X * scale)
    unit = GaussianMixture(2, random_state=0, dtype=dtype).fit(X)
    # a change of units: log p moves by -D log(scale), the means and covariances scale
    assert gm.score(X * scale) == pytest.approx(unit.score(X) - 3 * np.log(scale), rel=1e-8)
    np.testing.assert_allclose(np.sort(gm.means_ / scale, 0), np.sort(unit.means_, 0), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_data_near_1e_minus_30_warns_that_reg_covar_dominates_and_stays_finite(dtype):
    X, *_ = blobs(n=300, d=3, k=2)
    with pytest.warns(UserWarning, match="reg_covar=1e-06 exceeds the variance of every feature"):
        gm = quiet_except(
            UserWarning, GaussianMixture(2, random_state=0, dtype=dtype).fit, X * 1e-30
        )
    assert np.isfinite(gm.score_samples(X * 1e-30)).all()
    if dtype == "float64":  # with a reg_covar on the data's scale the fit is the unit fit
        small = GaussianMixture(2, random_state=0, dtype=dtype, reg_covar=1e-66).fit(X * 1e-30)
        unit = GaussianMixture(2, random_state=0, dtype=dtype).fit(X)
        assert small.score(X * 1e-30) == pytest.approx(
            unit.score(X) + 3 * 30 * np.log(10), rel=1e-8
        )
