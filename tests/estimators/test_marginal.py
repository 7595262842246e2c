"""log_marginal against exact log-likelihoods: a linear-Gaussian VAE and a Gaussian mixture."""

import math
import shutil
import warnings

import numpy as np
import pytest
import torch
from scipy import stats as st

from lvmkit import VAE, GaussianMixture, log_marginal
from tests.conftest import blobs

D64 = torch.float64


def make_linear_vae(D=6, L=3, sigma=0.5, n=40, seed=1):
    """A VAE with linear networks set by hand: decoder x = Wz + b + N(0, sigma²), an encoder near
    (not at) the exact posterior. log p(x) = N(x; b, WWᵀ + sigma² I) exactly."""
    rng = np.random.default_rng(seed)
    W, b = rng.normal(size=(D, L)), rng.normal(size=D)
    X = rng.normal(size=(n, L)) @ W.T + b + sigma * rng.normal(size=(n, D))
    vae = VAE(
        latent_dim=L,
        encoder=torch.nn.Linear(D, 2 * L),
        decoder=torch.nn.Linear(L, D),
        likelihood="gaussian",
        decoder_std=sigma,
        epochs=0,
        dtype="float64",
        random_state=0,
    ).fit(X)
    S = np.linalg.inv(np.eye(L) + W.T @ W / sigma**2)  # exact posterior covariance (not diagonal)
    A = S @ W.T / sigma**2
    with torch.no_grad():
        dec, enc = vae.module_.model.decoder, vae.module_.encoder.net
        dec.weight.copy_(torch.tensor(W)), dec.bias.copy_(torch.tensor(b))
        enc.weight.zero_()
        enc.weight[:L].copy_(torch.tensor(A))
        enc.bias.copy_(torch.tensor(np.concatenate([-A @ b, 0.5 * np.log(np.diag(S)) + 0.2])))
    exact = st.multivariate_normal(mean=b, cov=W @ W.T + sigma**2 * np.eye(D)).logpdf(X)
    return vae, X, exact


@pytest.fixture(scope="module")
def linear_vae():
    return make_linear_vae()


def test_importance_sampling_matches_the_exact_linear_gaussian_likelihood(linear_vae):
    vae, X, exact = linear_vae
    res = log_marginal(vae, X, k=5000)
    assert res.per_sample.shape == (40,) and res.method == "importance" and res.k == 5000
    np.testing.assert_allclose(
        res.per_sample, exact, atol=0.08
    )  # Monte Carlo error: measured <= 0.033
    assert abs(res.mean - exact.mean()) < 0.01
    assert res.stderr == pytest.approx(np.std(res.per_sample, ddof=1) / math.sqrt(40))
    assert res.bits_per_dim == pytest.approx(-res.mean / (6 * math.log(2)))
    # The naive prior estimator is unbiased in p(x) too, and in 3
    # dimensions it still works (noisily).
    prior = log_marginal(vae, X, method="prior", k=20000)
    assert abs(prior.mean - exact.mean()) < 0.3


def test_the_estimate_rises_with_k_from_the_elbo_towards_log_px(linear_vae):
    vae, X, exact = linear_vae
    means = {
        k: np.mean([log_marginal(vae, X, k=k, random_state=s).mean for s in range(5)])
        for k in (1, 10, 100, 1000)
    }
    # Between k = 100 and 1000 the rise (~0.001) is below the noise; up to 100 it is not.
    assert means[1] < means[10] < means[100] <= exact.mean() + 0.01
    assert abs(means[1000] - exact.mean()) < 0.01
    # k = 1 is the ELBO (with a Monte Carlo KL): compare with the closed-form-KL estimate. log w
    # has a standard deviation of 2.9 nats here: 40 seeds x 40 points give a standard error of 0.07.
    elbo = vae.score_samples(X, n_samples=4000).mean()
    k1 = np.mean([log_marginal(vae, X, k=1, random_state=s).mean for s in range(40)])
    assert k1 == pytest.approx(elbo, abs=0.25)
    assert elbo < exact.mean() - 0.05


def test_mixture_as_a_latent_variable_model():
    X, *_ = blobs(n=300, d=3, k=3)
    gm = GaussianMixture(3, random_state=0, dtype="float64").fit(X)
    exact = log_marginal(gm, X)
    assert exact.method == "exact"
    np.testing.assert_allclose(exact.per_sample, gm.score_samples(X), rtol=0, atol=0)
    for method in ("importance", "prior"):
        mc = log_marginal(gm, X, method=method, k=4000)
        diff = mc.per_sample - exact.per_sample
        # Within Monte Carlo error, and no bias beyond three standard errors of the mean difference.
        assert np.abs(diff).max() < (0.1 if method == "importance" else 1.0)
        assert abs(diff.mean()) < 3 * diff.std(ddof=1) / math.sqrt(len(diff)) + 1e-3


def test_prior_sampling_fails_in_high_dimensions():
    # 20 latent dimensions, all informative, narrow posteriors: almost no prior draw lands where
    # p(x | z) is large, and the estimate is far too low. Importance sampling stays exact.
    vae, X, exact = make_linear_vae(D=40, L=20, sigma=0.3, n=20)
    imp = log_marginal(vae, X, k=1000)
    prior = log_marginal(vae, X, method="prior", k=1000)
    assert abs(imp.mean - exact.mean()) < 0.5
    assert imp.mean > vae.score(X)  # tighter than the ELBO
    assert prior.mean < exact.mean() - 20


def test_errors_and_determinism(linear_vae):
    vae, X, _ = linear_vae
    with pytest.raises(ValueError, match="'exact' applies to mixtures only"):
        log_marginal(vae, X, method="exact")
    with pytest.raises(ValueError, match="method must be one of"):
        log_marginal(vae, X, method="naive")
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        log_marginal(vae, X, k=0)
    with pytest.raises(ValueError, match="fit it first"):
        log_marginal(VAE(), X)
    with pytest.raises(ValueError, match="batch_size must be None or an int >= 1"):
        log_marginal(vae, X, batch_size=0)
    with pytest.raises(ValueError, match="compile must be 'auto', True or False"):
        log_marginal(vae, X, compile="yes")
    a = log_marginal(vae, X, k=50, random_state=3)
    np.testing.assert_array_equal(
        a.per_sample, log_marginal(vae, X, k=50, random_state=3).per_sample
    )
    assert "nats" in repr(a)


def test_chunks_keep_exactly_k_samples():
    # Equal chunks (fixed shapes) with the surplus dropped: weights of 1 average to 1, so
    # log (1/k) Σ w = 0 (to rounding), for any k, batch and chunk limit; an off-by-one would give
    # ±log((k+1)/k) >= 0.001 here.
    from lvmkit.objectives.marginal import log_importance_weights_lse, sample_chunks

    model = type("M", (), {"latent_dim": 2})()
    for k in (1, 2, 7, 37, 100, 101, 999):
        for B in (1, 3, 10):
            for max_rows in (1, 5, 64, 4096):
                size, chunks = sample_chunks(k, B, max_rows)
                assert chunks * size >= k > (chunks - 1) * size and size * B <= max(max_rows, B)
                kept = []

                def log_w(x, z, mu, ls, kept=kept):
                    kept.append(z.shape[0])
                    return torch.zeros(z.shape[:2], dtype=torch.float64)

                est = log_importance_weights_lse(
                    None,
                    model,
                    torch.zeros(B, 4),
                    k,
                    method="prior",
                    max_rows=max_rows,
                    log_weights=log_w,
                )
                assert float(est.abs().max()) < 1e-12, (k, B, max_rows)
                assert set(kept) == {size} and len(kept) == chunks


needs_compiler = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "clang++", "c++")),
    reason="torch.compile on CPU needs a C++ compiler (g++ or clang++); none on PATH",
)


@needs_compiler
@pytest.mark.parametrize("method", ["importance", "prior"])
def test_compiled_evaluation_gives_the_eager_estimates(method, monkeypatch):
    import lvmkit.objectives.marginal as m

    monkeypatch.setattr(m, "_COMPILE_FAILED", [False])
    X = (np.random.RandomState(0).rand(23, 16) < 0.3).astype(np.float32)
    vae = VAE(latent_dim=3, hidden_sizes=(16,), epochs=2, batch_size=8, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error", RuntimeWarning
        )  # a failed compile (its fallback warns) fails the test
        # log_marginal: 23 points in balanced batches of 8 (one padded row, dropped); same samples.
        eager = log_marginal(vae, X, method=method, k=37, batch_size=10, compile=False)
        fused = log_marginal(vae, X, method=method, k=37, batch_size=10, compile=True)
        assert fused.per_sample.shape == (23,)
        np.testing.assert_allclose(fused.per_sample, eager.per_sample, rtol=1e-5, atol=1e-4)
        # Chunks of 7 samples for k=37 (six chunks, five surplus samples drawn and dropped).
        x = torch.as_tensor(X[:9])
        module = vae.module_
        runs = [
            m.log_importance_weights_lse(
                module.encoder,
                module.model,
                x,
                37,
                torch.Generator().manual_seed(1),
                method,
                max_rows=63,
                log_weights=m.log_weight_function(module.model, method, c),
            )
            for c in (False, True)
        ]
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-5, atol=1e-4)


def test_a_failed_compile_falls_back_to_eager(monkeypatch, linear_vae):
    vae, X, _ = linear_vae
    import lvmkit.objectives.marginal as m

    def broken(fn, **kw):
        def run(*args):
            raise RuntimeError("no C++ compiler found")

        return run

    monkeypatch.setattr(m.torch, "compile", broken)
    monkeypatch.setattr(m, "_COMPILE_FAILED", [False])
    with pytest.warns(RuntimeWarning, match=r"no C\+\+ compiler found.*compile=False") as caught:
        fused = log_marginal(vae, X, k=20, compile=True)
    assert caught[0].filename == __file__  # points at the caller, not at torch's wrappers
    np.testing.assert_array_equal(
        fused.per_sample, log_marginal(vae, X, k=20, compile=False).per_sample
    )
    # The failure is remembered: the next call neither retries nor warns.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        log_marginal(vae, X, k=20, compile=True)


def test_an_error_in_the_users_model_is_reported_as_itself_not_as_a_compile_failure(
    monkeypatch, linear_vae
):
    vae, X, _ = linear_vae
    import lvmkit.objectives.marginal as m

    def broken(fn, **kw):  # compiling fails too, as it would on the same bad code
        def run(*args):
            raise RuntimeError("dynamo could not trace the decoder")

        return run

    def bad_decoder(*args, **kwargs):
        raise ValueError("bad decoder: shapes do not match")

    monkeypatch.setattr(m.torch, "compile", broken)
    monkeypatch.setattr(m, "_COMPILE_FAILED", [False])
    monkeypatch.setattr(vae.module_.model, "log_likelihood", bad_decoder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no word of the compiler
        with pytest.raises(ValueError, match="bad decoder: shapes do not match"):
            log_marginal(vae, X, k=20, compile=True)
    assert m._COMPILE_FAILED == [False]  # the compiler was not blamed
