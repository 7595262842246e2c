"""scikit-learn's own estimator checks, run on the default GaussianMixture."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from lvmkit import GaussianMixture

# No check is excluded: all of scikit-learn's estimator checks pass with the defaults.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@parametrize_with_checks(
    [GaussianMixture(), GaussianMixture(covariance_type="diag", dtype="float64")],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
