"""``lvmkit.GaussianMixture``: scikit-learn's estimator, fitted by EM in PyTorch."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from lvmkit import _validation as v
from lvmkit.families.gaussian import COVARIANCE_TYPES, EPS_NK, Gaussian, GaussianParams
from lvmkit.fit import init as initialization
from lvmkit.fit.em import DataChunks, EMResult, run_em
from lvmkit.models.mixture import ChunkStatistics, Mixture

INIT_PARAMS = ("kmeans", "kmeans++", "k-means++", "random", "random_from_data", "lecture")


class ComponentReseedWarning(UserWarning):
    """A mixture component lost all its points and was re-seeded."""


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture model fitted by expectation-maximisation, on CPU or GPU.

    A drop-in for :class:`sklearn.mixture.GaussianMixture`: the same parameters, attributes and
    methods, plus ``device``, ``dtype`` and ``chunk_size``. EM raises the evidence lower bound;
    with the exact posterior in the E-step the bound equals the log-likelihood, so
    ``lower_bound_`` is the mean log-likelihood per sample (nats) of the best restart.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components K.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        'full': each component its own covariance matrix; 'tied': one shared matrix; 'diag':
        each component a diagonal matrix; 'spherical': each component a single variance.
    tol : float, default=1e-3
        EM stops when the lower bound (mean log-likelihood per sample) changes by less.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance, keeping them positive definite.
    max_iter : int, default=100
        EM iterations per initialisation.
    n_init : int, default=1
        Number of initialisations (restarts); the best is kept and every restart's final lower
        bound is in ``restarts_``.
    init_params : {'kmeans', 'kmeans++', 'random', 'random_from_data', 'lecture'}, default='kmeans'
        How the responsibilities, hence the parameters, are initialised:

        - 'kmeans': hard labels of Lloyd's k-means (k-means++ seeded), run in torch on the device;
        - 'kmeans++' (or 'k-means++'): hard labels of the nearest k-means++ seed;
        - 'random': random soft responsibilities (every component starts near the global mean,
          a symmetric saddle that a loose ``tol`` may mistake for convergence);
        - 'random_from_data': hard labels of the nearest of K distinct random data points;
        - 'lecture': uniform mixing proportions, means at K random data points, every
          component's covariance the single-Gaussian estimate from all the data (the textbook
          initialisation; for 'diag' and 'spherical' the matching diagonal or mean variance).

        Ignored when weights_init, means_init and precisions_init are all given.
    weights_init : array-like (K,), optional
    means_init : array-like (K, D), optional
    precisions_init : array-like, optional
        Inverse covariances: (K,) spherical, (D, D) tied, (K, D) diag, (K, D, D) full.
    random_state : int, RandomState or None
    warm_start : bool, default=False
        Continue from the fitted parameters on the next ``fit`` (one initialisation).
    verbose : int, default=0
        1 prints the initialisation and iteration numbers, 2 adds time and bound change.
    verbose_interval : int, default=10
        Iterations between two verbose lines.
    device : str or torch.device, optional
        Where EM runs. Default: a tensor input's own device, else the CPU.
    dtype : {'float32', 'float64'}, default='float32'
        Compute dtype of the E-step. Statistics are accumulated and the M-step solved in float64
        either way; 'float64' reproduces scikit-learn's arithmetic.
    chunk_size : int, optional
        Rows per E-step chunk. Default: sized so a chunk's working memory (about N·K·D values
        for full covariances) is 16 MiB on a CPU and 512 MiB on a GPU. The fit is the same for
        every chunk size, up to the order of floating-point sums.

    Attributes
    ----------
    weights_ : ndarray (K,)
    means_ : ndarray (K, D)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shapes as precisions_init. precisions = precisions_cholesky @ precisions_cholesky.T.
    converged_ : bool
    n_iter_ : int
        EM iterations of the best restart.
    lower_bound_ : float
        Mean log-likelihood per sample (nats) at the last iteration of the best restart.
    lower_bounds_ : list of float
        The lower bound at every iteration of the best restart.
    restarts_ : ndarray (n_init,)
        Final lower bound of every restart, in order: different starts reach different optima.
    n_features_in_ : int
    feature_names_in_ : ndarray, only when fitted on a DataFrame with string column names.

    Notes
    -----
    As in scikit-learn, the bound recorded for iteration t is evaluated with the parameters
    entering iteration t, so ``lower_bound_`` describes the parameters before the last M-step;
    ``score(X)`` evaluates the returned parameters.
    """

    _constraints = {
        "n_components": v.Interval(1, None, integer=True),
        "covariance_type": v.Options(COVARIANCE_TYPES),
        "tol": v.Interval(0, None),
        "reg_covar": v.Interval(0, None),
        "max_iter": v.Interval(0, None, integer=True),
        "n_init": v.Interval(1, None, integer=True),
        "init_params": v.Options(INIT_PARAMS),
        "weights_init": v.any_of(v.NONE, v.ARRAY_LIKE, description="None or an array-like"),
        "means_init": v.any_of(v.NONE, v.ARRAY_LIKE, description="None or an array-like"),
        "precisions_init": v.any_of(v.NONE, v.ARRAY_LIKE, description="None or an array-like"),
        "random_state": v.RANDOM_STATE,
        "warm_start": v.BOOL,
        "verbose": v.Interval(0, None, integer=True),
        "verbose_interval": v.Interval(1, None, integer=True),
        "device": v.DEVICE,
        "dtype": v.Options(("float32", "float64", torch.float32, torch.float64)),
        "chunk_size": v.any_of(
            v.NONE, v.Interval(1, None, integer=True), description="None or an int >= 1"
        ),
    }
    _hints = {
        "covariance_type": "'full' is the most flexible; 'diag' is faster for many features.",
        "init_params": "'kmeans' is the usual choice; 'lecture' is the textbook initialisation.",
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        device=None,
        dtype="float32",
        chunk_size=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size

    # ================================================================== fitting
    def fit(self, X, y=None):
        """Fit the mixture by EM (``n_init`` restarts, the best kept). Returns ``self``."""
        self._fit(X)
        return self

    def fit_predict(self, X, y=None):
        """Fit, then return the most probable component of every sample of ``X``."""
        chunks = self._fit(X)
        return self._predict_chunks(chunks)

    def _fit(self, X) -> DataChunks:
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
        dtype = v.resolve_dtype(self.dtype)
        device = v.resolve_device(self.device, X)
        family = Gaussian(self.covariance_type, self.reg_covar)
        user_init = self._check_user_init(family, n_features, device)

        shift, variance = _mean_and_variance(X, device)
        self._warn_if_reg_covar_dominates(variance)
        chunks = DataChunks(
            X, shift, dtype, device, self.chunk_size, self._bytes_per_row(n_features, dtype)
        )
        em_chunks = chunks.mapped(family.features)

        continuing = self.warm_start and hasattr(self, "converged_")
        n_init = 1 if continuing else self.n_init
        rng = check_random_state(self.random_state)
        best: tuple | None = None
        restarts = []
        for init in range(n_init):
            if self.verbose:
                print(f"Initialization {init}")
            if continuing:
                weights, params = self._fitted_parameters(shift, device)
                covariances = torch.as_tensor(self.covariances_, dtype=torch.float64, device=device)
            else:
                weights, params, covariances = self._initialize(chunks, family, user_init, rng)
            model = Mixture(family, weights, params, dtype)
            model.covariances = covariances
            result = run_em(
                model,
                em_chunks,
                self._m_step,
                self.max_iter,
                self.tol,
                lower_bound=self.lower_bound_ if continuing else -math.inf,
                on_iteration=self._verbose_callback(),
            )
            final = result.lower_bounds[-1] if result.lower_bounds else -math.inf
            restarts.append(final)
            self._report_reseeding(result, init)
            if self.verbose:
                state = "converged" if result.converged else "did not converge"
                print(f"Initialization {state}. time lapse {result.seconds:.5f}s\t lower bound {final:.5f}.")
            if best is None or final > best[0]:
                best = (final, model, result)

        final, model, result = best
        self._store(model, result, shift, family)
        self.lower_bound_ = final
        self.restarts_ = np.asarray(restarts, dtype=np.float64)
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                f"Best performing initialization did not converge in max_iter={self.max_iter} "
                f"EM iterations (last change above tol={self.tol}). Increase max_iter or tol, try "
                "other init_params, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return em_chunks

    def _m_step(self, model: Mixture, stats: ChunkStatistics, iteration: int) -> list[int]:
        """Closed-form M-step, re-seeding components that lost their points."""
        weights, means, covariances = model.maximize(stats)
        empty = model.empty_components(stats)
        if empty.numel():
            # Re-seed at the worst-explained sample with the pooled covariance of the others.
            keep = torch.ones_like(weights, dtype=torch.bool)
            keep[empty] = False
            means[empty] = stats.worst_point.to(means.device)
            if self.covariance_type != "tied":
                w = weights[keep] / weights[keep].sum() if bool(keep.any()) else None
                pooled = (
                    torch.tensordot(w, covariances[keep], dims=1)
                    if w is not None
                    else covariances.mean(0)
                )
                covariances[empty] = pooled
            weights[empty] = 1.0 / len(weights)
            weights = weights / weights.sum()
        P, covariances = model.family.precisions_cholesky(covariances)
        model.set_parameters(weights, GaussianParams(means, P))
        model.covariances = covariances
        return empty.tolist()

    # ================================================================== initialisation
    def _initialize(self, chunks: DataChunks, family: Gaussian, user_init: dict, rng):
        """Initial (weights, params, covariances) in shifted coordinates, float64."""
        k = self.n_components
        device = chunks.device
        shift = chunks.shift
        if all(user_init.get(name) is not None for name in ("weights", "means", "P")):
            P = user_init["P"]
            return user_init["weights"], GaussianParams(user_init["means"] - shift, P), _covariances_from_cholesky(P, self.covariance_type)

        generator = torch.Generator(device=device)
        generator.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        method = self.init_params
        ct = family.covariance_type
        if method == "lecture":
            weights = torch.full((k,), 1.0 / k, dtype=torch.float64, device=device)
            means = initialization.random_rows(chunks, k, generator).to(torch.float64)
            # The single-Gaussian estimate from all data ('tied' uses the full-covariance one).
            single = Gaussian("full" if ct == "tied" else ct, self.reg_covar)
            stats = _sum_statistics(chunks, single, _all_ones)
            _, cov = single.maximize(stats, _reference_at(stats))
            covariances = cov[0] if ct == "tied" else cov.expand(k, *cov.shape[1:]).clone()
        else:
            resp_of = self._initial_responsibilities(chunks, generator, method)
            stats = _sum_statistics(chunks, family, resp_of)
            if ct == "full":
                # Second pass: centre the scatter on the first pass's means.
                stats = _sum_statistics(chunks, family, resp_of, _reference_at(stats))
            reference = _reference_at(stats)
            nk = stats["nk"] + EPS_NK
            weights = nk / nk.sum()
            means, covariances = family.maximize(stats, reference)

        if user_init.get("weights") is not None:
            weights = user_init["weights"]
        if user_init.get("means") is not None:
            means = user_init["means"] - shift
        if user_init.get("P") is not None:
            P = user_init["P"]
            covariances = _covariances_from_cholesky(P, self.covariance_type)
        else:
            P, covariances = family.precisions_cholesky(covariances)
        return weights, GaussianParams(means, P), covariances

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

    def _check_user_init(self, family: Gaussian, n_features: int, device) -> dict:
        """Validate weights_init, means_init, precisions_init (float64 tensors on ``device``)."""
        k, d = self.n_components, n_features
        out = {}
        f64 = dict(dtype=torch.float64, device=device)
        if self.weights_init is not None:
            w = _as_float64(self.weights_init, "weights_init")
            _expect_shape(w, (k,), "weights_init", "(n_components,)")
            if (w < 0).any() or (w > 1).any() or not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
                raise ValueError(
                    "weights_init must be non-negative and sum to 1 (mixing proportions); got "
                    f"min {w.min():.3g}, max {w.max():.3g}, sum {w.sum():.6f}. Normalise it: "
                    "weights_init / weights_init.sum()."
                )
            out["weights"] = torch.as_tensor(w / w.sum(), **f64)
        if self.means_init is not None:
            m = _as_float64(self.means_init, "means_init")
            _expect_shape(m, (k, d), "means_init", "(n_components, n_features)")
            out["means"] = torch.as_tensor(m, **f64)
        if self.precisions_init is not None:
            p = _as_float64(self.precisions_init, "precisions_init")
            ct = self.covariance_type
            shape, label = {
                "full": ((k, d, d), "(n_components, n_features, n_features)"),
                "tied": ((d, d), "(n_features, n_features)"),
                "diag": ((k, d), "(n_components, n_features)"),
                "spherical": ((k,), "(n_components,)"),
            }[ct]
            _expect_shape(p, shape, "precisions_init", f"{label} for covariance_type={ct!r}")
            if ct in ("full", "tied"):
                if not np.allclose(p, np.swapaxes(p, -1, -2), rtol=1e-8, atol=1e-12):
                    raise ValueError(
                        "precisions_init must be symmetric; the given matrices are not. Pass "
                        "inverse covariance matrices, e.g. np.linalg.inv(covariances)."
                    )
            elif (p <= 0).any():
                raise ValueError(
                    f"precisions_init must be positive for covariance_type={ct!r}; got a minimum "
                    f"of {p.min():.3g}. Pass inverse variances, e.g. 1 / variances."
                )
            out["P"] = family.precisions_cholesky_from_precisions(torch.as_tensor(p, **f64))
        return out

    # ================================================================== state
    def _store(self, model: Mixture, result: EMResult, shift: torch.Tensor, family: Gaussian):
        P = model.params.precisions_cholesky
        self.weights_ = v.to_numpy(model.weights)
        self.means_ = v.to_numpy(model.params.means + shift)
        self.covariances_ = v.to_numpy(model.covariances)
        self.precisions_cholesky_ = v.to_numpy(P)
        self.precisions_ = v.to_numpy(family.precisions_from_cholesky(P, self.covariance_type))
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bounds_ = list(result.lower_bounds)

    def _fitted_parameters(self, shift: torch.Tensor, device):
        weights = torch.as_tensor(self.weights_, dtype=torch.float64, device=device)
        means = torch.as_tensor(self.means_, dtype=torch.float64, device=device) - shift
        P = torch.as_tensor(self.precisions_cholesky_, dtype=torch.float64, device=device)
        return weights, GaussianParams(means, P)

    def _bytes_per_row(self, n_features: int, dtype: torch.dtype) -> int:
        k, d = self.n_components, n_features
        item = torch.finfo(dtype).bits // 8
        per = {"full": 2 * k * d + 4 * k, "tied": 2 * d + 6 * k, "diag": 3 * d + 6 * k}
        return item * per.get(self.covariance_type, 3 * d + 6 * k) + 8 * (k + 2 * d)

    # ================================================================== prediction
    def _prediction_chunks(self, X) -> tuple[Mixture, DataChunks]:
        v.check_fitted(self)
        X = v.check_X(self, X, reset=False)
        dtype = v.resolve_dtype(self.dtype)
        device = v.resolve_device(self.device, X)
        shift = torch.as_tensor(self.weights_ @ self.means_, dtype=torch.float64, device=device)
        weights, params = self._fitted_parameters(shift, device)
        model = Mixture(Gaussian(self.covariance_type, self.reg_covar), weights, params, dtype)
        chunks = DataChunks(
            X, shift, dtype, device, self.chunk_size, self._bytes_per_row(X.shape[1], dtype),
            transform=model.family.features,
        )
        return model, chunks

    def _predict_chunks(self, chunks: DataChunks) -> np.ndarray:
        """Labels for data already in fit's E-step chunks (the fitted parameters, fit's shift)."""
        weights, params = self._fitted_parameters(chunks.shift, chunks.device)
        model = Mixture(Gaussian(self.covariance_type, self.reg_covar), weights, params, chunks.dtype)
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
        family = Gaussian(self.covariance_type, self.reg_covar)
        X = family.sample(
            labels,
            torch.as_tensor(self.means_, dtype=torch.float64),
            torch.as_tensor(self.covariances_, dtype=torch.float64),
            generator,
        )
        return v.to_numpy(X), labels.numpy()

    def _n_parameters(self) -> int:
        family = Gaussian(self.covariance_type, self.reg_covar)
        return family.n_parameters(self.n_components, self.means_.shape[1]) + self.n_components - 1

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X``: −2 log L + p log N (lower is better)."""
        n = _n_rows(X)
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X``: −2 log L + 2 p (lower is better)."""
        return -2 * self.score(X) * _n_rows(X) + 2 * self._n_parameters()

    # ================================================================== reporting
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
                print(f"  Iteration {n_iter}\t time lapse {now - last[0]:.5f}s\t ll change {change:.5f}")
                last[0] = now

        return report

    def _report_reseeding(self, result: EMResult, init: int) -> None:
        if not result.reseeded:
            return
        components = sorted({c for _, comps in result.reseeded for c in comps})
        iterations = [it for it, _ in result.reseeded]
        warnings.warn(
            f"Component(s) {components} lost all their points (at EM iteration(s) "
            f"{iterations[:10]}{'...' if len(iterations) > 10 else ''} of restart {init}) and "
            "were re-seeded at the worst-explained sample. This suggests more components than "
            "the data supports: try fewer components.",
            ComponentReseedWarning,
            stacklevel=4,
        )

    def _warn_if_reg_covar_dominates(self, variance: torch.Tensor) -> None:
        largest = float(variance.max())
        if self.reg_covar > 0 and largest < self.reg_covar:
            warnings.warn(
                f"reg_covar={self.reg_covar:g} exceeds the variance of every feature of X "
                f"(largest {largest:.3g}): the fitted covariances will reflect reg_covar, not the "
                "data. Standardize X (e.g. sklearn.preprocessing.StandardScaler) or lower reg_covar.",
                UserWarning,
                stacklevel=4,
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


# ====================================================================== helpers
def _n_rows(X) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def _mean_and_variance(X, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and variance in float64, a block at a time (X may be memory-mapped)."""
    n = X.shape[0]
    step = max(1, 2**22 // max(X.shape[1], 1))
    total = None
    for start in range(0, n, step):
        block = v.as_tensor(X[start : start + step], device)
        s = block.sum(0)
        total = s if total is None else total + s
    mean = total / n
    sq = None
    for start in range(0, n, step):
        block = v.as_tensor(X[start : start + step], device)
        s = (block - mean).square().sum(0)
        sq = s if sq is None else sq + s
    return mean, sq / n


def _sum_statistics(chunks: DataChunks, family: Gaussian, resp_of, reference=None) -> dict:
    """Family statistics of the data under given responsibilities, summed over chunks.

    ``reference`` defaults to identity whitening at the origin (the data's shift).
    """
    total: dict = {}
    start = 0
    for X in chunks:
        resp = resp_of(X, start)
        ref = reference
        if ref is None:
            ref = _identity_reference(resp.shape[1], X.shape[1], X.dtype, X.device)
        stats = family.statistics(family.features(X), resp, ref.to(dtype=X.dtype), None)
        for key, value in stats.items():
            total[key] = total[key] + value if key in total else value
        start += X.shape[0]
    return total


def _identity_reference(k: int, d: int, dtype, device) -> GaussianParams:
    eye = torch.eye(d, dtype=dtype, device=device).expand(k, d, d).contiguous()
    return GaussianParams(torch.zeros(k, d, dtype=dtype, device=device), eye)


def _reference_at(stats: dict) -> GaussianParams:
    """Identity-whitening reference centred on the statistics' own means (float64)."""
    nk = stats["nk"] + EPS_NK
    means = stats["sx"] / nk[:, None]
    ref = _identity_reference(means.shape[0], means.shape[1], torch.float64, means.device)
    return GaussianParams(means, ref.precisions_cholesky)


def _all_ones(X: torch.Tensor, start: int) -> torch.Tensor:
    return torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)


def _random_resp(n: int, k: int, generator, dtype) -> torch.Tensor:
    r = torch.rand(n, k, generator=generator, dtype=torch.float64, device=generator.device)
    return (r / r.sum(1, keepdim=True)).to(dtype)


def _covariances_from_cholesky(P: torch.Tensor, covariance_type: str) -> torch.Tensor:
    if covariance_type in ("diag", "spherical"):
        return P.square().reciprocal()
    eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    L = torch.linalg.solve_triangular(P, eye.expand_as(P), upper=True).mT
    return L @ L.mT


def _as_float64(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric; could not convert it ({exc}).") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; give finite values.")
    return arr


def _expect_shape(arr: np.ndarray, shape: tuple, name: str, label: str) -> None:
    if arr.shape != shape:
        raise ValueError(
            f"{name} must have shape {label} = {shape}; got {arr.shape}. Check n_components "
            "and the number of features of X."
        )
