"""What every mixture estimator shares: scikit-learn's contract wrapped around the EM engine.

No algorithm lives here. The model (:class:`lvmkit.models.mixture.Mixture` over a family) owns
initialisation, the E-step and the M-step; :mod:`lvmkit.fit` owns the loops (batch EM, stepwise EM,
the gradient views, restarts). This class checks input, turns data (in memory or on disk) into
chunks, chooses the loop, and converts between the model's float64 tensors and the public ``*_``
NumPy attributes. Subclasses (GaussianMixture, PoissonMixture, BernoulliMixture) name their family
and fill a few hooks: their parameters' checks, how fitted state is stored and read back, and
sampling."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from lvmkit import _validation as v
from lvmkit import distributed
from lvmkit._persist import Persistent, learned_state
from lvmkit.data.chunks import DataChunks
from lvmkit.data.sources import Source, as_source
from lvmkit.estimators import _ranks as ranks
from lvmkit.families.gaussian import jitter_report
from lvmkit.fit import callbacks
from lvmkit.fit.em import EMResult, best_of_restarts, run_em
from lvmkit.fit.gradient import run_gradient
from lvmkit.fit.stepwise import Batch, StepwiseState, run_stepwise, stepwise_step
from lvmkit.models.mixture import INIT_METHODS, Mixture, MixtureParams

ALGORITHMS = ("em", "gem", "gradient", "stepwise")
RESP_INITS = INIT_METHODS[:-1]  # every method but 'lecture'
# Rows per chunk of the validation pass over data on disk.
STREAM_CHECK_ROWS = 65536


class ComponentReseedWarning(UserWarning):
    """A mixture component lost all its points and was re-seeded."""


def common_constraints(init_params: tuple) -> dict:
    """Hyperparameter constraints shared by every mixture estimator."""
    array_or_none = v.any_of(v.NONE, v.ARRAY_LIKE, description="None or an array-like")
    return {
        "n_components": v.Interval(1, None, integer=True),
        "tol": v.Interval(0, None),
        "max_iter": v.Interval(0, None, integer=True),
        "n_init": v.Interval(1, None, integer=True),
        "init_params": v.Options(init_params),
        "weights_init": array_or_none,
        "random_state": v.RANDOM_STATE,
        "warm_start": v.BOOL,
        "verbose": v.Interval(0, None, integer=True),
        "verbose_interval": v.Interval(1, None, integer=True),
        "algorithm": v.Options(ALGORITHMS),
        "gem_steps": v.Interval(1, None, integer=True),
        "learning_rate": v.Interval(0, None, open_low=True),
        "device": v.DEVICE,
        "dtype": v.Options(("float32", "float64", torch.float32, torch.float64)),
        "chunk_size": v.any_of(
            v.NONE, v.Interval(1, None, integer=True), description="None or an int >= 1"
        ),
        "batch_size": v.Interval(1, None, integer=True),
        "learning_decay": v.Interval(0.5, 1.0, open_low=True),
        "learning_offset": v.Interval(0, None),
    }


COMMON_HINTS = {
    "algorithm": "'em' is the closed-form M-step; 'gem' and 'gradient' are its gradient views; "
    "'stepwise' is online EM over mini-batches of batch_size rows.",
    "learning_decay": "stepwise EM needs 0.5 < learning_decay <= 1 (Robbins-Monro); 0.6 is usual.",
    "init_params": "'kmeans' is the usual choice.",
}


class BaseMixture(Persistent, DensityMixin, BaseEstimator):
    """Shared machinery; see a subclass for the parameters."""

    _constraints: dict = {}
    _hints: dict = COMMON_HINTS
    _checks_values = False  # whether _check_values restricts the data (a pass over streamed data)
    _missing_values = False  # whether NaN in in-memory X is a missing value the model marginalizes

    # ================================================================== hooks
    def _make_family(self):
        raise NotImplementedError

    def _check_values(self, X, origin: str | None = None, start: int = 0) -> None:
        """Raise a ValueError if ``X`` is outside the family's support (rows numbered from
        ``start`` within ``origin``, a file, when the rows were streamed)."""

    def _data_shift(
        self, data, weights, device, comm=distributed.LOCAL, missing=False
    ) -> torch.Tensor:
        """Shift subtracted from the data before the cast to the compute dtype (default none);
        the same on every rank of ``comm``; ``missing``: the data hold NaN (missing values)."""
        return torch.zeros(self.n_features_in_, dtype=torch.float64, device=device)

    def _any_missing(self, data, comm=distributed.LOCAL) -> bool:
        """Whether checked data hold missing values (NaN) on any rank of ``comm`` (only where
        :attr:`_missing_values` lets NaN through check_X)."""
        return False

    def _mixture_model(self, family, dtype, missing: bool = False, running=None) -> Mixture:
        """The EM model: the family's mixture; ``missing`` (or ``running`` stepwise statistics
        made with gaps) asks for the subclass's model of rows with missing values."""
        return Mixture(family, self.n_components, dtype)

    def _choose_reference(self, data, comm) -> None:
        """Before a fit that starts afresh: fix any data-dependent frame the family computes in
        (Bernoulli's flipped features; stored as a fitted attribute). Default: none."""

    def _prediction_shift(self, device) -> torch.Tensor:
        return torch.zeros(self.n_features_in_, dtype=torch.float64, device=device)

    def _check_user_init(self, family, n_features: int, device) -> dict:
        """Validated user-supplied initial parameters (float64 tensors on ``device``), in data
        coordinates; :meth:`_fit` moves them to the model's (shifted) coordinates."""
        return {}

    def _store(self, params: MixtureParams, shift: torch.Tensor) -> None:
        raise NotImplementedError

    def _fitted_parameters(self, shift: torch.Tensor, device) -> MixtureParams:
        raise NotImplementedError

    def _n_family_parameters(self, n_features: int) -> int:
        raise NotImplementedError

    def _sample_family(self, labels: torch.Tensor, generator) -> torch.Tensor:
        raise NotImplementedError

    def _after_gradient_step(self, components):
        """Complete the family's parameters after a gradient update (default: nothing to do)."""
        return components

    def _bytes_per_row(self, n_features: int, dtype: torch.dtype) -> int:
        item = torch.finfo(dtype).bits // 8
        return item * (2 * n_features + 6 * self.n_components) + 8 * (
            self.n_components + n_features
        )

    # ================================================================== fitting
    def fit(self, X, y=None, sample_weight=None):
        """Fit the mixture (``n_init`` restarts, the best kept). Returns ``self``.

        ``X`` is an array-like (n_samples, n_features), a tensor, a DataFrame, or data on disk: a
        path, a glob such as ``"shards/*.parquet"``, a list of paths (``.npy``, Parquet, CSV) or a
        :class:`lvmkit.data.sources.Source`. Data on disk is read one chunk at a time on every
        pass (one pass per EM iteration), in bounded memory; the result is the in-memory fit's.
        ``sample_weight`` (n_samples,), optional: non-negative weights; a row of weight 2 counts
        exactly as the same row twice.

        Under ``torch.distributed`` (a process group of several ranks, or ``torchrun``'s
        environment; see :mod:`lvmkit.distributed`) every rank calls ``fit``: data on disk is
        split by rank (:meth:`Source.shard`), an in-memory ``X`` is this rank's own rows (maybe
        none), and every rank ends with the same parameters, those of one process fitting all
        the rows.
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most probable component of every sample of ``X``."""
        chunks, model = self._fit(X, sample_weight)
        return self._predict_chunks(chunks, model)

    def _fit(self, X, sample_weight=None) -> tuple[DataChunks, Mixture]:
        """Fit; return the data as the E-step reads it and the model (for fit_predict). A failed
        fit leaves every fitted attribute as it was."""
        return _atomic(self, self._fit_unsafe, X, sample_weight)

    def partial_fit(self, X, y=None, sample_weight=None):
        """One step of stepwise (online) EM on the mini-batch ``X``. Returns ``self``.

        The first call on an unfitted model initialises from ``X`` (``init_params``) and fixes
        ``n_features_in_``; on a model fitted by ``fit``, the first call starts from the fitted
        parameters. Every call then blends the batch's statistics into running ones with step size
        γ_t = (t + learning_offset)^(−learning_decay) (γ = 1 at the first step) and applies the
        M-step (see :mod:`lvmkit.fit.stepwise`). ``lower_bound_`` is the batch's mean
        log-likelihood under the parameters it was given; ``n_iter_`` counts the steps. A failed
        call leaves the model as it was.
        """
        _atomic(self, self._partial_fit_unsafe, X, sample_weight)
        return self

    def _partial_fit_unsafe(self, X, sample_weight):
        v.validate_params(self, self._constraints, self._hints)
        comm = distributed.current(self.device)
        with jitter_report():
            return ranks.collectively(comm, self._partial_fit_on, comm, X, sample_weight)

    def _partial_fit_on(self, comm, X, sample_weight):
        k = self.n_components
        state = getattr(self, "_stepwise_", None)
        fitted = hasattr(self, "converged_") and hasattr(self, "n_features_in_")
        first = state is None and not fitted

        def prepare():
            rows = v.check_X(
                self,
                X,
                reset=first,
                min_samples=0 if comm.active else (k if first else 1),
                allow_nan=self._missing_values,
            )
            self._check_values(rows)
            w = _check_sample_weight(
                sample_weight, rows.shape[0], 0 if comm.active else (k if first else 1)
            )
            return rows, w

        (X, weights), n_total, _ = ranks.prepare_together(comm, self, prepare)
        if comm.active and n_total < (k if first else 1):
            raise ValueError(
                f"Expected n_samples >= {k if first else 1} over all {comm.world} ranks but got "
                f"{n_total:g}. Give each step more rows, or use fewer components."
            )
        dtype = v.resolve_dtype(self.dtype)
        device = v.resolve_device(self.device, X)
        if first:
            self._choose_reference(X, comm)
        family = self._make_family()
        missing = self._any_missing(X, comm)
        running = None if state is None or state[0] is None else state[0].to(device)
        model = self._mixture_model(family, dtype, missing, running)
        shift = (
            self._data_shift(X, weights, device, comm, missing)
            if first
            else self._prediction_shift(device)
        )
        chunks = DataChunks(
            X,
            shift,
            dtype,
            device,
            self.chunk_size,
            self._bytes_per_row(X.shape[1], dtype),
            weights=weights,
        )
        if first:
            generator = _generator(ranks.random_state(self.random_state, comm), chunks.device)
            user_init = self._user_init(family, device, shift)
            params = model.initialize(chunks, self.init_params, generator, user_init, comm)
        else:
            params = self._fitted_parameters(shift, device)
        if state is None:  # a new stepwise run (from this batch, or from fit's parameters)
            progress, history = StepwiseState(), []
        else:
            if running is not None and hasattr(model, "adopt"):  # into the model's layout
                running = model.adopt(running)
            progress, history = StepwiseState(running, state[1]), list(self.lower_bounds_)
        batch = Batch(
            chunks.mapped(model.features).iter_weighted(), chunks.n_features, chunks.device
        )
        params, ll, n = stepwise_step(
            model, batch, params, progress, self.learning_decay, self.learning_offset, comm
        )
        bound = ll / n
        if not math.isfinite(bound):
            raise FloatingPointError(
                f"The log-likelihood of this batch is {bound}: the data may contain enormous "
                "values. Standardize X, or increase reg_covar."
            )
        self._store(params, shift)
        self.lower_bound_ = bound
        self.lower_bounds_ = history + [bound]
        self.lower_bound_seconds_ = np.zeros(len(self.lower_bounds_))
        self.n_iter_ = progress.t
        self.converged_ = False
        self.restarts_ = np.asarray([bound], dtype=np.float64)
        self._stepwise_ = (progress.running, progress.t)

    def _user_init(self, family, device, shift: torch.Tensor) -> dict:
        """The given initial values, checked, in the model's (shifted) coordinates."""
        user_init = self._check_user_init(family, self.n_features_in_, device)
        if "means" in user_init:
            user_init["means"] = user_init["means"] - shift
        if self.weights_init is not None:
            user_init["weights"] = _check_weights_init(self.weights_init, self.n_components, device)
        return user_init

    def _source(self, X, sample_weight, k: int, comm=distributed.LOCAL):
        """``(data, weights)``: checked in-memory data and its weights, or a file source (this
        rank's shard of it across processes) and None; sets ``n_features_in_`` (and feature
        names). In one process, too few rows is an error here; across processes the total over
        ranks is checked once every rank has prepared."""
        least = 0 if comm.active else None  # a rank may hold no rows
        if isinstance(X, (str, os.PathLike, Source)) or (
            isinstance(X, (list, tuple)) and X and isinstance(X[0], (str, os.PathLike))
        ):
            if sample_weight is not None:
                raise ValueError(
                    "sample_weight is only supported for in-memory X; for data on disk, fit "
                    "without weights or load the rows into an array."
                )
            source = as_source(X)
            if comm.active:
                source = source.shard(comm.rank, comm.world)
            self.n_features_in_ = source.n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            n = source.n_samples
            if self._checks_values or n is None:  # a validation (and counting) pass
                n = 0
                for chunk in source.chunks(STREAM_CHECK_ROWS):
                    self._check_values(chunk.X, chunk.origin, chunk.start)
                    n += chunk.X.shape[0]
                source.n_samples = n
            if least is None and n < max(k, 2):
                raise ValueError(
                    f"Expected n_samples >= n_components but got n_components = {k}, "
                    f"n_samples = {n} in {source.describe()}. Use fewer components or more data."
                )
            return source, None
        X = v.check_X(
            self,
            X,
            reset=True,
            min_samples=2 if least is None else 0,
            allow_nan=self._missing_values,
        )
        n_samples = X.shape[0]
        if least is None and n_samples < k:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {k}, "
                f"n_samples = {n_samples}. Use fewer components or more data."
            )
        self._check_values(X)
        return X, _check_sample_weight(sample_weight, n_samples, k if least is None else 0)

    def _fit_unsafe(self, X, sample_weight=None) -> DataChunks:
        v.validate_params(self, self._constraints, self._hints)
        comm = distributed.current(self.device)
        with jitter_report():  # one warning per fit, with the count
            return ranks.collectively(comm, self._fit_on, comm, X, sample_weight)

    def _fit_on(self, comm, X, sample_weight) -> tuple[DataChunks, Mixture]:
        k = self.n_components
        continuing = self.warm_start and hasattr(self, "converged_")
        previous_bound = self.lower_bound_ if continuing else -math.inf
        (data, weights), n_total, offset = ranks.prepare_together(
            comm, self, lambda: self._source(X, sample_weight, k, comm)
        )
        if comm.active and n_total < max(k, 2):
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {k}, n_samples = "
                f"{n_total:g} over all {comm.world} ranks. Use fewer components or more data."
            )
        if comm.active and isinstance(X, Source) and X.n_samples is None:
            X.n_samples = int(n_total)  # counted, as one process counts it (CSV)
        n_features = self.n_features_in_
        dtype = v.resolve_dtype(self.dtype)
        device = v.resolve_device(self.device, None if isinstance(data, Source) else data)
        if not continuing:
            self._choose_reference(data, comm)
        family = self._make_family()
        missing = self._any_missing(data, comm)
        if missing and self.algorithm in ("gem", "gradient"):
            raise ValueError(
                f"algorithm={self.algorithm!r} cannot fit data with missing values (NaN): its "
                "gradient steps need complete rows. Use algorithm='em' (or 'stepwise'), which "
                "marginalizes them, or impute X first."
            )
        shift = self._data_shift(data, weights, device, comm, missing)
        user_init = self._user_init(family, device, shift)
        stepwise = self.algorithm == "stepwise"
        chunks = DataChunks(
            data,
            shift,
            dtype,
            device,
            self.batch_size if stepwise else self.chunk_size,
            self._bytes_per_row(n_features, dtype),
            weights=weights,
        )
        chunks.offset = offset
        model = self._mixture_model(family, dtype, missing)
        em_chunks = chunks.mapped(model.features)
        self._stepwise_ = None
        rng = ranks.random_state(self.random_state, comm)
        n_init = 1 if continuing else self.n_init
        say = print if self.verbose and comm.is_main else None

        def run_one(init: int) -> EMResult:
            if say:
                say(f"Initialization {init}")
            if continuing:
                params = self._fitted_parameters(shift, device)
            else:
                generator = _generator(rng, chunks.device)
                params = model.initialize(chunks, self.init_params, generator, user_init, comm)
            result = self._run(model, em_chunks, params, previous_bound, init, n_init, rng, comm)
            self._report_reseeding(result, init)
            if say:
                status = "converged" if result.converged else "did not converge"
                say(
                    f"Initialization {status}. time lapse {result.seconds:.5f}s\t "
                    f"lower bound {result.final:.5f}."
                )
            return result

        result, restarts = best_of_restarts(n_init, run_one)
        self._store(result.params, shift)
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bounds_ = list(result.lower_bounds)
        self.lower_bound_seconds_ = np.asarray(result.seconds_at, dtype=np.float64)
        self.lower_bound_ = result.final
        self.restarts_ = np.asarray(restarts, dtype=np.float64)
        if not self.converged_ and self.max_iter > 0:
            v.warn(
                f"Best performing initialization did not converge in max_iter={self.max_iter} "
                f"iterations (last change above tol={self.tol}). Increase max_iter or tol, try "
                "other init_params, or check for degenerate data.",
                ConvergenceWarning,
            )
        return em_chunks, model

    def _run(
        self,
        model: Mixture,
        chunks: DataChunks,
        params: MixtureParams,
        lower_bound: float,
        restart: int = 0,
        n_restarts: int = 1,
        rng=None,
        comm=distributed.LOCAL,
    ) -> EMResult:
        """One restart with the chosen algorithm."""
        callback = self._iteration_callback(restart, n_restarts, comm)
        if self.algorithm == "em":
            return run_em(
                model,
                chunks,
                params,
                self.max_iter,
                self.tol,
                lower_bound=lower_bound,
                on_iteration=callback,
                comm=comm,
            )
        if self.algorithm == "stepwise":
            rng = rng if rng is not None else ranks.random_state(self.random_state, comm)
            generator = _generator(rng, chunks.device)
            return run_stepwise(
                model,
                chunks,
                params,
                self.max_iter,
                self.tol,
                self.learning_decay,
                self.learning_offset,
                lower_bound=lower_bound,
                on_iteration=callback,
                generator=generator,
                comm=comm,
            )
        return run_gradient(
            model,
            chunks,
            params,
            self.algorithm,
            self.max_iter,
            self.tol,
            steps=self.gem_steps,
            learning_rate=self.learning_rate,
            after_step=self._after_gradient_step,
            lower_bound=lower_bound,
            on_iteration=callback,
            comm=comm,
        )

    # ================================================================== prediction
    def _check_predict_X(self, X):
        v.check_fitted(self)
        X = v.check_X(self, X, reset=False, allow_nan=self._missing_values)
        self._check_values(X)
        return X

    def _prediction_model(
        self, device, dtype, missing: bool = False
    ) -> tuple[Mixture, MixtureParams, torch.Tensor]:
        shift = self._prediction_shift(device)
        params = self._fitted_parameters(shift, device)
        return self._mixture_model(self._make_family(), dtype, missing), params, shift

    def _prediction_chunks(self, X) -> tuple[Mixture, MixtureParams, DataChunks]:
        X = self._check_predict_X(X)
        dtype = v.resolve_dtype(self.dtype)
        device = v.resolve_device(self.device, X)
        model, params, shift = self._prediction_model(device, dtype, self._any_missing(X))
        chunks = DataChunks(
            X,
            shift,
            dtype,
            device,
            self.chunk_size,
            self._bytes_per_row(X.shape[1], dtype),
            transform=model.features,
        )
        return model, params, chunks

    def _predict_chunks(self, chunks: DataChunks, model: Mixture) -> np.ndarray:
        """Labels for data already in fit's E-step chunks (fit's model, the fitted parameters,
        fit's shift)."""
        params = self._fitted_parameters(chunks.shift, chunks.device)
        return np.concatenate([v.to_numpy(model.log_joint(X, params)[0].argmax(1)) for X in chunks])

    def score_samples(self, X) -> np.ndarray:
        """log p(x) of every sample under the fitted mixture (exact), shape (n_samples,)."""
        model, params, chunks = self._prediction_chunks(X)
        return np.concatenate(
            [v.to_numpy(model.log_evidence(c, params).to(torch.float64)) for c in chunks]
        )

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample of ``X`` (nats)."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X) -> np.ndarray:
        """The most probable component of every sample (n_samples,)."""
        model, params, chunks = self._prediction_chunks(X)
        return np.concatenate([v.to_numpy(model.log_joint(c, params)[0].argmax(1)) for c in chunks])

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of every component for every sample (n_samples, K)."""
        model, params, chunks = self._prediction_chunks(X)
        out = []
        for c in chunks:
            log_joint = model.log_joint(c, params)[0].to(torch.float64)
            out.append(v.to_numpy(torch.softmax(log_joint, dim=1)))
        return np.concatenate(out)

    def sample(self, n_samples=1):
        """Draw ``n_samples`` points. Returns ``(X, labels)``: (n_samples, D) and (n_samples,)."""
        v.check_fitted(self)
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(
                f"n_samples must be an int >= 1 (the number of points to draw); got {n_samples!r}."
            )
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_ / self.weights_.sum())
        labels = torch.as_tensor(np.repeat(np.arange(self.n_components), counts))
        generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        return v.to_numpy(self._sample_family(labels, generator)), labels.numpy()

    def _n_parameters(self) -> int:
        return self._n_family_parameters(self.n_features_in_) + self.n_components - 1

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X``: −2 log L + p log N (lower is better)."""
        n = _n_rows(X)
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X``: −2 log L + 2 p (lower is better)."""
        return -2 * self.score(X) * _n_rows(X) + 2 * self._n_parameters()

    # ================================================================== persistence
    def _get_state(self) -> tuple[dict, dict]:
        """Every learned attribute (public, ending in ``_``): arrays as tensors, the rest as JSON.

        That is all prediction needs: the prediction shift is derived from ``weights_`` and
        ``means_``, so a loaded model gives identical ``score_samples``.
        """
        v.check_fitted(self)
        return learned_state(self)

    def _set_state(self, tensors: dict, extra: dict) -> None:
        for name, value in {**extra, **tensors}.items():
            setattr(self, name, value)

    # ================================================================== reporting
    def _iteration_callback(self, restart: int, n_restarts: int, comm=distributed.LOCAL):
        """The per-iteration callback: verbose printing (rank 0 only) and
        :mod:`lvmkit.fit.callbacks` observers (``None`` when there are neither, so the loop pays
        nothing)."""
        verbose = self._verbose_callback() if comm.is_main else None
        return callbacks.reporter(self, restart, n_restarts, self.max_iter, verbose)

    def _verbose_callback(self):
        if not self.verbose:
            return None
        last = [time.perf_counter()]

        def report(n_iter, lower_bound, change):
            if n_iter % self.verbose_interval:
                return
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            else:
                now = time.perf_counter()
                print(
                    f"  Iteration {n_iter}\t time lapse {now - last[0]:.5f}s\t "
                    f"ll change {change:.5f}"
                )
                last[0] = now

        return report

    def _report_reseeding(self, result: EMResult, init: int) -> None:
        if not result.reseeded:
            return
        components, iterations = result.reseed_summary()
        v.warn(
            f"Component(s) {components} lost all their points (at EM iteration(s) "
            f"{iterations} of restart {init}) and "
            "were re-seeded at the worst-explained sample. This suggests more components than "
            "the data supports: try fewer components.",
            ComponentReseedWarning,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._missing_values
        return tags


# ====================================================================== helpers
def _generator(rng, device) -> torch.Generator:
    """A torch generator on ``device`` seeded from the estimator's NumPy ``rng`` (one draw)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
    return generator


def _atomic(estimator, fn, *args):
    """Run ``fn(*args)``; if it raises, put every fitted attribute (name ending in ``_``) of
    ``estimator`` back as it was, removing those it added."""

    def fitted():
        return [k for k in vars(estimator) if k.endswith("_") and not k.startswith("__")]

    saved = {k: getattr(estimator, k) for k in fitted()}
    try:
        return fn(*args)
    except BaseException:
        for name in fitted():
            if name not in saved:
                delattr(estimator, name)
        for name, value in saved.items():
            setattr(estimator, name, value)
        raise


def check_representable(
    spread: float,
    n_features: int,
    dtype,
    what: str,
    fix: str = "Rescale X (e.g. divide by 10**k, or sklearn.preprocessing.StandardScaler)",
) -> None:
    """Refuse data whose squares would overflow the compute dtype: the E-step, the statistics
    and k-means' squared distances all square the (centred) values. ``spread`` is their size
    (a standard deviation, or the largest count); ``what`` says what it is, ``fix`` what to do."""
    dtype = v.resolve_dtype(dtype)
    limit = v.square_limit(dtype, n_features)
    if not spread <= limit:
        name = str(dtype).replace("torch.", "")
        hint = " or fit with dtype='float64'" if dtype != torch.float64 else ""
        raise ValueError(
            f"X's {what} is {spread:.3g}, too large for {name} arithmetic: its squares overflow "
            f"(the largest {name} is {torch.finfo(dtype).max:.3g}; at most {limit:.3g} is usable "
            f"with {n_features} features). {fix}{hint}."
        )


def _n_rows(X) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def _check_sample_weight(sample_weight, n_samples: int, n_components: int):
    if sample_weight is None:
        return None
    w = as_float64(sample_weight, "sample_weight")
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must have shape (n_samples,) = ({n_samples},); got {w.shape}. "
            "Give one weight per row of X."
        )
    if (w < 0).any():
        raise ValueError(
            f"sample_weight must be non-negative; got a minimum of {w.min():.3g} at row "
            f"{int(np.argmin(w))}. Use 0 to leave a row out."
        )
    positive = int((w > 0).sum())
    if positive == 0 and n_components > 0:
        raise ValueError(
            "sample_weight is zero for every row, so there is nothing to fit. Give the rows to "
            "fit a positive weight."
        )
    if positive < n_components:
        raise ValueError(
            f"sample_weight gives {positive} row(s) a positive weight, fewer than "
            f"n_components={n_components}. Give more rows positive weight or use fewer components."
        )
    return w


def _check_weights_init(weights_init, k: int, device) -> torch.Tensor:
    w = as_float64(weights_init, "weights_init")
    expect_shape(w, (k,), "weights_init", "(n_components,)")
    if (w < 0).any() or (w > 1).any() or not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
        raise ValueError(
            "weights_init must be non-negative and sum to 1 (mixing proportions); got "
            f"min {w.min():.3g}, max {w.max():.3g}, sum {w.sum():.6f}. Normalise it: "
            "weights_init / weights_init.sum()."
        )
    return torch.as_tensor(w / w.sum(), dtype=torch.float64, device=device)


def as_float64(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric; could not convert it ({exc}).") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; give finite values.")
    return arr


def expect_shape(arr: np.ndarray, shape: tuple, name: str, label: str) -> None:
    if arr.shape != shape:
        raise ValueError(
            f"{name} must have shape {label} = {shape}; got {arr.shape}. Check n_components "
            "and the number of features of X."
        )
