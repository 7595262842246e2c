"""Per-point Gaussian SVI with a fixed decoder: the closed-form optimum of a linear-Gaussian model
(float64), semi-amortized refinement, the decoder left untouched, the per-point table."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as st

from lvmkit.models.vae import DeepLatentModel, make_likelihood
from lvmkit.objectives.elbo import gaussian_kl
from lvmkit.posteriors.local import LocalGaussian, fit_local, local_elbo_terms, standard_normal_kl

D64 = torch.float64
SIGMA = 0.5


def _linear(W, b, sigma=SIGMA):
    D, L = W.shape
    dec = torch.nn.Linear(L, D).to(D64)
    with torch.no_grad():
        dec.weight.copy_(torch.tensor(W)), dec.bias.copy_(torch.tensor(b))
    return DeepLatentModel(dec, make_likelihood("gaussian", D, std=sigma).to(D64), L)


def _problem(orthogonal: bool, n=6, D=5, L=2, seed=0):
    rng = np.random.default_rng(seed)
    if orthogonal:  # exact posterior covariance diagonal: q* = p(z | x)
        Q, _ = np.linalg.qr(rng.normal(size=(D, L)))
        W = Q * np.array([2.0, 1.2])
    else:  # correlated posterior: q* is the mean-field optimum
        W = rng.normal(size=(D, L))
    b = rng.normal(size=D)
    X = rng.normal(size=(n, D)) * 2
    return W, b, X


def _posterior(W, b, X, sigma=SIGMA):
    """Exact p(z | x) = N(m, Λ⁻¹) with Λ = I + WᵀW/σ², m = Λ⁻¹Wᵀ(x − b)/σ²; and log p(x)."""
    Lam = np.eye(W.shape[1]) + W.T @ W / sigma**2
    M = np.linalg.solve(Lam, W.T @ (X - b).T / sigma**2).T
    log_px = st.multivariate_normal(mean=b, cov=W @ W.T + sigma**2 * np.eye(W.shape[0])).logpdf(X)
    return Lam, M, log_px


def _exact_elbo(mu, log_sigma, Lam, M, log_px):
    """ELBO(q) = log p(x) − KL(q ‖ p(z | x)) in closed form, per point (q diagonal Gaussian)."""
    var = np.exp(2 * log_sigma)
    d = mu - M
    kl = 0.5 * (
        var @ np.diag(Lam)
        + np.einsum("ni,ij,nj->n", d, Lam, d)
        - mu.shape[1]
        - np.log(var).sum(1)
        - np.linalg.slogdet(Lam)[1]
    )
    return log_px - kl


@pytest.mark.parametrize(
    "orthogonal", [True, False], ids=["diagonal-posterior", "correlated-posterior"]
)
def test_svi_reaches_the_closed_form_optimum_of_a_linear_gaussian_decoder(orthogonal):
    W, b, X = _problem(orthogonal)
    Lam, M, log_px = _posterior(W, b, X)
    model = _linear(W, b)
    fit = fit_local(
        model,
        torch.tensor(X),
        steps=1500,
        lr=0.05,
        n_samples=256,
        generator=torch.Generator().manual_seed(0),
        eval_samples=100_000,
    )
    # The best diagonal Gaussian has the exact posterior mean and variances 1/Λ_jj (for a diagonal
    # Λ, the exact posterior itself). Tolerance: 2% of the posterior sd (Monte Carlo noise of the
    # gradient, averaged over 750 steps × 256 draws, leaves ~0.5%).
    sd_star = 1 / np.sqrt(np.diag(Lam))
    np.testing.assert_allclose(fit.mu.numpy(), M, atol=0.02 * sd_star.min())
    np.testing.assert_allclose(
        np.exp(fit.log_sigma.numpy()), np.broadcast_to(sd_star, M.shape), rtol=0.02
    )
    # Its ELBO: log p(x) − ½(Σ log Λ_jj − log det Λ), which is log p(x) when Λ is diagonal.
    mean_field_gap = 0.5 * (np.log(np.diag(Lam)).sum() - np.linalg.slogdet(Lam)[1])
    assert (mean_field_gap < 1e-12) == orthogonal
    # The returned estimate (100,000 draws) within 0.02 nats; the exact ELBO of the fitted q within
    # 2e-4 nats of the optimum (an O(error²) quantity).
    np.testing.assert_allclose(fit.elbo.numpy(), log_px - mean_field_gap, atol=0.02)
    np.testing.assert_allclose(
        _exact_elbo(fit.mu.numpy(), fit.log_sigma.numpy(), Lam, M, log_px),
        log_px - mean_field_gap,
        atol=2e-4,
    )
    assert fit.history.shape == (1500,) and fit.history[-100:].mean() > fit.history[:10].mean()


def test_semi_amortized_refinement_climbs_from_a_poor_start_to_the_same_optimum():
    W, b, X = _problem(True)
    Lam, M, log_px = _posterior(W, b, X)
    model = _linear(W, b)
    x = torch.tensor(X)
    log_sd = -0.5 * np.log(np.diag(Lam))
    poor = (torch.tensor(M + 1.5), torch.tensor(np.broadcast_to(log_sd + 1.0, M.shape).copy()))
    # Prefixes of one trajectory (same seed, no averaging), scored by the exact ELBO: it rises at
    # every checkpoint while far from the optimum (31 nats below), then stays within Monte Carlo
    # jitter of it (the optimum is log p(x) here: the posterior is diagonal).
    checkpoints = [0, 5, 10, 20, 40, 80, 160]
    elbos = []
    for steps in checkpoints:
        f = fit_local(
            model,
            x,
            init=poor,
            steps=steps,
            lr=0.05,
            n_samples=32,
            average=0,
            generator=torch.Generator().manual_seed(1),
            eval_samples=1,
        )
        elbos.append(_exact_elbo(f.mu.numpy(), f.log_sigma.numpy(), Lam, M, log_px) - log_px)
    elbos = np.array(elbos)  # (checkpoints, points), nats below log p(x)
    assert np.all(elbos[0] < -30)
    assert np.all(np.diff(elbos[:5], axis=0) > 1.0), elbos
    assert np.all(elbos[4:] > -0.05) and np.all(elbos <= 1e-12)
    # The init is copied, not modified; the refined fit ends where the fit from the prior ends.
    np.testing.assert_array_equal(poor[0].numpy(), M + 1.5)
    refined = fit_local(
        model,
        x,
        init=poor,
        steps=1000,
        lr=0.05,
        n_samples=128,
        generator=torch.Generator().manual_seed(2),
    )
    from_prior = fit_local(
        model, x, steps=1000, lr=0.05, n_samples=128, generator=torch.Generator().manual_seed(3)
    )
    sd = np.exp(log_sd)
    np.testing.assert_allclose(refined.mu.numpy(), M, atol=0.03 * sd.min())
    np.testing.assert_allclose(refined.mu.numpy(), from_prior.mu.numpy(), atol=0.05 * sd.min())
    np.testing.assert_allclose(refined.log_sigma.numpy(), from_prior.log_sigma.numpy(), atol=0.03)


def test_the_decoder_is_left_alone_and_the_batch_is_vectorized():
    torch.manual_seed(0)
    dec = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 6)).to(D64)
    dec[0].weight.requires_grad_(False)  # a mix of trainable and frozen parameters stays as it was
    model = DeepLatentModel(dec, make_likelihood("bernoulli", 6), 2)
    before = {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}
    x = (torch.rand(5, 6, dtype=D64) < 0.5).to(D64)
    fit = fit_local(model, x, steps=60, lr=0.1, generator=torch.Generator().manual_seed(0))
    for n, p in model.named_parameters():
        assert p.grad is None and p.requires_grad == before[n][1]
        torch.testing.assert_close(p.detach(), before[n][0], rtol=0, atol=0)
    assert fit.mu.shape == fit.log_sigma.shape == (5, 2) and fit.elbo.shape == (5,)
    assert not fit.mu.requires_grad and np.all(np.isfinite(fit.history))
    # Each point's fit is its own: changing one point of the batch leaves the others' trajectories
    # exactly as they were, given the same noise (the loss is a sum, Adam is element-wise).
    other = x.clone()
    other[4] = 1 - other[4]
    a = fit_local(model, x, steps=40, lr=0.1, average=0, generator=torch.Generator().manual_seed(4))
    c = fit_local(
        model, other, steps=40, lr=0.1, average=0, generator=torch.Generator().manual_seed(4)
    )
    torch.testing.assert_close(a.mu[:4], c.mu[:4], rtol=0, atol=0)
    torch.testing.assert_close(a.log_sigma[:4], c.log_sigma[:4], rtol=0, atol=0)
    assert not torch.equal(a.mu[4], c.mu[4])


def test_local_elbo_terms_use_the_closed_form_kl():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g, dtype=D64)
    ls = 0.3 * torch.randn(4, 3, generator=g, dtype=D64)
    torch.testing.assert_close(
        standard_normal_kl(mu, ls), gaussian_kl(mu, ls), rtol=1e-14, atol=1e-14
    )
    model = _linear(np.ones((5, 3)), np.zeros(5))
    rec, kl = local_elbo_terms(
        model, torch.zeros(4, 5, dtype=D64), mu, ls, n_samples=3, generator=g
    )
    assert rec.shape == kl.shape == (4,)


def test_local_gaussian_holds_one_row_per_point_and_refines_a_batch():
    W, b, X = _problem(True, n=10)
    Lam, M, _ = _posterior(W, b, X)
    model = _linear(W, b)
    q = LocalGaussian(10, 2, dtype=D64)
    assert q.n_points == 10 and q.latent_dim == 2
    mu, ls = q(torch.tensor([1, 3]))
    assert mu.shape == ls.shape == (2, 2) and mu.requires_grad
    (mu.sum() + ls.sum()).backward()
    assert q.mu.grad[[1, 3]].abs().sum() > 0 and q.mu.grad[[0, 2]].abs().sum() == 0
    idx = torch.tensor([7, 2, 5])
    untouched = q.mu.detach().clone()
    result = q.refine(
        model,
        torch.tensor(X)[idx],
        idx,
        steps=600,
        lr=0.05,
        n_samples=64,
        generator=torch.Generator().manual_seed(0),
    )
    np.testing.assert_allclose(q.mu.detach()[idx].numpy(), M[idx.numpy()], atol=0.02)
    np.testing.assert_array_equal(q.mu.detach()[idx].numpy(), result.mu.numpy())
    others = [i for i in range(10) if i not in (7, 2, 5)]
    np.testing.assert_array_equal(q.mu.detach()[others].numpy(), untouched[others].numpy())
    # Starting from an encoder's output over the data set.
    enc = lambda x: (x[:, :2] * 0.1, x[:, 2:4] * 0.0 - 1.0)  # noqa: E731
    q2 = LocalGaussian.from_encoder(enc, torch.tensor(X), batch_size=4)
    np.testing.assert_allclose(q2.mu.detach().numpy(), X[:, :2] * 0.1)
    assert float(q2.log_sigma.detach().max()) == -1.0
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 10\)"):
        q(torch.tensor([10]))
    with pytest.raises(ValueError, match="1-D integer array"):
        q(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="one index per row"):
        q.refine(model, torch.tensor(X)[:2], torch.tensor([0, 1, 2]), steps=1)


def test_arguments_are_checked_and_tol_stops_early():
    model = _linear(np.ones((5, 2)), np.zeros(5))
    x = torch.zeros(3, 5, dtype=D64)
    with pytest.raises(ValueError, match=r"init mu has shape \(2, 2\); expected \(3, 2\)"):
        fit_local(model, x, init=(torch.zeros(2, 2), torch.zeros(2, 2)))
    with pytest.raises(ValueError, match="init must be None or 'prior'"):
        fit_local(model, x, init="encoder")
    with pytest.raises(ValueError, match="lr must be a number > 0"):
        fit_local(model, x, lr=0)
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        fit_local(model, x, steps=1.5)
    with pytest.raises(ValueError, match="average must be a number in"):
        fit_local(model, x, average=2)
    # steps=0 evaluates the start; a generous tol ends the constant
    # phase at the first test (step 100).
    zero = fit_local(model, x, steps=0, eval_samples=10)
    assert zero.history.shape == (0,) and float(zero.mu.abs().max()) == 0.0
    early = fit_local(
        model, x, steps=2000, tol=1e6, average=0.1, generator=torch.Generator().manual_seed(0)
    )
    assert len(early.history) == 100 + 200
    assert math.isfinite(float(early.elbo.mean()))
