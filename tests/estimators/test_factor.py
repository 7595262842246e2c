"""Factor analysis by EM against scikit-learn's FactorAnalysis and scipy (float64)."""

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.decomposition import FactorAnalysis as SkFactorAnalysis

import lvmkit
from lvmkit.estimators.factor import FactorAnalysis


def data(n=800, d=8, q=3, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, q))
    noise = rng.uniform(0.2, 1.5, size=d)  # heteroscedastic: factor analysis, not PCA
    return rng.normal(size=(n, q)) @ W.T + rng.normal(size=(n, d)) * np.sqrt(noise) + 5.0


def test_converges_to_scikit_learns_maximum_likelihood():
    X = data()
    ours = FactorAnalysis(3, tol=1e-9, max_iter=20000).fit(X)
    theirs = SkFactorAnalysis(3, tol=1e-9, max_iter=20000, svd_method="lapack").fit(X)
    assert ours.converged_
    # the same maximum: log-likelihood per sample to 1e-6, and the same covariance model
    assert ours.score(X) == pytest.approx(theirs.score(X), abs=1e-6)
    np.testing.assert_allclose(ours.get_covariance(), theirs.get_covariance(), atol=1e-4)
    np.testing.assert_allclose(ours.noise_variance_, theirs.noise_variance_, rtol=1e-3, atol=1e-5)
    # scikit-learn's loglike_ convention: the total log-likelihood per iteration
    assert ours.loglike_[-1] == pytest.approx(ours.score(X) * len(X), rel=1e-9)


def test_em_never_decreases_and_the_density_is_exact():
    X = data(seed=1)
    model = FactorAnalysis(2, tol=1e-6).fit(X)
    bounds = np.array(model.lower_bounds_)
    assert np.all(np.diff(bounds) > -1e-12 * np.abs(bounds[1:]))
    reference = multivariate_normal(model.mean_, model.get_covariance()).logpdf(X)
    np.testing.assert_allclose(model.score_samples(X), reference, rtol=1e-10)
    np.testing.assert_allclose(model.get_precision() @ model.get_covariance(), np.eye(8), atol=1e-9)


@pytest.mark.parametrize("rotation", ["varimax", "quartimax"])
def test_rotations_keep_the_likelihood_and_match_scikit_learn(rotation):
    X = data(seed=2)
    plain = FactorAnalysis(3, tol=1e-9, max_iter=20000).fit(X)
    rotated = FactorAnalysis(3, tol=1e-9, max_iter=20000, rotation=rotation).fit(X)
    np.testing.assert_allclose(rotated.score_samples(X), plain.score_samples(X), rtol=1e-10)
    theirs = SkFactorAnalysis(3, tol=1e-9, max_iter=20000, rotation=rotation).fit(X)
    # the rotated loadings are scikit-learn's up to the order and signs of the factors
    overlap = np.abs(rotated.components_ @ theirs.components_.T)
    norms = np.outer(
        np.linalg.norm(rotated.components_, axis=1), np.linalg.norm(theirs.components_, axis=1)
    )
    np.testing.assert_allclose(np.sort((overlap / norms).max(1)), 1.0, atol=1e-3)


def test_transform_weights_chunks_files_and_errors(tmp_path):
    X = data(n=300, seed=3)
    model = FactorAnalysis(3, tol=1e-8).fit(X)
    W, psi, mu = model.loadings_, model.noise_variance_, model.mean_
    G = np.linalg.inv(np.eye(3) + (W.T / psi) @ W)
    np.testing.assert_allclose(model.transform(X), (X - mu) @ (W / psi[:, None]) @ G, rtol=1e-10)
    w = np.random.default_rng(0).integers(0, 3, size=300)
    weighted = FactorAnalysis(3, tol=1e-3).fit(X, sample_weight=w)
    duplicated = FactorAnalysis(3, tol=1e-3).fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(weighted.lower_bounds_, duplicated.lower_bounds_, rtol=1e-10)
    chunked = FactorAnalysis(3, tol=1e-8, chunk_size=29).fit(X)
    np.testing.assert_allclose(chunked.lower_bounds_, model.lower_bounds_, rtol=1e-12)
    back = lvmkit.load(model.save(tmp_path / "fa.lvm"))
    np.testing.assert_array_equal(back.score_samples(X), model.score_samples(X))
    Xs, Z = model.sample(5, random_state=0)
    assert Xs.shape == (5, 8) and Z.shape == (5, 3)
    with pytest.raises(ValueError, match="n_components=8 must lie in 1"):
        FactorAnalysis(8).fit(X)
    with pytest.raises(ValueError, match="noise_variance_init must hold 8 positive"):
        FactorAnalysis(2, noise_variance_init=np.ones(3)).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(Warning, match="did not converge"):
            FactorAnalysis(3, tol=0, max_iter=3).fit(X)


def test_r_factanal_two_factor_solution():
    """R's factanal(covmat = 0.4^|i - j|, factors = 2) for p = 6 (as statsmodels' tests quote it,
    3 digits): uniquenesses 0.782 0.367 0.696 0.696 0.367 0.782, and the loadings below (varimax,
    so compared through the rotation-invariant W Wᵀ). Rows whose covariance over N is exactly
    that matrix stand in for `covmat`."""
    p = 6
    ii = np.arange(p)
    cm = 0.4 ** np.abs(np.subtract.outer(ii, ii))
    Z = np.random.default_rng(0).normal(size=(2000, p))
    Z -= Z.mean(0)
    Z = Z @ np.linalg.inv(np.linalg.cholesky(Z.T @ Z / len(Z))).T  # covariance over N exactly I
    X = Z @ np.linalg.cholesky(cm).T
    np.testing.assert_allclose(np.cov(X.T, bias=True), cm, atol=1e-12)
    model = FactorAnalysis(2, tol=1e-10, max_iter=100000).fit(X)
    np.testing.assert_allclose(
        model.noise_variance_, [0.782, 0.367, 0.696, 0.696, 0.367, 0.782], atol=1e-3
    )
    L = np.array([[0.323, 0.586, 0.519, 0.519, 0.586, 0.323],
                  [0.337, 0.538, 0.187, -0.187, -0.538, -0.337]]).T  # fmt: skip
    np.testing.assert_allclose(model.loadings_ @ model.loadings_.T, L @ L.T, atol=2e-3)
