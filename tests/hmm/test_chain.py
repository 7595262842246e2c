"""Forward-backward and Viterbi against brute-force sums over every state path (float64)."""

import itertools
import math

import numpy as np
import pytest
import torch

from lvmkit.posteriors import chain

f64 = torch.float64


def brute(log_e, pi, A):
    """log p(x), γ (T, K), Σ_t ξ_t (K, K), the best path and its log-probability, by enumeration."""
    T, K = log_e.shape
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    lp = np.log(pi)[paths[:, 0]] + log_e[0, paths[:, 0]]
    for t in range(1, T):
        lp = lp + np.log(A)[paths[:, t - 1], paths[:, t]] + log_e[t, paths[:, t]]
    top = lp.max()
    ll = top + math.log(np.exp(lp - top).sum())
    p = np.exp(lp - ll)
    gamma = np.zeros((T, K))
    xi = np.zeros((K, K))
    for t in range(T):
        np.add.at(gamma[t], paths[:, t], p)
    for t in range(1, T):
        np.add.at(xi, (paths[:, t - 1], paths[:, t]), p)
    best = int(np.argmax(lp))
    return ll, gamma, xi, paths[best], lp[best]


def random_model(rng, K):
    pi = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K), size=K)
    return pi, A


@pytest.mark.parametrize("block", [None, 2, 3])
def test_forward_backward_equals_brute_force(block):
    rng = np.random.default_rng(0)
    K = 3
    lengths = [5, 1, 3, 6, 2, 6]
    pi, A = random_model(rng, K)
    log_e = rng.normal(size=(sum(lengths), K)) * 2
    w = rng.uniform(0.5, 2.0, size=len(lengths))
    packing = chain.pack(lengths, "cpu", block=block)
    row_w = torch.tensor(w)[packing.row_seq]
    post = chain.forward_backward(
        torch.tensor(log_e)[packing.order], torch.tensor(pi), torch.tensor(A), packing, row_w
    )
    gamma_rows = packing.unpack(post.gamma)
    start = np.cumsum([0] + lengths)
    xi_total = np.zeros((K, K))
    first_total = np.zeros(K)
    for s in range(len(lengths)):
        ll, gamma, xi, _, _ = brute(log_e[start[s] : start[s + 1]], pi, A)
        np.testing.assert_allclose(post.log_likelihood[s].item(), ll, rtol=1e-12)
        np.testing.assert_allclose(
            gamma_rows[start[s] : start[s + 1]].numpy(), w[s] * gamma, atol=1e-12
        )
        xi_total += w[s] * xi
        first_total += w[s] * gamma[0]
    np.testing.assert_allclose(post.xi.numpy(), xi_total, atol=1e-12)
    np.testing.assert_allclose(post.first.numpy(), first_total, atol=1e-12)


def test_posteriors_sum_to_one():
    rng = np.random.default_rng(1)
    K = 4
    lengths = [40, 7, 1, 100]
    pi, A = random_model(rng, K)
    log_e = torch.tensor(rng.normal(size=(sum(lengths), K)) * 5)
    packing = chain.pack(lengths, "cpu")
    post = chain.forward_backward(log_e[packing.order], torch.tensor(pi), torch.tensor(A), packing)
    np.testing.assert_allclose(post.gamma.sum(1).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(post.xi.sum().item(), sum(n - 1 for n in lengths), rtol=1e-12)


def test_blocks_equal_one_pass_on_a_long_sequence():
    rng = np.random.default_rng(2)
    K = 5
    lengths = [3000, 17, 2500]
    pi, A = random_model(rng, K)
    log_e = torch.tensor(rng.normal(size=(sum(lengths), K)) * 3)

    def run(block):
        packing = chain.pack(lengths, "cpu", block=block)
        post = chain.forward_backward(
            log_e[packing.order], torch.tensor(pi), torch.tensor(A), packing
        )
        post.gamma = packing.unpack(post.gamma)
        return post

    plain, blocked = run(0), run(55)
    assert chain.pack(lengths, "cpu").blocks is not None
    np.testing.assert_allclose(
        blocked.log_likelihood.numpy(), plain.log_likelihood.numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(blocked.gamma.numpy(), plain.gamma.numpy(), atol=1e-10)
    np.testing.assert_allclose(blocked.xi.numpy(), plain.xi.numpy(), rtol=1e-9)
    np.testing.assert_allclose(blocked.first.numpy(), plain.first.numpy(), atol=1e-12)


def test_underflow_falls_back_to_log_space():
    """A state reachable only through a transition of 1e-30 that then explains x far better:
    the float32 scaled pass underflows; the result is the float64 log-space one."""
    pi = torch.tensor([1.0, 0.0])
    A = torch.tensor([[1.0 - 1e-30, 1e-30], [0.5, 0.5]])
    log_e = torch.tensor([[0.0, 0.0], [-80.0, 0.0], [0.0, 0.0]])
    lengths = [3]
    ll64, gamma64, xi64, _, _ = brute(log_e.numpy(), np.array([1.0, 1e-300]), A.double().numpy())
    post = chain.forward_backward(log_e.float(), pi.float(), A.float(), chain.pack(lengths, "cpu"))
    assert np.isfinite(post.log_likelihood.numpy()).all()
    assert torch.isfinite(post.gamma).all() and torch.isfinite(post.xi).all()
    np.testing.assert_allclose(post.log_likelihood.item(), ll64, rtol=1e-6)
    np.testing.assert_allclose(post.gamma.sum(1).numpy(), 1.0, atol=1e-6)


def test_viterbi_equals_brute_force():
    rng = np.random.default_rng(3)
    K = 3
    lengths = [4, 1, 6, 2]
    pi, A = random_model(rng, K)
    log_e = rng.normal(size=(sum(lengths), K)) * 2
    packing = chain.pack(lengths, "cpu", block=0)
    states, score = chain.viterbi(
        torch.tensor(log_e)[packing.order],
        torch.tensor(np.log(pi)),
        torch.tensor(np.log(A)),
        packing,
    )
    states = packing.unpack(states)
    start = np.cumsum([0] + lengths)
    for s in range(len(lengths)):
        _, _, _, path, best = brute(log_e[start[s] : start[s + 1]], pi, A)
        np.testing.assert_array_equal(states[start[s] : start[s + 1]].numpy(), path)
        np.testing.assert_allclose(score[s].item(), best, rtol=1e-12)


def test_viterbi_in_blocks_equals_one_recursion():
    rng = np.random.default_rng(4)
    K = 4
    lengths = [2000, 30, 1, 1500]
    pi, A = random_model(rng, K)
    log_e = torch.tensor(rng.normal(size=(sum(lengths), K)) * 2)
    results = []
    for block in (0, 37):
        packing = chain.pack(lengths, "cpu", block=block)
        states, score = chain.viterbi(
            log_e[packing.order], torch.tensor(np.log(pi)), torch.tensor(np.log(A)), packing
        )
        results.append((packing.unpack(states).numpy(), score.numpy()))
    (plain, plain_score), (blocked, blocked_score) = results
    np.testing.assert_allclose(blocked_score, plain_score, rtol=1e-12)
    np.testing.assert_array_equal(blocked, plain)
