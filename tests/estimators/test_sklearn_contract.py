"""scikit-learn's own estimator checks, run on the default mixtures and on 1, 2 and 3 components."""

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


# --------------------------------------------------------------------------- discrete families
# scikit-learn's checks feed real-valued data, which Poisson and Bernoulli mixtures rightly
# reject (tested in test_discrete_mixtures.py). To run the whole contract on them anyway, these
# test-only subclasses map the check data into each family's domain and otherwise are the real
# estimators: round(|x|) for counts, x > 0 for bits. NaN, inf, object data and wrong shapes
# pass through unchanged, so those checks still test the real error paths.
import functools  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lvmkit import BernoulliMixture, PoissonMixture  # noqa: E402


def _into_domain(X, fn):
    if isinstance(X, pd.DataFrame):
        return X.apply(
            lambda col: fn(col.to_numpy(dtype=float)) if col.dtype.kind in "fiu" else col
        )
    try:
        A = np.asarray(X)
        if np.iscomplexobj(A):
            return X
        A = A.astype(float)
    except (TypeError, ValueError):
        return X
    if A.ndim != 2 or not np.isfinite(A).all():
        return X
    return fn(A)


def _domain_wrapped(name, cls, fn):
    def wrap(method_name):
        method = getattr(cls, method_name)

        @functools.wraps(method)
        def call(self, X, *args, **kwargs):
            return method(self, _into_domain(X, fn), *args, **kwargs)

        return call

    names = (
        "fit",
        "fit_predict",
        "partial_fit",
        "predict",
        "predict_proba",
        "score",
        "score_samples",
        "bic",
        "aic",
    )
    namespace = {n: wrap(n) for n in names}
    namespace.update(__module__=__name__, __qualname__=name)
    return type(name, (cls,), namespace)


CountsPoissonMixture = _domain_wrapped(
    "CountsPoissonMixture", PoissonMixture, lambda A: np.rint(np.abs(A))
)
BitsBernoulliMixture = _domain_wrapped(
    "BitsBernoulliMixture", BernoulliMixture, lambda A: (A > 0).astype(float)
)


@parametrize_with_checks(
    [
        CountsPoissonMixture(),
        BitsBernoulliMixture(),
        CountsPoissonMixture(dtype="float64", algorithm="gem"),
    ],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks_discrete(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- more components
# The whole contract again for 1, 2 and 3 components, every covariance type and every family,
# in float64: check_sample_weight_equivalence_on_dense_data compares a weighted fit with the
# fit of the rows repeated at rtol=1e-7, which with 2 or more components holds because every
# initialisation depends on the rows' values and weights, not their order
# (tests/estimators/test_weight_duplication.py). float32 fits of the two agree only to float32
# rounding (~1e-6 relative), which that tolerance does not allow in general.
CTS = ("full", "tied", "diag", "spherical")
MATRIX = [
    GaussianMixture(k, covariance_type=ct, dtype="float64") for ct in CTS for k in (1, 2, 3)
] + [
    cls(k, dtype="float64")
    for cls in (CountsPoissonMixture, BitsBernoulliMixture)
    for k in (1, 2, 3)
]


@parametrize_with_checks(MATRIX, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks_components(estimator, check):
    check(estimator)
