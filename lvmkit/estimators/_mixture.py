"""What every mixture estimator shares: scikit-learn's contract wrapped around the EM engine.

Subclasses (GaussianMixture, PoissonMixture, BernoulliMixture) name their observation family and
fill a few hooks: their parameters' initial values and checks, the M-step's handling of their
parameters, how fitted state is stored and read back, and sampling. Fitting (restarts, warm
starts, sample weights, the three algorithms), prediction, scoring and model-selection criteria
live here once.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from lvmkit import _validation as v
from lvmkit._persist import Persistent
from lvmkit.families._base import EPS_NK
from lvmkit.fit import callbacks
from lvmkit.fit import init as initialization
from lvmkit.fit.em import DataChunks, EMResult, run_em
from lvmkit.fit.gradient import run_gradient
from lvmkit.models.mixture import Mixture

ALGORITHMS = ("em", "gem", "gradient")
RESP_INITS = ("kmeans", "kmeans++", "k-means++", "random", "random_from_data")


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
    }


COMMON_HINTS = {
    "algorithm": "'em' is the closed-form M-step; 'gem' and 'gradient' are its gradient views.",
    "init_params": "'kmeans' is the usual choice.",
}


class BaseMixture(Persistent, DensityMixin, BaseEstimator):
    """Shared machinery; see a subclass for the parameters."""

    _constraints: dict = {}
    _hints: dict = COMMON_HINTS

    # ================================================================== hooks
    def _make_family(self):
        raise NotImplementedError

    def _check_values(self, X) -> None:
        """Raise a ValueError if ``X`` is outside the family's support."""

    def _data_shift(self, X, device) -> torch.Tensor:
        """Shift subtracted from the data before the cast to the compute dtype (default none)."""
        return torch.zeros(X.shape[1], dtype=torch.float64, device=device)

    def _prediction_shift(self, device) -> torch.Tensor:
        return torch.zeros(self.n_features_in_, dtype=torch.float64, device=device)

    def _check_user_init(self, family, n_features: int, device) -> dict:
        """Validated user-supplied initial parameters (float64 tensors on ``device``)."""
        return {}

    def _complete_init(self, family, user_init: dict, weights, stats, chunks, resp_of) -> tuple:
        """(weights, params, state) from initial weights and statistics, user values first.

        ``resp_of`` is the initial responsibilities (None for the lecture initialisation or when
        every parameter was given), for families that need a second, centred pass.
        """
        raise NotImplementedError

    def _lecture_init(self, chunks, family, generator) -> tuple:
        """(weights, stats) of the textbook initialisation; see the subclass."""
        raise NotImplementedError

    def _m_step(self, model: Mixture, stats, iteration: int) -> list[int]:
        raise NotImplementedError

    def _store(self, model: Mixture, shift: torch.Tensor) -> None:
        raise NotImplementedError

    def _fitted_parameters(self, shift: torch.Tensor, device):
        raise NotImplementedError

    def _n_family_parameters(self, n_features: int) -> int:
        raise NotImplementedError

    def _sample_family(self, labels: torch.Tensor, generator) -> torch.Tensor:
        raise NotImplementedError

    def _bytes_per_row(self, n_features: int, dtype: torch.dtype) -> int:
        item = torch.finfo(dtype).bits // 8
        return item * (2 * n_features + 6 * self.n_components) + 8 * (self.n_components + n_features)

    # ================================================================== fitting
    def fit(self, X, y=None, sample_weight=None):
        """Fit the mixture (``n_init`` restarts, the best kept). Returns ``self``.

        ``sample_weight`` (n_samples,), optional: non-negative weights; a row of weight 2 counts
        exactly as the same row twice.
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most probable component of every sample of ``X``."""
        chunks = self._fit(X, sample_weight)
        return self._predict_chunks(chunks)

    def _fit(self, X, sample_weight=None) -> DataChunks:
        """Fit; return the data as the E-step reads it (for fit_predict)."""
        v.validate_params(self, self._constraints, self._hints)
        X = v.check_X(self, X, reset=True, min_samples=2)
        n_samples, n_features = X.shape
        k = self.n_components
        if n_samples < k:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {k}, "
                f"n_samples = {n_samples}. Use fewer components or more data."
            )
        self._check_values(X)
        weights_arr = _check_sample_weight(sample_weight, n_samples, k)
        dtype = v.resolve_dtype(self.dtype)
        device = v.resolve_device(self.device, X)
        family = self._make_family()
        user_init = self._check_user_init(family, n_features, device)
        if self.weights_init is not None:
            user_init["weights"] = _check_weights_init(self.weights_init, k, device)

        shift = self._data_shift(X, device)
        chunks = DataChunks(
            X, shift, dtype, device, self.chunk_size,
            self._bytes_per_row(n_features, dtype), weights=weights_arr,
        )
        em_chunks = chunks.mapped(family.features)

        continuing = self.warm_start and hasattr(self, "converged_")
        n_init = 1 if continuing else self.n_init
        rng = check_random_state(self.random_state)
        best = None
        restarts = []
        for init in range(n_init):
            if self.verbose:
                print(f"Initialization {init}")
            if continuing:
                weights, params = self._fitted_parameters(shift, device)
                state = self._fitted_state(device)
            else:
                weights, params, state = self._initialize(chunks, family, user_init, rng)
            model = Mixture(family, weights, params, dtype)
            model.state = state
            result = self._run(
                model, em_chunks, self.lower_bound_ if continuing else -math.inf, init, n_init
            )
            final = result.lower_bounds[-1] if result.lower_bounds else -math.inf
            restarts.append(final)
            self._report_reseeding(result, init)
            if self.verbose:
                status = "converged" if result.converged else "did not converge"
                print(
                    f"Initialization {status}. time lapse {result.seconds:.5f}s\t "
                    f"lower bound {final:.5f}."
                )
            if best is None or final > best[0]:
                best = (final, model, result)

        final, model, result = best
        self._store(model, shift)
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bounds_ = list(result.lower_bounds)
        self.lower_bound_seconds_ = np.asarray(result.seconds_at, dtype=np.float64)
        self.lower_bound_ = final
        self.restarts_ = np.asarray(restarts, dtype=np.float64)
        if not self.converged_ and self.max_iter > 0:
            v.warn(
                f"Best performing initialization did not converge in max_iter={self.max_iter} "
                f"iterations (last change above tol={self.tol}). Increase max_iter or tol, try "
                "other init_params, or check for degenerate data.",
                ConvergenceWarning,
            )
        return em_chunks

    def _run(
        self, model: Mixture, chunks: DataChunks, lower_bound: float, restart: int = 0,
        n_restarts: int = 1,
    ) -> EMResult:
        """One restart with the chosen algorithm."""
        callback = self._iteration_callback(restart, n_restarts)
        if self.algorithm == "em":
            return run_em(
                model, chunks, self._m_step, self.max_iter, self.tol,
                lower_bound=lower_bound, on_iteration=callback,
            )
        return run_gradient(
            model, chunks, self.algorithm, self.max_iter, self.tol,
            steps=self.gem_steps, learning_rate=self.learning_rate,
            after_step=self._after_gradient_step,
            lower_bound=lower_bound, on_iteration=callback,
        )

    def _after_gradient_step(self, model: Mixture) -> None:
        """Refresh derived state (e.g. covariances) after a gradient update of the parameters."""

    def _fitted_state(self, device) -> dict:
        return {}

    def _initialize(self, chunks: DataChunks, family, user_init: dict, rng):
        """Initial (weights, params, state) in the family's (shifted) coordinates, float64."""
        generator = torch.Generator(device=chunks.device)
        generator.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        if self._all_user_init(user_init):
            return self._complete_init(family, user_init, user_init["weights"], None, chunks, None)
        resp_of = None
        if self.init_params == "lecture":
            weights, stats = self._lecture_init(chunks, family, generator)
        else:
            resp_of = self._initial_responsibilities(chunks, generator, self.init_params)
            stats = sum_statistics(chunks, family, resp_of)
            nk = stats["nk"] + EPS_NK
            weights = nk / nk.sum()
        weights = user_init.get("weights", weights)
        return self._complete_init(family, user_init, weights, stats, chunks, resp_of)

    def _all_user_init(self, user_init: dict) -> bool:
        return False

    def _initial_responsibilities(self, chunks: DataChunks, generator, method: str):
        """A function (chunk, chunk start) -> responsibilities (n, K) for the chosen method."""
        k = self.n_components
        if method == "random":
            return lambda X, start: _random_resp(X.shape[0], k, generator, X.dtype)
        if method == "kmeans":
            _, labels = initialization.kmeans(chunks, k, generator)
        else:
            if method in ("kmeans++", "k-means++"):
                centers = initialization.kmeans_plusplus(chunks, k, generator)
            else:  # random_from_data
                centers = initialization.random_rows(chunks, k, generator)
            labels = initialization.assign(chunks, centers)

        def one_hot(X, start):
            lab = labels[start : start + X.shape[0]]
            return torch.nn.functional.one_hot(lab, k).to(X.dtype)

        return one_hot

    # ================================================================== prediction
    def _check_predict_X(self, X):
        v.check_fitted(self)
        X = v.check_X(self, X, reset=False)
        self._check_values(X)
        return X

    def _prediction_model(self, device, dtype) -> tuple[Mixture, torch.Tensor]:
        shift = self._prediction_shift(device)
        weights, params = self._fitted_parameters(shift, device)
        return Mixture(self._make_family(), weights, params, dtype), shift

    def _prediction_chunks(self, X) -> tuple[Mixture, DataChunks]:
        X = self._check_predict_X(X)
        dtype = v.resolve_dtype(self.dtype)
        device = v.resolve_device(self.device, X)
        model, shift = self._prediction_model(device, dtype)
        chunks = DataChunks(
            X, shift, dtype, device, self.chunk_size, self._bytes_per_row(X.shape[1], dtype),
            transform=model.family.features,
        )
        return model, chunks

    def _predict_chunks(self, chunks: DataChunks) -> np.ndarray:
        """Labels for data already in fit's E-step chunks (the fitted parameters, fit's shift)."""
        weights, params = self._fitted_parameters(chunks.shift, chunks.device)
        model = Mixture(self._make_family(), weights, params, chunks.dtype)
        return np.concatenate([v.to_numpy(model.log_joint(X)[0].argmax(1)) for X in chunks])

    def score_samples(self, X) -> np.ndarray:
        """log p(x) of every sample under the fitted mixture (exact), shape (n_samples,)."""
        model, chunks = self._prediction_chunks(X)
        return np.concatenate(
            [v.to_numpy(model.log_evidence(c).to(torch.float64)) for c in chunks]
        )

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample of ``X`` (nats)."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X) -> np.ndarray:
        """The most probable component of every sample (n_samples,)."""
        model, chunks = self._prediction_chunks(X)
        return np.concatenate([v.to_numpy(model.log_joint(c)[0].argmax(1)) for c in chunks])

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of every component for every sample (n_samples, K)."""
        model, chunks = self._prediction_chunks(X)
        out = []
        for c in chunks:
            log_joint = model.log_joint(c)[0].to(torch.float64)
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
        tensors, extra = {}, {}
        for name, value in vars(self).items():
            if name.startswith("_") or not name.endswith("_"):
                continue
            if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
                tensors[name] = value
            else:
                extra[name] = value
        return tensors, extra

    def _set_state(self, tensors: dict, extra: dict) -> None:
        for name, value in {**extra, **tensors}.items():
            setattr(self, name, value)

    # ================================================================== reporting
    def _iteration_callback(self, restart: int, n_restarts: int):
        """The per-iteration callback: verbose printing and :mod:`lvmkit.fit.callbacks` observers
        (``None`` when there are neither, so the loop pays nothing)."""
        verbose = self._verbose_callback()
        if not callbacks.observers():
            return verbose

        def report(n_iter, lower_bound, change):
            if verbose is not None:
                verbose(n_iter, lower_bound, change)
            callbacks.notify(callbacks.FitProgress(
                self, restart, n_restarts, n_iter, self.max_iter, lower_bound, change
            ))

        return report

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
        components = sorted({c for _, comps in result.reseeded for c in comps})
        iterations = [it for it, _ in result.reseeded]
        v.warn(
            f"Component(s) {components} lost all their points (at EM iteration(s) "
            f"{iterations[:10]}{'...' if len(iterations) > 10 else ''} of restart {init}) and "
            "were re-seeded at the worst-explained sample. This suggests more components than "
            "the data supports: try fewer components.",
            ComponentReseedWarning,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


# ====================================================================== helpers
def sum_statistics(chunks: DataChunks, family, resp_of, reference=None) -> dict:
    """Family statistics of the (weighted) data under given responsibilities, summed.

    ``resp_of(X, start)`` gives the responsibilities of the raw chunk starting at row ``start``;
    ``reference`` is passed to families whose statistics are centred on one (Gaussian).
    """
    total: dict = {}
    start = 0
    for X, w in chunks.iter_weighted():
        resp = resp_of(X, start)
        if w is not None:
            resp = resp * w[:, None]
        ref = family.default_reference(resp.shape[1], X) if reference is None else reference
        ref = None if ref is None else ref.to(dtype=X.dtype)
        stats = family.statistics(family.features(X), resp, ref, None)
        for key, value in stats.items():
            total[key] = total[key] + value if key in total else value
        start += X.shape[0]
    return total


def _random_resp(n: int, k: int, generator, dtype) -> torch.Tensor:
    r = torch.rand(n, k, generator=generator, dtype=torch.float64, device=generator.device)
    return (r / r.sum(1, keepdim=True)).to(dtype)


def all_ones(X: torch.Tensor, start: int) -> torch.Tensor:
    """Responsibilities of a single component: every row belongs to it."""
    return torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)


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
    if positive == 0:
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
