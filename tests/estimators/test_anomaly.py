"""MixtureAnomalyDetector: threshold rules, sign conventions, detection, scikit-learn's checks."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from lvmkit import GaussianMixture
from lvmkit.estimators.anomaly import MixtureAnomalyDetector
from tests.conftest import blobs, quiet


@pytest.fixture(scope="module")
def normal_data():
    X, *_ = blobs(n=1000, d=3, k=3, separation=5)
    return X


@pytest.fixture(scope="module")
def fitted(normal_data):
    est = GaussianMixture(3, random_state=0, dtype="float64")
    return quiet(MixtureAnomalyDetector(est, contamination=0.05).fit, normal_data)


def far_outliers(normal_data, n=30, seed=1):
    """Points well outside the data: random directions at 4 to 6 times the data's radius."""
    rng = np.random.default_rng(seed)
    center = normal_data.mean(0)
    radius = np.abs(normal_data - center).max()
    direction = rng.normal(size=(n, normal_data.shape[1]))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return center + direction * radius * rng.uniform(4, 6, size=(n, 1))


def test_flags_far_away_outliers(normal_data):
    outliers = far_outliers(normal_data)
    X_new, *_ = blobs(n=300, d=3, k=3, separation=5, seed=0)  # same clusters, fresh draws...
    X_new = X_new + np.random.default_rng(2).normal(scale=0.05, size=X_new.shape)  # ...jittered
    X_test = np.vstack([X_new, outliers])
    truth = np.r_[np.ones(len(X_new)), -np.ones(len(outliers))]
    detector = quiet(MixtureAnomalyDetector(GaussianMixture(3, random_state=0)).fit, normal_data)
    pred = detector.predict(X_test)
    flagged, actual = pred == -1, truth == -1
    recall = (flagged & actual).sum() / actual.sum()
    precision = (flagged & actual).sum() / flagged.sum()
    assert recall > 0.9 and precision > 0.9, (recall, precision)


@pytest.mark.parametrize("c", [0.01, 0.05, 0.2, 0.5])
def test_contamination_flags_that_share_of_training_rows(normal_data, c):
    detector = quiet(MixtureAnomalyDetector(GaussianMixture(3, random_state=0), c).fit, normal_data)
    share = np.mean(detector.predict(normal_data) == -1)
    assert abs(share - c) <= 1 / len(normal_data)
    pred = quiet(
        MixtureAnomalyDetector(GaussianMixture(3, random_state=0), c).fit_predict, normal_data
    )
    np.testing.assert_array_equal(pred, detector.predict(normal_data))


def test_default_rule_is_one_percent(normal_data):
    detector = quiet(MixtureAnomalyDetector(GaussianMixture(3, random_state=0)).fit, normal_data)
    scores = detector.score_samples(normal_data)
    assert detector.threshold_ == pytest.approx(np.quantile(scores, 0.01), rel=1e-12)


def test_hand_computation_from_score_samples(fitted, normal_data):
    # threshold_ = the contamination quantile of the fitted estimator's training log-densities.
    scores = fitted.estimator_.score_samples(normal_data)
    assert fitted.threshold_ == np.quantile(scores, 0.05)
    assert fitted.offset_ == fitted.threshold_
    np.testing.assert_array_equal(fitted.score_samples(normal_data), scores)
    np.testing.assert_allclose(
        fitted.decision_function(normal_data), scores - fitted.threshold_, rtol=0, atol=0
    )
    np.testing.assert_array_equal(
        fitted.predict(normal_data), np.where(scores >= fitted.threshold_, 1, -1)
    )


def test_decision_function_is_positive_for_inliers(fitted, normal_data):
    center = normal_data.mean(0, keepdims=True)
    inliers = fitted.estimator_.means_  # the mixture's own centres are its most probable points
    far = far_outliers(normal_data, n=5)
    assert (fitted.decision_function(inliers) > 0).all()
    assert (fitted.predict(inliers) == 1).all()
    assert (fitted.decision_function(far) < 0).all()
    assert (fitted.predict(far) == -1).all()
    assert fitted.predict(center).dtype.kind == "i"


def test_threshold_rule_uses_the_given_log_density(normal_data):
    detector = quiet(
        MixtureAnomalyDetector(GaussianMixture(3, random_state=0), threshold=-9.0).fit, normal_data
    )
    assert detector.threshold_ == detector.offset_ == -9.0
    scores = detector.score_samples(normal_data)
    np.testing.assert_array_equal(detector.predict(normal_data), np.where(scores >= -9.0, 1, -1))
    # A threshold far below every training density flags none of them; far above, all of them.
    for t, want in ((scores.min() - 10, 1), (scores.max() + 10, -1)):
        detector.set_params(threshold=float(t)).fit(normal_data)
        assert (detector.predict(normal_data) == want).all()


def test_predict_accepts_tensors_and_frames(fitted, normal_data):
    want = fitted.predict(normal_data)
    np.testing.assert_array_equal(fitted.predict(torch.as_tensor(normal_data)), want)
    frame = pd.DataFrame(normal_data, columns=["a", "b", "c"])
    detector = quiet(MixtureAnomalyDetector(GaussianMixture(3, random_state=0)).fit, frame)
    assert detector.feature_names_in_.tolist() == ["a", "b", "c"]
    assert detector.n_features_in_ == 3


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "params, match",
    [
        (
            dict(contamination=0.0),
            r"'contamination' must be None or a number in \(0, 0.5\]; got 0.0",
        ),
        (dict(contamination=0.7), r"'contamination'.*got 0.7.*expected share of outliers"),
        (dict(contamination="auto"), r"'contamination'.*got 'auto'"),
        (dict(threshold="low"), r"'threshold' must be None or a number.*got 'low'"),
        (dict(threshold=float("nan")), r"'threshold' must be a finite log-density; got nan"),
        (dict(contamination=0.1, threshold=-5.0), r"'contamination' or 'threshold', not both"),
    ],
)
def test_bad_parameters_get_clear_errors(params, match):
    detector = MixtureAnomalyDetector(GaussianMixture(), **params)
    with pytest.raises(ValueError, match=match):
        detector.fit(np.random.default_rng(0).normal(size=(20, 2)))


def test_estimator_without_score_samples_is_rejected():
    from sklearn.cluster import KMeans

    with pytest.raises(ValueError, match="score_samples; got a KMeans without score_samples"):
        MixtureAnomalyDetector(KMeans(2)).fit(np.zeros((10, 2)))


def test_unfitted_detector_raises_not_fitted():
    detector = MixtureAnomalyDetector(GaussianMixture())
    for method in ("score_samples", "decision_function", "predict"):
        with pytest.raises(NotFittedError):
            getattr(detector, method)(np.zeros((3, 2)))
    assert not hasattr(detector, "n_features_in_")


def test_fit_leaves_the_template_unfitted(normal_data):
    template = GaussianMixture(3, random_state=0)
    detector = quiet(MixtureAnomalyDetector(template).fit, normal_data)
    assert not hasattr(template, "weights_") and detector.estimator_ is not template


# ----------------------------------------------------------------------------- scikit-learn
# Every check passes (check_array_api_input is skipped by scikit-learn itself when
# SCIPY_ARRAY_API is unset), so no check is listed as an expected failure. The detector has no
# random_state of its own: a seeded inner estimator makes repeated fits identical
# (check_fit_idempotent), as scikit-learn's set_random_state only seeds top-level parameters.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@parametrize_with_checks(
    [
        MixtureAnomalyDetector(GaussianMixture()),
        MixtureAnomalyDetector(
            GaussianMixture(2, covariance_type="diag", random_state=0), contamination=0.1
        ),
    ],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
