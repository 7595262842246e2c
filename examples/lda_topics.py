"""Topics of 300 Australian news articles with latent Dirichlet allocation (lvmkit).

gensim ships the Lee background corpus in its test data (``gensim/test/test_data/
lee_background.cor``): 300 articles of the Australian Broadcasting Corporation's news service,
one per line, a plain text file. ``lvmkit.data.read_documents`` counts its words (scikit-learn's
English stop words and a few words of reporting, "said", "says", "mr", ..., left out; a word must
be in at least 2 documents and at most 95% of them), ten percent of the articles are held out at
random, and ``LatentDirichletAllocation`` finds 10 topics in the others by batch variational
Bayes (30 passes, ``random_state=0``). The script prints every topic's top words and the
perplexity exp(−bound per word) of the training articles, of the held-out ones, and of the 50
other articles of gensim's ``lee.cor`` (a Latin-1 file, counted on the model's vocabulary), the
held-out perplexity of the likelihood itself (``held_out_log_likelihood``, left-to-right
sequential Monte Carlo; not with ``--quick``), and draws the top words, the training perplexity
and the held-out articles' topic proportions.

The same from the shell, with the whole corpus::

    lvmkit fit lda lee_background.cor --topics 10 --max-iter 30 -o lee.lvm
    lvmkit info lee.lvm                                  # every topic's top 10 words
    lvmkit transform lee.lvm lee_background.cor -o proportions.csv
    lvmkit score lee.lvm lee.cor                         # perplexity of new articles

    python examples/lda_topics.py --out out      # writes out/lda_topics.png (needs gensim)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

# reporting words, in nearly every article, that say nothing of what an article is about
REPORTING_WORDS = {"said", "says", "mr", "told", "just", "new", "year", "years", "today", "000"}


def corpus_path(name: str) -> Path:
    """A file of gensim's test data, found inside the installed gensim package (without
    importing it)."""
    from importlib.util import find_spec

    spec = find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gensim is not installed: pip install gensim (it ships the corpus).")
    path = Path(spec.submodule_search_locations[0]) / "test" / "test_data" / name
    if not path.is_file():
        raise SystemExit(f"{path}: not found; this gensim does not ship its test data.")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the figure (default: out)")
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10 passes instead of 30, no left-to-right estimate (tests)",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()

    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from lvmkit import LatentDirichletAllocation
    from lvmkit.data import read_documents
    from lvmkit.plot.lda import (
        corpus_fit,
        plot_document_topics,
        plot_perplexity,
        plot_top_words,
        top_words,
    )

    # --- the corpus: one article per line
    path = corpus_path("lee_background.cor")
    stop_words = sorted(ENGLISH_STOP_WORDS | REPORTING_WORDS)
    corpus = read_documents(path, stop_words=stop_words, min_df=2, max_df=0.95)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(corpus.n_documents)
    n_test = corpus.n_documents // 10
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    X_train, X_test = corpus.counts[train], corpus.counts[test]
    print(
        f"gensim's Lee background corpus ({path.name}): {corpus.n_documents} news articles, "
        f"{corpus.n_words} words counted on a vocabulary of {len(corpus.vocabulary)} (English "
        "stop words and reporting words left out; in >= 2 articles and <= 95% of them)"
    )
    print(f"{len(train)} articles to fit, {len(test)} held out at random (seed {args.seed})\n")

    # --- the model
    max_iter = 10 if args.quick else 30
    lda = LatentDirichletAllocation(
        args.topics, learning_method="batch", max_iter=max_iter, random_state=args.seed
    )
    began = time.perf_counter()
    lda.fit(X_train)
    seconds = time.perf_counter() - began
    lda.vocabulary_ = corpus.vocabulary  # the words of the columns: saved with the model
    print(
        f"LatentDirichletAllocation: {args.topics} topics, batch variational Bayes, "
        f"{lda.n_iter_} passes in {seconds:.1f} s\n"
    )
    print("topic  top 10 words (most probable first)")
    for k, pairs in enumerate(top_words(lda, 10)):
        print(f"{k + 1:5d}  {' '.join(word for word, _ in pairs)}")

    # --- perplexities: the documents' bound per word given the topics, exp(-.)
    lee = read_documents(corpus_path("lee.cor"), vocabulary=lda.vocabulary_, encoding="latin-1")
    fits = {
        "training articles": corpus_fit(lda, X_train),
        "held-out articles (10%)": corpus_fit(lda, X_test),
        "lee.cor (50 other articles)": corpus_fit(lda, lee.drop_empty().counts),
    }
    print("\nperplexity, exp(-bound per word) given the topics (lower is better):")
    for name, fit in fits.items():
        print(
            f"  {name:<28} {fit['perplexity']:8.1f}   ({fit['n_documents']} articles, "
            f"{fit['n_words']} words)"
        )
    print(
        f"training perplexity as scikit-learn reports it (bound_, with the topics' own term): "
        f"{lda.bound_:.1f}"
    )
    if not args.quick:  # the likelihood itself, not a bound (cost quadratic in the length)
        began = time.perf_counter()
        log_p = lda.held_out_log_likelihood(X_test, n_particles=20, random_state=args.seed)
        print(
            "held-out perplexity estimated from log p(w_d) itself (left-to-right sequential "
            f"Monte Carlo, 20 particles, {time.perf_counter() - began:.0f} s): "
            f"{np.exp(-log_p.sum() / X_test.sum()):.1f}; the bound's "
            f"{fits['held-out articles (10%)']['perplexity']:.1f} is an upper bound"
        )

    # --- figure
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure = out / "lda_topics.png"
    names = [f"article {i + 1}" for i in test]
    with rc_context({"font.size": 10}):
        fig = Figure(figsize=(13, 10.5), layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=[2.1, 1], hspace=0.04)
        plot_top_words(lda, fig=top)
        top.suptitle(
            f"the 10 most probable words of each of {args.topics} topics of {len(train)} ABC "
            "news articles (gensim's Lee corpus)",
            size=11,
        )
        left, right = bottom.subfigures(1, 2, width_ratios=[1, 1.5])
        plot_perplexity(lda, ax=left.add_subplot())
        plot_document_topics(lda, X_test, names, n_documents=8, ax=right.add_subplot())
        right.axes[0].set_title("topic proportions of held-out articles", fontsize="medium")
        fig.savefig(figure, dpi=110)
    print(f"\nwrote {figure} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
