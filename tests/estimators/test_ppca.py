"""Probabilistic PCA against its closed form, scipy and scikit-learn (float64)."""

import math
import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.decomposition import PCA

import lvmkit
from lvmkit.estimators.ppca import ProbabilisticPCA


def data(n=500, d=6, q=2, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, q)) * 2
    return rng.normal(size=(n, q)) @ W.T + 0.5 * rng.normal(size=(n, d)) + rng.normal(size=d) * 3


def test_log_likelihood_equals_the_closed_form_from_the_eigenvalues():
    X = data()
    n, d = X.shape
    for q in (1, 2, 4):
        model = ProbabilisticPCA(q).fit(X)
        lam = np.sort(np.linalg.eigvalsh(np.cov(X.T, bias=True)))[::-1]  # covariance / N
        s2 = lam[q:].mean()
        expected = -0.5 * (
            d * math.log(2 * math.pi) + np.log(lam[:q]).sum() + (d - q) * math.log(s2) + d
        )
        assert model.loglike_ == pytest.approx(expected, rel=1e-10)
        assert model.noise_variance_ == pytest.approx(s2, rel=1e-10)
        # every row's log p(x) against scipy's density of the fitted covariance
        cov = model.get_covariance()
        reference = multivariate_normal(model.mean_, cov).logpdf(X)
        np.testing.assert_allclose(model.score_samples(X), reference, rtol=1e-10)
        assert model.score(X) == pytest.approx(expected, rel=1e-10)
        np.testing.assert_allclose(model.get_precision() @ cov, np.eye(d), atol=1e-10)


def test_the_subspace_is_scikit_learns_pca():
    X = data(seed=1)
    model = ProbabilisticPCA(2).fit(X)
    pca = PCA(2).fit(X)
    # the same axes up to sign; explained variance over N instead of N - 1
    overlap = np.abs(model.components_ @ pca.components_.T)
    np.testing.assert_allclose(overlap, np.eye(2), atol=1e-8)
    n = X.shape[0]
    np.testing.assert_allclose(
        model.explained_variance_, pca.explained_variance_ * (n - 1) / n, rtol=1e-10
    )
    np.testing.assert_allclose(model.mean_, X.mean(0), rtol=1e-12)


def test_transform_is_the_posterior_mean_and_inverse_transform_the_decoder():
    X = data(seed=2)
    model = ProbabilisticPCA(2).fit(X)
    W, mu, s2 = model.loadings_, model.mean_, model.noise_variance_
    M = W.T @ W + s2 * np.eye(2)
    np.testing.assert_allclose(model.transform(X), (X - mu) @ W @ np.linalg.inv(M).T, rtol=1e-10)
    np.testing.assert_allclose(
        model.inverse_transform(model.transform(X)), (model.transform(X) @ W.T + mu), rtol=1e-12
    )
    np.testing.assert_allclose(W @ W.T + s2 * np.eye(W.shape[0]), model.get_covariance())


def test_samples_have_the_model_covariance():
    model = ProbabilisticPCA(2).fit(data(seed=3))
    X, Z = model.sample(40000, random_state=0)
    assert Z.shape == (40000, 2)
    C = model.get_covariance()
    # sampling error of a covariance entry: ~ sqrt(2 / n) times the variances involved
    np.testing.assert_allclose(np.cov(X.T), C, atol=5 * math.sqrt(2 / 40000) * np.diag(C).max())


def test_weights_equal_duplication_and_chunks_equal_one_pass():
    X = data(n=200, seed=4)
    w = np.random.default_rng(0).integers(0, 3, size=200)
    weighted = ProbabilisticPCA(2).fit(X, sample_weight=w)
    duplicated = ProbabilisticPCA(2).fit(np.repeat(X, w, axis=0))
    assert weighted.loglike_ == pytest.approx(duplicated.loglike_, rel=1e-10)
    np.testing.assert_allclose(weighted.loadings_, duplicated.loadings_, rtol=1e-8, atol=1e-10)
    chunked = ProbabilisticPCA(2, chunk_size=17).fit(X)
    whole = ProbabilisticPCA(2).fit(X)
    assert chunked.loglike_ == pytest.approx(whole.loglike_, rel=1e-12)


def test_save_load_and_errors(tmp_path):
    X = data(seed=5)
    model = ProbabilisticPCA(3).fit(X)
    back = lvmkit.load(model.save(tmp_path / "ppca.lvm"))
    np.testing.assert_array_equal(back.score_samples(X), model.score_samples(X))
    with pytest.raises(ValueError, match="n_components=6 must be smaller than n_features=6"):
        ProbabilisticPCA(6).fit(X)
    bad = X.copy()
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="inf"):
        ProbabilisticPCA(2).fit(bad)
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="solver='eigen' needs complete data"):
        ProbabilisticPCA(2, solver="eigen").fit(bad)
    with pytest.raises(ValueError, match="n_components='mle' needs complete data"):
        ProbabilisticPCA("mle").fit(bad)
    with pytest.raises(ValueError, match="Z must have shape"):
        model.inverse_transform(np.zeros((2, 5)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flat = np.c_[X[:, :2], X[:, :2]]  # rank 2 in 4 features
    with pytest.raises(ValueError, match="no variance outside"):
        ProbabilisticPCA(2).fit(flat)


@pytest.mark.parametrize("seed, q", [(0, 2), (1, 3), (2, 5)])
def test_mle_dimension_is_scikit_learns(seed, q):
    """n_components='mle': Minka's evidence, the dimension scikit-learn's PCA picks."""
    X = data(n=400, d=10, q=q, seed=seed)
    model = ProbabilisticPCA("mle").fit(X)
    assert model.n_components_ == PCA(n_components="mle").fit(X).n_components_
    assert model.components_.shape == (model.n_components_, 10)
