"""Latent Dirichlet allocation with scikit-learn's names, by batch or online variational Bayes.

``LatentDirichletAllocation`` takes scikit-learn's parameters and attributes, so that changing the
import switches a pipeline over; the model and its E-step are :mod:`lvmkit.models.lda`. Batch
learning is :func:`lvmkit.fit.em.run_em` (one E-step over all documents, one M-step, summed over
processes); online learning is stepwise EM (:mod:`lvmkit.fit.stepwise`) with Hoffman et al.'s
step sizes ρ_t = (learning_offset + t)^(−learning_decay), the same as scikit-learn's.

Two differences from scikit-learn, both deliberate:

- Batch learning's bound, recorded every iteration in ``lower_bounds_`` (per word; the
  perplexity is its exp(−·)), never decreases. Every E-step starts each document at fresh random
  γ, scikit-learn's draws (from the same ``random_state``, the same topics as scikit-learn's, and
  as long as scikit-learn's bound rises, the same fit); an iteration whose bound would fall below
  the previous one's instead keeps, document by document, the better of its fresh γ and the
  previous iteration's (the guard in :meth:`lvmkit.models.lda.LDAModel.bound`), which cannot.
- Counts must be non-negative integers and every document non-empty; a vocabulary that differs at
  ``transform`` is an error.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from lvmkit import _validation as v
from lvmkit import distributed
from lvmkit._persist import Persistent, learned_state, register
from lvmkit.estimators import _ranks as ranks
from lvmkit.estimators._mixture import _atomic
from lvmkit.fit import callbacks
from lvmkit.fit.em import e_pass, run_em
from lvmkit.fit.stepwise import Batch, StepwiseState, stepwise_step
from lvmkit.models import documents, lda
from lvmkit.models.stats import Stats

f64 = torch.float64
#: documents per batch of the E-step in batch learning (a memory bound, not a learning choice)
E_STEP_DOCS = 8192


def check_counts(estimator, X, reset: bool, allow_empty: bool = False) -> sp.csr_matrix:
    """A document-term matrix (dense or SciPy sparse, documents as rows) as CSR float64, checked:
    non-negative integer counts, no empty document, at least one word, the vocabulary of the fit
    (``reset=False``)."""
    if isinstance(X, torch.Tensor):
        X = v.to_numpy(X)
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64, copy=True)
        X.sum_duplicates()
        values = X.data
    else:
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"X must be a document-term matrix of counts (documents as rows); got {exc}."
            ) from None
        if X.ndim != 2:
            raise ValueError(
                f"X must be 2-D (documents × words); got shape {X.shape}. Use "
                "sklearn.feature_extraction.text.CountVectorizer, or lvmkit.data.read_documents, "
                "to turn texts into counts."
            )
        values = X
    if X.shape[1] == 0:
        raise ValueError(
            "X has an empty vocabulary (0 columns). Check the vectorizer's stop words and "
            "min_df/max_df: they removed every word."
        )
    if X.shape[0] == 0 and not allow_empty:
        raise ValueError("X has no documents (0 rows).")
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError("X holds NaN or infinite counts; counts must be non-negative integers.")
    if (values < 0).any():
        raise ValueError(
            f"X holds negative counts (the smallest is {values.min():g}); word counts must be "
            "non-negative integers."
        )
    if (values != np.round(values)).any():
        example = values[values != np.round(values)].flat[0]
        raise ValueError(
            f"X holds fractional counts (e.g. {example:g}); LDA models word counts, so give "
            "integers (CountVectorizer, not TfidfVectorizer)."
        )
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    empty = np.flatnonzero(np.diff(X.indptr) == 0)
    if empty.size:
        raise ValueError(
            f"{empty.size} document(s) have no words (rows {empty[:10].tolist()}); an empty "
            "document has no topics to infer. Drop them: X = X[np.asarray(X.sum(1)).ravel() > 0]."
        )
    if reset:
        estimator.n_features_in_ = X.shape[1]
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} words (columns), but the model was fitted on a vocabulary of "
            f"{estimator.n_features_in_}: use the same vectorizer (its transform, not "
            "fit_transform) for new documents."
        )
    return X


@register
class LatentDirichletAllocation(Persistent, TransformerMixin, BaseEstimator):
    """Latent Dirichlet allocation by variational Bayes, batch or online (scikit-learn's names).

    Parameters
    ----------
    n_components : int, default=10
        The number of topics K.
    doc_topic_prior, topic_word_prior : float, optional
        α and η (default 1 / K each, as scikit-learn).
    learning_method : {'batch', 'online'}, default='batch'
    learning_decay, learning_offset : float, default=0.7, 10.0
        The online step ρ_t = (learning_offset + t)^(−learning_decay).
    max_iter : int, default=10
        Passes over the data.
    batch_size : int, default=128
        Documents per online step.
    evaluate_every : int, default=-1
        With k > 0, stop when the training perplexity of iteration i changed by less than
        ``perp_tol`` since iteration i − k (batch learning reads it off the bound each iteration
        anyway; online learning evaluates it by an extra pass).
    total_samples : float, default=1e6
        The corpus size ``partial_fit`` assumes.
    perp_tol : float, default=0.1
    mean_change_tol : float, default=1e-3
        A document's E-step stops when its γ moves by less than this (mean absolute change).
    max_doc_update_iter : int, default=100
    n_jobs : ignored
        Accepted for scikit-learn compatibility. On the CPU the E-step runs documents in
        parallel on torch's threads (``torch.set_num_threads``), a compiled loop per document;
        on a GPU it moves a batch's documents at once.
    verbose : int, default=0
    random_state : int, RandomState or None
        Seeds the topics' start and the documents' first E-step (the same draws as
        scikit-learn's).
    device : str or torch.device, optional
    dtype : {'float32', 'float64'}, default='float32'
        The compute dtype of the E-step (statistics and bounds are float64).

    Attributes
    ----------
    components_ (K, V) the topics' variational parameters λ (pseudo-counts; normalise rows for
    word distributions), exp_dirichlet_component_ (K, V) exp(E[log β]), n_batch_iter_, n_iter_,
    bound_ (the final perplexity on the training set, as scikit-learn's), doc_topic_prior_,
    topic_word_prior_, lower_bounds_ (the bound per word at every iteration), n_features_in_.
    """

    # what the report's summary calls n_components and n_features_in_
    _summary_labels = {"n_components": "topics", "n_features_in_": "words (vocabulary)"}

    _constraints = {
        "n_components": v.Interval(1, None, integer=True),
        "doc_topic_prior": v.any_of(
            v.NONE, v.Interval(0, None, open_low=True), description="None or a float > 0"
        ),
        "topic_word_prior": v.any_of(
            v.NONE, v.Interval(0, None, open_low=True), description="None or a float > 0"
        ),
        "learning_method": v.Options(("batch", "online")),
        "learning_decay": v.Interval(0, 1),
        "learning_offset": v.Interval(1, None),
        "max_iter": v.Interval(0, None, integer=True),
        "batch_size": v.Interval(1, None, integer=True),
        "evaluate_every": v.Interval(None, None, integer=True),
        "total_samples": v.Interval(0, None, open_low=True),
        "perp_tol": v.Interval(0, None),
        "mean_change_tol": v.Interval(0, None),
        "max_doc_update_iter": v.Interval(1, None, integer=True),
        "n_jobs": v.any_of(
            v.NONE, v.Interval(None, None, integer=True), description="None or an int"
        ),
        "verbose": v.Interval(0, None, integer=True),
        "random_state": v.RANDOM_STATE,
        "device": v.DEVICE,
        "dtype": v.DTYPE,
    }

    def __init__(
        self,
        n_components=10,
        *,
        doc_topic_prior=None,
        topic_word_prior=None,
        learning_method="batch",
        learning_decay=0.7,
        learning_offset=10.0,
        max_iter=10,
        batch_size=128,
        evaluate_every=-1,
        total_samples=1e6,
        perp_tol=1e-1,
        mean_change_tol=1e-3,
        max_doc_update_iter=100,
        n_jobs=None,
        verbose=0,
        random_state=None,
        device=None,
        dtype="float32",
    ):
        self.n_components = n_components
        self.doc_topic_prior = doc_topic_prior
        self.topic_word_prior = topic_word_prior
        self.learning_method = learning_method
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.evaluate_every = evaluate_every
        self.total_samples = total_samples
        self.perp_tol = perp_tol
        self.mean_change_tol = mean_change_tol
        self.max_doc_update_iter = max_doc_update_iter
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ set-up
    def _prepare(self, comm, X, reset):
        def prepare():  # across processes a rank may hold no documents
            return check_counts(self, X, reset, allow_empty=comm.active), None

        (X, _), n_total, offset = ranks.prepare_together(comm, self, prepare)
        return X, int(n_total), int(offset)

    def _init_latent(self, comm) -> None:
        """scikit-learn's start: λ ~ Gamma(100, 1/100) from ``random_state`` (one draw,
        identical on every rank)."""
        k, d = self.n_components, self.n_features_in_
        self._rng = ranks.random_state(self.random_state, comm)
        self.doc_topic_prior_ = 1.0 / k if self.doc_topic_prior is None else self.doc_topic_prior
        self.topic_word_prior_ = 1.0 / k if self.topic_word_prior is None else self.topic_word_prior
        self.components_ = self._rng.gamma(100.0, 1.0 / 100.0, (k, d))
        self.n_batch_iter_ = 1
        self.n_iter_ = 0
        self.lower_bounds_ = []

    def _model(self, doc_init, guard=False, scale=None) -> lda.LDAModel:
        return lda.LDAModel(
            self.n_components,
            self.doc_topic_prior_,
            self.topic_word_prior_,
            v.resolve_dtype(self.dtype),
            self.max_doc_update_iter,
            self.mean_change_tol,
            doc_init,
            guard=guard,
            scale=scale,
        )

    def _device(self):
        return v.resolve_device(self.device)

    def _params(self) -> lda.TopicParams:
        return lda.TopicParams(torch.as_tensor(self.components_, dtype=f64, device=self._device()))

    def _store(self, params: lda.TopicParams) -> None:
        self.components_ = v.to_numpy(params.components)
        self.exp_dirichlet_component_ = v.to_numpy(params.exp_beta(f64))

    def _random_starts(self, n_total: int) -> _RandomStarts:
        return _RandomStarts(self._rng, n_total, self.n_components, self._device())

    def _ones(self, start, n):
        return torch.ones(n, self.n_components, dtype=f64, device=self._device())

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Learn the topics of the documents ``X`` (n_docs, n_words): counts, dense or SciPy
        sparse. Under ``torch.distributed`` every rank passes its own documents. Returns self."""
        _atomic(self, self._fit_unsafe, X)
        return self

    def _fit_unsafe(self, X):
        v.validate_params(self, self._constraints)
        comm = distributed.current(self.device)
        return ranks.collectively(comm, self._fit_on, comm, X)

    def _fit_on(self, comm, X):
        X, n_total, offset = self._prepare(comm, X, reset=True)
        self._init_latent(comm)
        dtype = v.resolve_dtype(self.dtype)
        if self.learning_method == "batch":
            chunks = documents.DocumentChunks(X, dtype, self._device(), E_STEP_DOCS, offset)
            model = self._model(self._random_starts(n_total), guard=True)
            params = self._batch(model, chunks, comm)
            final = model.bound(e_pass(model, chunks, params, comm))
        else:
            chunks = documents.DocumentChunks(X, dtype, self._device(), self.batch_size, offset)
            params = self._online(chunks, comm, n_total)
            model = self._model(self._ones)
            whole = documents.DocumentChunks(X, dtype, self._device(), E_STEP_DOCS, offset)
            final = model.bound(e_pass(model, whole, params, comm))
        self._store(params)
        self.bound_ = math.exp(-final)
        return self

    def _batch(self, model, chunks, comm) -> lda.TopicParams:
        params = self._params()
        every = self.evaluate_every if self.evaluate_every > 0 else self.max_iter
        last = None
        while self.n_iter_ < self.max_iter:
            steps = min(every, self.max_iter - self.n_iter_)
            done = self.n_iter_
            report = callbacks.reporter(self, 0, 1, self.max_iter, self._report)

            def on_iteration(n_iter, bound, change, report=report, done=done):
                report(done + n_iter, bound, change)

            result = run_em(
                model, chunks, params, steps, -1.0, on_iteration=on_iteration, comm=comm
            )
            params = result.params
            self.n_iter_ += result.n_iter
            self.n_batch_iter_ += result.n_iter
            self.lower_bounds_.extend(result.lower_bounds)
            perplexity = math.exp(-result.lower_bounds[-1]) if result.lower_bounds else None
            if self.evaluate_every > 0 and last is not None and perplexity is not None:
                if abs(last - perplexity) < self.perp_tol:
                    break
            last = perplexity
        return params

    def _online(self, chunks, comm, n_total) -> lda.TopicParams:
        params = self._params()
        state = self._stepwise_state(params, n_total)
        model = self._model(self._batch_starts, scale=float(n_total))
        last = None
        for _ in range(self.max_iter):
            total_ll = total_words = 0.0
            for part in _steps(chunks, comm):
                params, ll, words = self._online_step(model, part, chunks, params, state, comm)
                total_ll += ll
                total_words += words
            self.n_iter_ += 1
            bound = (total_ll + model.topic_term(params)) / max(total_words, 1e-300)
            self.lower_bounds_.append(bound)
            report = callbacks.reporter(self, 0, 1, self.max_iter, self._report)
            report(
                self.n_iter_, bound, bound - (self.lower_bounds_[-2] if self.n_iter_ > 1 else bound)
            )
            if self.evaluate_every > 0 and self.n_iter_ % self.evaluate_every == 0:
                evaluator = self._model(self._ones)
                perplexity = math.exp(-evaluator.bound(e_pass(evaluator, chunks, params, comm)))
                if last is not None and abs(last - perplexity) < self.perp_tol:
                    break
                last = perplexity
        return params

    def _batch_starts(self, start, n):
        rows = self._rng.gamma(100.0, 0.01, (n, self.n_components))
        return torch.as_tensor(rows, dtype=f64, device=self._device())

    def _stepwise_state(self, params, n_total) -> StepwiseState:
        """Stepwise EM's running statistics implied by λ: the expected counts per document
        (λ − η) / D, at step ``n_batch_iter_`` (the step sizes continue scikit-learn's)."""
        counts = (params.components - self.topic_word_prior_) / float(n_total)
        zero = torch.zeros((), dtype=f64, device=counts.device)
        running = Stats(counts=counts, log_likelihood=zero, n_samples=zero + 1.0, n_words=zero)
        return StepwiseState(running=running, t=self.n_batch_iter_)

    def _online_step(self, model, part, chunks, params, state, comm):
        batch = Batch(part, chunks.n_features, chunks.device)
        before = sum(docs.n_words for docs, _ in part)
        # stepwise_step's γ_t = (t + offset)^(−κ) at its t = n_batch_iter_ + 1: scikit-learn's
        # ρ = (learning_offset + n_batch_iter_)^(−κ)
        params, ll, _ = stepwise_step(
            model, batch, params, state, self.learning_decay, self.learning_offset - 1.0, comm
        )
        self.n_batch_iter_ += 1
        return params, ll, comm.sum([before])[0]

    def partial_fit(self, X, y=None):
        """Online steps on the documents ``X`` (one per ``batch_size`` of them), for a corpus of
        ``total_samples`` documents. The first call starts the topics. Returns self."""
        _atomic(self, self._partial_fit_unsafe, X)
        return self

    def _partial_fit_unsafe(self, X):
        v.validate_params(self, self._constraints)
        comm = distributed.current(self.device)
        return ranks.collectively(comm, self._partial_fit_on, comm, X)

    def _partial_fit_on(self, comm, X):
        first = not hasattr(self, "components_")
        X, _, offset = self._prepare(comm, X, reset=first)
        if first:
            self._init_latent(comm)
        elif not hasattr(self, "_rng"):
            self._rng = ranks.random_state(self.random_state, comm)
        dtype = v.resolve_dtype(self.dtype)
        chunks = documents.DocumentChunks(X, dtype, self._device(), self.batch_size, offset)
        params = self._params()
        state = self._stepwise_state(params, self.total_samples)
        model = self._model(self._batch_starts, scale=float(self.total_samples))
        for part in _steps(chunks, comm):
            params, _, _ = self._online_step(model, part, chunks, params, state, comm)
        self._store(params)
        return self

    def _report(self, n_iter, bound, change):
        if self.verbose:
            print(
                f"LatentDirichletAllocation iteration {n_iter}: bound per word {bound:.6f}, "
                f"perplexity {math.exp(-bound):.4f}"
            )

    # ------------------------------------------------------------------ the fitted model
    def _inferred(self, X):
        """(γ of every document (n, K) float64, the bound's documents part, the words)."""
        check_is_fitted(self, "components_")
        X = check_counts(self, X, reset=False)
        model = self._model(self._ones)
        params = self._params()
        chunks = documents.DocumentChunks(
            X, v.resolve_dtype(self.dtype), self._device(), E_STEP_DOCS
        )
        gammas, total = [], None
        for docs, _ in chunks.iter_weighted():
            found = model.solve(docs, params, self._ones(0, docs.n_docs))
            gammas.append(found.gamma.to(f64))
            stats = model.statistics(docs, params, found)
            total = stats if total is None else total + stats
        return torch.cat(gammas), total, model.topic_term(params)

    def _unnormalized_transform(self, X) -> np.ndarray:
        return v.to_numpy(self._inferred(X)[0])

    def transform(self, X, *, normalize=True) -> np.ndarray:
        """Every document's topic proportions E[θ] (n_docs, K) (γ itself with
        ``normalize=False``)."""
        gamma = self._unnormalized_transform(X)
        return gamma / gamma.sum(1, keepdims=True) if normalize else gamma

    def fit_transform(self, X, y=None, **params) -> np.ndarray:
        return self.fit(X).transform(X)

    def score(self, X, y=None) -> float:
        """The bound (ELBO) on log p(X), in nats (scikit-learn's ``score``: the total)."""
        _, stats, topics = self._inferred(X)
        return stats.scalar("log_likelihood") + topics

    def document_bound(self, X) -> float:
        """The documents' part of the bound on log p(X) (nats): E_q[log p(w, z, θ | β) −
        log q(z, θ)] with β under its fitted q, without the topics' own term (a constant of the
        model, which ``score`` and ``perplexity`` add, as scikit-learn does, and which on a small
        held-out set dwarfs the documents' part). The held-out measure."""
        _, stats, _ = self._inferred(X)
        return stats.scalar("log_likelihood")

    def held_out_perplexity(self, X) -> float:
        """exp(−document_bound / words): an upper bound on the perplexity of the documents ``X``
        that does not depend on how many there are (unlike :meth:`perplexity`)."""
        _, stats, _ = self._inferred(X)
        return math.exp(-stats.scalar("log_likelihood") / stats.scalar("n_words"))

    def topics_bound(self) -> float:
        """The topics' own part of the bound, Σ_k E_q[log p(β_k | η) − log q(β_k | λ_k)]."""
        check_is_fitted(self, "components_")
        return self._model(self._ones).topic_term(self._params())

    def perplexity(self, X, sub_sampling=False) -> float:
        """exp(−bound / words): the perplexity of ``X`` implied by the bound, the topics' term
        included (scikit-learn's definition; an upper bound on the true perplexity). For new
        documents see :meth:`held_out_perplexity` and :meth:`held_out_log_likelihood`."""
        _, stats, topics = self._inferred(X)
        words = stats.scalar("n_words")
        bound = stats.scalar("log_likelihood")
        if sub_sampling:
            bound *= self.total_samples / stats.scalar("n_samples")
            words *= self.total_samples / stats.scalar("n_samples")
        return math.exp(-(bound + topics) / words)

    def held_out_log_likelihood(self, X, n_particles=20, random_state=None) -> np.ndarray:
        """An estimate of every document's log p(w_d) (nats, (n_docs,)) by the left-to-right
        sampler of Wallach et al. (2009), with the particles resampled at every word (sequential
        Monte Carlo, unbiased for p(w_d); see :func:`lvmkit.models.lda.left_to_right`), with
        ``n_particles`` particles, the topics held at their posterior means and α at
        ``doc_topic_prior_``. Unlike :meth:`perplexity` (a bound), this
        estimates the likelihood itself, so ``exp(−sum / words)`` beside the bound's perplexity
        shows how loose the bound is. Its cost is quadratic in document length: use it on a small
        held-out set."""
        check_is_fitted(self, "components_")
        X = check_counts(self, X, reset=False)
        if not isinstance(n_particles, (int, np.integer)) or n_particles < 1:
            raise ValueError(f"n_particles must be an int >= 1; got {n_particles!r}.")
        generator = torch.Generator(device=self._device())
        generator.manual_seed(int(check_random_state(random_state).randint(2**31 - 1)))
        topics = torch.as_tensor(self.topic_word_distribution(), dtype=f64, device=self._device())
        estimate = lda.left_to_right(X, topics, self.doc_topic_prior_, n_particles, generator)
        return v.to_numpy(estimate)

    def topic_word_distribution(self) -> np.ndarray:
        """E[β] (K, V): every topic's word probabilities."""
        check_is_fitted(self, "components_")
        return self.components_ / self.components_.sum(1, keepdims=True)

    # ------------------------------------------------------------------ model files
    def _get_state(self):
        check_is_fitted(self, "components_")
        return learned_state(self)

    def _set_state(self, tensors, extra):
        for name, value in {**extra, **tensors}.items():
            setattr(self, name, value)


class _RandomStarts:
    """Every document's starting γ for one pass: scikit-learn's Gamma(100, 1/100) draws for the
    whole corpus, new at every pass (:meth:`refresh`); all ranks draw the same and take their
    own rows."""

    def __init__(self, rng, n_total: int, k: int, device):
        self.rng, self.shape, self.device = rng, (n_total, k), device
        self.draws = None

    def refresh(self) -> None:
        self.draws = None

    def __call__(self, start: int, n: int) -> torch.Tensor:
        if self.draws is None:
            rows = self.rng.gamma(100.0, 0.01, self.shape)
            self.draws = torch.as_tensor(rows, dtype=f64, device=self.device)
        return self.draws[start : start + n]


def _steps(chunks, comm):
    """Each online step's mini-batch on this rank, ``[(docs, None)]`` or ``[]`` once this rank
    has run out, for as many steps as the rank with the most mini-batches."""
    mine = iter(chunks.iter_weighted())
    while True:
        part = next(mine, None)
        if not comm.max(part is not None):
            return
        yield [] if part is None else [part]
