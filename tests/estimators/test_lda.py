"""Latent Dirichlet allocation against scikit-learn (one iteration from the same start, the same
bound), the batch bound's monotonicity, topic recovery, online against batch, and bad input."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import LatentDirichletAllocation as SkLDA

import lvmkit
from lvmkit import LatentDirichletAllocation


def corpus(n_docs=400, n_words=200, k=5, length=60, seed=0):
    """Documents drawn from known sparse topics: (counts CSR, topics (K, V))."""
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(n_words, 0.05), size=k)
    mix = rng.dirichlet(np.full(k, 0.2), size=n_docs)
    X = np.stack([rng.multinomial(length, m @ topics) for m in mix]).astype(np.float64)
    X = X[X.sum(1) > 0]
    return sp.csr_matrix(X), topics


def matched_distance(fitted: np.ndarray, true: np.ndarray) -> float:
    """Mean total-variation distance between each true topic and its matched fitted topic."""
    cost = 0.5 * np.abs(true[:, None, :] - fitted[None, :, :]).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


@pytest.fixture
def exact_digamma(monkeypatch):
    """scikit-learn's LDA with its Cython ψ (an asymptotic series, off by up to 2.4e-9) replaced
    by scipy's, the digamma lvmkit computes with: the same algorithm, the same arithmetic."""
    import sklearn.decomposition._lda as sk_lda
    from scipy.special import psi

    def expectation_2d(x):
        return psi(x) - psi(x.sum(1, keepdims=True))

    def expectation_1d(doc_topic, prior, out):
        doc_topic += prior
        out[:] = np.exp(psi(doc_topic) - psi(doc_topic.sum()))

    monkeypatch.setattr(sk_lda, "_dirichlet_expectation_2d", expectation_2d)
    monkeypatch.setattr(
        sk_lda, "cy_dirichlet_expectation_1d", {"double": expectation_1d, "float": expectation_1d}
    )


@pytest.mark.parametrize("method", ["batch", "online"])
def test_one_iteration_equals_scikit_learns(method, exact_digamma):
    """The same random_state gives the same starting topics and document starts; one iteration's
    components_ then agree with scikit-learn's to 1e-8 (float64). (With scikit-learn's own ψ
    they agree to 1e-7: test below.)"""
    X, _ = corpus(n_docs=150)
    kw = dict(learning_method=method, max_iter=1, random_state=3, batch_size=40)
    ours = LatentDirichletAllocation(5, dtype="float64", **kw).fit(X)
    theirs = SkLDA(5, **kw).fit(X)
    np.testing.assert_allclose(ours.components_, theirs.components_, rtol=1e-8)
    np.testing.assert_allclose(
        ours.exp_dirichlet_component_, theirs.exp_dirichlet_component_, rtol=1e-8
    )
    assert ours.n_batch_iter_ == theirs.n_batch_iter_


def test_one_iteration_with_scikit_learns_own_digamma():
    X, _ = corpus(n_docs=150)
    ours = LatentDirichletAllocation(5, dtype="float64", max_iter=1, random_state=3).fit(X)
    theirs = SkLDA(5, max_iter=1, random_state=3).fit(X)
    np.testing.assert_allclose(ours.components_, theirs.components_, rtol=1e-7)


def test_bound_and_perplexity_equal_scikit_learns_for_the_same_topics(exact_digamma):
    X, _ = corpus(n_docs=120, seed=1)
    theirs = SkLDA(5, max_iter=3, random_state=0).fit(X)
    ours = LatentDirichletAllocation(5, dtype="float64")
    ours.components_ = theirs.components_.copy()
    ours.n_features_in_ = X.shape[1]
    ours.doc_topic_prior_ = ours.topic_word_prior_ = 0.2
    # transform's E-step starts every document at γ = 1, as scikit-learn's
    np.testing.assert_allclose(ours.transform(X), theirs.transform(X), rtol=1e-8)
    assert ours.score(X) == pytest.approx(theirs.score(X), rel=1e-10)
    assert ours.perplexity(X) == pytest.approx(theirs.perplexity(X), rel=1e-10)


def test_batch_bound_never_decreases_and_topics_are_recovered():
    X, topics = corpus(n_docs=1000, n_words=100, length=100, seed=2)
    model = LatentDirichletAllocation(5, max_iter=15, random_state=0, dtype="float64").fit(X)
    bounds = np.asarray(model.lower_bounds_)
    assert len(bounds) == 15
    assert np.all(np.diff(bounds) >= -1e-10 * np.abs(bounds[1:]))
    assert model.bound_ == pytest.approx(np.exp(-bounds[-1]), rel=0.02)
    # measured 0.013 (scikit-learn: 0.012)
    assert matched_distance(model.topic_word_distribution(), topics) < 0.05
    proportions = model.transform(X)
    np.testing.assert_allclose(proportions.sum(1), 1.0, rtol=1e-12)
    words = X.sum()
    assert model.perplexity(X) == pytest.approx(np.exp(-model.score(X) / words), rel=1e-12)
    # the held-out measure leaves out the topics' constant term
    assert model.score(X) == pytest.approx(model.document_bound(X) + model.topics_bound())
    assert model.held_out_perplexity(X) == pytest.approx(
        np.exp(-model.document_bound(X) / words), rel=1e-12
    )


def test_online_reaches_the_batch_bound():
    X, topics = corpus(n_docs=1000, n_words=100, length=100, seed=2)
    batch = LatentDirichletAllocation(5, max_iter=15, random_state=0).fit(X)
    for decay in (0.6, 1.0):
        online = LatentDirichletAllocation(
            5,
            learning_method="online",
            learning_decay=decay,
            max_iter=8,
            batch_size=100,
            random_state=0,
        ).fit(X)
        # within 2.5% of batch's perplexity after 80 steps (measured: 0.24% at κ = 0.6, 1.98%
        # at κ = 1, whose steps shrink fastest), and the same topics
        assert online.perplexity(X) <= 1.025 * batch.perplexity(X), decay
        assert matched_distance(online.topic_word_distribution(), topics) < 0.08, decay


def test_partial_fit_save_load_and_float32(tmp_path):
    X, _ = corpus(n_docs=200, seed=5)
    model = LatentDirichletAllocation(5, total_samples=200, batch_size=50, random_state=0)
    for start in range(0, 200, 100):
        model.partial_fit(X[start : start + 100])
    assert model.n_batch_iter_ == 5
    back = lvmkit.load(model.save(tmp_path / "lda.lvm"))
    np.testing.assert_array_equal(back.transform(X), model.transform(X))
    single = LatentDirichletAllocation(5, max_iter=5, random_state=0, dtype="float32").fit(X)
    double = LatentDirichletAllocation(5, max_iter=5, random_state=0, dtype="float64").fit(X)
    assert single.perplexity(X) == pytest.approx(double.perplexity(X), rel=1e-3)


def test_bad_input_is_named():
    X, _ = corpus(n_docs=50, seed=6)
    dense = X.toarray()
    model = LatentDirichletAllocation(3, max_iter=2, random_state=0)
    with pytest.raises(ValueError, match="negative counts"):
        model.fit(np.where(dense > 2, -1.0, dense))
    with pytest.raises(ValueError, match="fractional counts"):
        model.fit(dense + 0.5)
    empty = dense.copy()
    empty[7] = 0
    with pytest.raises(ValueError, match=r"document\(s\) have no words \(rows \[7\]\)"):
        model.fit(empty)
    with pytest.raises(ValueError, match="empty vocabulary"):
        model.fit(np.zeros((5, 0)))
    model.fit(X)
    with pytest.raises(ValueError, match="fitted on a vocabulary of 200"):
        model.transform(dense[:, :150])
    with pytest.raises(ValueError, match="parameter 'learning_method'"):
        LatentDirichletAllocation(learning_method="gibbs").fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on good input (e.g. torch's sparse beta)
        LatentDirichletAllocation(3, max_iter=1, random_state=0).fit(X)


def test_held_out_estimate_equals_the_exact_likelihood_of_short_documents():
    """The left-to-right estimate against log p(w) summed over all K^N topic assignments
    (Pólya urn times the topics), for 6-word documents."""
    import itertools

    import torch
    from scipy.special import gammaln, logsumexp

    from lvmkit.models.lda import left_to_right

    rng = np.random.default_rng(0)
    k, v, alpha = 3, 5, 0.4
    topics = rng.dirichlet(np.full(v, 0.5), size=k)
    X = sp.csr_matrix(np.stack([np.bincount(rng.integers(0, v, 6), minlength=v) for _ in range(4)]))
    X.data = X.data.astype(np.float64)

    def exact(words):
        terms = []
        for z in itertools.product(range(k), repeat=len(words)):
            z = np.asarray(z)
            nk = np.bincount(z, minlength=k)
            polya = gammaln(k * alpha) - gammaln(len(words) + k * alpha)
            polya += np.sum(gammaln(nk + alpha) - gammaln(alpha))
            terms.append(polya + np.log(topics[z, words]).sum())
        return logsumexp(terms)

    expected = [
        exact(
            np.repeat(
                X.indices[X.indptr[d] : X.indptr[d + 1]],
                X.data[X.indptr[d] : X.indptr[d + 1]].astype(int),
            )
        )
        for d in range(4)
    ]
    generator = torch.Generator().manual_seed(0)
    estimate = left_to_right(X, torch.tensor(topics), alpha, 4000, generator).numpy()
    np.testing.assert_allclose(estimate, expected, atol=0.03)  # measured: 0.012 at most
    model = LatentDirichletAllocation(3, max_iter=2, random_state=0).fit(corpus(n_docs=60)[0])
    held = model.held_out_log_likelihood(corpus(n_docs=5, seed=9)[0], n_particles=10)
    assert held.shape == (5,) and np.all(np.isfinite(held)) and np.all(held < 0)
