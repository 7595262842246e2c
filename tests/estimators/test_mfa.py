"""Mixtures of factor analyzers: one component is factor analysis (or PPCA), a known mixture is
recovered, posteriors against scipy, the estimator contract (predict, sample, bic, save/load)."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.metrics import adjusted_rand_score

import lvmkit
from lvmkit import FactorAnalysis, MixtureOfFactorAnalyzers, ProbabilisticPCA
from lvmkit.estimators.mfa import n_parameters


def mixture(n=900, d=8, q=2, k=3, seed=0):
    """Rows of a known mixture of factor analyzers, with their components."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * 6
    W = rng.normal(size=(k, d, q))
    psi = rng.uniform(0.1, 0.4, size=(k, d))
    p = np.array([0.5, 0.3, 0.2][:k])
    labels = rng.choice(k, size=n, p=p / p.sum())
    z = rng.normal(size=(n, q))
    X = np.einsum("ndq,nq->nd", W[labels], z) + means[labels]
    return X + rng.normal(size=(n, d)) * np.sqrt(psi[labels]), labels


def test_one_component_is_factor_analysis_and_probabilistic_pca():
    X, _ = mixture(k=1, seed=1)
    fa = FactorAnalysis(2, tol=1e-8).fit(X)
    mfa = MixtureOfFactorAnalyzers(1, 2, tol=1e-10, max_iter=2000).fit(X)
    assert mfa.score(X) == pytest.approx(fa.score(X), abs=1e-6)
    np.testing.assert_allclose(mfa.get_covariances()[0], fa.get_covariance(), rtol=1e-3, atol=1e-4)
    ppca = ProbabilisticPCA(2).fit(X)
    mppca = MixtureOfFactorAnalyzers(1, 2, noise="isotropic", tol=1e-12, max_iter=2000).fit(X)
    assert mppca.score(X) == pytest.approx(ppca.loglike_, abs=1e-7)


def test_recovers_a_known_mixture_and_its_posteriors_are_scipys():
    X, labels = mixture()
    model = MixtureOfFactorAnalyzers(3, 2, random_state=0, n_init=2).fit(X)
    bounds = np.asarray(model.lower_bounds_)
    assert np.all(np.diff(bounds) >= -1e-10 * np.abs(bounds[1:]))
    assert adjusted_rand_score(labels, model.predict(X)) > 0.99
    covariances = model.get_covariances()
    log_joint = np.stack(
        [
            np.log(w) + multivariate_normal(m, C).logpdf(X)
            for w, m, C in zip(model.weights_, model.means_, covariances, strict=True)
        ],
        1,
    )
    np.testing.assert_allclose(model.score_samples(X), logsumexp(log_joint, 1), rtol=1e-10)
    proba = np.exp(log_joint - logsumexp(log_joint, 1, keepdims=True))
    np.testing.assert_allclose(model.predict_proba(X), proba, atol=1e-10)
    assert model.transform(X).shape == (len(X), 2)
    # decoding the latent means in the rows' components gives E[x | z = E[z | x], k]
    labels = model.predict(X)
    back = model.inverse_transform(model.transform(X), labels)
    W, mu = model.loadings_[labels], model.means_[labels]
    np.testing.assert_allclose(back, np.einsum("ndq,nq->nd", W, model.transform(X)) + mu)
    with pytest.raises(ValueError, match="needs the component of every row"):
        model.inverse_transform(model.transform(X))
    # a model with gaps: the held-out score of the observed values stays close
    gappy = X.copy()
    gappy[np.random.default_rng(3).random(X.shape) < 0.2] = np.nan
    with_gaps = MixtureOfFactorAnalyzers(3, 2, random_state=0, n_init=3).fit(gappy)
    assert adjusted_rand_score(labels, with_gaps.predict(gappy)) > 0.95
    filled = with_gaps.impute(gappy)
    hidden = np.isnan(gappy)
    assert np.sqrt(np.mean((filled[hidden] - X[hidden]) ** 2)) < 0.5 * np.std(X)


def test_contract_sample_bic_save_load_and_errors(tmp_path):
    X, _ = mixture(n=300, seed=2)
    model = MixtureOfFactorAnalyzers(3, 2, random_state=0).fit(X)
    draws, labels = model.sample(500, random_state=0)
    assert draws.shape == (500, 8) and set(labels) <= {0, 1, 2}
    assert model._n_parameters() == n_parameters(3, 8, 2) == 2 + 24 + 3 * (16 - 1) + 24
    n = len(X)
    assert model.bic(X) == pytest.approx(
        -2 * model.score(X) * n + model._n_parameters() * np.log(n)
    )
    back = lvmkit.load(model.save(tmp_path / "mfa.lvm"))
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(back.score_samples(X), model.score_samples(X))
    with pytest.raises(ValueError, match="n_factors=8 must be smaller than n_features=8"):
        MixtureOfFactorAnalyzers(2, 8).fit(X)
    with pytest.raises(ValueError, match="parameter 'noise'"):
        MixtureOfFactorAnalyzers(2, 2, noise="full").fit(X)
    before = model.means_.copy()
    with pytest.raises(ValueError, match="inf"):
        model.fit(np.where(X > 5, np.inf, X))
    np.testing.assert_array_equal(model.means_, before)  # a failed fit changes nothing


def test_iterations_reach_the_progress_observers():
    """MFA, PPCA by EM and LDA report every iteration to lvmkit.fit.callbacks observers (the
    command line's progress bar), as the mixtures do."""
    import scipy.sparse as sp

    from lvmkit import LatentDirichletAllocation
    from lvmkit.fit.callbacks import observe

    events = []
    X, _ = mixture(n=120, seed=3)
    counts = sp.csr_matrix(np.random.default_rng(0).poisson(1.0, (40, 15)) + 1.0)
    with observe(events.append):
        MixtureOfFactorAnalyzers(2, 1, max_iter=3, tol=0).fit(X)
        ProbabilisticPCA(2, solver="em", max_iter=3, tol=0).fit(X)
        LatentDirichletAllocation(3, max_iter=2).fit(counts)
    seen = [(type(e.estimator).__name__, e.iteration) for e in events]
    assert seen == [
        ("MixtureOfFactorAnalyzers", 1),
        ("MixtureOfFactorAnalyzers", 2),
        ("MixtureOfFactorAnalyzers", 3),
        ("ProbabilisticPCA", 1),
        ("ProbabilisticPCA", 2),
        ("ProbabilisticPCA", 3),
        ("LatentDirichletAllocation", 1),
        ("LatentDirichletAllocation", 2),
    ]
