"""Score-function (REINFORCE) and reparameterized gradients of the ELBO: both unbiased for the
exact gradient (a linear-Gaussian decoder, closed form), agreeing with each other on a nonlinear
Bernoulli decoder, the baselines lowering the variance, the KL's gradient exact (float64).

Unbiasedness is a statistical test with a fixed seed: R independent draws of each estimator's
gradient with respect to the encoder's outputs (mu, log_sigma) of every point, each coordinate's
mean compared with the reference by a z-test, Bonferroni-corrected over the coordinates at a
family-wise significance level ALPHA. A gradient with respect to the encoder's parameters is a
fixed linear map (the encoder's Jacobian) of this one, so unbiasedness carries over; the last
test checks that plumbing with a real encoder network.
"""

import math

import pytest
import torch
from scipy import stats as st

from lvmkit.families._base import LOG_2PI
from lvmkit.models.vae import DeepLatentModel, make_likelihood
from lvmkit.objectives.elbo import elbo_terms, gaussian_kl
from lvmkit.objectives.score_function import (
    ESTIMATORS,
    elbo_surrogate,
    reparameterized_surrogate,
    score_function_surrogate,
)
from lvmkit.posteriors.amortized import GaussianEncoder

D64 = torch.float64
ALPHA = 1e-3  # family-wise significance level of each unbiasedness test
D, L, B, SIGMA = 5, 2, 3, 0.7


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, L, generator=g, dtype=D64)
    b = torch.randn(D, generator=g, dtype=D64)
    x = torch.randn(B, D, generator=g, dtype=D64)
    mu = 0.5 * torch.randn(B, L, generator=g, dtype=D64)
    log_sigma = -0.5 + 0.3 * torch.randn(B, L, generator=g, dtype=D64)
    return W, b, x, mu, log_sigma


def _linear_gaussian(W, b):
    dec = torch.nn.Linear(L, D).to(D64)
    with torch.no_grad():
        dec.weight.copy_(W), dec.bias.copy_(b)
    return DeepLatentModel(dec, make_likelihood("gaussian", D, std=SIGMA).to(D64), L)


def _bernoulli_mlp(seed=0):
    torch.manual_seed(seed)
    dec = torch.nn.Sequential(torch.nn.Linear(L, 8), torch.nn.Tanh(), torch.nn.Linear(8, D)).to(D64)
    return DeepLatentModel(dec, make_likelihood("bernoulli", D), L)


def _exact_gradient(W, b, x, mu, log_sigma):
    """∇ of the exact ELBO of a linear-Gaussian decoder with respect to (mu, log_sigma), (B, 2L):
    E_q log p(x | z) = −(‖x − b − Wμ‖² + Σ_j (WᵀW)_jj s_j²)/(2σ²) − D log σ − D log(2π)/2."""
    theta = torch.cat([mu, log_sigma], 1).requires_grad_()
    m, ls = theta[:, :L], theta[:, L:]
    resid = x - b - m @ W.T
    expected = -(resid.square().sum(1) + (torch.exp(2 * ls) * (W.T @ W).diagonal()).sum(1)) / (
        2 * SIGMA**2
    )
    expected = expected - D * math.log(SIGMA) - 0.5 * D * LOG_2PI
    (grad,) = torch.autograd.grad((expected - gaussian_kl(m, ls)).sum(), theta)
    return grad


def _draws(model, x, mu, log_sigma, estimator, R, n_samples, seed):
    """R independent draws of the estimator's gradient of each point's ELBO with respect to its
    (mu, log_sigma), shape (R, B, 2L): one backward pass over R replicas of the batch, each with its
    own copy of the encoder's outputs (a row's surrogate depends on its own copy only)."""
    theta = torch.cat([mu, log_sigma], 1).repeat(R, 1).requires_grad_()
    encoder = lambda _x: (theta[:, :L], theta[:, L:])  # noqa: E731
    g = torch.Generator().manual_seed(seed)
    value = elbo_surrogate(encoder, model, x.repeat(R, 1), estimator, g, n_samples).surrogate
    (grad,) = torch.autograd.grad(value.sum(), theta)
    return grad.reshape(R, x.shape[0], 2 * L)


def _assert_unbiased(draws, reference, reference_se=0.0, alpha=ALPHA):
    """Bonferroni z-test: every coordinate's mean within z* standard errors of the reference."""
    R = draws.shape[0]
    mean = draws.mean(0)
    se = torch.sqrt(draws.var(0) / R + reference_se**2)
    z = ((mean - reference) / se).abs()
    z_star = st.norm.ppf(1 - alpha / (2 * z.numel()))
    assert float(z.max()) < z_star, (z, z_star)
    return z


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_every_estimator_is_unbiased_for_the_exact_gradient_of_a_linear_gaussian_elbo(estimator):
    W, b, x, mu, log_sigma = _data()
    model = _linear_gaussian(W, b)
    exact = _exact_gradient(W, b, x, mu, log_sigma)
    draws = _draws(model, x, mu, log_sigma, estimator, R=40_000, n_samples=2, seed=1)
    _assert_unbiased(draws, exact)
    # Not vacuous: the test's standard errors are small against the gradient itself.
    assert float((draws.std(0) / math.sqrt(draws.shape[0])).max()) < 0.05 * float(exact.abs().max())


def test_score_function_and_reparameterized_agree_on_a_nonlinear_bernoulli_decoder():
    W, b, x, mu, log_sigma = _data(1)
    model = _bernoulli_mlp()
    x = (torch.rand(B, D, generator=torch.Generator().manual_seed(2), dtype=D64) < 0.5).to(D64)
    # Reference: the reparameterized gradient from 400,000 draws per point (its own error included).
    ref = _draws(model, x, mu, log_sigma, "reparameterization", R=200_000, n_samples=2, seed=3)
    ref_mean, ref_se = ref.mean(0), ref.std(0) / math.sqrt(ref.shape[0])
    for estimator in ("score", "score-baseline"):
        draws = _draws(model, x, mu, log_sigma, estimator, R=40_000, n_samples=2, seed=4)
        _assert_unbiased(draws, ref_mean, ref_se)
    # And the two directly, from independent streams: the difference of means against its error.
    rep = _draws(model, x, mu, log_sigma, "reparameterization", R=40_000, n_samples=2, seed=5)
    sf = _draws(model, x, mu, log_sigma, "score-baseline", R=40_000, n_samples=2, seed=6)
    _assert_unbiased(sf, rep.mean(0), rep.std(0) / math.sqrt(rep.shape[0]))


def test_baselines_lower_the_score_functions_variance_and_reparameterization_lowers_it_most():
    W, b, x, mu, log_sigma = _data()
    model = _linear_gaussian(W, b)
    total = {
        e: float(_draws(model, x, mu, log_sigma, e, R=4000, n_samples=8, seed=7).var(0).sum())
        for e in ESTIMATORS
    }
    # Measured: 0.34 and 0.37 of the score function's variance;
    # reparameterized 0.08 of the baselines'.
    assert total["score-baseline"] < 0.5 * total["score"], total
    assert total["score-mean-baseline"] < 0.5 * total["score"], total
    assert total["reparameterization"] < 0.25 * min(
        total["score-baseline"], total["score-mean-baseline"]
    ), total


def test_surrogates_are_worth_the_monte_carlo_elbo_and_the_kl_gradient_is_exact():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2 * L)).to(
        D64
    )
    encoder = GaussianEncoder(net, L)
    model = _bernoulli_mlp(1)
    x = (torch.rand(B, D, generator=torch.Generator().manual_seed(0), dtype=D64) < 0.5).to(D64)
    # The value is the plain Monte Carlo ELBO, the same draws from the same generator state.
    terms = elbo_terms(encoder, model, x, torch.Generator().manual_seed(5), n_samples=4)
    rec, kl = terms.reconstruction, terms.kl
    for estimator in ESTIMATORS:
        out = elbo_surrogate(encoder, model, x, estimator, torch.Generator().manual_seed(5), 4)
        torch.testing.assert_close(out.surrogate, rec - kl, rtol=1e-12, atol=1e-12)
        # One terms type: the bound is the surrogate's value, split into its two terms.
        torch.testing.assert_close(out.bound, (rec - kl).detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out.reconstruction, rec.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out.kl, kl.detach(), rtol=1e-12, atol=1e-12)
        assert not out.bound.requires_grad
    # Gradients reach the encoder's parameters through its outputs only: autograd through the
    # network equals the network's Jacobian applied to the gradient with respect to its outputs.
    params = list(encoder.parameters())
    through = torch.autograd.grad(
        score_function_surrogate(
            encoder, model, x, torch.Generator().manual_seed(6), 3, "leave-one-out"
        ).surrogate.sum(),
        params,
    )
    mu, log_sigma = (t.detach() for t in encoder(x))
    theta = torch.cat([mu, log_sigma], 1).requires_grad_()
    outer = lambda _x: (theta[:, :L], theta[:, L:])  # noqa: E731
    (g_out,) = torch.autograd.grad(
        score_function_surrogate(
            outer, model, x, torch.Generator().manual_seed(6), 3, "leave-one-out"
        ).surrogate.sum(),
        theta,
    )
    chained = torch.autograd.grad(net(x), params, grad_outputs=g_out)
    for a, c in zip(through, chained, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
    # With a decoder that ignores z, E_q log p(x | z) has zero gradient: reparameterized and
    # leave-one-out estimates are then exactly −∇KL, draw by draw (the KL is never estimated).
    flat = DeepLatentModel(torch.nn.Linear(L, D).to(D64), make_likelihood("bernoulli", D), L)
    with torch.no_grad():
        flat.decoder.weight.zero_()
    _, _, _, mu, log_sigma = _data(3)
    theta = torch.cat([mu, log_sigma], 1).requires_grad_()
    (kl_grad,) = torch.autograd.grad(-gaussian_kl(theta[:, :L], theta[:, L:]).sum(), theta)
    for estimator in ("reparameterization", "score-baseline"):
        draws = _draws(flat, x, mu, log_sigma, estimator, R=5, n_samples=3, seed=8)
        torch.testing.assert_close(draws, kl_grad.expand_as(draws), rtol=1e-12, atol=1e-12)
    # Without a baseline the score function is noisy even then (zero only in expectation).
    assert (
        float(_draws(flat, x, mu, log_sigma, "score", R=5, n_samples=3, seed=8).var(0).max()) > 1e-3
    )


def test_errors_say_what_to_do():
    W, b, x, mu, log_sigma = _data()
    model = _linear_gaussian(W, b)
    encoder = lambda _x: (mu, log_sigma)  # noqa: E731
    with pytest.raises(ValueError, match="needs n_samples >= 2.*baseline='mean'"):
        score_function_surrogate(encoder, model, x, None, 1, "leave-one-out")
    with pytest.raises(
        ValueError, match="baseline must be None, 'leave-one-out', 'mean' or a tensor"
    ):
        score_function_surrogate(encoder, model, x, None, 2, "running")
    with pytest.raises(ValueError, match="estimator must be one of"):
        elbo_surrogate(encoder, model, x, "pathwise")
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        reparameterized_surrogate(encoder, model, x, None, 0)
    # A baseline from elsewhere (here a constant per point) is accepted and detached.
    value = score_function_surrogate(
        encoder,
        model,
        x,
        torch.Generator().manual_seed(0),
        2,
        torch.zeros(B, dtype=D64, requires_grad=True),
    )
    assert value.surrogate.shape == (B,)
