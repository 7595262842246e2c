"""Poisson and Bernoulli families against scipy.stats (float64)."""

import numpy as np
import pytest
import torch
from scipy import stats as st

from lvmkit.families.bernoulli import Bernoulli, BernoulliParams
from lvmkit.families.poisson import Poisson, PoissonParams


def test_poisson_log_prob_matches_scipy():
    rng = np.random.default_rng(0)
    rates = rng.gamma(2.0, 2.0, size=(4, 6))
    X = rng.poisson(3.0, size=(40, 6)).astype(float)
    family = Poisson()
    got, _ = family.log_prob(
        family.features(torch.as_tensor(X)), PoissonParams(torch.as_tensor(rates))
    )
    want = np.stack([st.poisson(rates[k]).logpmf(X).sum(1) for k in range(4)], 1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_bernoulli_log_prob_matches_scipy():
    rng = np.random.default_rng(1)
    probs = rng.uniform(0.05, 0.95, size=(3, 8))
    X = (rng.random((30, 8)) < 0.4).astype(float)
    family = Bernoulli()
    got, _ = family.log_prob(
        family.features(torch.as_tensor(X)), BernoulliParams(torch.as_tensor(probs))
    )
    want = np.stack([st.bernoulli(probs[k]).logpmf(X).sum(1) for k in range(3)], 1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize(
    "family, X",
    [
        (Poisson(min_rate=1e-3), np.array([[0.0, 3.0], [1.0, 0.0], [2.0, 0.0]])),
        (Bernoulli(min_prob=1e-3), np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])),
    ],
)
def test_maximize_is_weighted_mean_clipped_to_the_bounds(family, X):
    resp = np.array([[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
    F = family.features(torch.as_tensor(X))
    stats = family.statistics(F, torch.as_tensor(resp))
    got = family.maximize(stats).numpy()
    want = resp.T @ X / resp.sum(0)[:, None]
    low = 1e-3
    high = 1 - 1e-3 if isinstance(family, Bernoulli) else np.inf
    np.testing.assert_allclose(got, np.clip(want, low, high), rtol=1e-12)


@pytest.mark.parametrize(
    "family, params",
    [
        (Poisson(), PoissonParams(torch.tensor([[0.5, 4.0], [2.0, 0.1]], dtype=torch.float64))),
        (Bernoulli(), BernoulliParams(torch.tensor([[0.1, 0.7], [0.9, 0.4]], dtype=torch.float64))),
    ],
)
def test_expected_log_likelihood_is_the_responsibility_weighted_log_prob(family, params):
    """Up to a parameter-free constant, Q from statistics equals Σ r log p(x | z) directly."""
    rng = np.random.default_rng(2)
    X = torch.as_tensor(
        rng.poisson(1.0, size=(25, 2))
        .clip(0, 1 if isinstance(family, Bernoulli) else 99)
        .astype(float)
    )
    R = torch.as_tensor(rng.dirichlet(np.ones(2), size=25))
    F = family.features(X)
    direct = (R * family.log_prob(F, params)[0]).sum()
    summary = family.summarize(family.statistics(F, R))
    q = family.expected_log_likelihood(summary, params)
    constant = (
        -(R.sum(1) * torch.lgamma(X + 1).sum(1)).sum() if isinstance(family, Poisson) else 0.0
    )
    np.testing.assert_allclose(float(q + constant), float(direct), rtol=1e-10)
    # and the parameterisation round-trips
    back = family.constrained(family.unconstrained(params))
    name = "rates" if isinstance(family, Poisson) else "probs"
    np.testing.assert_allclose(
        getattr(back, name).numpy(), getattr(params, name).numpy(), rtol=1e-12
    )
    # With the gradient view's logits attached, Q is unchanged.
    assert float(family.expected_log_likelihood(summary, back)) == pytest.approx(
        float(q), rel=1e-12
    )


def test_samples_have_the_right_means():
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(50_000, dtype=torch.long)
    rates = torch.tensor([[0.5, 7.0]], dtype=torch.float64)
    probs = torch.tensor([[0.2, 0.9]], dtype=torch.float64)
    np.testing.assert_allclose(
        Poisson().sample(labels, rates, g).mean(0).numpy(), [0.5, 7.0], rtol=0.03
    )
    np.testing.assert_allclose(
        Bernoulli().sample(labels, probs, g).mean(0).numpy(), [0.2, 0.9], rtol=0.03
    )


def test_per_sample_forms_match_scipy_with_and_without_broadcasting():
    """The densities a VAE decoder's outputs use: logits / log-rates per data point."""
    from lvmkit.families.bernoulli import log_prob_logits, sample_logits
    from lvmkit.families.poisson import log_prob_log_rates, sample_log_rates

    rng = np.random.default_rng(5)
    params = rng.normal(size=(4, 6))
    xb = (rng.random((4, 6)) < 0.5).astype(float)
    xp = rng.poisson(2.0, size=(4, 6)).astype(float)
    for fn, x, ref in (
        (log_prob_logits, xb, st.bernoulli.logpmf(xb, 1 / (1 + np.exp(-params))).sum(1)),
        (log_prob_log_rates, xp, st.poisson.logpmf(xp, np.exp(params)).sum(1)),
    ):
        same = fn(
            torch.as_tensor(params), torch.as_tensor(x)
        )  # equal shapes (Bernoulli: the fused kernel)
        stacked = fn(
            torch.as_tensor(params)[None].expand(3, -1, -1), torch.as_tensor(x)
        )  # broadcast form
        np.testing.assert_allclose(same.numpy(), ref, rtol=1e-12)
        np.testing.assert_allclose(stacked.numpy(), np.broadcast_to(ref, (3, 4)), rtol=1e-12)
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([-1.5, 0.0, 2.0], dtype=torch.float64).expand(50_000, 3)
    np.testing.assert_allclose(
        sample_logits(logits, g).mean(0).numpy(), torch.sigmoid(logits[0]).numpy(), rtol=0.03
    )
    np.testing.assert_allclose(
        sample_log_rates(logits, g).mean(0).numpy(), torch.exp(logits[0]).numpy(), rtol=0.03
    )
