"""``lvmkit.GaussianMixture``: scikit-learn's estimator, fitted by EM in PyTorch."""

from __future__ import annotations

import numpy as np
import torch

from lvmkit import _validation as v
from lvmkit._persist import register
from lvmkit.data.chunks import DataChunks
from lvmkit.distributed import LOCAL
from lvmkit.estimators import _ranks as ranks
from lvmkit.estimators._mixture import (
    RESP_INITS,
    BaseMixture,
    as_float64,
    check_representable,
    common_constraints,
    expect_shape,
)
from lvmkit.families.gaussian import COVARIANCE_TYPES, Gaussian, GaussianParams
from lvmkit.models import gaps
from lvmkit.models.mixture import MixtureParams

INIT_PARAMS = RESP_INITS + ("lecture",)


@register
class GaussianMixture(BaseMixture):
    """Gaussian mixture model fitted by expectation-maximisation, on CPU or GPU.

    A drop-in for :class:`sklearn.mixture.GaussianMixture`: the same parameters, attributes and
    methods, plus ``device``, ``dtype``, ``chunk_size``, ``algorithm`` and ``sample_weight`` in
    ``fit``. EM raises the evidence lower bound; with the exact posterior in the E-step the bound
    equals the log-likelihood, so ``lower_bound_`` is the mean log-likelihood per sample (nats)
    of the best restart.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components K.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        'full': each component its own covariance matrix; 'tied': one shared matrix; 'diag':
        each component a diagonal matrix; 'spherical': each component a single variance.
    tol : float, default=1e-3
        Fitting stops when the lower bound (mean log-likelihood per sample) changes by less.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance, keeping them positive definite.
    max_iter : int, default=100
        Iterations per initialisation.
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

        For data streamed from disk, the seeds (k-means++, Lloyd's iterations, random rows) come
        from a uniform reservoir sample of at most 131,072 rows drawn in one pass (all rows, in
        order, when there are no more), and every row's initial label is its nearest seed.
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
    algorithm : {'em', 'gem', 'gradient', 'stepwise'}, default='em'
        'em': closed-form M-step. 'gem' (generalised EM): the same E-step, then ``gem_steps``
        gradient-ascent steps on the expected complete-data log-likelihood. 'gradient':
        gradient ascent on the log-likelihood itself, one step per pass over the data. The
        gradient algorithms move the weights (softmax logits), means and log-diagonal Cholesky
        factors of the precisions, with backtracking so no step lowers its objective.
        'stepwise': stepwise (online) EM, one M-step per mini-batch of ``batch_size`` rows;
        ``max_iter`` then counts passes over the data (see ``partial_fit``).
    gem_steps : int, default=10
        Gradient steps per iteration of 'gem'.
    learning_rate : float, default=1.0
        Initial step size of the gradient algorithms (adapted by backtracking).
    device : str or torch.device, optional
        Where computation runs. Default: a tensor input's own device, else the CPU.
    dtype : {'float32', 'float64'}, default='float32'
        Compute dtype of the E-step. Statistics are accumulated and the M-step solved in float64
        either way; 'float64' reproduces scikit-learn's arithmetic.
    chunk_size : int, optional
        Rows per E-step chunk. Default: sized so a chunk's working memory (about N·K·D values
        for full covariances) is 16 MiB on a CPU and 512 MiB on a GPU. The fit is the same for
        every chunk size, up to the order of floating-point sums.
    batch_size : int, default=10000
        Rows per mini-batch of ``algorithm='stepwise'``.
    learning_decay, learning_offset : float, default=0.6, 2.0
        Stepwise EM's step size γ_t = (t + learning_offset)^(−learning_decay) (Cappé & Moulines
        2009), used by ``partial_fit`` and ``algorithm='stepwise'``; 0.5 < learning_decay <= 1.

    Attributes
    ----------
    weights_ : ndarray (K,)
    means_ : ndarray (K, D)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shapes as precisions_init. precisions = precisions_cholesky @ precisions_cholesky.T.
    converged_ : bool
    n_iter_ : int
        Iterations of the best restart.
    lower_bound_ : float
        Mean log-likelihood per sample (nats) at the last iteration of the best restart.
    lower_bounds_ : list of float
        The lower bound at every iteration of the best restart.
    lower_bound_seconds_ : ndarray (n_iter_,)
        Wall-clock seconds since the start of that restart's iterations when each entry of
        ``lower_bounds_`` was recorded (for curves against time).
    restarts_ : ndarray (n_init,)
        Final lower bound of every restart, in order: different starts reach different optima.
    shift_ : ndarray (D,)
        The float64 centre (the data's mean, from one streaming pass) the data were shifted by
        before the cast to the compute dtype; prediction shifts by it too, so values near 1e8 keep
        their precision in float32.
    n_features_in_ : int
    feature_names_in_ : ndarray, only when fitted on a DataFrame with string column names.

    Notes
    -----
    As in scikit-learn, the bound recorded for iteration t is evaluated with the parameters
    entering iteration t, so ``lower_bound_`` describes the parameters before the last M-step;
    ``score(X)`` evaluates the returned parameters.

    Missing values: NaN in an in-memory ``X`` (missing at random) is marginalized exactly, for
    every covariance type. ``fit`` then maximizes the observed-data likelihood
    Σ_n log Σ_k π_k N(x_n,o | μ_k,o, Σ_k,oo) of each row's observed coordinates o (EM with the
    expected sufficient statistics; ``lower_bound_`` and ``lower_bounds_`` are that
    log-likelihood per sample, and never decrease), after initialising (``init_params``) on the
    rows with every gap filled by its column's mean. ``score_samples``, ``score``, ``predict``,
    ``predict_proba``, ``bic`` and ``aic`` use the observed coordinates of each row, and
    :meth:`impute` fills the gaps with their conditional mean. A row with no observed value
    has likelihood 1 (``score_samples`` 0), is left out of the fit (and of ``lower_bound_``'s
    average), has posterior ``weights_`` and imputes to the mixture's mean; a column that no
    row observes is an error. 'full' and 'tied' factorise each row's block of missing
    coordinates (in float64, whatever ``dtype``), so rows with many gaps cost more; 'gem' and
    'gradient' need complete rows, and data on disk may not hold NaN.
    """

    _constraints = {
        **common_constraints(INIT_PARAMS),
        "covariance_type": v.Options(COVARIANCE_TYPES),
        "reg_covar": v.Interval(0, None),
        "means_init": v.any_of(v.NONE, v.ARRAY_LIKE, description="None or an array-like"),
        "precisions_init": v.any_of(v.NONE, v.ARRAY_LIKE, description="None or an array-like"),
    }
    _missing_values = True  # NaN in X is a missing value, marginalized (see Notes)
    _hints = {
        **BaseMixture._hints,
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
        algorithm="em",
        gem_steps=10,
        learning_rate=1.0,
        device=None,
        dtype="float32",
        chunk_size=None,
        batch_size=10_000,
        learning_decay=0.6,
        learning_offset=2.0,
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
        self.algorithm = algorithm
        self.gem_steps = gem_steps
        self.learning_rate = learning_rate
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.batch_size = batch_size
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    # ================================================================== missing values
    def impute(self, X) -> np.ndarray:
        """``X`` (n_samples, n_features) with every missing value (NaN) replaced by its
        conditional mean under the fitted mixture, as a new float64 NumPy array.

        For a row with observed coordinates o and missing ones m,
        E[x_m | x_o] = Σ_k p(k | x_o) (μ_k,m + Σ_k,mo Σ_k,oo⁻¹ (x_o − μ_k,o)) (for 'diag' and
        'spherical' the last term is 0). Observed values, and rows without NaN, are returned
        unchanged; a row with no observed value gets the mixture's mean Σ_k π_k μ_k.
        """
        X = self._check_predict_X(X)
        out = np.array(v.to_numpy(X) if isinstance(X, torch.Tensor) else X, dtype=np.float64)
        gap = np.isnan(out)
        rows = np.flatnonzero(gap.any(1))
        if rows.size == 0:
            return out
        dtype = v.resolve_dtype(self.dtype)
        device = v.resolve_device(self.device, X)
        model, params, shift = self._prediction_model(device, dtype, missing=True)
        chunks = DataChunks(
            out[rows],
            shift,
            dtype,
            device,
            self.chunk_size,
            self._bytes_per_row(out.shape[1], dtype),
            transform=model.features,
        )
        filled = np.concatenate(
            [v.to_numpy(model.conditional_mean(c, params) + shift) for c in chunks]
        )
        part = out[rows]
        part[gap[rows]] = filled[gap[rows]]
        out[rows] = part
        return out

    def _any_missing(self, data, comm=LOCAL) -> bool:
        missing = gaps.has_missing(data)
        return bool(comm.max(missing)) if comm.active else missing

    def _mixture_model(self, family, dtype, missing=False, running=None):
        if missing or gaps.gap_layout(running):
            return gaps.GapMixture(family, self.n_components, dtype)
        return super()._mixture_model(family, dtype)

    # ================================================================== hooks
    def _make_family(self) -> Gaussian:
        return Gaussian(self.covariance_type, self.reg_covar)

    def _data_shift(self, data, weights, device, comm=LOCAL, missing=False) -> torch.Tensor:
        """The data's mean (float64, one streaming pass over data on disk; over every rank's
        rows, merged in rank order, when ``comm`` spans several processes); with ``missing``
        values, each column's mean over its observed values."""
        if missing:
            names = getattr(self, "feature_names_in_", None)
            mean, variance = gaps.observed_moments(data, weights, comm, names)
        else:
            mean, variance = ranks.moments(data, comm)
        check_representable(
            float(np.sqrt(np.max(variance, initial=0.0))),
            len(mean),
            self.dtype,
            "largest feature standard deviation",
        )
        self._warn_if_reg_covar_dominates(torch.as_tensor(variance))
        return torch.as_tensor(mean, dtype=torch.float64, device=device)

    def _prediction_shift(self, device) -> torch.Tensor:
        """The fit's shift (``shift_``); for a model restored from attributes without it, the
        mixture's mean Σ π_k μ_k, which EM makes equal to the data's mean."""
        shift = getattr(self, "shift_", None)
        if shift is None:
            shift = self.weights_ @ self.means_
        return torch.as_tensor(shift, dtype=torch.float64, device=device)

    def _bytes_per_row(self, n_features: int, dtype: torch.dtype) -> int:
        k, d = self.n_components, n_features
        item = torch.finfo(dtype).bits // 8
        per = {"full": 2 * k * d + 4 * k, "tied": 2 * d + 6 * k}
        return item * per.get(self.covariance_type, 3 * d + 6 * k) + 8 * (k + 2 * d)

    def _check_user_init(self, family: Gaussian, n_features: int, device) -> dict:
        """Validate means_init and precisions_init (float64 tensors on ``device``)."""
        k, d = self.n_components, n_features
        out = {}
        f64 = dict(dtype=torch.float64, device=device)
        if self.means_init is not None:
            m = as_float64(self.means_init, "means_init")
            expect_shape(m, (k, d), "means_init", "(n_components, n_features)")
            out["means"] = torch.as_tensor(m, **f64)
        if self.precisions_init is not None:
            p = as_float64(self.precisions_init, "precisions_init")
            ct = self.covariance_type
            shape, label = {
                "full": ((k, d, d), "(n_components, n_features, n_features)"),
                "tied": ((d, d), "(n_features, n_features)"),
                "diag": ((k, d), "(n_components, n_features)"),
                "spherical": ((k,), "(n_components,)"),
            }[ct]
            expect_shape(p, shape, "precisions_init", f"{label} for covariance_type={ct!r}")
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

    def _after_gradient_step(self, components: GaussianParams) -> GaussianParams:
        components.covariances = Gaussian.covariances_from_cholesky(
            components.precisions_cholesky, self.covariance_type
        )
        return components

    def _store(self, params: MixtureParams, shift: torch.Tensor) -> None:
        components = params.components
        P = components.precisions_cholesky
        if components.covariances is None:
            components.covariances = Gaussian.covariances_from_cholesky(P, self.covariance_type)
        self.weights_ = v.to_numpy(params.weights)
        self.means_ = v.to_numpy(components.means + shift)
        self.shift_ = v.to_numpy(shift)
        self.covariances_ = v.to_numpy(components.covariances)
        self.precisions_cholesky_ = v.to_numpy(P)
        self.precisions_ = v.to_numpy(Gaussian.precisions_from_cholesky(P, self.covariance_type))

    def _fitted_parameters(self, shift: torch.Tensor, device) -> MixtureParams:
        f64 = dict(dtype=torch.float64, device=device)
        weights = torch.as_tensor(self.weights_, **f64)
        means = torch.as_tensor(self.means_, **f64) - shift
        P = torch.as_tensor(self.precisions_cholesky_, **f64)
        covariances = torch.as_tensor(self.covariances_, **f64)
        return MixtureParams(weights, GaussianParams(means, P, covariances=covariances))

    def _n_family_parameters(self, n_features: int) -> int:
        return self._make_family().n_parameters(self.n_components, n_features)

    def _sample_family(self, labels, generator):
        return self._make_family().sample(
            labels,
            torch.as_tensor(self.means_, dtype=torch.float64),
            torch.as_tensor(self.covariances_, dtype=torch.float64),
            generator,
        )

    def _warn_if_reg_covar_dominates(self, variance: torch.Tensor) -> None:
        largest = float(variance.max())
        if self.reg_covar > 0 and largest < self.reg_covar:
            v.warn(
                f"reg_covar={self.reg_covar:g} exceeds the variance of every feature of X "
                f"(largest {largest:.3g}): the fitted covariances will reflect reg_covar, not the "
                "data. Standardize X (e.g. sklearn.preprocessing.StandardScaler) or lower "
                "reg_covar.",
                UserWarning,
            )
