"""The bridge from probabilistic PCA to the VAE: a linear VAE reaches PPCA's maximum likelihood.

A VAE with affine networks (``hidden_sizes=()``) and a Gaussian likelihood whose standard deviation
is learned and shared by the features (``likelihood='gaussian-learned', learned_std='global'``)
has PPCA's marginal p(x) = N(b, W Wᵀ + σ² I). The exact posterior is Gaussian, its mean affine in
x and its covariance constant, so an affine Gaussian encoder can match it, and at the optimum
(where Wᵀ W is diagonal, so the posterior covariance is too) the ELBO equals log p(x) (Lucas et
al. 2019). Trained, its ELBO per sample climbs to PPCA's closed-form ``loglike_``; with a
per-feature standard deviation, to factor analysis's.

The checks are deterministic where they can be: the ELBO of a linear VAE has a closed form
(computed here from ``encode_distribution`` and ``decode``), and so has its log p(x).

Measured (float64, one CPU thread; 400 x 8 standardized rows from a known PPCA, q = 2; 80 epochs
in three step-size stages, 1-2 s per fit): at seed 0 the closed-form ELBO is 0.0007 nats per sample
below PPCA's log-likelihood and the VAE's own log p(x) 0.0001 below it; over 12 data and training
seeds at most 0.0056 and 0.0025, the last epoch's Monte Carlo training ELBO within 0.027 of it,
principal angles to PPCA's subspace below 0.14 degrees. The tolerances below are a few times the
worst of those 12 seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from scipy.stats import multivariate_normal

import lvmkit
from lvmkit import VAE, FactorAnalysis, ProbabilisticPCA, log_marginal

Q = 2
# (epochs, Adam step size): a coarse stage, then two fine-tuning stages (warm_start) at a tenth
# and a hundredth of the step, so the Monte Carlo gradient noise does not hide the last 0.01 nat.
STAGES = ((40, 5e-2), (20, 5e-3), (20, 5e-4))


def ppca_data(n=400, d=8, q=Q, seed=0, heteroscedastic=False):
    """Rows from a known PPCA (or factor analysis) model, standardized."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, q)) * 1.5
    noise = rng.uniform(0.5, 1.5, size=d) if heteroscedastic else np.full(d, 0.5)
    X = rng.normal(size=(n, q)) @ W.T + noise * rng.normal(size=(n, d)) + rng.normal(size=d)
    return (X - X.mean(0)) / X.std(0)


def fit_linear_vae(X, learned_std="global", stages=STAGES, random_state=0):
    """A linear VAE trained in stages of falling step size; the whole training-ELBO curve."""
    (epochs, lr), *rest = stages
    vae = VAE(
        Q,
        hidden_sizes=(),
        likelihood="gaussian-learned",
        learned_std=learned_std,
        k=8,
        batch_size=50,
        epochs=epochs,
        lr=lr,
        validation_fraction=0,
        patience=None,
        dtype="float64",
        random_state=random_state,
    ).fit(X)
    curve = list(vae.history_["elbo"])
    for epochs, lr in rest:
        vae.set_params(warm_start=True, epochs=epochs, lr=lr).fit(X)
        curve += vae.history_["elbo"]
    return vae, np.array(curve)


def linear_parts(vae):
    """(W, b, noise variances) of the affine decoder, read through the public outputs."""
    b = vae.decode(np.zeros((1, Q)))[0]
    W = (vae.decode(np.eye(Q)) - b).T
    std = vae.module_.model.likelihood.std().detach().cpu().numpy()
    return W, b, np.broadcast_to(std**2, b.shape)


def exact_elbo(vae, X):
    """The ELBO per sample in closed form: E_q[log N(x; W z + b, diag ψ)] − KL(q ‖ N(0, I))."""
    W, b, psi = linear_parts(vae)
    mu, sd = vae.encode_distribution(X)
    r = X - mu @ W.T - b
    # E_q[(z − μ)ᵀ Wᵀ Ψ⁻¹ W (z − μ)] = Σ_j sd_j² (Wᵀ Ψ⁻¹ W)_jj
    trace = sd**2 @ (W**2 / psi[:, None]).sum(0)
    expected = -0.5 * (np.log(2 * math.pi * psi).sum() + (r**2 / psi).sum(1) + trace)
    kl = 0.5 * (mu**2 + sd**2 - 1 - 2 * np.log(sd)).sum(1)
    return expected - kl


def exact_marginal(vae, X):
    """log p(x) of the VAE's generative model: x ~ N(b, W Wᵀ + diag ψ)."""
    W, b, psi = linear_parts(vae)
    return multivariate_normal(b, W @ W.T + np.diag(psi)).logpdf(X)


@pytest.fixture(scope="module")
def bridge():
    X = ppca_data()
    ppca = ProbabilisticPCA(Q).fit(X)
    vae, curve = fit_linear_vae(X)
    return X, ppca, vae, curve


def test_the_linear_vae_elbo_reaches_the_ppca_log_likelihood(bridge):
    X, ppca, vae, curve = bridge
    best = ppca.loglike_
    elbo = exact_elbo(vae, X).mean()
    # A lower bound on the VAE's log p(x), itself at most the maximum likelihood: never above.
    assert elbo <= best + 1e-9
    assert exact_marginal(vae, X).mean() <= best + 1e-9
    # ... and it reaches it (measured: 0.0007 below; at most 0.0056 over 12 seeds).
    assert best - elbo < 0.02
    assert best - exact_marginal(vae, X).mean() < 0.01
    # The training curve's last epoch (one Monte Carlo draw of the bound per row per sample,
    # k = 8, while the weights move) is within 0.05 nat of it: measured +0.027 (at most 0.027).
    assert abs(curve[-1] - best) < 0.05
    assert curve[-10:].mean() < best + 0.02  # above only by Monte Carlo noise
    # The library's Monte Carlo ELBO estimate agrees with the closed form.
    assert abs(vae.score_samples(X, n_samples=200).mean() - elbo) < 0.01
    # Importance sampling estimates the VAE's log p(x); q is nearly the exact posterior here, so
    # it is nearly exact, between the ELBO and the maximum likelihood.
    marginal = log_marginal(vae, X, k=200).mean
    assert abs(marginal - exact_marginal(vae, X).mean()) < 2e-3
    assert elbo - 2e-3 < marginal < best + 2e-3


def test_the_elbo_curve_climbs_to_the_ppca_log_likelihood(bridge):
    _, ppca, _, curve = bridge
    best = ppca.loglike_
    assert len(curve) == sum(epochs for epochs, _ in STAGES)
    assert curve[0] < best - 1  # it starts far below
    blocks = curve.reshape(-1, 10).mean(1)  # ten-epoch means: the Monte Carlo noise averaged
    # It rises (up to Monte Carlo noise) and the gap shrinks to nothing.
    assert np.all(blocks[1:] > np.maximum.accumulate(blocks)[:-1] - 0.06)
    gaps = best - blocks
    assert gaps[0] > 0.5
    assert abs(gaps[-1]) < 0.03


def test_the_linear_decoder_spans_the_principal_subspace(bridge):
    X, ppca, vae, _ = bridge
    W, b, psi = linear_parts(vae)
    # W = U_q (Λ_q − σ² I)^{1/2} R: PPCA's loadings up to a rotation, so the same column space.
    angles = np.degrees(subspace_angles(W, ppca.components_.T))
    assert angles.max() < 0.5  # measured 0.07 degrees (at most 0.13 over 12 seeds)
    # The same covariance W Wᵀ (rotation-free), the same noise and the same mean (measured
    # 0.010, 0.3 % and 0.004; at most 0.067, 0.3 % and 0.007 over 12 seeds).
    np.testing.assert_allclose(W @ W.T, ppca.loadings_ @ ppca.loadings_.T, atol=0.1)
    np.testing.assert_allclose(psi, ppca.noise_variance_, rtol=0.01)
    np.testing.assert_allclose(b, ppca.mean_, atol=0.02)
    # At the optimum the columns are orthogonal (Lucas et al. 2019): the posterior covariance
    # is diagonal, which is why a factorized q can be exact. The ELBO is flat in this direction
    # (its gap grows with the square of the cosine), so it is the slowest to settle: measured
    # cosine 0.004, at most 0.07 over 12 seeds.
    gram = W.T @ W
    assert abs(gram[0, 1]) / math.sqrt(gram[0, 0] * gram[1, 1]) < 0.15


def test_a_linear_vae_saves_and_loads(bridge, tmp_path):
    X, _, vae, _ = bridge
    vae.save(tmp_path / "linear.lvm")
    back = lvmkit.load(tmp_path / "linear.lvm")
    np.testing.assert_array_equal(back.decode(np.eye(Q)), vae.decode(np.eye(Q)))
    np.testing.assert_array_equal(back.score_samples(X[:50]), vae.score_samples(X[:50]))


def test_with_a_per_feature_variance_the_linear_vae_reaches_factor_analysis():
    X = ppca_data(heteroscedastic=True, seed=1)
    fa = FactorAnalysis(Q, tol=1e-9, max_iter=10_000).fit(X)  # EM run to the maximum
    best = fa.score(X)
    vae, curve = fit_linear_vae(X, learned_std="per-feature")
    elbo = exact_elbo(vae, X).mean()
    assert elbo <= exact_marginal(vae, X).mean() + 1e-9 <= best + 1e-6
    # Measured: 0.0008 below (at most 0.016 over 8 data and training seeds; the slowest are
    # near a Heywood case, a noise variance close to 0).
    assert best - elbo < 0.03
    assert abs(curve[-1] - best) < 0.05
    _, _, psi = linear_parts(vae)
    np.testing.assert_allclose(psi, fa.noise_variance_, atol=0.03)
