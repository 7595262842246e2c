"""The Categorical family against scipy.stats and brute-force NumPy sums (float64)."""

import itertools

import numpy as np
import pytest
import torch
from scipy import stats as st

from lvmkit.families.categorical import (
    Categorical,
    CategoricalParams,
    log_prob_logits,
    sample_logits,
)

M, K = 5, 3


def _problem(seed=0, n=40):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(M), size=K)
    x = rng.integers(0, M, size=n)
    resp = rng.dirichlet(np.ones(K), size=n)
    return probs, x, resp


def test_log_prob_matches_scipy_and_is_one_matrix_product():
    probs, x, _ = _problem()
    family = Categorical(M)
    F = family.features(torch.as_tensor(x, dtype=torch.float64)[:, None])
    assert F.shape == (x.size, M) and F.dtype == torch.float64
    np.testing.assert_array_equal(F.numpy(), np.eye(M)[x])
    got, cache = family.log_prob(F, CategoricalParams(torch.as_tensor(probs)))
    assert cache is None and got.shape == (x.size, K)
    onehot = np.eye(M)[x]
    want = np.stack([st.multinomial(1, probs[k]).logpmf(onehot) for k in range(K)], 1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    # A flat column of integers gives the same features.
    np.testing.assert_array_equal(family.features(torch.as_tensor(x)).numpy(), F.numpy())


def test_statistics_and_unclipped_maximum_are_the_weighted_frequencies():
    probs, x, resp = _problem(1, n=200)
    family = Categorical(M, min_prob=1e-9)
    F = family.features(torch.as_tensor(x, dtype=torch.float64))
    stats = family.statistics(F, torch.as_tensor(resp))
    onehot = np.eye(M)[x]
    assert stats["nk"].dtype == stats["sx"].dtype == torch.float64
    np.testing.assert_allclose(stats["nk"].numpy(), resp.sum(0), rtol=1e-12)
    np.testing.assert_allclose(stats["sx"].numpy(), resp.T @ onehot, rtol=1e-12)
    got = family.maximize(stats).numpy()
    want = resp.T @ onehot / resp.sum(0)[:, None]
    assert want.min() > 1e-9  # every symbol seen: the bound is inactive
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-14)


def _brute_force_clipped_maximum(s, low):
    """max Σ s log p over {Σ p = 1, p ≥ low}: the best feasible KKT point over every clipped set."""
    best, best_value = None, -np.inf
    for r in range(len(s)):
        for clipped in itertools.combinations(range(len(s)), r):
            free = np.setdiff1d(np.arange(len(s)), clipped)
            if s[free].sum() == 0:
                continue
            p = np.full(len(s), low)
            p[free] = s[free] / s[free].sum() * (1 - low * r)
            if p.min() < low * (1 - 1e-12):
                continue
            value = np.sum(np.where(s > 0, s * np.log(p), 0.0))
            if value > best_value:
                best, best_value = p, value
    return best


def test_clipped_maximum_is_the_exact_maximiser_over_the_clipped_simplex():
    low = 0.04
    family = Categorical(M, min_prob=low)
    sx = np.array(
        [
            [10.0, 0.0, 0.1, 3.0, 0.0],  # two unseen symbols and a rare one: several clipped
            [1.0, 1.0, 1.0, 1.0, 1.0],  # uniform: nothing clipped
            [0.0, 0.0, 0.0, 0.0, 0.0],  # an empty component: uniform
            [100.0, 2.0, 3.0, 4.5, 0.2],  # a clipping that pushes a second symbol below the bound
        ]
    )
    stats = {"nk": torch.as_tensor(sx.sum(1)), "sx": torch.as_tensor(sx)}
    got = family.maximize(stats).numpy()
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-14)
    assert got.min() >= low
    for k in (0, 1, 3):
        np.testing.assert_allclose(got[k], _brute_force_clipped_maximum(sx[k], low), rtol=1e-12)
    np.testing.assert_allclose(got[2], np.full(M, 1 / M), rtol=1e-14)
    # Row 3 needs two rounds: symbol 3's frequency (0.041) is above the bound, but clipping
    # symbols 1, 2 and 4 up to it lowers the others' share and takes symbol 3 below it.
    assert sx[3, 3] / sx[3].sum() > low
    np.testing.assert_array_equal(got[3, 1:], low)


def test_expected_log_likelihood_is_the_responsibility_weighted_log_prob():
    probs, x, resp = _problem(2, n=60)
    family = Categorical(M)
    params = CategoricalParams(torch.as_tensor(probs))
    F = family.features(torch.as_tensor(x, dtype=torch.float64))
    summary = family.summarize(family.statistics(F, torch.as_tensor(resp)))
    brute = np.sum(resp * np.log(probs[:, x].T))
    q = family.expected_log_likelihood(summary, params)
    np.testing.assert_allclose(float(q), brute, rtol=1e-12)
    # The gradient view's softmax logits round-trip, and Q from them is the same.
    back = family.constrained(family.unconstrained(params))
    np.testing.assert_allclose(back.probs.numpy(), probs, rtol=1e-12)
    np.testing.assert_allclose(
        float(family.expected_log_likelihood(summary, back)), brute, rtol=1e-12
    )
    # Q is a differentiable function of the logits, with the gradient S − N p of a softmax.
    u = {"prob_logits": torch.log(torch.as_tensor(probs)).requires_grad_()}
    (grad,) = torch.autograd.grad(
        family.expected_log_likelihood(summary, family.constrained(u)), u["prob_logits"]
    )
    S, N = summary["sx"].numpy(), summary["sx"].numpy().sum(1, keepdims=True)
    np.testing.assert_allclose(grad.numpy(), S - N * probs, rtol=1e-10, atol=1e-12)


def test_sampling_frequencies():
    probs = torch.tensor(
        [[0.5, 0.3, 0.15, 0.05, 0.0], [0.02, 0.08, 0.2, 0.3, 0.4]], dtype=torch.float64
    )
    n = 100_000
    labels = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    x = Categorical(M).sample(labels, probs, torch.Generator().manual_seed(0))
    assert x.shape == (2 * n, 1) and x.dtype == torch.float64
    for k in range(2):
        counts = np.bincount(x[labels == k, 0].long().numpy(), minlength=M)
        assert counts[probs[k].numpy() == 0].sum() == 0
        p = probs[k].numpy()
        keep = p > 0
        chi2 = st.chisquare(counts[keep], n * p[keep])
        assert chi2.pvalue > 1e-4, (counts, chi2)
        # and not vacuous: each frequency within 5 standard errors (< 0.008 absolute here)
        se = np.sqrt(p * (1 - p) / n)
        assert np.all(np.abs(counts / n - p) <= 5 * se + 1e-12)


def test_per_sample_logits_density_and_draws():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 3, 4, M))  # (S, B, D, M)
    x = rng.integers(0, M, size=(3, 4))  # (B, D), broadcast over S
    got = log_prob_logits(torch.as_tensor(logits), torch.as_tensor(x))
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = np.take_along_axis(log_p, np.broadcast_to(x, (2, 3, 4))[..., None], -1)[..., 0].sum(-1)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    p = np.exp(log_p)
    ref = np.stack(
        [
            [
                sum(st.multinomial(1, p[s, b, d]).logpmf(np.eye(M)[x[b, d]]) for d in range(4))
                for b in range(3)
            ]
            for s in range(2)
        ]
    )
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    # Float symbols are accepted; draws follow softmax(logits).
    np.testing.assert_array_equal(
        log_prob_logits(torch.as_tensor(logits), torch.as_tensor(x, dtype=torch.float64)).numpy(),
        got.numpy(),
    )
    one = torch.tensor([2.0, 0.0, -1.0, 1.0, 0.5], dtype=torch.float64)
    draws = sample_logits(one.expand(50_000, M), torch.Generator().manual_seed(1))
    assert draws.shape == (50_000,) and draws.dtype == torch.long
    freq = np.bincount(draws.numpy(), minlength=M) / 50_000
    p1 = torch.softmax(one, 0).numpy()
    assert np.all(np.abs(freq - p1) <= 5 * np.sqrt(p1 * (1 - p1) / 50_000))


def test_inputs_are_checked_and_the_parameter_count():
    family = Categorical(M)
    with pytest.raises(ValueError, match=r"lie in \[0, 5\)"):
        family.features(torch.tensor([0.0, 5.0]))
    with pytest.raises(ValueError, match="integer symbols"):
        family.features(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="one column of symbols"):
        family.features(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="min_prob must lie in"):
        Categorical(4, min_prob=0.25)
    with pytest.raises(ValueError, match="n_symbols must be an int"):
        Categorical(0)
    assert family.n_parameters(K, 1) == K * (M - 1)
