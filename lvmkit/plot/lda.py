"""Pictures of a fitted topic model (:class:`lvmkit.LatentDirichletAllocation`): every topic's top
words, the training perplexity, documents' topic proportions; and its report sections and
``lvmkit plot`` picture.

- :func:`top_words`: every topic's most probable words with their probabilities E[β_kw];
- :func:`plot_top_words`: a grid of horizontal bar charts, one per topic, the top words'
  probabilities (the most probable at the top);
- :func:`plot_perplexity`: the training perplexity exp(−bound per word) at every iteration, from
  ``lower_bounds_``;
- :func:`plot_document_topics`: the topic proportions E[θ_d] of a few documents as stacked bars;
- :func:`corpus_fit`: the bound and the perplexity of a corpus under the model (held-out numbers
  for documents it was not fitted on).

The words are the model's ``vocabulary_`` (stored by ``lvmkit fit lda``, or set after fitting:
``model.vocabulary_ = corpus.vocabulary``), or ``vocabulary=`` given, else ``x0``, ``x1``, ...
Topics are numbered from 1, as the columns ``topic1`` … ``topicK`` of ``lvmkit transform``.
Every function returns a matplotlib ``Figure`` made without pyplot (constrained layout), or draws
on the ``fig`` or ``ax`` it is given.
"""

from __future__ import annotations

import html
import math

import numpy as np

__all__ = [
    "corpus_fit",
    "lda_sections",
    "plot_document_topics",
    "plot_lda",
    "plot_perplexity",
    "plot_top_words",
    "shown_topics",
    "top_words",
    "topics_table",
]

CLASSES = ("LatentDirichletAllocation",)


def _figure(width, height):
    from matplotlib.figure import Figure  # no pyplot: no window, no global state

    return Figure(figsize=(width, height), layout="constrained")


def _colors(k: int) -> np.ndarray:
    from lvmkit.plot.figures import _colors as colors

    return colors(k)


# ====================================================================== what the model learned
def _vocabulary(model, vocabulary=None) -> list[str]:
    """The word of every column: ``vocabulary``, else the model's ``vocabulary_``, else x0..."""
    n = int(np.shape(model.components_)[1])
    words = vocabulary if vocabulary is not None else getattr(model, "vocabulary_", None)
    if words is None:
        return [f"x{j}" for j in range(n)]
    words = [str(w) for w in np.asarray(words, dtype=object).ravel().tolist()]
    if len(words) != n:
        raise ValueError(
            f"the vocabulary has {len(words)} words but the model has {n} (columns of "
            "components_); give the vocabulary the model was fitted on."
        )
    return words


def top_words(model, n_words: int = 10, vocabulary=None) -> list[list[tuple[str, float]]]:
    """Every topic's ``n_words`` most probable words, most probable first, as (word,
    probability) pairs (probabilities E[β_kw] from ``topic_word_distribution``)."""
    words = _vocabulary(model, vocabulary)
    beta = np.asarray(model.topic_word_distribution(), dtype=np.float64)
    n = min(int(n_words), beta.shape[1])
    out = []
    for row in beta:
        best = np.argsort(-row, kind="stable")[:n]
        out.append([(words[j], float(row[j])) for j in best])
    return out


def _label(k: int, words: list[tuple[str, float]], n: int = 3) -> str:
    return f"topic {k + 1}: " + ", ".join(w for w, _ in words[:n])


def shown_topics(model, most: int = 40) -> list[int]:
    """The topics to draw: all of them (0-based), or the ``most`` with the most words assigned
    (the largest rows of ``components_``), in order of number."""
    weight = np.asarray(model.components_, dtype=np.float64).sum(1)
    if len(weight) <= most:
        return list(range(len(weight)))
    return sorted(int(k) for k in np.argsort(-weight, kind="stable")[:most])


def corpus_fit(model, X) -> dict:
    """How well the model predicts the documents ``X`` (counts, documents as rows).

    ``bound_per_word``: the documents' bound on log p(X | the topics) per word, E_q[log p(w, z, θ
    | β) − log q(z, θ)] with β under its fitted q, the held-out measure; ``perplexity``: its
    exp(−·), an upper bound on the perplexity, comparable between corpora of any size.
    ``perplexity_with_topics``: scikit-learn's ``perplexity`` (``model.perplexity(X)``), whose
    bound also holds the topics' own term (a constant, divided here by the words of ``X``: on a
    small held-out set it dwarfs the documents' part); for the training documents it is the
    training perplexity ``bound_``. Also the number of documents and words."""
    documents = float(model.document_bound(X))
    bound = documents + model.topics_bound()
    words = float(X.sum())
    per_word = documents / words
    return {
        "n_documents": int(X.shape[0]),
        "n_words": int(round(words)),
        "bound_per_word": per_word,
        "perplexity": math.exp(-per_word),
        "perplexity_with_topics": math.exp(-bound / words),
    }


# ====================================================================== figures
def plot_top_words(
    model,
    vocabulary=None,
    n_words: int = 10,
    topics=None,
    *,
    ncols: int | None = None,
    fig=None,
):
    """A grid of horizontal bar charts, one per topic (``topics``: 0-based numbers; default
    all), of its ``n_words`` most probable words and their probabilities. Returns the Figure."""
    words = top_words(model, n_words, vocabulary)
    k = len(words)
    topics = list(range(k)) if topics is None else [int(t) for t in topics]
    bad = [t for t in topics if not 0 <= t < k]
    if bad or not topics:
        raise ValueError(
            f"topics {bad or topics}: the model has {k} topics, numbered 0..{k - 1} here "
            "(0-based); choose some of them."
        )
    ncols = ncols or min(5, len(topics))
    nrows = math.ceil(len(topics) / ncols)
    n = len(words[0])
    longest = max(len(w) for t in topics for w, _ in words[t])
    width = ncols * (1.6 + 0.065 * min(longest, 24))
    height = nrows * (0.55 + 0.19 * n)
    fig = fig if fig is not None else _figure(max(width, 4.0), max(height, 2.2))
    colors = _colors(k)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel()[len(topics) :]:
        ax.set_axis_off()
    top = max(p for t in topics for _, p in words[t])
    for ax, t in zip(axes.ravel(), topics, strict=False):
        labels = [w for w, _ in words[t]]
        probs = [p for _, p in words[t]]
        y = np.arange(len(labels))
        ax.barh(y, probs, color=colors[t], height=0.75)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()  # the most probable word at the top
        ax.set_xlim(0, top * 1.05)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"topic {t + 1}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"the {n} most probable words of every topic (E[β], word probability)", size=10)
    return fig


def plot_perplexity(model, ax=None):
    """The training perplexity exp(−bound per word) at every iteration (``lower_bounds_``), on a
    log scale when it falls by more than a factor of 3. Returns the Figure."""
    from matplotlib.ticker import MaxNLocator

    bounds = np.asarray(getattr(model, "lower_bounds_", []), dtype=np.float64)
    if ax is None:
        ax = _figure(6.5, 4).add_subplot()
    if len(bounds) == 0:
        ax.text(0.5, 0.5, "no iterations recorded", ha="center", va="center")
        ax.set_axis_off()
        return ax.figure
    perplexity = np.exp(-bounds)
    iterations = np.arange(1, len(bounds) + 1)
    ax.plot(iterations, perplexity, marker=".", color="C0")
    if perplexity.max() > 3 * perplexity.min():
        ax.set_yscale("log")
    final = getattr(model, "bound_", None)
    if final is not None:
        ax.axhline(final, color="0.4", linestyle="--", linewidth=1, label=f"final {final:.5g}")
        ax.legend(fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration (pass over the documents)")
    ax.set_ylabel("perplexity, exp(−bound per word)")
    method = getattr(model, "learning_method", None)
    ax.set_title(
        "training perplexity" + (f" ({method} learning)" if method else ""), fontsize="medium"
    )
    ax.grid(alpha=0.3, which="both")
    return ax.figure


def plot_document_topics(model, X, names=None, n_documents: int = 12, vocabulary=None, *, ax=None):
    """The topic proportions E[θ_d] of the first ``n_documents`` documents of ``X`` (counts,
    documents as rows) as stacked horizontal bars, labelled by ``names``. Returns the Figure."""
    n = min(int(n_documents), int(X.shape[0]))
    theta = np.asarray(model.transform(X[:n]), dtype=np.float64)
    k = theta.shape[1]
    names = [str(s) for s in names[:n]] if names is not None else [str(i) for i in range(n)]
    words = top_words(model, 3, vocabulary)
    colors = _colors(k)
    if ax is None:
        ax = _figure(9.0, 1.2 + 0.32 * n).add_subplot()
    left = np.zeros(n)
    y = np.arange(n)
    # a legend entry for every topic, or (many topics) for those with a share >= 5% here
    legend = set(range(k)) if k <= 20 else set(np.flatnonzero(theta.max(0) >= 0.05).tolist())
    for t in range(k):
        ax.barh(
            y,
            theta[:, t],
            left=left,
            color=colors[t],
            height=0.8,
            label=_label(t, words[t]) if t in legend else None,
        )
        left += theta[:, t]
    ax.set_yticks(y, [s if len(s) <= 28 else s[:27] + "…" for s in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("topic proportion E[θ]")
    ax.set_ylabel("document")
    ax.set_title(f"topic proportions of {n} document(s)", fontsize="medium")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return ax.figure


def topics_table(model, X=None, vocabulary=None, n_words: int = 10) -> str:
    """An HTML table of the topics: number, share of the documents' words (E[θ] averaged over
    ``X``'s documents, when given) and top words."""
    words = top_words(model, n_words, vocabulary)
    share = None
    if X is not None:
        share = np.asarray(model.transform(X), dtype=np.float64).mean(0)
    head = "<tr><th>topic</th>" + ("<th>mean proportion</th>" if share is not None else "")
    rows = [head + f"<th>top {len(words[0])} words</th></tr>"]
    for t, pairs in enumerate(words):
        cells = f"<td>{t + 1}</td>"
        if share is not None:
            cells += f"<td>{share[t]:.3f}</td>"
        cells += f"<td>{html.escape(' '.join(w for w, _ in pairs))}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return '<table class="summary">' + "".join(rows) + "</table>"


def _facts_table(rows) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    return f'<table class="summary">{cells}</table>'


# ====================================================================== report and `lvmkit plot`
def plot_lda(model, X, *, dims=None, feature_names=None, image_shape=None):
    """``lvmkit plot``'s picture of a topic model: the top words of every topic (of the 40
    with the most words when there are more)."""
    vocabulary = None
    if getattr(model, "vocabulary_", None) is None and feature_names is not None:
        vocabulary = feature_names
    return plot_top_words(model, vocabulary, topics=shown_topics(model))


def lda_sections(model, X, context) -> list:
    """Report sections of a topic model: what it learned, the documents given (their bound and
    perplexity: held-out numbers for documents it was not fitted on), the training perplexity,
    the top words, a table of the topics, and the first documents' proportions."""
    from lvmkit.plot.report import Section

    vocabulary = None
    if getattr(model, "vocabulary_", None) is None and context.feature_names is not None:
        vocabulary = context.feature_names
    learned = [
        ("topics", str(model.n_components)),
        ("vocabulary", f"{np.shape(model.components_)[1]} words"),
        ("learning", f"{model.learning_method}, {model.n_iter_} iteration(s)"),
        ("training perplexity", f"{model.bound_:.6g}"),
        ("training bound per word (nats)", f"{-math.log(model.bound_):.6g}"),
        ("α (doc_topic_prior)", f"{model.doc_topic_prior_:.6g}"),
        ("η (topic_word_prior)", f"{model.topic_word_prior_:.6g}"),
    ]
    out = [Section("What the model learned", html=_facts_table(learned))]
    fit = corpus_fit(model, X)
    out.append(
        Section(
            "The documents",
            html=_facts_table(
                [
                    ("documents", str(fit["n_documents"])),
                    ("words (counted)", str(fit["n_words"])),
                    ("bound per word given the topics (nats)", f"{fit['bound_per_word']:.6g}"),
                    ("perplexity", f"{fit['perplexity']:.6g}"),
                    ("perplexity with the topics' term", f"{fit['perplexity_with_topics']:.6g}"),
                ]
            ),
            note="The perplexity exp(−bound per word) of the documents given, an upper bound on "
            "the true one (lower is better): for documents the model was not fitted on, the "
            "held-out perplexity. With the topics' term it is scikit-learn's perplexity, the "
            "training perplexity for the training documents; on a small held-out set that "
            "term dwarfs the documents' part.",
        )
    )
    if len(getattr(model, "lower_bounds_", []) or []):
        out.append(
            Section(
                "Training perplexity",
                figure=plot_perplexity(model),
                note=f"exp(−bound per word) at each of {len(model.lower_bounds_)} iteration(s); "
                "dashed, the perplexity of the training documents after the last one (bound_).",
            )
        )
    shown = shown_topics(model)
    out.append(
        Section(
            "Top words",
            figure=plot_top_words(model, vocabulary, topics=shown),
            note=None
            if len(shown) == model.n_components
            else f"The {len(shown)} topics with the most words of the {model.n_components}.",
        )
    )
    out.append(Section("Topics", html=topics_table(model, X, vocabulary)))
    names = context.extra.get("document_names")
    out.append(
        Section(
            "Documents' topic proportions",
            figure=plot_document_topics(model, X, names, vocabulary=vocabulary),
            note="E[θ] of the first documents, by their names"
            + (" (file names or line numbers)." if names is not None else " (0-based rows)."),
        )
    )
    return out


def _register() -> None:
    from lvmkit.plot.figures import register_model_plot
    from lvmkit.plot.report import register_sections

    for name in CLASSES:
        register_sections(name)(lda_sections)
        register_model_plot(name)(plot_lda)


_register()
