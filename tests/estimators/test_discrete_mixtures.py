"""PoissonMixture and BernoulliMixture: brute force on tiny data, scipy, invariants, errors."""

import itertools

import numpy as np
import pytest
import torch
from scipy import stats as st
from scipy.special import logsumexp

from lvmkit import BernoulliMixture, PoissonMixture
from tests.conftest import quiet


def poisson_data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    rates = np.array([[1.0, 6.0, 12.0], [9.0, 1.0, 2.0], [3.0, 3.0, 0.2]])
    z = rng.choice(3, size=n, p=[0.3, 0.5, 0.2])
    return rng.poisson(rates[z]).astype(float), z, rates


def bernoulli_data(n=600, d=12, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.05, 0.95, size=(3, d))
    z = rng.choice(3, size=n, p=[0.3, 0.5, 0.2])
    return (rng.random((n, d)) < probs[z]).astype(float), z, probs


def dense_log_prob(est, X):
    if isinstance(est, PoissonMixture):
        comp = np.stack([st.poisson(r).logpmf(X).sum(1) for r in est.rates_], 1)
    else:
        comp = np.stack([st.bernoulli(p).logpmf(X).sum(1) for p in est.probs_], 1)
    return comp + np.log(est.weights_)


CASES = [(PoissonMixture, poisson_data, "rates"), (BernoulliMixture, bernoulli_data, "probs")]


@pytest.mark.parametrize("cls, data, name", CASES)
def test_score_samples_and_proba_match_scipy(cls, data, name):
    X, *_ = data()
    est = cls(3, random_state=0, dtype="float64").fit(X)
    joint = dense_log_prob(est, X)
    np.testing.assert_allclose(est.score_samples(X), logsumexp(joint, 1), rtol=1e-10)
    np.testing.assert_allclose(
        est.predict_proba(X), np.exp(joint - logsumexp(joint, 1, keepdims=True)), atol=1e-10
    )


@pytest.mark.parametrize("cls, data, name", CASES)
def test_one_em_step_matches_brute_force_on_tiny_data(cls, data, name):
    """Every responsibility and sum written out with Python loops over points and components."""
    X, *_ = data(n=7, seed=3)
    rng = np.random.default_rng(4)
    w0 = np.array([0.2, 0.5, 0.3])
    theta0 = (
        rng.uniform(0.5, 5.0, (3, X.shape[1]))
        if name == "rates"
        else rng.uniform(0.1, 0.9, (3, X.shape[1]))
    )
    est = quiet(
        cls(3, max_iter=1, tol=0, weights_init=w0, dtype="float64", **{f"{name}_init": theta0}).fit,
        X,
    )
    pmf = st.poisson.pmf if name == "rates" else st.bernoulli.pmf
    resp = np.zeros((len(X), 3))
    loglik = 0.0
    for i, j in itertools.product(range(len(X)), range(3)):
        resp[i, j] = w0[j] * np.prod([pmf(X[i, d], theta0[j, d]) for d in range(X.shape[1])])
    for i in range(len(X)):
        loglik += np.log(resp[i].sum())
        resp[i] /= resp[i].sum()
    assert est.lower_bounds_[0] == pytest.approx(loglik / len(X), rel=1e-12)
    np.testing.assert_allclose(est.weights_, resp.mean(0), rtol=1e-10)
    want = np.array(
        [
            [
                sum(resp[i, j] * X[i, d] for i in range(len(X))) / resp[:, j].sum()
                for d in range(X.shape[1])
            ]
            for j in range(3)
        ]
    )
    low = est.min_rate if name == "rates" else est.min_prob
    high = np.inf if name == "rates" else 1 - est.min_prob
    np.testing.assert_allclose(getattr(est, f"{name}_"), np.clip(want, low, high), rtol=1e-10)


@pytest.mark.parametrize("cls, data, name", CASES)
@pytest.mark.parametrize("seed", range(4))
def test_em_never_lowers_the_bound(cls, data, name, seed):
    X, *_ = data(n=300, seed=seed)
    est = quiet(
        cls(4, max_iter=60, tol=0, init_params="random", random_state=seed, dtype="float64").fit, X
    )
    lb = np.asarray(est.lower_bounds_)
    assert np.all(np.diff(lb) >= -1e-10 * np.abs(lb[1:]))


@pytest.mark.parametrize("cls, data, name", CASES)
def test_recovers_parameters(cls, data, name):
    X, z, truth = data(n=20_000)
    est = cls(3, n_init=3, random_state=0, dtype="float64", tol=1e-8, max_iter=500).fit(X)
    order = [int(np.argmin(np.abs(getattr(est, f"{name}_") - t).sum(1))) for t in truth]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(
        getattr(est, f"{name}_")[order], truth, atol=0.15 if name == "rates" else 0.03
    )
    np.testing.assert_allclose(est.weights_[order], [0.3, 0.5, 0.2], atol=0.02)


@pytest.mark.parametrize("cls, data, name", CASES)
def test_float32_follows_float64(cls, data, name):
    X, *_ = data(n=2000)
    a = quiet(cls(3, max_iter=30, tol=0, random_state=0, dtype="float64").fit, X)
    b = quiet(cls(3, max_iter=30, tol=0, random_state=0, dtype="float32").fit, X)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=1e-5)


@pytest.mark.parametrize("cls, data, name", CASES)
def test_sample_and_criteria(cls, data, name):
    X, *_ = data(n=3000)
    est = cls(3, random_state=0).fit(X)
    S, y = est.sample(5000)
    assert S.shape == (5000, X.shape[1]) and set(np.unique(y)) <= {0, 1, 2}
    for j in range(3):
        theta = getattr(est, f"{name}_")[j]
        variance = theta if name == "rates" else theta * (1 - theta)
        n_j = int((y == j).sum())
        # Five standard errors of each sample mean.
        assert np.all(np.abs(S[y == j].mean(0) - theta) <= 5 * np.sqrt(variance / n_j) + 1e-12)
    p = 3 * X.shape[1] + 2
    assert est.bic(X) == pytest.approx(-2 * est.score(X) * len(X) + p * np.log(len(X)))
    assert est.aic(X) == pytest.approx(-2 * est.score(X) * len(X) + 2 * p)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[1.0, -2.0], [0.0, 1.0]]), r"non-negative counts.*-2 at row 0, column 1"),
        (np.array([[1.0, 2.5], [0.0, 1.0]]), r"integer counts.*2.5 at row 0, column 1.*np.rint"),
    ],
)
def test_poisson_rejects_non_counts(X, match):
    with pytest.raises(ValueError, match=match):
        PoissonMixture(1).fit(X)
    est = PoissonMixture(1).fit(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=match):
        est.score_samples(X)


def test_bernoulli_rejects_grey_levels_and_names_binarization():
    X = np.array([[0.0, 0.5], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"binary data.*0.5 at row 0, column 1.*Binarize"):
        BernoulliMixture(1).fit(X)


@pytest.mark.parametrize("cls, data, name", CASES)
def test_bad_initial_values(cls, data, name):
    X, *_ = data(n=50)
    with pytest.raises(ValueError, match=f"{name}_init must have shape"):
        cls(3, **{f"{name}_init": np.ones((2, X.shape[1]))}).fit(X)
    with pytest.raises(ValueError, match=f"{name}_init must lie in"):
        cls(3, **{f"{name}_init": np.full((3, X.shape[1]), -1.0)}).fit(X)


@pytest.mark.parametrize("cls, data, name", CASES)
def test_torch_input(cls, data, name):
    X, *_ = data(n=300)
    a = cls(3, random_state=0, dtype="float64").fit(X)
    b = cls(3, random_state=0, dtype="float64").fit(torch.as_tensor(X))
    np.testing.assert_allclose(getattr(b, f"{name}_"), getattr(a, f"{name}_"), rtol=1e-10)


def test_poisson_counts_too_large_for_float32_are_refused_with_the_fix():
    from lvmkit import PoissonMixture

    C = np.random.default_rng(0).poisson(3.0, size=(200, 3)).astype(np.float64) * 1e30
    with pytest.raises(
        ValueError, match=r"largest count is .* too large for float32.*dtype='float64'"
    ):
        PoissonMixture(2, random_state=0).fit(C)
    fitted = PoissonMixture(2, random_state=0, dtype="float64").fit(C)
    assert np.isfinite(fitted.score(C))


def test_float32_bernoulli_log_density_keeps_its_precision_when_most_probabilities_are_near_1():
    # 784 features, 584 of them on in nearly every row: X Wᵀ + c cancels terms of ±13.8 per
    # feature unless those features are flipped (BernoulliMixture does: flipped_).
    rng = np.random.default_rng(0)
    p = rng.random((4, 784)) * 0.002 + 0.998
    p[:, :200] = rng.random((4, 200))
    X = (rng.random((3000, 784)) < p[rng.integers(0, 4, 3000)]).astype(np.float64)
    m32 = BernoulliMixture(4, random_state=0, dtype="float32", max_iter=30).fit(X)
    assert m32.flipped_.sum() >= 584
    same = dict(weights_init=m32.weights_, probs_init=m32.probs_, max_iter=0)
    m64 = quiet(BernoulliMixture(4, dtype="float64", **same).fit, X)
    # 0.0136 nats per row at most before the flip; float32's own rounding of a sum of ~-106 now
    np.testing.assert_allclose(m32.score_samples(X), m64.score_samples(X), rtol=0, atol=2e-4)
    # the flip is a frame, not a model: float64 fits agree with and without it
    unflipped = BernoulliMixture(4, dtype="float64", **same)
    unflipped._choose_reference = lambda data, comm: setattr(
        unflipped, "flipped_", np.zeros(784, bool)
    )
    quiet(unflipped.fit, X)
    np.testing.assert_allclose(unflipped.score_samples(X), m64.score_samples(X), rtol=1e-12)
