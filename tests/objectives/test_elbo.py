"""The VAE's objective: closed-form KL, likelihoods against scipy, reparameterized gradients,
and the ELBO of a linear-Gaussian model against its exact log-likelihood (float64)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as st

from lvmkit.models.vae import DeepLatentModel, make_likelihood
from lvmkit.objectives.elbo import elbo_terms, gaussian_kl, gaussian_kl_per_dim
from lvmkit.posteriors.amortized import GaussianEncoder, log_prob, rsample

D64 = torch.float64


def test_closed_form_kl_matches_monte_carlo_and_torch():
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(5, 3, generator=g, dtype=D64)
    log_sigma = 0.5 * torch.randn(5, 3, generator=g, dtype=D64)
    kl = gaussian_kl(mu, log_sigma)
    # Independent reference: torch.distributions' KL of the same Gaussians.
    q = torch.distributions.Normal(mu, log_sigma.exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(
        kl, torch.distributions.kl_divergence(q, p).sum(-1), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        gaussian_kl_per_dim(mu, log_sigma).sum(-1), kl, rtol=1e-12, atol=1e-12
    )
    # Monte Carlo: E_q[log q(z) − log p(z)] with 400k samples, within 5 standard errors.
    z = rsample(mu, log_sigma, 400_000, generator=g)
    log_ratio = log_prob(z, mu, log_sigma) - torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(
        -1
    )
    estimate, stderr = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(z.shape[0])
    assert torch.all((estimate - kl).abs() < 5 * stderr + 1e-12), (estimate, kl, stderr)


def test_posterior_log_prob_matches_scipy():
    mu, log_sigma = torch.tensor([[0.3, -1.0]], dtype=D64), torch.tensor([[-0.2, 0.4]], dtype=D64)
    z = torch.tensor([[1.0, 0.5]], dtype=D64)
    ref = st.norm.logpdf([1.0, 0.5], loc=[0.3, -1.0], scale=np.exp([-0.2, 0.4])).sum()
    assert float(log_prob(z, mu, log_sigma)) == pytest.approx(ref, rel=1e-13)


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "gaussian-learned", "poisson"])
def test_likelihoods_sum_over_features_and_match_scipy(name):
    rng = np.random.default_rng(0)
    params = rng.normal(size=(4, 6))
    if name == "bernoulli":
        x = (rng.random((4, 6)) < 0.5).astype(float)
        ref = st.bernoulli.logpmf(x, 1 / (1 + np.exp(-params))).sum(1)
    elif name == "poisson":
        x = rng.poisson(2.0, size=(4, 6)).astype(float)
        ref = st.poisson.logpmf(x, np.exp(params)).sum(1)
    else:
        x = rng.normal(size=(4, 6))
        ref = st.norm.logpdf(x, loc=params, scale=0.7).sum(1)
    lik = make_likelihood(name, 6, std=0.7).to(D64)
    out = lik.log_prob(torch.tensor(params), torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    # Broadcasting over a leading sample axis gives the same numbers (importance sampling uses it).
    stacked = (
        lik.log_prob(torch.tensor(params)[None].expand(3, -1, -1), torch.tensor(x)).detach().numpy()
    )
    np.testing.assert_allclose(stacked, np.broadcast_to(out, (3, 4)), rtol=1e-12)


def _linear_model(W, b, sigma, A, c, log_s):
    """A linear-Gaussian VAE in float64: decoder x = Wz + b, encoder mu = Ax + c, log-sd = log_s."""
    D, L = W.shape
    dec = torch.nn.Linear(L, D).to(D64)
    enc = torch.nn.Linear(D, 2 * L).to(D64)
    with torch.no_grad():
        dec.weight.copy_(W), dec.bias.copy_(b)
        enc.weight.zero_()
        enc.weight[:L].copy_(A)
        enc.bias.copy_(torch.cat([c, log_s]))
    model = DeepLatentModel(dec, make_likelihood("gaussian", D, std=sigma).to(D64), L)
    return GaussianEncoder(enc, L), model


def _exact_log_px(X, W, b, sigma):
    cov = W @ W.T + sigma**2 * np.eye(W.shape[0])
    return st.multivariate_normal(mean=b, cov=cov).logpdf(X)


@torch.no_grad()
def test_linear_gaussian_elbo_is_below_log_px_and_equal_at_the_exact_posterior():
    rng = np.random.default_rng(0)
    D, L, sigma = 5, 2, 0.5
    # Orthogonal columns make the exact posterior's covariance
    # diagonal, so a diagonal q can match it.
    Q, _ = np.linalg.qr(rng.normal(size=(D, L)))
    W = Q * np.array([2.0, 1.2])
    b = rng.normal(size=D)
    X = rng.normal(size=(7, D)) * 2
    log_px = _exact_log_px(X, W, b, sigma)
    # Exact posterior: Σ = (I + WᵀW/σ²)⁻¹, mean = Σ Wᵀ(x − b)/σ².
    S = np.linalg.inv(np.eye(L) + W.T @ W / sigma**2)
    A = S @ W.T / sigma**2
    t = lambda a: torch.tensor(a, dtype=D64)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    enc, model = _linear_model(t(W), t(b), sigma, t(A), t(-A @ b), t(0.5 * np.log(np.diag(S))))
    terms = elbo_terms(enc, model, t(X), g, n_samples=20_000)
    rec, kl = terms.reconstruction, terms.kl
    np.testing.assert_allclose((rec - kl).numpy(), log_px, atol=0.03)  # MC error only
    np.testing.assert_array_equal(terms.bound.numpy(), (rec - kl).numpy())
    # With q = p(z | x) exactly, log p(x, z) − log q(z) = log p(x) for every z: zero variance.
    mu, ls = enc(t(X))
    z = rsample(mu, ls, 5, generator=g)
    np.testing.assert_allclose(
        (model.log_joint(t(X), z) - log_prob(z, mu, ls)).numpy(),
        np.broadcast_to(log_px, (5, 7)),
        rtol=1e-12,
    )
    # A worse encoder gives a strictly lower bound.
    enc2, model2 = _linear_model(
        t(W), t(b), sigma, t(A * 0.5), t(-A @ b), t(0.5 * np.log(np.diag(S)) + 0.7)
    )
    terms2 = elbo_terms(enc2, model2, t(X), g, n_samples=20_000)
    rec2, kl2 = terms2.reconstruction, terms2.kl
    assert np.all((rec2 - kl2).numpy() < log_px - 0.1)


def test_reparameterized_gradient_matches_finite_differences():
    torch.manual_seed(0)
    D, L = 4, 2
    enc_net = torch.nn.Sequential(
        torch.nn.Linear(D, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2 * L)
    ).to(D64)
    dec = torch.nn.Sequential(torch.nn.Linear(L, 3), torch.nn.Tanh(), torch.nn.Linear(3, D)).to(D64)
    enc, model = (
        GaussianEncoder(enc_net, L),
        DeepLatentModel(dec, make_likelihood("bernoulli", D), L),
    )
    x = (torch.rand(3, D) < 0.5).to(D64)
    params = list(enc.parameters()) + list(model.parameters())

    def objective():
        # The same noise every call: the Monte Carlo ELBO is then a
        # smooth function of the parameters.
        terms = elbo_terms(enc, model, x, torch.Generator().manual_seed(7), n_samples=3)
        return (terms.reconstruction - terms.kl).sum()

    grads = torch.autograd.grad(objective(), params)
    h = 1e-6
    for p, grad in zip(params, grads, strict=True):
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            up = objective().item()
            flat[i] = old - h
            down = objective().item()
            flat[i] = old
            assert (up - down) / (2 * h) == pytest.approx(
                grad.view(-1)[i].item(), rel=1e-6, abs=1e-8
            )


def test_per_sample_gaussian_densities_of_the_family_module_agree():
    """The encoder's and the decoder's Gaussians are the family module's functions: both forms of
    the diagonal density, and the standard normal prior, against scipy."""
    from lvmkit.families.diagonal import (
        diagonal_log_prob,
        shared_std_log_prob,
        standard_normal_log_prob,
    )

    rng = np.random.default_rng(3)
    x, mean = rng.normal(size=(2, 4, 5)), rng.normal(size=(4, 5))
    for std in (np.array(0.6), rng.uniform(0.3, 2.0, size=5)):
        ref = st.norm.logpdf(x, loc=mean, scale=std).sum(-1)
        shared = shared_std_log_prob(torch.tensor(x), torch.tensor(mean), torch.tensor(std))
        diagonal = diagonal_log_prob(
            torch.tensor(x), torch.tensor(mean), torch.log(torch.tensor(std)).expand(4, 5)
        )
        np.testing.assert_allclose(shared.numpy(), ref, rtol=1e-12)
        np.testing.assert_allclose(diagonal.numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(
        standard_normal_log_prob(torch.tensor(x)).numpy(), st.norm.logpdf(x).sum(-1), rtol=1e-12
    )
