"""Latent Dirichlet allocation, batch and online: lvmkit vs scikit-learn vs gensim, in one run,
on the same synthetic corpora with the same priors.

Run from the repository root::

    .venv/bin/python bench/lda.py            # full run (~12 min on 2 cores), writes BENCHMARKS.md
    .venv/bin/python bench/lda.py --quick    # smoke test (~1 min), prints only

Protocol
--------
* Corpora (:func:`make_topics`, :func:`make_corpus`): K = 20 topics over a vocabulary of
  V = 5,000 words, β_k ~ Dirichlet(0.05) (seed 0); every document has θ_d ~ Dirichlet(0.1) and
  100 words, each drawn from topic z ~ θ_d, then word ~ β_z. ``small``: 5,000 documents (seed 1),
  10 iterations; ``large``: 100,000 documents (seed 3), 2 iterations (scikit-learn and gensim take
  tens of seconds per pass over it). A held-out set of 500 documents from the same topics
  (seed 2) is shared by both.
* Priors: doc_topic_prior = topic_word_prior = 1 / K everywhere (scikit-learn's and lvmkit's
  default; gensim's ``alpha`` and ``eta`` set to the same number). random_state = 0 everywhere.
  Per-document E-step: at most 100 iterations, stop when γ moves by less than 1e-3 (mean absolute
  change): scikit-learn's and lvmkit's defaults, gensim's ``iterations=100, gamma_threshold=1e-3``.
* Implementations: scikit-learn ``LatentDirichletAllocation`` (batch; online with
  ``batch_size=128, learning_decay=0.7, learning_offset=10``, its defaults), ``n_jobs=None``
  (its default) and, with ``--extras``, a batch row with ``n_jobs=2`` (online ``n_jobs=2`` is
  slower than ``None``: joblib dispatches every mini-batch); lvmkit's
  ``LatentDirichletAllocation`` with the same parameters in float32 (its default) and float64
  (the large corpus: float32 only unless ``--large-float64``), and with ``--extras`` float32 with
  1 torch thread; gensim 4 ``LdaModel`` (float32, its default dtype), batch =
  ``update_every=0, chunksize=len(corpus), passes=n`` and online = ``update_every=1,
  chunksize=128, decay=0.7, offset=10, passes=n``, both with ``eval_every=None`` (gensim's
  default 10 would estimate a perplexity every 10 chunks inside the timed fit).
* gensim's semantics (checked in gensim/models/ldamodel.py, 4.4): its batch mode is not plain batch
  variational Bayes: every pass blends the new expected counts into the old with weight
  ρ = (offset + pass + updates / chunksize)^(−decay), which with its defaults (decay = 0.5,
  offset = 1) is 1, 0.58, 0.5, 0.45, ... The batch row therefore sets ``decay=0`` (ρ = 1: the
  M-step of scikit-learn and lvmkit); ``--gensim-default-decay`` adds a row with gensim's
  defaults. Online, gensim's ρ grows its step count only during the first pass (later passes keep
  ρ = (offset + pass + N / chunksize)^(−decay) for every chunk), and its first step is
  offset^(−decay) where scikit-learn's is (offset + 1)^(−decay). gensim starts the topics at
  λ = η + Gamma(100, 1/100) (scikit-learn and lvmkit: λ = Gamma(100, 1/100)).
  ``LdaModel.log_perplexity`` returns the bound per word in nats (natural logs throughout
  ``bound``, ``logsumexp``, ``gammaln``) although its log message prints 2^(−bound): the
  perplexity here is exp(−log_perplexity), the same definition as scikit-learn's. LdaMulticore
  (``workers=1``: one E-step process beside the main one) is not run: on 2 cores shared with
  the other libraries' runs there is no spare core for it to overlap with.
* Threads: ``--threads`` (2) for torch, OpenMP, MKL and OpenBLAS (set before NumPy and torch
  load, and by threadpoolctl). ``OMP_WAIT_POLICY=PASSIVE`` is set before torch loads
  (``--omp-wait-policy default`` leaves the environment alone): on a 2-core machine shared with
  other jobs, libgomp's default policy (spin, then sleep) made lvmkit's earlier 2-thread torch
  E-step 4–20× slower, every small parallel op waiting for a thread the scheduler had put aside.
  lvmkit's CPU E-step is now compiled (numba, as many threads as torch's, OpenMP-backed).
  scikit-learn's and gensim's E-steps use no OpenMP.
* Timing: every fit runs with ``verbose`` (scikit-learn, lvmkit: one line per iteration) or
  gensim's INFO log (one "topic diff" record per M-step) captured with a timestamp per line.
  s/iteration = (end of iteration n − end of iteration 1) / (n − 1): iterations 2 … n only, so
  the set-up (validation, conversion, the first iteration's start from random topics) and the
  final perplexity pass of scikit-learn's and lvmkit's ``fit`` are excluded for everyone; "whole
  fit" is the wall time of ``fit``. The implementations are interleaved within each repeat (an
  untimed ``--settle`` sleep before each fit); best (minimum) of ``--repeats`` for the small
  corpus, one run for the large one. An implementation whose s/iteration varied by more than
  2× between repeats is flagged.
* Perplexities: "own" is each model's training-set perplexity as it reports it: scikit-learn's
  and lvmkit's ``bound_``, gensim's exp(−log_perplexity(corpus)) (large corpus: on 5,000 of the
  documents with ``total_docs`` = N, gensim's own subsampling), each with its own final E-step.
  "Held-out" is the same code for every model (:func:`held_out_perplexity`): each model's topics
  as their posterior means β̂_k = λ_k / Σ_w λ_kw, then for each held-out document the
  variational bound on log p(w_d | β̂, α) (γ by coordinate ascent from α + N_d / K until no
  document's γ moves by more than 1e-4 mean absolute change, at most 3,000 iterations; the
  perplexity agrees with 1e-6 to 8 digits), and
  exp(−Σ bound / Σ words). The generator's own topics give the reference row "true topics".
  (scikit-learn's ``perplexity`` on held-out documents would add the topics' KL term, computed
  from λ of the training corpus's size, to 500 documents' words, so it is not used.)
* Topic recovery: total variation ½‖β_k − β̂_j‖₁ between true and fitted topics, matched one to
  one by ``scipy.optimize.linear_sum_assignment``; the mean over the K true topics.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _early_environment(argv: list[str]) -> str | None:
    """Set the thread environment before NumPy and torch load (OpenMP reads it once): OMP, MKL
    and OpenBLAS threads to ``--threads`` (unless already set) and ``OMP_WAIT_POLICY`` to
    ``--omp-wait-policy`` (PASSIVE unless 'default'). Returns the policy in effect."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--threads", type=int, default=2)
    early.add_argument("--omp-wait-policy", default="PASSIVE")
    known, _ = early.parse_known_args(argv)
    if "torch" not in sys.modules:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(name, str(known.threads))
        if known.omp_wait_policy.lower() != "default":
            os.environ["OMP_WAIT_POLICY"] = known.omp_wait_policy.upper()
    return os.environ.get("OMP_WAIT_POLICY")


WAIT_POLICY = _early_environment(sys.argv[1:])

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as a script
    sys.path.append(str(Path(__file__).resolve().parent.parent))
from bench import _common  # noqa: E402

SECTION = "bench/lda.py"
K, V, DOC_LENGTH = 20, 5_000, 100
TOPIC_PRIOR, DOC_PRIOR = 0.05, 0.1  # the generator's Dirichlet parameters
TARGET = 5.0  # scikit-learn's s/iteration over lvmkit's, batch and online
ISSUE_SECONDS = {"batch": 1.30, "online": 0.72}  # the issue author's scikit-learn, small corpus
N_HELD_OUT = 500
GENSIM_OWN_SUBSAMPLE = 5_000


# --------------------------------------------------------------------------
# Corpora
# --------------------------------------------------------------------------
def make_topics(seed: int = 0) -> np.ndarray:
    """(K, V) float64 topic-word distributions β_k ~ Dirichlet(TOPIC_PRIOR)."""
    rng = np.random.default_rng(seed)
    beta = rng.dirichlet(np.full(V, TOPIC_PRIOR), size=K)
    return beta / beta.sum(1, keepdims=True)


def make_corpus(beta: np.ndarray, n_docs: int, seed: int) -> sp.csr_matrix:
    """(n_docs, V) CSR counts: θ_d ~ Dirichlet(DOC_PRIOR), DOC_LENGTH words per document."""
    rng = np.random.default_rng(seed)
    theta = rng.dirichlet(np.full(K, DOC_PRIOR), size=n_docs)
    theta /= theta.sum(1, keepdims=True)
    per_topic = rng.multinomial(DOC_LENGTH, theta)  # (n_docs, K) words of each topic
    docs, words = [], []
    for k in range(K):
        docs.append(np.repeat(np.arange(n_docs), per_topic[:, k]))
        words.append(rng.choice(V, size=int(per_topic[:, k].sum()), p=beta[k]))
    d, w = np.concatenate(docs), np.concatenate(words)
    X = sp.csr_matrix((np.ones(d.size), (d, w)), shape=(n_docs, V))
    X.sum_duplicates()
    X.sort_indices()
    return X


def to_bow(X: sp.csr_matrix) -> list[list[tuple[int, int]]]:
    """gensim's bag-of-words corpus: a list of [(word id, count), ...] per document."""
    indptr, indices, data = X.indptr, X.indices.tolist(), X.data.astype(np.int64).tolist()
    return [
        list(zip(indices[a:b], data[a:b], strict=True))
        for a, b in zip(indptr[:-1].tolist(), indptr[1:].tolist(), strict=True)
    ]


@dataclass
class Corpus:
    name: str
    X: sp.csr_matrix
    n_iter: int
    repeats: int
    own_subsample: int = GENSIM_OWN_SUBSAMPLE  # gensim's own perplexity on this many documents
    bow: list = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return f"{self.X.shape[0]:,} documents"


# --------------------------------------------------------------------------
# Evaluation shared by every model
# --------------------------------------------------------------------------
def _digamma(x: np.ndarray) -> np.ndarray:
    from scipy.special import psi

    return psi(x)


def held_out_perplexity(
    topics: np.ndarray, X: sp.csr_matrix, alpha: float, tol: float = 1e-4, max_iter: int = 3000
) -> tuple[float, bool]:
    """exp(−Σ_d ELBO_d / Σ_d N_d) of the documents ``X`` under the fixed topic-word
    distributions ``topics`` (K, V) (rows summing to 1) and the prior Dir(alpha) on θ; the ELBO
    is the variational bound on log p(w_d | β, α) maximised over q(θ_d) = Dir(γ_d). Returns
    (perplexity, whether γ converged)."""
    from scipy.special import gammaln

    beta = np.asarray(topics, dtype=np.float64)
    beta = beta / beta.sum(1, keepdims=True)
    X = sp.csr_matrix(X, dtype=np.float64)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    cols, counts = X.indices, X.data
    beta_at = beta[:, cols].T  # (nnz, K): β_kw at every entry
    n_words = np.asarray(X.sum(1)).ravel()
    k = beta.shape[0]
    gamma = alpha + np.repeat(n_words[:, None] / k, k, axis=1)
    converged = False
    for _ in range(max_iter):
        elog = _digamma(gamma) - _digamma(gamma.sum(1, keepdims=True))
        exp_theta = np.exp(elog)
        norm = np.einsum("ek,ek->e", exp_theta[rows], beta_at)
        ratio = sp.csr_matrix((counts / norm, cols, X.indptr), shape=X.shape)
        new = alpha + exp_theta * (ratio @ beta.T)
        change = np.abs(new - gamma).mean(1).max()
        gamma = new
        if change < tol:
            converged = True
            break
    elog = _digamma(gamma) - _digamma(gamma.sum(1, keepdims=True))
    exp_theta = np.exp(elog)
    norm = np.einsum("ek,ek->e", exp_theta[rows], beta_at)
    words = float((counts * np.log(norm)).sum())
    theta = float(
        ((alpha - gamma) * elog).sum()
        + (gammaln(gamma) - gammaln(alpha)).sum()
        + (gammaln(alpha * k) - gammaln(gamma.sum(1))).sum()
    )
    return math.exp(-(words + theta) / float(n_words.sum())), converged


def topic_distance(truth: np.ndarray, topics: np.ndarray) -> float:
    """Mean over the true topics of the total variation to their fitted topic, matched one to
    one (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    topics = np.asarray(topics, dtype=np.float64)
    topics = topics / topics.sum(1, keepdims=True)
    tv = 0.5 * np.abs(truth[:, None, :] - topics[None, :, :]).sum(-1)  # (K true, K fitted)
    r, c = linear_sum_assignment(tv)
    return float(tv[r, c].mean())


# --------------------------------------------------------------------------
# Timing by timestamps of each iteration's report
# --------------------------------------------------------------------------
class Marks(io.TextIOBase):
    """A stdout stand-in that keeps the time at which each line holding ``needle`` was written."""

    def __init__(self, needle: str):
        self.needle, self.times, self.lines = needle, [], []

    def write(self, s: str) -> int:
        now = time.perf_counter()
        for line in s.splitlines():
            if self.needle in line:
                self.times.append(now)
                self.lines.append(line)
        return len(s)


class LogMarks(logging.Handler):
    """A logging handler keeping the time of every record whose message starts with ``prefix``,
    and of every record that starts a pass (``PROGRESS: pass p, at document #...``)."""

    def __init__(self, prefix: str):
        super().__init__(logging.INFO)
        self.prefix = prefix
        self.updates: list[tuple[float, int]] = []  # (time, pass of the update)
        self.current_pass = 0

    def emit(self, record: logging.LogRecord) -> None:
        now = time.perf_counter()
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith("PROGRESS: pass"):
            self.current_pass = int(record.args[0])
        elif msg.startswith(self.prefix):
            self.updates.append((now, self.current_pass))

    def pass_ends(self) -> list[float]:
        """The time of the last M-step of every pass."""
        ends: dict[int, float] = {}
        for t, p in self.updates:
            ends[p] = t
        return [ends[p] for p in sorted(ends)]


@dataclass
class Run:
    """One fit: wall seconds, the end of every iteration, the model."""

    seconds: float
    marks: list[float]
    start: float
    model: Any

    def per_iteration(self) -> float:
        if len(self.marks) >= 2:
            return (self.marks[-1] - self.marks[0]) / (len(self.marks) - 1)
        return float("nan")

    def first(self) -> float:
        return self.marks[0] - self.start if self.marks else float("nan")


@dataclass
class Impl:
    """A row of the table: how to fit, and how to read the fitted model."""

    library: str
    method: str
    variant: str
    fit: Any  # (corpus, n_iter) -> Run
    topics: Any  # model -> (K, V) pseudo-counts or probabilities
    own: Any  # (model, corpus) -> own training perplexity
    runs: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.library} {self.method} ({self.variant})"


@contextlib.contextmanager
def torch_threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def sklearn_impl(method: str, n_jobs: int | None) -> Impl:
    from sklearn.decomposition import LatentDirichletAllocation

    def fit(corpus: Corpus, n_iter: int) -> Run:
        model = LatentDirichletAllocation(
            K, learning_method=method, max_iter=n_iter, n_jobs=n_jobs, random_state=0, verbose=1
        )
        marks = Marks("iteration: ")
        with contextlib.redirect_stdout(marks), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            model.fit(corpus.X)
            seconds = time.perf_counter() - start
        return Run(seconds, marks.times, start, model)

    variant = "n_jobs=None" if n_jobs is None else f"n_jobs={n_jobs}"
    return Impl(
        "scikit-learn", method, variant, fit, lambda m: m.components_, lambda m, c: m.bound_
    )


def lvmkit_impl(method: str, dtype: str, threads: int | None = None) -> Impl:
    from lvmkit import LatentDirichletAllocation

    def fit(corpus: Corpus, n_iter: int) -> Run:
        model = LatentDirichletAllocation(
            K, learning_method=method, max_iter=n_iter, random_state=0, verbose=1, dtype=dtype
        )
        marks = Marks("LatentDirichletAllocation iteration")
        with contextlib.redirect_stdout(marks), torch_threads(threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            model.fit(corpus.X)
            seconds = time.perf_counter() - start
        return Run(seconds, marks.times, start, model)

    variant = dtype + (f", {threads} torch thread" if threads is not None else "")
    return Impl("lvmkit", method, variant, fit, lambda m: m.components_, lambda m, c: m.bound_)


def gensim_impl(method: str, default_decay: bool = False) -> Impl:
    from gensim.models import LdaModel

    id2word = {i: str(i) for i in range(V)}

    def fit(corpus: Corpus, n_iter: int) -> Run:
        if method == "batch":
            schedule = dict(update_every=0, chunksize=len(corpus.bow))
            if not default_decay:
                schedule["decay"] = 0.0  # ρ = 1 every pass: plain batch variational Bayes
        else:
            schedule = dict(update_every=1, chunksize=128, decay=0.7, offset=10.0)
        logger = logging.getLogger("gensim.models.ldamodel")
        handler = LogMarks("topic diff=")
        old_level, old_propagate = logger.level, logger.propagate
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            start = time.perf_counter()
            model = LdaModel(
                corpus.bow,
                num_topics=K,
                id2word=id2word,
                alpha=1.0 / K,
                eta=1.0 / K,
                passes=n_iter,
                iterations=100,
                gamma_threshold=1e-3,
                eval_every=None,
                random_state=0,
                **schedule,
            )
            seconds = time.perf_counter() - start
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
            logger.propagate = old_propagate
        return Run(seconds, handler.pass_ends(), start, model)

    def own(model, corpus: Corpus) -> float:
        bow = corpus.bow
        if len(bow) > corpus.own_subsample:
            pick = np.random.default_rng(0).choice(len(bow), corpus.own_subsample, replace=False)
            sub = [bow[i] for i in np.sort(pick)]
            return math.exp(-model.log_perplexity(sub, total_docs=len(bow)))
        return math.exp(-model.log_perplexity(bow))

    variant = "float32"
    if method == "batch":
        variant += ", decay=0.5 (default)" if default_decay else ", decay=0"
    return Impl("gensim LdaModel", method, variant, fit, lambda m: m.state.get_lambda(), own)


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------
def run_corpus(corpus: Corpus, impls: list[Impl], settle: float, log) -> None:
    for rep in range(corpus.repeats):
        order = impls if rep % 2 == 0 else impls[::-1]  # alternate who goes first
        for impl in order:
            if settle > 0:
                time.sleep(settle)
            run = impl.fit(corpus, corpus.n_iter)
            impl.runs.append(run)
            log(
                f"  [{corpus.name}] {impl.label} repeat {rep + 1}/{corpus.repeats}: "
                f"{_common.fmt_sig(run.per_iteration())} s/iter, first "
                f"{_common.fmt_sig(run.first())} s, whole fit {_common.fmt_sig(run.seconds)} s "
                f"({len(run.marks)} iterations marked)"
            )


def evaluate(corpus: Corpus, impls: list[Impl], truth, X_test, log) -> list[dict]:
    results = []
    for impl in impls:
        best = min(impl.runs, key=lambda r: r.per_iteration())
        per_iter = [r.per_iteration() for r in impl.runs]
        model = impl.runs[-1].model
        topics = np.asarray(impl.topics(model), dtype=np.float64)
        own = impl.own(model, corpus)
        held, converged = held_out_perplexity(topics, X_test, 1.0 / K)
        tv = topic_distance(truth, topics)
        spread = max(per_iter) / min(per_iter) if len(per_iter) > 1 else 1.0
        results.append(
            dict(
                impl=impl,
                per_iter=best.per_iteration(),
                first=min(r.first() for r in impl.runs),
                whole=min(r.seconds for r in impl.runs),
                own=own,
                held=held,
                held_converged=converged,
                tv=tv,
                spread=spread,
                marks=len(best.marks),
            )
        )
        log(
            f"  [{corpus.name}] {impl.label}: own {own:.1f}, held-out {held:.1f} "
            f"({'converged' if converged else 'NOT converged'}), "
            f"TV {tv:.3f}, spread {spread:.2f}"
        )
    return results


def ratio_of(results: list[dict], row: dict) -> float | None:
    """scikit-learn's (n_jobs=None) s/iteration, same method, over this row's."""
    for r in results:
        i = r["impl"]
        if i.library == "scikit-learn" and i.variant == "n_jobs=None":
            if i.method == row["impl"].method:
                return r["per_iter"] / row["per_iter"]
    return None


def table(corpus: Corpus, results: list[dict], true_held: float) -> str:
    rows = []
    for r in results:
        i = r["impl"]
        ratio = ratio_of(results, r)
        flag = " ⚠" if r["spread"] > 2.0 else ""
        rows.append(
            [
                i.library,
                i.method,
                i.variant,
                _common.fmt_sig(r["per_iter"]) + flag,
                "—" if ratio is None else f"{ratio:.2f}×",
                _common.fmt_sig(r["first"]),
                _common.fmt_sig(r["whole"]),
                f"{r['own']:.1f}",
                f"{r['held']:.1f}",
                f"{r['tv']:.3f}",
            ]
        )
    rows.append(["true topics", "—", "generator's β", "—", "—", "—", "—", "—",
                 f"{true_held:.1f}", "0"])  # fmt: skip
    return _common.markdown_table(
        ["implementation", "method", "variant", "s / iteration", "scikit-learn s/it ÷ this",
         "first iteration s", "whole fit s", f"own perplexity ({corpus.n_iter} it, train)",
         "held-out perplexity (common)", "topic TV (mean)"],
        rows,
        align=["l", "l", "l"] + ["r"] * 7,
    )  # fmt: skip


def verdicts(results: list[dict]) -> list[str]:
    lines = []
    for method in ("batch", "online"):
        parts = []
        for r in results:
            i = r["impl"]
            if i.library != "lvmkit" or i.method != method:
                continue
            ratio = ratio_of(results, r)
            if ratio is None:
                continue
            sk = next(
                x
                for x in results
                if x["impl"].library == "scikit-learn"
                and x["impl"].variant == "n_jobs=None"
                and x["impl"].method == method
            )
            change = r["held"] / sk["held"] - 1.0
            if abs(change) < 5e-5:
                same = "equal"
            elif change <= 0:
                same = f"better by {-100 * change:.2f}%"
            elif change <= 0.001:
                same = f"worse by {100 * change:.2f}%, within 0.1%"
            else:
                same = f"worse by {100 * change:.2f}%"
            parts.append(
                f"{i.variant}: {ratio:.2f}× ({'met' if ratio >= TARGET else 'not met'}; "
                f"held-out perplexity {r['held']:.1f} vs {sk['held']:.1f}, {same})"
            )
        if parts:
            lines.append(f"- {method}: " + "; ".join(parts))
    return lines


def lvmkit_revision() -> str:
    """The commit lvmkit was loaded from, and whether lvmkit/ differs from it."""
    import subprocess

    def git(*cmd: str) -> str:
        out = subprocess.run(
            ["git", *cmd], cwd=_common.REPO_ROOT, capture_output=True, text=True, check=False
        )
        return out.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--", "lvmkit")
    return commit + (" with uncommitted changes in lvmkit/" if dirty else "")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, prints only")
    parser.add_argument("--repeats", type=int, default=2, help="repeats on the small corpus")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--settle", type=float, default=0.3)
    parser.add_argument("--output", default=None)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--no-large", action="store_true", help="skip the 100,000-document corpus")
    parser.add_argument("--large-iter", type=int, default=2)
    parser.add_argument("--small-iter", type=int, default=10)
    parser.add_argument(
        "--gensim-default-decay", action="store_true", help="add gensim batch with decay=0.5"
    )
    parser.add_argument(
        "--extras",
        action="store_true",
        help="small corpus: add scikit-learn batch n_jobs=2 and lvmkit float32 with 1 torch thread",
    )
    parser.add_argument(
        "--large-float64", action="store_true", help="large corpus: add lvmkit float64"
    )
    parser.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        help="OMP_WAIT_POLICY set before torch loads ('default' leaves the environment alone)",
    )
    args = parser.parse_args(argv)
    _common.resolve_output(args, args.quick)
    _common.limit_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.perf_counter()
    revision = lvmkit_revision()  # read before lvmkit loads, so that it names the code measured
    truth = make_topics(0)
    X_test = make_corpus(truth, N_HELD_OUT, seed=2)
    if args.quick:
        corpora = [Corpus("small", make_corpus(truth, 1_000, seed=1), 3, 1)]
        if not args.no_large:  # gensim's own perplexity on 1,000 of them: the subsampled path
            corpora.append(Corpus("large", make_corpus(truth, 2_000, seed=3), 2, 1, 1_000))
    else:
        corpora = [
            Corpus("small", make_corpus(truth, 5_000, seed=1), args.small_iter, args.repeats)
        ]
        if not args.no_large:
            corpora.append(Corpus("large", make_corpus(truth, 100_000, seed=3), args.large_iter, 1))
    for corpus in corpora:
        corpus.bow = to_bow(corpus.X)
    true_held, _ = held_out_perplexity(truth, X_test, 1.0 / K)
    log(f"held-out perplexity under the true topics: {true_held:.2f}")

    sections, unconverged = [], []
    for corpus in corpora:
        extras = args.extras and corpus.name == "small"
        float64 = corpus.name == "small" or args.large_float64
        impls: list[Impl] = []
        for method in ("batch", "online"):
            impls.append(sklearn_impl(method, None))
            if extras and method == "batch":  # online: joblib's dispatch per mini-batch is slower
                impls.append(sklearn_impl(method, 2))
            impls.append(lvmkit_impl(method, "float32"))
            if float64:
                impls.append(lvmkit_impl(method, "float64"))
            if extras and args.threads != 1:
                impls.append(lvmkit_impl(method, "float32", threads=1))
            impls.append(gensim_impl(method))
            if method == "batch" and args.gensim_default_decay and extras:
                impls.append(gensim_impl(method, default_decay=True))
        log(f"corpus {corpus.name}: {corpus.label}, nnz {corpus.X.nnz:,}, {corpus.n_iter} it")
        run_corpus(corpus, impls, args.settle, log)
        results = evaluate(corpus, impls, truth, X_test, log)
        flagged = [r["impl"].label for r in results if r["spread"] > 2.0]
        unconverged += [
            f"{r['impl'].label} ({corpus.name})" for r in results if not r["held_converged"]
        ]
        notes = [
            f"### {corpus.label} × {V:,} words, {corpus.n_iter} iterations"
            + (f", best of {corpus.repeats} repeats" if corpus.repeats > 1 else ", one run"),
            "",
            table(corpus, results, true_held),
            "",
            f"Ratios against the target (scikit-learn's s/iteration ÷ lvmkit's ≥ {TARGET:g}×, "
            "at the same or better held-out perplexity):",
            *verdicts(results),
        ]
        if flagged:
            notes += [
                "",
                "⚠ s/iteration varied by more than 2× between repeats (machine load): "
                + ", ".join(flagged)
                + "; the table gives the best.",
            ]
        sections.append("\n".join(notes) + "\n")
    elapsed = time.perf_counter() - started

    info = _common.machine_info(("torch", "numpy", "numba", "sklearn", "gensim"))
    command = ".venv/bin/python bench/lda.py" + (" " + " ".join(argv) if argv else "")
    if argv is None and len(sys.argv) > 1:
        command = ".venv/bin/python bench/lda.py " + " ".join(sys.argv[1:])
    body = "\n".join(
        [
            "## Latent Dirichlet allocation: lvmkit vs scikit-learn vs gensim",
            "",
            f"Command: `{command}` ({args.threads} threads everywhere; {elapsed / 60:.1f} min)",
            "",
            *_common.machine_lines(info),
            f"- lvmkit: commit {revision}",
            f"- Corpora: K = {K} topics, β_k ~ Dirichlet({TOPIC_PRIOR}) over V = {V:,} words "
            f"(seed 0); θ_d ~ Dirichlet({DOC_PRIOR}), {DOC_LENGTH} words per document; "
            f"held-out set of {N_HELD_OUT} documents (seed 2). Priors α = η = 1/K = {1 / K:g} "
            "for every library; random_state 0; E-step ≤ 100 iterations, tol 1e-3.",
            "- s / iteration: from timestamps of each iteration's end inside one fit "
            "(scikit-learn's and lvmkit's `verbose` lines, gensim's per-M-step log record): "
            "(end of iteration n − end of iteration 1) / (n − 1), so set-up, the first iteration "
            "(from random topics) and the final perplexity pass are excluded. First iteration = "
            "from the call to the end of iteration 1; whole fit = the wall time of the fit.",
            "- Own perplexity: each model's training-set figure as reported (scikit-learn, "
            "lvmkit: `bound_`; gensim: exp(−`log_perplexity`), which is in nats although gensim "
            "logs 2^(−bound)"
            + (
                f"; on the large corpus gensim's is on {corpora[-1].own_subsample:,} of the "
                "documents with `total_docs` = N"
                if any(c.name == "large" for c in corpora)
                else ""
            )
            + "). Held-out perplexity: one evaluator for all, the variational bound on "
            "log p(w | β̂, α) of the held-out documents with each model's mean topics "
            "β̂ = λ / Σλ (γ until no document moves by 1e-4, ≤ 3,000 iterations), "
            "exp(−bound / words)"
            + (
                "; ⚠ not converged for: " + ", ".join(unconverged)
                if unconverged
                else "; converged for every model"
            )
            + ".",
            "- Topic TV: mean over true topics of the total variation to the fitted topic "
            "matched by the Hungarian algorithm (0 = recovered exactly, 1 = disjoint).",
            "- gensim batch runs with `decay=0` (ρ = 1: plain batch VB; its default decay = 0.5 "
            "blends each pass into the previous topics with ρ = 1, 0.58, 0.5, …); online with "
            "`update_every=1, chunksize=128, decay=0.7, offset=10` (after the first pass gensim "
            "keeps ρ constant within a pass). gensim computes in float32 (its default); "
            "`eval_every=None`."
            + (
                " Extra rows (small corpus, `--extras`): scikit-learn batch `n_jobs=2` (joblib "
                "processes; online `n_jobs=2` is slower than `None`, a joblib dispatch per "
                "mini-batch), lvmkit float32 with 1 torch thread."
                if args.extras
                else ""
            )
            + (
                " The large corpus runs lvmkit in float32 only (`--large-float64` adds float64)."
                if any(c.name == "large" for c in corpora) and not args.large_float64
                else ""
            ),
            f"- OpenMP wait policy: OMP_WAIT_POLICY={WAIT_POLICY or 'unset (libgomp default)'}"
            + (
                " (set by the script before torch loads; `--omp-wait-policy default` leaves it "
                "alone). On this 2-core machine shared with other jobs, libgomp's default policy "
                "(spin, then sleep) made lvmkit's earlier 2-thread torch E-step 4–20× slower: "
                "each small parallel op waited for a descheduled thread. lvmkit's E-step is now "
                "compiled (numba, its threads as many as torch's, OpenMP-backed); "
                "scikit-learn's and gensim's E-steps use no OpenMP."
                if WAIT_POLICY == "PASSIVE"
                else ""
            ),
            "",
            *sections,
        ]
    )
    print(body)
    if args.output:
        _common.write_section(body, SECTION, args.output)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
