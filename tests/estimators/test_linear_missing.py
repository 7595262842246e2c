"""Missing values in the linear-Gaussian models: the bound EM reports is the observed-data
log-likelihood (against scipy on each row's observed sub-vector), it never decreases, imputations
are the Gaussian conditional means, and the edge cases (a row or a column with nothing observed)."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning

from lvmkit import FactorAnalysis, MixtureOfFactorAnalyzers, ProbabilisticPCA
from lvmkit.models import factor

f64 = torch.float64


def low_rank(n=400, d=7, q=2, seed=0, offset=3.0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, q))
    return (
        rng.normal(size=(n, q)) @ W.T + rng.normal(size=(n, d)) * rng.uniform(0.3, 0.8, d) + offset
    )


def with_gaps(X, fraction=0.2, seed=1):
    X = X.copy()
    X[np.random.default_rng(seed).random(X.shape) < fraction] = np.nan
    return X


def brute_force(X, weights, means, covariances):
    """log Σ_k π_k N(x_o | μ_ko, Σ_koo) of every row, by scipy on the observed sub-vector."""
    out = np.zeros(len(X))
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        if not o.any():
            continue
        terms = [
            np.log(w) + multivariate_normal(m[o], C[np.ix_(o, o)]).logpdf(x[o])
            for w, m, C in zip(weights, means, covariances, strict=True)
        ]
        out[i] = logsumexp(terms)
    return out


@pytest.mark.parametrize("k, isotropic", [(1, True), (1, False), (3, False)])
def test_the_bound_of_every_e_step_is_the_observed_log_likelihood(k, isotropic):
    """The E-step's log-likelihood at the parameters it is given equals scipy's on every row's
    observed values (1e-10), at every iteration, and EM never lowers it."""
    rng = np.random.default_rng(k)
    X = with_gaps(rng.normal(size=(80, 6)) * 2, 0.25)
    X[0] = np.nan  # a row with nothing observed
    d, q = 6, 2
    params = factor.FactorParams(
        torch.tensor(rng.dirichlet(np.ones(k) * 5)),
        torch.tensor(rng.normal(size=(k, d))),
        torch.tensor(rng.normal(size=(k, d, q))),
        torch.tensor(
            np.repeat(rng.uniform(0.3, 1, (k, 1)), d, 1)
            if isotropic
            else rng.uniform(0.3, 1, (k, d))
        ),
    )
    model = factor.FactorMixture(k, q, isotropic, f64, torch.full((d,), 1e-6, dtype=f64), True)
    F = factor.features(torch.tensor(X))
    previous = -np.inf
    for _ in range(4):
        stats = model.e_step(F, None, params)
        W, psi = params.loadings.numpy(), params.noise.numpy()
        covariances = W @ W.transpose(0, 2, 1) + np.stack([np.diag(p) for p in psi])
        reference = brute_force(X, params.weights.numpy(), params.means.numpy(), covariances)
        assert model.bound(stats) == pytest.approx(reference.mean(), rel=1e-10, abs=1e-10)
        assert model.bound(stats) >= previous - 1e-10
        previous = model.bound(stats)
        params = model.m_step(stats, params)


@pytest.mark.parametrize("cls", [ProbabilisticPCA, FactorAnalysis])
def test_fits_with_gaps_against_scipy(cls):
    X = with_gaps(low_rank())
    model = cls(2, tol=1e-7 if cls is ProbabilisticPCA else 1e-6, max_iter=3000).fit(X)
    bounds = np.asarray(model.lower_bounds_)
    assert np.all(np.diff(bounds) >= -1e-10 * np.abs(bounds[1:]))
    reference = brute_force(X, [1.0], [model.mean_], [model.get_covariance()])
    np.testing.assert_allclose(model.score_samples(X), reference, rtol=1e-10, atol=1e-10)
    if cls is ProbabilisticPCA:  # the log-likelihood at the returned parameters
        assert model.loglike_ == pytest.approx(reference.mean(), rel=1e-12)
    else:  # sklearn's convention: the total entering the last iteration, converged to tol
        assert model.loglike_[-1] / len(X) == pytest.approx(reference.mean(), abs=1e-7)


def test_probabilistic_pca_by_em_from_a_random_start_reaches_the_closed_form():
    X = low_rank(seed=3)
    closed = ProbabilisticPCA(2).fit(X)
    em = ProbabilisticPCA(2, solver="em", init="random", random_state=0, tol=1e-13).fit(X)
    assert em.n_iter_ > 10
    assert em.loglike_ == pytest.approx(closed.loglike_, abs=1e-9)
    # the same principal subspace: the projectors agree
    P1, P2 = (m.components_.T @ m.components_ for m in (closed, em))
    np.testing.assert_allclose(P1, P2, atol=1e-4)
    assert em.noise_variance_ == pytest.approx(closed.noise_variance_, rel=1e-5)


@pytest.mark.parametrize("cls", [ProbabilisticPCA, FactorAnalysis])
def test_impute_and_transform_are_the_conditional_means(cls):
    X = with_gaps(low_rank(seed=4))
    model = cls(2).fit(X)
    filled = model.impute(X)
    C, mu = model.get_covariance(), model.mean_
    W, psi = model.loadings_, model._noise()
    for i in range(12):
        x = X[i]
        o, m = ~np.isnan(x), np.isnan(x)
        expected = x.copy()
        expected[m] = mu[m] + C[np.ix_(m, o)] @ np.linalg.solve(C[np.ix_(o, o)], x[o] - mu[o])
        np.testing.assert_allclose(filled[i], expected, rtol=1e-10, atol=1e-10)
        # E[z | x_o] = (I + W_oᵀ Ψ_o⁻¹ W_o)⁻¹ W_oᵀ Ψ_o⁻¹ (x_o − μ_o)
        Wo = W[o]
        z = np.linalg.solve(
            np.eye(2) + Wo.T @ (Wo / psi[o, None]), Wo.T @ ((x[o] - mu[o]) / psi[o])
        )
        np.testing.assert_allclose(model.transform(X[i : i + 1])[0], z, rtol=1e-10, atol=1e-12)
    complete = ~np.isnan(X).any(1)
    np.testing.assert_array_equal(filled[complete], X[complete])


def test_a_row_with_nothing_observed_and_a_column_with_nothing_observed():
    X = with_gaps(low_rank(seed=5))
    X[3] = np.nan
    model = ProbabilisticPCA(2).fit(X)
    # the log-likelihood of no observation
    assert model.score_samples(X[3:4])[0] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(model.impute(X[3:4])[0], model.mean_)
    np.testing.assert_allclose(model.transform(X[3:4])[0], 0.0)
    X[:, 4] = np.nan
    for cls in (ProbabilisticPCA, FactorAnalysis, MixtureOfFactorAnalyzers):
        with pytest.raises(ValueError, match=r"Feature\(s\) \[4\] have no observed value"):
            cls(2).fit(X)
    bad = low_rank()
    bad[2, 2] = np.inf
    with pytest.raises(ValueError, match="inf"):
        FactorAnalysis(2).fit(bad)
    constant = low_rank()
    constant[:, 1] = 5.0
    with pytest.raises(ValueError, match=r"Feature\(s\) \[1\] are constant"):
        FactorAnalysis(2).fit(with_gaps(constant))


def test_weights_chunks_and_float32_with_gaps():
    X = with_gaps(low_rank(n=120, seed=6))
    w = np.random.default_rng(0).integers(0, 3, len(X)).astype(float)
    with pytest.warns(ConvergenceWarning):  # 40 iterations exactly, whether converged or not
        weighted = FactorAnalysis(2, tol=0, max_iter=40).fit(X, sample_weight=w)
        duplicated = FactorAnalysis(2, tol=0, max_iter=40).fit(np.repeat(X, w.astype(int), 0))
    np.testing.assert_allclose(weighted.lower_bounds_, duplicated.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(weighted.get_covariance(), duplicated.get_covariance(), rtol=1e-9)
    whole = ProbabilisticPCA(2).fit(X)
    chunked = ProbabilisticPCA(2, chunk_size=17).fit(X)
    assert chunked.loglike_ == pytest.approx(whole.loglike_, rel=1e-12)
    np.testing.assert_allclose(chunked.get_covariance(), whole.get_covariance(), rtol=1e-9)
    single = ProbabilisticPCA(2, dtype="float32").fit(X)
    assert single.loglike_ == pytest.approx(whole.loglike_, abs=1e-4)


def test_imputation_beats_column_means_on_digits():
    from sklearn.datasets import load_digits

    X = load_digits().data[:600] + np.random.default_rng(0).random((600, 64))  # dequantized
    gappy = with_gaps(X, 0.2, seed=2)
    hidden = np.isnan(gappy)
    mean_fill = np.where(hidden, np.nanmean(gappy, 0), gappy)

    def rmse(filled):
        return float(np.sqrt(np.mean((filled[hidden] - X[hidden]) ** 2)))

    baseline = rmse(mean_fill)
    for model in (ProbabilisticPCA(10), FactorAnalysis(10)):
        assert rmse(model.fit(gappy).impute(gappy)) < 0.75 * baseline


def test_partial_fit_approaches_fit_with_gaps():
    X = with_gaps(low_rank(n=3000, seed=7))
    batch = FactorAnalysis(2).fit(X)
    online = FactorAnalysis(2)
    for _ in range(3):
        for start in range(0, len(X), 250):
            online.partial_fit(X[start : start + 250])
    assert online.score(X) == pytest.approx(batch.score(X), abs=0.05)
    assert online.score(X) <= batch.score(X) + 1e-6
    # after fit, partial_fit continues from the fitted parameters: a step on all the rows is an
    # EM step from there, which cannot lower the log-likelihood
    again = FactorAnalysis(2).fit(X)
    again.partial_fit(X)
    assert again.score(X) >= batch.score(X) - 1e-9


def test_the_latent_dimension_chosen_by_bic_and_held_out_likelihood():
    """select_components chooses PPCA's and FA's q as the mixtures' K: by BIC or by held-out
    log-likelihood, with gaps or without; the data have 3 factors."""
    from lvmkit import select_components

    rng = np.random.default_rng(8)
    X = rng.normal(size=(600, 3)) @ rng.normal(size=(3, 10)) + 0.5 * rng.normal(size=(600, 10))
    for criterion, est in (
        ("bic", ProbabilisticPCA()),
        ("bic", FactorAnalysis()),
        ("heldout", ProbabilisticPCA()),
    ):
        table, best = select_components(est, X, range(1, 6), criterion, random_state=0)
        assert best.n_components == 3, (criterion, type(est).__name__)
    _, best = select_components(ProbabilisticPCA(), with_gaps(X), range(1, 6), "heldout")
    assert best.n_components == 3
