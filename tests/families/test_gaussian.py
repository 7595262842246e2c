"""The Gaussian family against scipy.stats and brute-force weighted maximum likelihood (float64)."""

import numpy as np
import pytest
import torch
from scipy import stats as st

from lvmkit.families.gaussian import (
    COVARIANCE_TYPES,
    CovarianceJitterWarning,
    Gaussian,
    GaussianParams,
)

RTOL = 1e-10


def random_params(ct, k=3, d=4, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * 2
    if ct == "full":
        A = rng.normal(size=(k, d, d))
        cov = A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(d)
    elif ct == "tied":
        A = rng.normal(size=(d, d))
        cov = A @ A.T + 0.5 * np.eye(d)
    elif ct == "diag":
        cov = rng.uniform(0.2, 3.0, size=(k, d))
    else:
        cov = rng.uniform(0.2, 3.0, size=k)
    return means, cov


def dense_cov(ct, cov, k, d):
    if ct == "full":
        return cov
    if ct == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if ct == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([np.eye(d) * c for c in cov])


def params_of(family, means, cov):
    P, _ = family.precisions_cholesky(torch.as_tensor(cov))
    return GaussianParams(torch.as_tensor(means), P)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_log_prob_matches_scipy(ct):
    k, d = 3, 4
    means, cov = random_params(ct, k, d)
    X = np.random.default_rng(1).normal(size=(50, d)) * 3
    family = Gaussian(ct)
    got, _ = family.log_prob(family.features(torch.as_tensor(X)), params_of(family, means, cov))
    full = dense_cov(ct, cov, k, d)
    want = np.stack([st.multivariate_normal(means[j], full[j]).logpdf(X) for j in range(k)], 1)
    np.testing.assert_allclose(got.numpy(), want, rtol=RTOL)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_maximize_is_weighted_mle(ct):
    """Statistics + maximize equal the brute-force weighted mean and covariance."""
    k, d, n = 3, 4, 200
    rng = np.random.default_rng(2)
    X = rng.normal(size=(n, d)) + 1.0
    resp = rng.dirichlet(np.ones(k), size=n)
    family = Gaussian(ct, reg_covar=1e-3)
    means0, cov0 = random_params(
        ct, k, d
    )  # an arbitrary reference: the result must not depend on it
    ref = params_of(family, means0, cov0)
    Xt, Rt = torch.as_tensor(X), torch.as_tensor(resp)
    F = family.features(Xt)
    _, cache = family.log_prob(F, ref)
    stats = family.statistics(F, Rt, ref, cache)
    means, cov = family.maximize(stats, ref)

    nk = resp.sum(0)
    want_means = resp.T @ X / nk[:, None]
    scatter = np.stack(
        [(resp[:, j, None] * (X - want_means[j])).T @ (X - want_means[j]) for j in range(k)]
    )
    np.testing.assert_allclose(means.numpy(), want_means, rtol=1e-12)
    if ct == "full":
        want = scatter / nk[:, None, None] + 1e-3 * np.eye(d)
    elif ct == "tied":
        want = scatter.sum(0) / n + 1e-3 * np.eye(d)
    elif ct == "diag":
        want = np.diagonal(scatter, axis1=1, axis2=2) / nk[:, None] + 1e-3
    else:
        want = np.diagonal(scatter, axis1=1, axis2=2).mean(1) / nk + 1e-3
    np.testing.assert_allclose(cov.numpy(), want, rtol=1e-10)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_statistics_are_additive_over_chunks(ct):
    k, d, n = 3, 4, 301
    rng = np.random.default_rng(3)
    X = torch.as_tensor(rng.normal(size=(n, d)))
    R = torch.as_tensor(rng.dirichlet(np.ones(k), size=n))
    family = Gaussian(ct)
    ref = params_of(family, *random_params(ct, k, d))
    F = family.features(X)
    whole = family.statistics(F, R, ref, None)
    parts = [
        family.statistics(F[a:b], R[a:b], ref, None) for a, b in ((0, 100), (100, 250), (250, n))
    ]
    for key, value in whole.items():
        np.testing.assert_allclose(sum(p[key] for p in parts).numpy(), value.numpy(), rtol=1e-12)


def test_full_statistics_are_centred_and_whitened():
    """At the reference, Σ r y yᵀ / N_k is the identity whatever the data's offset and scale."""
    rng = np.random.default_rng(4)
    d = 3
    A = rng.normal(size=(d, d))
    cov = A @ A.T + np.eye(d)
    X = rng.multivariate_normal(np.full(d, 1e6), cov, size=200_000)
    family = Gaussian("full", reg_covar=0.0)
    mean = X.mean(0)
    emp = np.cov(X.T, bias=True)
    ref = params_of(family, mean[None], emp[None])
    Xt = torch.as_tensor(X)
    R = torch.ones(len(X), 1, dtype=torch.float64)
    s = family.statistics(family.features(Xt), R, ref, None)
    np.testing.assert_allclose(s["syy"][0].numpy() / len(X), np.eye(d), atol=1e-8)


def test_portable_full_statistics_do_not_depend_on_the_parameters():
    """Σ r x xᵀ about the data's origin whatever parameters the E-step used: statistics of
    different iterations (stepwise EM) and processes add up."""
    rng = np.random.default_rng(4)
    k, d = 2, 3
    X = torch.as_tensor(rng.normal(size=(300, d)) * 2 + 1)
    R = torch.as_tensor(rng.dirichlet(np.ones(k), size=300))
    family = Gaussian("full")
    F = family.features(X)
    ref_a = params_of(family, *random_params("full", k, d, seed=1))
    ref_b = params_of(family, *random_params("full", k, d, seed=2))
    a = family.portable(family.statistics(F, R, ref_a, None), ref_a)
    b = family.portable(family.statistics(F, R, ref_b, None), ref_b)
    want = np.einsum("nk,ni,nj->kij", R.numpy(), X.numpy(), X.numpy())
    for s in (a, b):
        np.testing.assert_allclose(s["sxx"].numpy(), want, rtol=1e-10)


def test_full_statistics_keep_float32_accuracy_far_from_the_origin():
    """Accumulated centred and whitened in float32 per chunk, made portable and summed in
    float64: the covariance of data 300 standard deviations from the origin keeps float32
    accuracy (a raw float32 Σ x xᵀ would lose ~1e-7·300² ≈ 1e-2 of it)."""
    rng = np.random.default_rng(4)
    d = 3
    A = rng.normal(size=(d, d))
    cov = A @ A.T + np.eye(d)
    X = rng.multivariate_normal(
        np.full(d, 300.0 * np.sqrt(cov.diagonal().max())), cov, size=200_000
    )
    X32 = X.astype(np.float32).astype(np.float64)  # the data as the float32 E-step sees it
    family = Gaussian("full", reg_covar=0.0)
    emp = np.cov(X32.T, bias=True)
    ref = params_of(family, X32.mean(0)[None], emp[None]).to(dtype=torch.float32)
    F = family.features(torch.as_tensor(X32, dtype=torch.float32))
    total = None
    for start in range(
        0, len(X), 4096
    ):  # as the engine sums chunks: each in float32, all in float64
        part = F[start : start + 4096]
        R = torch.ones(len(part), 1, dtype=torch.float32)
        s = family.portable(family.statistics(part, R, ref, None), ref)
        total = s if total is None else {k: total[k] + s[k] for k in s}
    _, got = family.maximize(total)
    np.testing.assert_allclose(got[0].numpy(), emp, rtol=1e-4, atol=1e-4 * np.abs(emp).max())


@pytest.mark.parametrize("ct", ["full", "tied"])
def test_failed_cholesky_escalates_jitter_with_warning(ct):
    d = 3
    singular = np.ones((d, d))  # rank one
    cov = torch.as_tensor(singular if ct == "tied" else np.stack([singular, np.eye(d)]))
    family = Gaussian(ct, reg_covar=0.0)
    with pytest.warns(CovarianceJitterWarning, match="not positive definite"):
        P, used = family.precisions_cholesky(cov)
    assert torch.isfinite(P).all()
    # Only the diagonal changed, by a small positive jitter, and the result factorises.
    added = used - cov
    off_diagonal = added - torch.diag_embed(torch.diagonal(added, dim1=-2, dim2=-1))
    assert torch.count_nonzero(off_diagonal) == 0
    assert 0 < float(torch.diagonal(added, dim1=-2, dim2=-1).max()) < 1e-6
    torch.linalg.cholesky(used)
    # P is the inverse-transpose Cholesky factor of the covariance actually used.
    L = torch.linalg.cholesky(used)
    np.testing.assert_allclose(
        (L.mT @ P).numpy(), np.broadcast_to(np.eye(d), used.shape), atol=1e-8
    )


def test_nonpositive_diag_variance_is_repaired_with_warning():
    family = Gaussian("diag", reg_covar=0.0)
    with pytest.warns(CovarianceJitterWarning):
        P, used = family.precisions_cholesky(
            torch.tensor([[1.0, 0.0], [-1e-18, 2.0]], dtype=torch.float64)
        )
    assert (used > 0).all() and torch.isfinite(P).all()


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_cholesky_from_precisions_round_trip(ct):
    k, d = 3, 4
    means, cov = random_params(ct, k, d)
    family = Gaussian(ct)
    P, _ = family.precisions_cholesky(torch.as_tensor(cov))
    prec = Gaussian.precisions_from_cholesky(P, ct)
    P2 = family.precisions_cholesky_from_precisions(prec)
    np.testing.assert_allclose(
        Gaussian.precisions_from_cholesky(P2, ct).numpy(), prec.numpy(), rtol=1e-10
    )
    if ct in ("full", "tied"):
        assert torch.allclose(P2, torch.triu(P2))  # upper triangular, like P from covariances


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_sample_moments(ct):
    k, d = 2, 3
    means, cov = random_params(ct, k, d, seed=5)
    family = Gaussian(ct)
    labels = torch.zeros(40_000, dtype=torch.long)
    X = family.sample(
        labels, torch.as_tensor(means), torch.as_tensor(cov), torch.Generator().manual_seed(0)
    )
    full = dense_cov(ct, cov, k, d)[0]
    np.testing.assert_allclose(X.mean(0).numpy(), means[0], atol=0.05)
    np.testing.assert_allclose(np.cov(X.numpy().T), full, atol=0.1)


def test_n_parameters():
    assert Gaussian("full").n_parameters(3, 4) == 3 * 10 + 12
    assert Gaussian("tied").n_parameters(3, 4) == 10 + 12
    assert Gaussian("diag").n_parameters(3, 4) == 12 + 12
    assert Gaussian("spherical").n_parameters(3, 4) == 3 + 12


def test_unknown_covariance_type():
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        Gaussian("banana")
