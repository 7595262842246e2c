"""Hidden Markov models against published numbers and hmmlearn, at explicit tolerances (float64).

References: Wikipedia's Viterbi and forward-backward examples (as hmmlearn's own tests use them);
the Federal funds rate Markov-switching model (Stata's msswitch manual, reproduced in statsmodels'
tests: log-likelihood -508.63592); the earthquake counts of Zucchini & MacDonald, *Hidden Markov
Models for Time Series* (2009), Table 3.1 / section 3.6: -log L = 341.8787 (2 states) and 328.5275
(3 states), AIC 693.7574 and 679.055, BIC 708.4561 (3 states).
"""

import warnings

import numpy as np
import pytest
from hmmlearn import hmm as ref

import lvmkit

# Federal funds rate, quarterly 1954Q3-2010Q4 (statsmodels' tsa/regime_switching tests, from Stata)
FEDFUNDS = np.array(
    [
        1.03,
        0.99,
        1.34,
        1.5,
        1.94,
        2.36,
        2.48,
        2.69,
        2.81,
        2.93,
        2.93,
        3,
        3.23,
        3.25,
        1.86,
        0.94,
        1.32,
        2.16,
        2.57,
        3.08,
        3.58,
        3.99,
        3.93,
        3.7,
        2.94,
        2.3,
        2,
        1.73,
        1.68,
        2.4,
        2.46,
        2.61,
        2.85,
        2.92,
        2.97,
        2.96,
        3.33,
        3.45,
        3.46,
        3.49,
        3.46,
        3.58,
        3.97,
        4.08,
        4.07,
        4.17,
        4.56,
        4.91,
        5.41,
        5.56,
        4.82,
        3.99,
        3.89,
        4.17,
        4.79,
        5.98,
        5.94,
        5.92,
        6.57,
        8.33,
        8.98,
        8.94,
        8.57,
        7.88,
        6.7,
        5.57,
        3.86,
        4.56,
        5.47,
        4.75,
        3.54,
        4.3,
        4.74,
        5.14,
        6.54,
        7.82,
        10.56,
        10,
        9.32,
        11.25,
        12.09,
        9.35,
        6.3,
        5.42,
        6.16,
        5.41,
        4.83,
        5.2,
        5.28,
        4.87,
        4.66,
        5.16,
        5.82,
        6.51,
        6.76,
        7.28,
        8.1,
        9.58,
        10.07,
        10.18,
        10.95,
        13.58,
        15.05,
        12.69,
        9.84,
        15.85,
        16.57,
        17.78,
        17.58,
        13.59,
        14.23,
        14.51,
        11.01,
        9.29,
        8.65,
        8.8,
        9.46,
        9.43,
        9.69,
        10.56,
        11.39,
        9.27,
        8.48,
        7.92,
        7.9,
        8.1,
        7.83,
        6.92,
        6.21,
        6.27,
        6.22,
        6.65,
        6.84,
        6.92,
        6.66,
        7.16,
        7.98,
        8.47,
        9.44,
        9.73,
        9.08,
        8.61,
        8.25,
        8.24,
        8.16,
        7.74,
        6.43,
        5.86,
        5.64,
        4.82,
        4.02,
        3.77,
        3.26,
        3.04,
        3.04,
        3,
        3.06,
        2.99,
        3.21,
        3.94,
        4.49,
        5.17,
        5.81,
        6.02,
        5.8,
        5.72,
        5.36,
        5.24,
        5.31,
        5.28,
        5.28,
        5.52,
        5.53,
        5.51,
        5.52,
        5.5,
        5.53,
        4.86,
        4.73,
        4.75,
        5.09,
        5.31,
        5.68,
        6.27,
        6.52,
        6.47,
        5.59,
        4.33,
        3.5,
        2.13,
        1.73,
        1.75,
        1.74,
        1.44,
        1.25,
        1.25,
        1.02,
        1,
        1,
        1.01,
        1.43,
        1.95,
        2.47,
        2.94,
        3.46,
        3.98,
        4.46,
        4.91,
        5.25,
        5.25,
        5.26,
        5.25,
        5.07,
        4.5,
        3.18,
        2.09,
        1.94,
        0.51,
        0.18,
        0.18,
        0.16,
        0.12,
        0.13,
        0.19,
        0.19,
        0.19,
    ]
)

# Annual counts of major earthquakes (magnitude 7+), 1900-2006 (Zucchini & MacDonald 2009)
EARTHQUAKES = np.array(
    [
        13,
        14,
        8,
        10,
        16,
        26,
        32,
        27,
        18,
        32,
        36,
        24,
        22,
        23,
        22,
        18,
        25,
        21,
        21,
        14,
        8,
        11,
        14,
        23,
        18,
        17,
        19,
        20,
        22,
        19,
        13,
        26,
        13,
        14,
        22,
        24,
        21,
        22,
        26,
        21,
        23,
        24,
        27,
        41,
        31,
        27,
        35,
        26,
        28,
        36,
        39,
        21,
        17,
        22,
        17,
        19,
        15,
        34,
        10,
        15,
        22,
        18,
        15,
        20,
        15,
        22,
        19,
        16,
        30,
        27,
        29,
        23,
        20,
        16,
        21,
        21,
        25,
        16,
        18,
        15,
        18,
        14,
        10,
        15,
        8,
        15,
        6,
        11,
        8,
        7,
        18,
        16,
        13,
        12,
        13,
        20,
        15,
        16,
        12,
        18,
        15,
        16,
        13,
        15,
        16,
        11,
        11,
    ]
)


def categorical(startprob, transmat, emissionprob):
    m = lvmkit.CategoricalHMM(len(startprob), init_params="", dtype="float64")
    m.startprob_ = np.array(startprob)
    m.transmat_ = np.array(transmat)
    m.emissionprob_ = np.array(emissionprob)
    return m


def test_wikipedia_viterbi_rainy_sunny():
    """hmmlearn's TestCategoricalAgainstWikipedia: P(best path) = 0.01344, path (1, 0, 0)."""
    m = categorical([0.6, 0.4], [[0.7, 0.3], [0.4, 0.6]], [[0.1, 0.4, 0.5], [0.6, 0.3, 0.1]])
    X = np.array([[0], [1], [2]])
    log_prob, states = m.decode(X)
    assert round(float(np.exp(log_prob)), 5) == 0.01344
    np.testing.assert_allclose(log_prob, -4.309519943887134, rtol=1e-12)
    np.testing.assert_array_equal(states, [1, 0, 0])
    np.testing.assert_array_equal(m.decode(X, algorithm="map")[1], [1, 0, 0])
    np.testing.assert_allclose(m.score(X), -3.3928721329161653, rtol=1e-12)
    posteriors = m.predict_proba(X)
    np.testing.assert_allclose(
        posteriors,
        [
            [0.23170296322741868, 0.7682970367725814],
            [0.6240628347018922, 0.37593716529810783],
            [0.8639771510174935, 0.1360228489825063],
        ],
        atol=1e-12,
    )


def test_wikipedia_forward_backward_umbrella():
    """hmmlearn's TestBaseAgainstWikipedia: log p(x) = -3.3725, Viterbi -4.4590, (0, 0, 1, 0, 0)."""
    m = categorical([0.5, 0.5], [[0.7, 0.3], [0.3, 0.7]], [[0.9, 0.1], [0.2, 0.8]])
    X = np.array([0, 0, 1, 0, 0])[:, None]
    assert round(m.score(X), 4) == -3.3725
    log_prob, states = m.decode(X)
    assert round(log_prob, 4) == -4.4590
    np.testing.assert_array_equal(states, [0, 0, 1, 0, 0])
    np.testing.assert_allclose(m.predict_proba(X).sum(1), 1.0, atol=1e-14)


def test_fedfunds_markov_switching_mean():
    """A 2-state switching mean with one variance, started at the stationary distribution: Stata's
    log-likelihood -508.63592 (statsmodels' TestFedFundsConst checks it to atol 1e-5)."""
    p00, p10 = 0.9820939, 0.0503587
    m = lvmkit.GaussianHMM(2, covariance_type="tied", init_params="", dtype="float64")
    m.transmat_ = np.array([[p00, 1 - p00], [p10, 1 - p10]])
    m.startprob_ = np.array([p10, 1 - p00]) / (p10 + 1 - p00)
    m.means_ = np.array([[3.70877], [9.556793]])
    m.covars_ = np.array([[2.107562**2]])
    assert m.score(FEDFUNDS[:, None]) == pytest.approx(-508.63592, abs=1e-5)


@pytest.mark.parametrize(
    "k, neg_log_l, aic, bic",
    [(2, 341.8787, 693.7574, None), (3, 328.5275, 679.055, 708.4561)],
)
def test_earthquakes_poisson_hmm(k, neg_log_l, aic, bic):
    """Zucchini & MacDonald's maximum-likelihood fits of the earthquake counts (free start
    distribution), reached by EM from a diagonal-heavy start."""
    m = lvmkit.PoissonHMM(k, init_params="", n_iter=5000, tol=1e-10, dtype="float64")
    m.startprob_ = np.full(k, 1.0 / k)
    m.transmat_ = np.full((k, k), 0.1 / (k - 1)) + np.eye(k) * (0.9 - 0.1 / (k - 1))
    m.lambdas_ = np.linspace(10, 30, k)[:, None]
    X = EARTHQUAKES[:, None].astype(float)
    m.fit(X)
    assert -m.score(X) == pytest.approx(neg_log_l, abs=1e-3)
    assert m.aic(X) == pytest.approx(aic, abs=2e-3)
    if bic is not None:
        assert m.bic(X) == pytest.approx(bic, abs=2e-3)


# ---------------------------------------------------------------------------- against hmmlearn
def _random_gaussian(rng, k, d, ct):
    cov = {
        "diag": rng.uniform(0.5, 2, (k, d)),
        "spherical": rng.uniform(0.5, 2, k),
        "full": np.stack([np.eye(d) * rng.uniform(0.8, 1.5) + 0.3 for _ in range(k)]),
        "tied": np.eye(d) * 1.1 + 0.3,
    }[ct]
    return {
        "startprob_": rng.dirichlet(np.ones(k) * 2),
        "transmat_": rng.dirichlet(np.ones(k) * 3, size=k),
        "means_": rng.normal(size=(k, d)) * 2,
        "covars_": cov,
    }


def _set(model, params):
    for name, value in params.items():
        setattr(model, name, np.array(value, copy=True))
    return model


def _fit_both(ours, theirs, X, lengths):
    theirs.fit(X, lengths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(X, lengths)
    return np.array(theirs.monitor_.history), np.array(ours.lower_bounds_)


@pytest.mark.parametrize("ct", ["diag", "full", "spherical", "tied"])
def test_gaussian_every_iteration_equals_hmmlearn(ct):
    rng = np.random.default_rng(0)
    k, d = 3, 2
    params = _random_gaussian(rng, k, d, ct)
    X = rng.normal(size=(300, d)) * 2
    lengths = [100, 1, 49, 150]
    kw = dict(covariance_type=ct, n_iter=8, init_params="", params="stmc")
    theirs = _set(ref.GaussianHMM(k, tol=-1e9, **kw), params)
    ours = _set(lvmkit.GaussianHMM(k, tol=0, dtype="float64", **kw), params)
    np.testing.assert_allclose(ours.score(X, lengths), theirs.score(X, lengths), rtol=1e-12)
    history, bounds = _fit_both(ours, theirs, X, lengths)
    assert len(bounds) == len(history) == 8
    np.testing.assert_allclose(bounds, history, rtol=1e-8)
    assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:]))  # never decreases
    np.testing.assert_allclose(ours.transmat_, theirs.transmat_, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(ours.means_, theirs.means_, rtol=1e-7, atol=1e-10)
    if ct == "spherical":  # hmmlearn's getter returns (K·D, D, D) after a fit: compare variances
        np.testing.assert_allclose(ours.covars_[:, 0, 0], theirs._covars_[:, 0], rtol=1e-7)
    else:
        np.testing.assert_allclose(ours.covars_, theirs.covars_, rtol=1e-7, atol=1e-10)


def test_gaussian_priors_equal_hmmlearn():
    rng = np.random.default_rng(1)
    k, d = 2, 3
    params = _random_gaussian(rng, k, d, "diag")
    X = rng.normal(size=(120, d))
    priors = dict(
        means_prior=0.5,
        means_weight=2.0,
        covars_prior=0.3,
        covars_weight=3.0,
        startprob_prior=2.0,
        transmat_prior=1.5,
    )
    kw = dict(covariance_type="diag", n_iter=5, init_params="", **priors)
    theirs = _set(ref.GaussianHMM(k, tol=-1e9, **kw), params)
    ours = _set(lvmkit.GaussianHMM(k, tol=0, dtype="float64", **kw), params)
    history, bounds = _fit_both(ours, theirs, X, [60, 60])
    np.testing.assert_allclose(bounds, history, rtol=1e-8)


def test_poisson_every_iteration_equals_hmmlearn():
    rng = np.random.default_rng(2)
    k, d = 3, 4
    params = {
        "startprob_": rng.dirichlet(np.ones(k)),
        "transmat_": rng.dirichlet(np.ones(k) * 2, size=k),
        "lambdas_": rng.uniform(1, 10, (k, d)),
    }
    X = rng.poisson(5, size=(250, d)).astype(float)
    lengths = [50, 120, 80]
    theirs = _set(ref.PoissonHMM(k, n_iter=8, tol=-1e9, init_params=""), params)
    ours = _set(lvmkit.PoissonHMM(k, n_iter=8, tol=0, init_params="", dtype="float64"), params)
    history, bounds = _fit_both(ours, theirs, X, lengths)
    np.testing.assert_allclose(bounds, history, rtol=1e-8)
    np.testing.assert_allclose(ours.lambdas_, theirs.lambdas_, rtol=1e-7)


def test_categorical_every_iteration_equals_hmmlearn():
    rng = np.random.default_rng(3)
    k, m = 3, 5
    params = {
        "startprob_": rng.dirichlet(np.ones(k)),
        "transmat_": rng.dirichlet(np.ones(k) * 2, size=k),
        "emissionprob_": rng.dirichlet(np.ones(m), size=k),
    }
    X = rng.integers(0, m, size=(400, 1))
    lengths = [100, 3, 97, 200]
    theirs = _set(ref.CategoricalHMM(k, n_iter=8, tol=-1e9, init_params=""), params)
    ours = _set(lvmkit.CategoricalHMM(k, n_iter=8, tol=0, init_params="", dtype="float64"), params)
    history, bounds = _fit_both(ours, theirs, X, lengths)
    np.testing.assert_allclose(bounds, history, rtol=1e-8)
    np.testing.assert_allclose(ours.emissionprob_, theirs.emissionprob_, rtol=1e-7, atol=1e-12)
    log_prob, states = ours.decode(X, lengths)
    ref_log_prob, ref_states = theirs.decode(X, lengths)
    np.testing.assert_allclose(log_prob, ref_log_prob, rtol=1e-10)
    # paths may differ where two are equally probable; ours must score the optimum
    np.testing.assert_allclose(
        _path_log_prob(ours, X[:, 0], lengths, states), ref_log_prob, rtol=1e-10
    )
    assert np.mean(states != ref_states) < 0.02
    _, post = ours.score_samples(X, lengths)
    np.testing.assert_allclose(post, theirs.predict_proba(X, lengths), atol=1e-10)


def _path_log_prob(model, symbols, lengths, states):
    """log p(x, path) of a categorical HMM, summed over sequences, by direct evaluation."""
    log_pi, log_a = np.log(model.startprob_), np.log(model.transmat_)
    log_b = np.log(model.emissionprob_)
    total, start = 0.0, 0
    for n in lengths:
        z, x = states[start : start + n], symbols[start : start + n]
        total += log_pi[z[0]] + log_a[z[:-1], z[1:]].sum() + log_b[z, x].sum()
        start += n
    return total


def test_float32_within_1e_4_per_observation_of_hmmlearn():
    rng = np.random.default_rng(4)
    k, d = 4, 3
    params = _random_gaussian(rng, k, d, "diag")
    X = rng.normal(size=(2000, d)) * 2
    lengths = [100] * 20
    kw = dict(covariance_type="diag", n_iter=5, init_params="")
    theirs = _set(ref.GaussianHMM(k, tol=-1e9, **kw), params)
    ours = _set(lvmkit.GaussianHMM(k, tol=0, dtype="float32", **kw), params)
    history, bounds = _fit_both(ours, theirs, X, lengths)
    assert np.max(np.abs(bounds - history)) / len(X) < 1e-4
