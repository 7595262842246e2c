"""What every hidden Markov model estimator shares: hmmlearn's interface around the EM engine.

No algorithm lives here: the model (:class:`lvmkit.models.hmm.HMM` over an emission) owns the
E- and M-steps, :mod:`lvmkit.posteriors.chain` the recursions, :mod:`lvmkit.fit` the loops. This
class checks input (hmmlearn's ``X, lengths`` or a list of arrays), makes chunks of whole
sequences, initialises, runs batch EM (``n_init`` restarts) or stepwise EM (``partial_fit``), and
converts between the model's float64 tensors and the public ``*_`` NumPy attributes, which have
hmmlearn's names. Subclasses name their emission and fill a few hooks.

Conventions (hmmlearn's): ``score`` is the total log-likelihood of all sequences;
``lower_bounds_`` (and ``monitor_.history``) hold the total log-likelihood under the parameters
entering each iteration; ``tol`` applies to its change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from lvmkit import _validation as v
from lvmkit import distributed
from lvmkit._persist import Persistent, learned_state
from lvmkit.data.chunks import DataChunks
from lvmkit.data.sequences import SequenceChunks, concatenate, rows_bytes
from lvmkit.estimators import _ranks as ranks
from lvmkit.estimators._mixture import (
    _atomic,
    _generator,
    as_float64,
    check_representable,
)
from lvmkit.families.gaussian import jitter_report
from lvmkit.fit import callbacks
from lvmkit.fit.em import EMResult, best_of_restarts, run_em
from lvmkit.fit.stepwise import Batch, StepwiseState, stepwise_step
from lvmkit.models.hmm import HMM, HMMParams, label_counts
from lvmkit.models.stats import Stats
from lvmkit.posteriors import chain


class StateReseedWarning(UserWarning):
    """A hidden state no sequence visited was re-seeded."""


@dataclass
class ConvergenceMonitor:
    """hmmlearn's ``monitor_``: the log-likelihood of every iteration and whether EM converged."""

    tol: float
    n_iter: int
    history: list = field(default_factory=list)
    iter: int = 0
    converged: bool = False


def hmm_constraints(init_letters: str) -> dict:
    return {
        "n_components": v.Interval(1, None, integer=True),
        "n_iter": v.Interval(0, None, integer=True),
        "tol": v.Interval(0, None),
        "n_init": v.Interval(1, None, integer=True),
        "algorithm": v.Options(("viterbi", "map")),
        "random_state": v.RANDOM_STATE,
        "verbose": v.any_of(v.BOOL, v.Interval(0, None, integer=True), description="a bool or int"),
        "params": _Letters(init_letters),
        "init_params": _Letters(init_letters),
        "device": v.DEVICE,
        "dtype": v.Options(("float32", "float64", torch.float32, torch.float64)),
        "chunk_size": v.any_of(
            v.NONE, v.Interval(1, None, integer=True), description="None or an int >= 1"
        ),
        "learning_decay": v.Interval(0.5, 1.0, open_low=True),
        "learning_offset": v.Interval(0, None),
    }


class _Letters:
    """A string of parameter letters, each one of ``allowed`` (hmmlearn's ``params``)."""

    def __init__(self, allowed: str):
        self.allowed = allowed

    def accepts(self, value) -> bool:
        return isinstance(value, str) and set(value) <= set(self.allowed)

    def describe(self) -> str:
        return f"a string of the letters {self.allowed!r}"


class BaseHMM(Persistent, BaseEstimator):
    """What every hidden Markov model estimator shares (use a subclass: GaussianHMM, PoissonHMM,
    BernoulliHMM, CategoricalHMM, GMMHMM).

    Parameters every subclass takes
    -------------------------------
    n_components : int, default=1
        Number of hidden states K.
    startprob_prior, transmat_prior : float or array, default=1.0
        Dirichlet parameters of the start and transition probabilities (1.0: maximum
        likelihood); the M-step is max(prior − 1 + counts, 0), normalised.
    algorithm : {'viterbi', 'map'}, default='viterbi'
        What ``predict`` and ``decode`` use.
    random_state : int, RandomState or None
    n_iter : int, default=10
        Maximum number of EM iterations.
    tol : float, default=1e-2
        EM stops when the total log-likelihood changes by less than ``tol``.
    verbose : bool
        Print every iteration's log-likelihood.
    params, init_params : str
        Letters of the parameters that EM updates / that ``fit`` initialises ('s' start,
        't' transitions, then the emission's). Parameters left out of ``init_params`` must be
        set before ``fit``.
    n_init : int, default=1
        Restarts from different initialisations; the best final log-likelihood is kept.
    device : str or torch.device, optional
        Where the E-step runs (default: where X is, else the CPU).
    dtype : {'float32', 'float64'}, default='float32'
        Compute dtype of the E-step; statistics are summed and the M-step solved in float64.
    chunk_size : int, optional
        Most rows of whole sequences per chunk of the E-step (None: sized from memory).
    learning_decay, learning_offset : float
        Stepwise EM's step sizes γ_t = (t + learning_offset)^(−learning_decay) (``partial_fit``).
    """

    _letters = "st"  # start, transitions; subclasses add their emission's
    _shifts_data = False  # whether rows are centred on their mean (Gaussian emissions)
    _hints = {
        "params": "Use hmmlearn's letters: 's' start, 't' transitions, then the emission's.",
        "init_params": "Use hmmlearn's letters; '' keeps every parameter you set yourself.",
    }

    # ================================================================== hooks
    def _make_emission(self, n_features: int, shift: torch.Tensor, device):
        raise NotImplementedError

    def _check_values(self, X) -> None:
        """Raise a ValueError if rows of ``X`` are outside the emission's support."""

    def _check_fitted_values(self, X) -> None:
        """Checks of new rows against the fitted model (a categorical alphabet); none by default."""

    def _emission_from_attributes(self, shift: torch.Tensor, device):
        """The emission's float64 parameters (model coordinates) from the public attributes."""
        raise NotImplementedError

    def _emission_to_attributes(self, params, shift: torch.Tensor) -> None:
        raise NotImplementedError

    def _init_emission(self, emission, rows, weights, shift, device, dtype, generator, comm):
        """Initial emission parameters (model coordinates) from the rows, for the emission
        letters in ``init_params`` (the others from the attributes)."""
        raise NotImplementedError

    def _emission_is_set(self) -> bool:
        raise NotImplementedError

    def _n_features_from_attributes(self) -> int:
        raise NotImplementedError

    def _n_emission_parameters(self, n_features: int) -> int:
        raise NotImplementedError

    def _sample_emission(self, states: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        raise NotImplementedError

    # ================================================================== fitting
    def fit(self, X, lengths=None, sample_weight=None):
        """Estimate the parameters by Baum-Welch (EM), ``n_init`` restarts, the best kept.

        ``X`` (n_samples, n_features) holds the rows of all sequences, one after another, and
        ``lengths`` (n_sequences,) the number of rows of each (None: one sequence); or ``X`` is a
        list of arrays, one per sequence. ``sample_weight`` (n_sequences,), optional:
        non-negative weights per sequence (a weight of 2 counts as the sequence twice).

        Parameters whose letters are not in ``init_params`` must be set beforehand (hmmlearn's
        convention); those not in ``params`` stay as they are. Under ``torch.distributed`` every
        rank passes its own sequences and all end with the parameters of one process fitting
        all of them. Returns ``self``.
        """
        _atomic(self, self._fit_unsafe, X, lengths, sample_weight)
        return self

    def _fit_unsafe(self, X, lengths, sample_weight):
        v.validate_params(self, self._constraints, self._hints)
        comm = distributed.current(self.device)
        with jitter_report():
            return ranks.collectively(comm, self._fit_on, comm, X, lengths, sample_weight)

    def _prepare(self, X, lengths, sample_weight, comm, reset: bool, least: int):
        rows, lengths = concatenate(X, lengths)
        rows = v.check_X(self, rows, reset=reset, min_samples=0 if comm.active else 1)
        self._check_values(rows)
        weights = _sequence_weights(sample_weight, len(lengths))
        return rows, (lengths, weights)

    def _fit_on(self, comm, X, lengths, sample_weight):
        k = self.n_components
        (rows, (lengths, weights)), n_total, _ = ranks.prepare_together(
            comm, self, lambda: self._prepare(X, lengths, sample_weight, comm, True, k)
        )
        if n_total < k:
            raise ValueError(
                f"Expected at least n_components = {k} observations but got {n_total:g}"
                f"{' over all ranks' if comm.active else ''}: a {k}-state model cannot be fitted "
                "to fewer rows than states. Use fewer states or more data."
            )
        dtype = v.resolve_dtype(self.dtype)
        device = v.resolve_device(self.device, rows)
        shift = self._shift(_weighted_rows(rows, lengths, weights), comm, device)
        model = self._model(shift, device, dtype)
        chunks = self._chunks(rows, lengths, weights, shift, dtype, device, model)
        rng = ranks.random_state(self.random_state, comm)
        say = print if self.verbose and comm.is_main else None

        def run_one(init: int) -> EMResult:
            generator = _generator(rng, device)
            params = self._initialize(
                model, rows, lengths, weights, shift, device, dtype, generator, comm, chunks
            )
            callback = self._iteration_callback(init, self.n_init, comm, say)
            result = run_em(
                model, chunks, params, self.n_iter, self.tol, on_iteration=callback, comm=comm
            )
            self._report_reseeding(result, init)
            return result

        result, restarts = best_of_restarts(self.n_init, run_one)
        self._stepwise_ = None  # a later partial_fit continues from these parameters afresh
        self._store(result.params, shift)
        self.n_features_in_ = int(rows.shape[1])
        self.lower_bounds_ = list(result.lower_bounds)
        self.lower_bound_ = result.final
        self.converged_ = bool(result.converged)
        self.n_iter_ = int(result.n_iter)
        self.restarts_ = np.asarray(restarts, dtype=np.float64)
        self.monitor_ = ConvergenceMonitor(
            self.tol,
            self.n_iter,
            list(result.lower_bounds),
            int(result.n_iter),
            bool(result.converged),
        )
        if not self.converged_ and self.n_iter > 1 and self.tol > 0:  # tol=0: n_iter asked
            v.warn(
                f"EM did not converge in n_iter={self.n_iter} iterations (the last change of the "
                f"log-likelihood was above tol={self.tol}). Increase n_iter, or tol.",
                ConvergenceWarning,
            )

    def partial_fit(self, X, lengths=None, sample_weight=None):
        """One step of stepwise (online) EM on a mini-batch of sequences. Returns ``self``.

        The first call on an unfitted model initialises from the batch (``init_params``); every
        call blends the batch's statistics into running ones with step size
        γ_t = (t + learning_offset)^(−learning_decay) (γ = 1 at the first step) and applies the
        M-step, the priors taken on the scale of one batch. ``lower_bound_`` is the batch's
        log-likelihood under the parameters it was given; ``n_iter_`` counts the steps.
        """
        _atomic(self, self._partial_fit_unsafe, X, lengths, sample_weight)
        return self

    def _partial_fit_unsafe(self, X, lengths, sample_weight):
        v.validate_params(self, self._constraints, self._hints)
        comm = distributed.current(self.device)
        with jitter_report():
            return ranks.collectively(comm, self._partial_fit_on, comm, X, lengths, sample_weight)

    def _partial_fit_on(self, comm, X, lengths, sample_weight):
        k = self.n_components
        state = getattr(self, "_stepwise_", None)
        first = state is None and not hasattr(self, "converged_")  # fit or partial_fit ran
        (rows, (lengths, weights)), n_total, _ = ranks.prepare_together(
            comm, self, lambda: self._prepare(X, lengths, sample_weight, comm, first, 1)
        )
        if first and n_total < k:
            raise ValueError(
                f"The first batch has {n_total:g} observations, fewer than n_components = {k}. "
                "Give the first partial_fit call more rows."
            )
        dtype = v.resolve_dtype(self.dtype)
        device = v.resolve_device(self.device, rows)
        if first:
            shift = self._shift(_weighted_rows(rows, lengths, weights), comm, device)
        else:
            shift = self._prediction_shift(device)
        model = self._model(shift, device, dtype)
        chunks = self._chunks(rows, lengths, weights, shift, dtype, device, model)
        if first:
            generator = _generator(ranks.random_state(self.random_state, comm), device)
            params = self._initialize(
                model, rows, lengths, weights, shift, device, dtype, generator, comm, chunks
            )
            progress, history = StepwiseState(), []
        else:
            params = self._fitted_params(shift, device)
            if state is None:
                progress, history = StepwiseState(), list(getattr(self, "lower_bounds_", []))
            else:
                running = None if state[0] is None else state[0].to(device)
                progress, history = StepwiseState(running, state[1]), list(self.lower_bounds_)
        model.counts_scale = n_total  # rows of the batch over every rank
        batch = Batch(list(chunks.iter_weighted()), chunks.n_features, device)
        params, ll, _ = stepwise_step(
            model, batch, params, progress, self.learning_decay, self.learning_offset, comm
        )
        if not math.isfinite(ll):
            raise FloatingPointError(f"The log-likelihood of this batch is {ll}. {model.advice}")
        self._store(params, shift)
        self.n_features_in_ = int(rows.shape[1])
        self.lower_bound_ = ll
        self.lower_bounds_ = history + [ll]
        self.n_iter_ = progress.t
        self.converged_ = False
        self.restarts_ = np.asarray([ll])
        self.monitor_ = ConvergenceMonitor(
            self.tol, self.n_iter, list(self.lower_bounds_), progress.t, False
        )
        self._stepwise_ = (progress.running, progress.t)

    # ================================================================== pieces
    def _shift(self, rows, comm, device) -> torch.Tensor:
        d = int(rows.shape[1])
        if not self._shifts_data:
            return torch.zeros(d, dtype=torch.float64, device=device)
        mean, variance = ranks.moments(rows, comm)
        check_representable(
            float(np.sqrt(np.max(variance, initial=0.0))),
            d,
            self.dtype,
            "largest feature standard deviation",
        )
        return torch.as_tensor(mean, dtype=torch.float64, device=device)

    def _prediction_shift(self, device) -> torch.Tensor:
        """A shift derived from public state (the states' mean), so a restored model predicts
        the same; zero for emissions that are not centred."""
        d = self._n_features_from_attributes()
        if not self._shifts_data:
            return torch.zeros(d, dtype=torch.float64, device=device)
        means = np.asarray(self.means_, dtype=np.float64).reshape(-1, d)
        return torch.as_tensor(means.mean(0), dtype=torch.float64, device=device)

    def _model(self, shift, device, dtype) -> HMM:
        k = self.n_components
        emission = self._make_emission(self._n_features(), shift, device)
        start_prior = broadcast_param(self.startprob_prior, (k,), "startprob_prior")
        trans_prior = broadcast_param(self.transmat_prior, (k, k), "transmat_prior")
        return HMM(
            emission, k, dtype, start_prior.to(device), trans_prior.to(device), update=self.params
        )

    def _n_features(self) -> int:
        return int(getattr(self, "n_features_in_", 0)) or self._n_features_from_attributes()

    def _chunks(self, rows, lengths, weights, shift, dtype, device, model, block=None):
        bytes_per_row = rows_bytes(self.n_components, rows.shape[1], dtype)
        return SequenceChunks(
            rows,
            lengths,
            shift,
            dtype,
            device,
            model.emission.features,
            weights,
            self.chunk_size,
            bytes_per_row,
            block=block,
        )

    def _initialize(
        self, model, rows, lengths, weights, shift, device, dtype, generator, comm, chunks
    ) -> HMMParams:
        k = self.n_components
        init = self.init_params
        f64 = dict(dtype=torch.float64, device=device)
        emission_letters = set(self._letters) - set("st")
        if set(init) & emission_letters:
            row_w = None if weights is None else np.repeat(weights, lengths)
            emission = self._init_emission(
                model.emission, rows, row_w, shift, device, dtype, generator, comm
            )
        else:
            self._require_set(emission_letters)
            emission = self._emission_from_attributes(shift, device)
        startprob = transmat = None
        if "s" not in init:
            self._require_set("s")
            startprob = _check_startprob(self.startprob_, k, device)
        if "t" not in init:
            self._require_set("t")
            transmat = _check_transmat(self.transmat_, k, device)
        if startprob is None or transmat is None:
            counts = self._label_counts(model, emission, chunks, comm)
            if startprob is None:
                startprob = (counts["start"] + 1.0) / (counts["start"] + 1.0).sum()
            if transmat is None:
                transmat = (counts["trans"] + 1.0) / (counts["trans"] + 1.0).sum(1, keepdim=True)
        return HMMParams(startprob.to(**f64), transmat.to(**f64), emission)

    def _label_counts(self, model: HMM, emission, chunks, comm) -> Stats:
        """Start and transition counts of the rows' most likely states under the initial
        emissions (summed over chunks and ranks)."""
        k = self.n_components
        params = HMMParams(torch.full((k,), 1.0 / k), torch.full((k, k), 1.0 / k), emission)
        total = Stats(
            start=torch.zeros(k, dtype=torch.float64, device=chunks.device),
            trans=torch.zeros(k, k, dtype=torch.float64, device=chunks.device),
        )
        for batch in chunks:
            log_e, _ = model.log_emission(batch.features, params)
            start, trans = label_counts(log_e.argmax(1), batch.packing, k, batch.row_weights)
            total = total + Stats(start=start, trans=trans)
        return comm.reduce(total)

    def _require_set(self, letters) -> None:
        names = {"s": "startprob_", "t": "transmat_"}
        for letter in letters:
            if letter in names and not hasattr(self, names[letter]):
                raise ValueError(
                    f"init_params={self.init_params!r} leaves out {letter!r}, so {names[letter]} "
                    "must be set before fit; set it, or add the letter to init_params."
                )
        if set(letters) - set("st") and not self._emission_is_set():
            raise ValueError(
                f"init_params={self.init_params!r} leaves out the emission's letters, so its "
                "parameters must be set before fit; set them, or add their letters to init_params."
            )

    def _store(self, params: HMMParams, shift: torch.Tensor) -> None:
        self.startprob_ = v.to_numpy(params.startprob)
        self.transmat_ = v.to_numpy(params.transmat)
        self._emission_to_attributes(params.emission, shift)

    def _fitted_params(self, shift, device) -> HMMParams:
        k = self.n_components
        return HMMParams(
            _check_startprob(self.startprob_, k, device),
            _check_transmat(self.transmat_, k, device),
            self._emission_from_attributes(shift, device),
        )

    # ================================================================== inference
    def _inference(self, X, lengths, block=None):
        """(model, params, chunks) for the rows of ``X`` under the current parameters."""
        self._check_usable()
        rows, lengths = concatenate(X, lengths)
        stale = getattr(self, "n_features_in_", None) not in (
            None,
            self._n_features_from_attributes(),
        )
        rows = v.check_X(self, rows, reset=stale or not hasattr(self, "n_features_in_"))
        self._check_values(rows)
        self._check_fitted_values(rows)
        dtype = v.resolve_dtype(self.dtype)
        device = v.resolve_device(self.device, rows)
        shift = self._prediction_shift(device)
        model = self._model(shift, device, dtype)
        params = self._fitted_params(shift, device)
        chunks = self._chunks(rows, lengths, None, shift, dtype, device, model, block=block)
        return model, params, chunks

    def _check_usable(self) -> None:
        missing = [n for n in ("startprob_", "transmat_") if not hasattr(self, n)]
        if missing or not self._emission_is_set():
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet: call fit, or set "
                f"startprob_, transmat_ and the emission's parameters, before using it."
            )

    def score_samples(self, X, lengths=None):
        """``(log_prob, posteriors)``: the total log-likelihood of the sequences and the state
        posteriors p(z_t | x) of every row (n_samples, n_components) (forward-backward)."""
        model, params, chunks = self._inference(X, lengths)
        total, parts = 0.0, []
        for batch in chunks:
            post = model.posterior(batch, params)
            total += float(post.log_likelihood.sum())
            parts.append(v.to_numpy(batch.packing.unpack(post.gamma).to(torch.float64)))
        return total, np.concatenate(parts)

    def score(self, X, lengths=None) -> float:
        """The total log-likelihood log p(X) of the sequences (forward algorithm)."""
        return float(self.score_sequences(X, lengths).sum())

    def score_sequences(self, X, lengths=None) -> np.ndarray:
        """The log-likelihood of every sequence (n_sequences,), all computed at once (not in
        hmmlearn, whose ``score`` gives only their sum)."""
        model, params, chunks = self._inference(X, lengths)
        parts = [v.to_numpy(model.posterior(b, params).log_likelihood) for b in chunks]
        return np.concatenate(parts) if parts else np.zeros(0)

    def predict_proba(self, X, lengths=None) -> np.ndarray:
        """State posteriors p(z_t = k | x) of every row (n_samples, n_components)."""
        return self.score_samples(X, lengths)[1]

    def decode(self, X, lengths=None, algorithm=None):
        """``(log_prob, states)``: the most likely state of every row and its score.

        ``algorithm='viterbi'`` (the default, or the estimator's ``algorithm``): the most
        probable path and log p(X, path). ``'map'``: each row's most probable state, and, as
        hmmlearn reports, the sum over rows of the largest posterior.
        """
        algorithm = self.algorithm if algorithm is None else algorithm
        if algorithm not in ("viterbi", "map"):
            raise ValueError(f"algorithm must be 'viterbi' or 'map'; got {algorithm!r}.")
        if algorithm == "map":
            _, post = self.score_samples(X, lengths)
            return float(post.max(1).sum()), post.argmax(1)
        model, params, chunks = self._inference(X, lengths)
        pi, A, _ = model._compute(params)
        log_pi, log_a = torch.log(pi), torch.log(A)
        total, parts = 0.0, []
        for batch in chunks:
            log_e, _ = model.log_emission(batch.features, params)
            states, score = chain.viterbi(log_e, log_pi, log_a, batch.packing)
            total += float(score.sum())
            parts.append(v.to_numpy(batch.packing.unpack(states)))
        return total, np.concatenate(parts)

    def predict(self, X, lengths=None) -> np.ndarray:
        """The most likely state of every row (by ``algorithm``: Viterbi unless 'map')."""
        return self.decode(X, lengths)[1]

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """Draw one sequence of ``n_samples`` steps: ``(X (n_samples, n_features), states)``.

        ``currstate``: the state of the first sample (hmmlearn's meaning; None: drawn from
        ``startprob_``). ``random_state`` defaults to the estimator's.
        """
        self._check_usable()
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1; got {n_samples!r}.")
        k = self.n_components
        if currstate is not None and not (
            isinstance(currstate, (int, np.integer)) and 0 <= currstate < k
        ):
            raise ValueError(
                f"currstate must be a state number in 0 … {k - 1} (the first sample's state), or "
                f"None to draw it from startprob_; got {currstate!r}."
            )
        rng = check_random_state(self.random_state if random_state is None else random_state)
        start = np.asarray(self.startprob_, dtype=np.float64)
        cum = np.cumsum(np.asarray(self.transmat_, dtype=np.float64), axis=1)
        u = rng.random_sample(n_samples)
        states = np.empty(n_samples, dtype=np.int64)
        if currstate is None:
            state = int(min(np.searchsorted(np.cumsum(start), u[0], side="right"), len(start) - 1))
        else:
            state = int(currstate)
        states[0] = state
        last = cum.shape[1] - 1
        for t in range(1, n_samples):  # a Markov chain: each state depends on the one before
            state = min(int(np.searchsorted(cum[state], u[t], side="right")), last)
            states[t] = state
        return self._sample_emission(states, rng), states

    def _n_parameters(self) -> int:
        k = self.n_components
        return (k - 1) + k * (k - 1) + self._n_emission_parameters(self._n_features())

    def bic(self, X, lengths=None) -> float:
        """Bayesian information criterion: −2 log L + p log N (N rows; lower is better)."""
        rows, _ = concatenate(X, lengths)
        return -2 * self.score(X, lengths) + self._n_parameters() * math.log(len(rows))

    def aic(self, X, lengths=None) -> float:
        """Akaike information criterion: −2 log L + 2 p (lower is better)."""
        return -2 * self.score(X, lengths) + 2 * self._n_parameters()

    # ================================================================== persistence
    def _get_state(self) -> tuple[dict, dict]:
        self._check_usable()
        return learned_state(self, skip=("monitor_",))  # monitor_ is rebuilt on load

    def _set_state(self, tensors: dict, extra: dict) -> None:
        for name, value in {**extra, **tensors}.items():
            setattr(self, name, value)
        if "lower_bounds_" in extra:
            self.monitor_ = ConvergenceMonitor(
                self.tol,
                self.n_iter,
                list(self.lower_bounds_),
                int(extra.get("n_iter_", 0)),
                bool(extra.get("converged_", False)),
            )

    # ================================================================== reporting
    def _iteration_callback(self, restart: int, n_restarts: int, comm, say):
        observed = bool(callbacks.observers())
        if say is None and not observed:
            return None

        def report(n_iter, lower_bound, change):
            if say is not None:
                say(f"  Iteration {n_iter}\tlog-likelihood {lower_bound:.6f}\tchange {change:.6g}")
            if observed:
                callbacks.notify(
                    callbacks.FitProgress(
                        self, restart, n_restarts, n_iter, self.n_iter, lower_bound, change
                    )
                )

        return report

    def _report_reseeding(self, result: EMResult, init: int) -> None:
        if not result.reseeded:
            return
        states, iterations = result.reseed_summary()
        v.warn(
            f"State(s) {states} were visited by no sequence (at EM iteration(s) "
            f"{iterations} of restart {init}) and were "
            "re-seeded at the worst-explained observation. The data may support fewer states: "
            "try a smaller n_components.",
            StateReseedWarning,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


# ====================================================================== helpers
def _weighted_rows(rows, lengths, weights):
    """The rows of the sequences of positive weight (what the data's shift and scale are taken
    from: a sequence of weight 0 is left out, wherever its values lie)."""
    if weights is None or (weights > 0).all():
        return rows
    keep = np.repeat(weights > 0, lengths)
    if isinstance(rows, torch.Tensor):
        return rows[torch.as_tensor(keep, device=rows.device)]
    return rows[keep]


def _sequence_weights(sample_weight, n_sequences: int):
    if sample_weight is None:
        return None
    w = as_float64(sample_weight, "sample_weight").reshape(-1)
    if w.shape[0] != n_sequences:
        raise ValueError(
            f"sample_weight must hold one weight per sequence: {n_sequences} (the length of "
            f"lengths); got {w.shape[0]}."
        )
    if (w < 0).any():
        raise ValueError(
            f"sample_weight must be non-negative; got {w.min():.3g} for sequence "
            f"{int(np.argmin(w))}. Use 0 to leave a sequence out."
        )
    if not (w > 0).any():
        raise ValueError("sample_weight is zero for every sequence: there is nothing to fit.")
    return w


def broadcast_param(value, shape, name, device=None) -> torch.Tensor:
    """A hyperparameter (a number or an array) broadcast to ``shape``, float64 on ``device``."""
    arr = as_float64(value, name)
    try:
        arr = np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(
            f"{name} must be a number or an array broadcastable to {shape}; got shape {arr.shape}."
        ) from None
    return torch.as_tensor(np.array(arr), dtype=torch.float64, device=device)


def _check_startprob(value, k: int, device) -> torch.Tensor:
    p = as_float64(value, "startprob_")
    if p.shape != (k,) or (p < 0).any() or not np.isclose(p.sum(), 1.0, atol=1e-6):
        raise ValueError(
            f"startprob_ must be {k} non-negative probabilities summing to 1 (shape ({k},)); got "
            f"shape {p.shape}, sum {p.sum():.6g}. Normalise it: p / p.sum()."
        )
    return torch.as_tensor(p / p.sum(), dtype=torch.float64, device=device)


def _check_transmat(value, k: int, device) -> torch.Tensor:
    a = as_float64(value, "transmat_")
    sums = a.sum(1) if a.ndim == 2 else None
    if a.shape != (k, k) or (a < 0).any() or not np.allclose(sums, 1.0, atol=1e-6):
        found = f"shape {a.shape}"
        if sums is not None:
            found += f", row sums {sums.min():.6g} to {sums.max():.6g}"
        raise ValueError(
            f"transmat_ must be a ({k}, {k}) matrix of non-negative rows summing to 1; got "
            f"{found}. Normalise each row: A / A.sum(1, keepdims=True)."
        )
    return torch.as_tensor(a / sums[:, None], dtype=torch.float64, device=device)


def rows_for_init(rows, weights, shift, device, dtype) -> DataChunks:
    """The rows (ignoring the sequences) as a mixture initialisation reads them."""
    return DataChunks(rows, shift, dtype, device, weights=weights)
