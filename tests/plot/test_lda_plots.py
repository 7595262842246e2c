"""Pictures of a topic model (lvmkit.plot.lda): every topic's top words, the training perplexity,
documents' topic proportions, the corpus fit behind ``lvmkit score``, and the report sections and
``lvmkit plot`` picture registered for LatentDirichletAllocation. Figures are built, not
rendered (the command-line tests render them)."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from matplotlib.patches import Rectangle

import lvmkit
from lvmkit.plot.figures import plot_model
from lvmkit.plot.lda import (
    corpus_fit,
    lda_sections,
    plot_document_topics,
    plot_lda,
    plot_perplexity,
    plot_top_words,
    shown_topics,
    top_words,
    topics_table,
)
from lvmkit.plot.report import ReportContext, _provider

K, V = 4, 40
WORDS = [f"w{j:02d}" for j in range(V)]


@pytest.fixture(scope="module")
def X():
    """Documents of 4 topics with 10 words of their own each."""
    rng = np.random.default_rng(0)
    beta = np.full((K, V), 0.002)
    for k in range(K):
        beta[k, 10 * k : 10 * k + 10] = rng.dirichlet(np.ones(10)) + 0.01
    beta /= beta.sum(1, keepdims=True)
    theta = rng.dirichlet(np.full(K, 0.2), size=80)
    return sp.csr_matrix(np.vstack([rng.multinomial(40, p) for p in theta @ beta]))


@pytest.fixture(scope="module")
def model(X):
    lda = lvmkit.LatentDirichletAllocation(K, max_iter=15, random_state=0).fit(X)
    lda.vocabulary_ = list(WORDS)
    return lda


def _bars(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_top_words(model):
    beta = model.topic_word_distribution()
    words = top_words(model, 5)
    assert len(words) == K and all(len(w) == 5 for w in words)
    for k, pairs in enumerate(words):
        probs = [p for _, p in pairs]
        assert probs == sorted(probs, reverse=True)
        assert probs[0] == beta[k].max()
        assert [w for w, _ in pairs] == [WORDS[j] for j in np.argsort(-beta[k])[:5]]
    # each topic's top words are one planted topic's
    groups = [{int(w[1:]) // 10 for w, _ in pairs[:3]} for pairs in words]
    assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == K
    assert top_words(model, 500)[0][-1][1] == beta[0].min()  # n_words capped at V
    other = [f"v{j}" for j in range(V)]
    assert top_words(model, 1, vocabulary=other)[0][0][0].startswith("v")
    with pytest.raises(ValueError, match="the vocabulary has 3 words but the model has 40"):
        top_words(model, vocabulary=["a", "b", "c"])


def test_plot_top_words(model):
    fig = plot_top_words(model, n_words=6)
    axes = fig.axes
    assert len(axes) == K
    words = top_words(model, 6)
    for k, ax in enumerate(axes):
        assert ax.get_title() == f"topic {k + 1}"
        assert [t.get_text() for t in ax.get_yticklabels()] == [w for w, _ in words[k]]
        np.testing.assert_allclose([b.get_width() for b in _bars(ax)], [p for _, p in words[k]])
        assert ax.yaxis_inverted()  # the most probable word at the top
    picked = plot_top_words(model, topics=[2, 0], ncols=1)
    titles = [ax.get_title() for ax in picked.axes]
    assert titles == ["topic 3", "topic 1"]
    with pytest.raises(ValueError, match=r"topics \[7\]: the model has 4 topics"):
        plot_top_words(model, topics=[7])
    # a grid of 3 columns: the last row's spare panel is hidden
    fig = plot_top_words(model, ncols=3)
    assert len(fig.axes) == 6 and sum(ax.axison for ax in fig.axes) == K


def test_plot_perplexity(model):
    fig = plot_perplexity(model)
    ax = fig.axes[0]
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), np.exp(-np.asarray(model.lower_bounds_)))
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(model.lower_bounds_) + 1))
    assert ax.get_yscale() == "log"  # it falls by more than a factor of 3
    assert ax.get_lines()[1].get_ydata()[0] == model.bound_
    empty = lvmkit.LatentDirichletAllocation(2, max_iter=0).fit(np.ones((3, 4)))
    assert plot_perplexity(empty).axes[0].texts[0].get_text() == "no iterations recorded"


def test_plot_document_topics(model, X):
    names = [f"doc {i}" for i in range(80)]
    fig = plot_document_topics(model, X, names, n_documents=5)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == names[:5]
    widths = np.array([b.get_width() for b in _bars(ax)]).reshape(K, 5)
    np.testing.assert_allclose(widths.T, model.transform(X[:5]), rtol=1e-12)
    np.testing.assert_allclose(widths.sum(0), 1.0)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "topic 1: " + ", ".join(w for w, _ in top_words(model, 3)[0])
    dense = plot_document_topics(model, X.toarray(), n_documents=200).axes[0]
    assert len(dense.get_yticklabels()) == 80  # at most the documents there are, named 0..


def test_corpus_fit(model, X):
    fit = corpus_fit(model, X)
    assert fit["n_documents"] == 80 and fit["n_words"] == X.sum()
    assert fit["perplexity_with_topics"] == pytest.approx(model.perplexity(X), rel=1e-10)
    assert fit["perplexity"] == pytest.approx(math.exp(-fit["bound_per_word"]), rel=1e-12)
    # the documents' part alone: scikit-learn's sub-sampled perplexity for a corpus so large
    # that the topics' term vanishes
    huge = lvmkit.LatentDirichletAllocation(**{**model.get_params(), "total_samples": 1e13})
    for name in ("components_", "doc_topic_prior_", "topic_word_prior_", "n_features_in_"):
        setattr(huge, name, getattr(model, name))
    assert fit["perplexity"] == pytest.approx(huge.perplexity(X, sub_sampling=True), rel=1e-6)
    # for the training documents, with the topics' term: the training perplexity
    assert fit["perplexity_with_topics"] == pytest.approx(model.bound_, rel=1e-2)
    held = corpus_fit(model, X[:8])
    assert held["perplexity_with_topics"] > 2 * held["perplexity"]  # the term dwarfs 8 documents


def test_report_sections_and_plot_are_registered(model, X):
    assert _provider(model) is lda_sections
    context = ReportContext()
    context.extra["document_names"] = [f"d{i}" for i in range(80)]
    sections = lda_sections(model, X, context)
    assert [s.title for s in sections] == [
        "What the model learned",
        "The documents",
        "Training perplexity",
        "Top words",
        "Topics",
        "Documents' topic proportions",
    ]
    assert "w0" in sections[4].html and "mean proportion" in sections[4].html
    share = [float(c.split("<")[0]) for c in sections[4].html.split("<td>")[2::3]]
    np.testing.assert_allclose(share, model.transform(X).mean(0), atol=5e-4)
    # the report's generic path gives dense rows: the same sections
    assert [s.title for s in lda_sections(model, X.toarray(), ReportContext())] == [
        s.title for s in sections
    ]
    assert len(plot_model(model, X.toarray()).axes) == K
    assert plot_lda(model, X).axes[0].get_title() == "topic 1"
    assert "<th>topic</th><th>top 10 words</th>" in topics_table(model)


def test_many_topics_are_drawn_by_weight(X):
    lda = lvmkit.LatentDirichletAllocation(45, max_iter=1, random_state=0).fit(X)
    shown = shown_topics(lda)
    weight = lda.components_.sum(1)
    assert len(shown) == 40 and shown == sorted(shown)
    hidden = sorted(set(range(45)) - set(shown))
    assert weight[hidden].max() <= weight[shown].min()  # the 5 with the fewest words left out
    assert shown_topics(lda, most=50) == list(range(45))
    assert len([a for a in plot_lda(lda, X).axes if a.axison]) == 40
