"""The compiled LDA E-step (lvmkit/models/lda_kernels.py) against the batched torch one and SciPy,
in float64, and the batch guard that keeps the bound from decreasing."""

import numpy as np
import pytest
import torch
from scipy.special import digamma as scipy_digamma

import lvmkit.estimators.lda as lda_estimator
from lvmkit import LatentDirichletAllocation
from lvmkit.models import lda, lda_kernels
from lvmkit.models.documents import documents
from tests.estimators.test_lda import corpus

f64 = torch.float64


def test_digamma_and_its_exponential_equal_scipys():
    x = np.concatenate([np.logspace(-8, 4, 4001), np.linspace(0.01, 20, 2001)])
    ours = np.array([lda_kernels.digamma(v) for v in x])
    theirs = scipy_digamma(x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    exp_ours = np.array([lda_kernels.exp_digamma(v) for v in x])
    np.testing.assert_allclose(exp_ours, np.exp(theirs), rtol=1e-11, atol=1e-300)


def test_topic_factors_equal_torchs_in_both_layouts():
    lam = torch.as_tensor(np.random.default_rng(0).gamma(0.3, 2.0, (7, 300)) + 1e-3)
    reference = torch.exp(torch.digamma(lam) - torch.digamma(lam.sum(1, keepdim=True)))
    np.testing.assert_allclose(
        lda.TopicParams(lam).exp_beta(f64), reference, rtol=1e-12, atol=1e-300
    )  # (below 3e-308, where exp is subnormal, the kernel gives 0)
    # at some columns only (an online mini-batch's words), each row still normalised over all
    words = np.array([0, 5, 17, 299, 120])
    at = np.empty((5, 7))
    lda_kernels.exp_dirichlet_expectation_at(lam.numpy(), words, at)
    np.testing.assert_allclose(at, reference[:, words].T, rtol=1e-12, atol=1e-300)
    out_t = np.empty((300, 7), dtype=np.float32)
    np.testing.assert_allclose(
        lda_kernels.exp_dirichlet_expectation_at(lam.numpy(), np.arange(300), out_t),
        reference.T,
        rtol=1e-6,
        atol=1e-37,
    )


def fitted_setup(dtype=f64, n_docs=150):
    X, _ = corpus(n_docs=n_docs, seed=4)
    rng = np.random.default_rng(1)
    params = lda.TopicParams(torch.as_tensor(rng.gamma(2.0, 1.0, (5, X.shape[1]))))
    docs = documents(X, dtype, "cpu")
    start = torch.as_tensor(rng.gamma(100.0, 0.01, (X.shape[0], 5)))
    return docs, params, start


@pytest.mark.parametrize("max_iter", [100, 3, 0])
def test_compiled_e_step_equals_the_batched_torch_one(max_iter):
    """The same updates and stopping rule: γ, exp E[log θ], the statistics' weights, every
    document's bound and the expected counts agree to 1e-10 (float64); ``max_iter=0`` evaluates
    the start."""
    docs, params, start = fitted_setup()
    runs = {}
    for compiled in (True, False):
        model = lda.LDAModel(5, 0.2, 0.1, f64, 100, 1e-3, None, compiled=compiled)
        found = model.solve(docs, params, start, max_iter=max_iter)
        runs[compiled] = (found, model.statistics(docs, params, found))
    (ours, our_stats), (theirs, their_stats) = runs[True], runs[False]
    for name in ("gamma", "exp_theta", "ratios", "bounds"):
        np.testing.assert_allclose(
            getattr(ours, name), getattr(theirs, name), rtol=1e-10, atol=1e-12, err_msg=name
        )
    for name in ("counts", "log_likelihood", "n_samples", "n_words"):
        np.testing.assert_allclose(our_stats[name], their_stats[name], rtol=1e-10, atol=1e-12)
    if max_iter == 0:
        np.testing.assert_allclose(ours.gamma, start)
    # each document's bound is ψ's and lgamma's arithmetic on the γ it returns
    expected = lda.dirichlet_terms(0.2, ours.gamma)
    norm = model._normalizers(docs, params, ours.exp_theta)
    words = torch.zeros(docs.n_docs, dtype=f64).index_add_(
        0, docs.rows, docs.counts * torch.log(norm)
    )
    np.testing.assert_allclose(ours.bounds, words + expected, rtol=1e-10)


def test_compiled_e_step_in_float32_is_close_to_float64():
    docs64, params, start = fitted_setup(f64)
    docs32, _, _ = fitted_setup(torch.float32)
    a = lda.LDAModel(5, 0.2, 0.1, f64, 100, 1e-3, None).solve(docs64, params, start)
    b = lda.LDAModel(5, 0.2, 0.1, torch.float32, 100, 1e-3, None).solve(docs32, params, start)
    assert b.gamma.dtype == torch.float32 and b.bounds.dtype == f64
    np.testing.assert_allclose(b.bounds.sum(), a.bounds.sum(), rtol=1e-5)
    np.testing.assert_allclose(b.gamma, a.gamma, rtol=2e-2, atol=2e-2)


def test_the_guard_keeps_the_batch_bound_from_decreasing(monkeypatch):
    """Fresh random starts every pass (scikit-learn's E-step) can lower the bound late in a fit
    (measured here: 4 decreases in 40 iterations, the largest 5e-5 nats per word); the guard
    keeps every document's better γ in such a pass, and the same fit never decreases."""
    X, _ = corpus(n_docs=300, n_words=100, length=50, seed=1)
    kw = dict(max_iter=40, random_state=2, dtype="float64")
    guarded = LatentDirichletAllocation(5, **kw).fit(X)
    assert np.all(np.diff(guarded.lower_bounds_) >= 0)

    original = lda_estimator.LatentDirichletAllocation._model

    def unguarded(self, doc_init, guard=False, scale=None):
        return original(self, doc_init, guard=False, scale=scale)

    monkeypatch.setattr(lda_estimator.LatentDirichletAllocation, "_model", unguarded)
    fresh = LatentDirichletAllocation(5, **kw).fit(X)
    assert np.any(np.diff(fresh.lower_bounds_) < 0)  # so the guard had something to do
    # they agree until the fresh run's first decrease
    first = int(np.argmax(np.diff(fresh.lower_bounds_) < 0))
    np.testing.assert_allclose(
        guarded.lower_bounds_[: first + 1], fresh.lower_bounds_[: first + 1], rtol=1e-12
    )
