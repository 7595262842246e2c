"""What the linear-Gaussian latent variable models share: x = W z + μ + ε, z ~ N(0, I_q),
ε ~ N(0, Ψ) with Ψ diagonal (factor analysis) or σ² I (probabilistic PCA).

Then x ~ N(μ, C), C = W Wᵀ + Ψ, and the posterior p(z | x) = N(G Wᵀ Ψ⁻¹ (x − μ), G) with
G = (I + Wᵀ Ψ⁻¹ W)⁻¹ is exact. For complete data both models depend on the rows only through N,
Σ x and Σ x xᵀ: :func:`second_moments` gathers them in one pass of additive statistics, in chunks
and summed over processes (:mod:`lvmkit.distributed`), as the mixtures' E-steps do, and the fits
work on the D × D covariance from there. A subclass sets ``mean_``, ``loadings_`` (D, q) and a
per-feature ``_noise()`` (D,); densities, posteriors, sampling and model files are here.

With missing values (NaN) the moments are not enough: :func:`fit_em` runs the EM of
:class:`lvmkit.models.factor.FactorMixture` (the mixtures of factor analyzers' model, K = 1 here)
on the rows, which marginalizes each row's gaps exactly; the same posteriors give the observed
rows' densities, latent coordinates and imputations of every linear-Gaussian model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from lvmkit import _validation as v
from lvmkit import distributed
from lvmkit._persist import Persistent, learned_state
from lvmkit.data.chunks import DataChunks
from lvmkit.estimators import _ranks as ranks
from lvmkit.estimators._mixture import _atomic, _check_sample_weight, _generator
from lvmkit.fit import callbacks
from lvmkit.fit.em import best_of_restarts, e_pass, run_em
from lvmkit.fit.stepwise import Batch, StepwiseState, stepwise_step
from lvmkit.models import factor
from lvmkit.models.mixture import initial_responsibilities
from lvmkit.models.stats import Stats

f64 = torch.float64


def checked_rows(estimator, X, sample_weight, comm, allow_nan: bool = True, reset=True):
    """``(rows, weights)``: ``X`` checked (NaN allowed where the model marginalizes it; sets
    ``n_features_in_`` unless ``reset`` is False) and its sample weights, with every rank
    agreeing before any pass."""

    def prepare():
        least = 0 if comm.active else (2 if reset else 1)
        rows = v.check_X(estimator, X, reset=reset, min_samples=least, allow_nan=allow_nan)
        return rows, _check_sample_weight(sample_weight, rows.shape[0], 0)

    return ranks.prepare_together(comm, estimator, prepare)[0]


def second_moments(rows, weights, comm, device, chunk_size):
    """``(n, mean (D,), S (D, D))``: the total weight, the weighted mean and the covariance over
    ``n`` (maximum likelihood, not n − 1) of the rows of every rank, float64."""
    d = rows.shape[1]
    device = v.resolve_device(device, rows)
    # a provisional centre (one pass), so the second moments are accumulated centred
    centre = torch.as_tensor(ranks.moments(rows, comm)[0], dtype=f64, device=device)
    chunks = DataChunks(rows, centre, f64, device, chunk_size, 16 * d, weights=weights)
    zero = dict(dtype=f64, device=device)
    total = Stats(
        n=torch.zeros((), **zero), s1=torch.zeros(d, **zero), s2=torch.zeros(d, d, **zero)
    )
    for x, w in chunks.iter_weighted():
        xw = x if w is None else x * w[:, None]
        n = torch.as_tensor(float(x.shape[0]) if w is None else w.sum(), **zero)
        total = total + Stats(n=n, s1=xw.sum(0), s2=xw.T @ x)
    total = comm.reduce(total)
    n = _positive_total(total.scalar("n"))
    offset = total["s1"] / n
    cov = total["s2"] / n - offset[:, None] * offset[None, :]
    return n, centre + offset, 0.5 * (cov + cov.T)


def _positive_total(n: float) -> float:
    if n <= 0:
        raise ValueError(
            "There are no rows (of positive weight) to fit; give rows of positive weight."
        )
    return n


def observed_moments(rows, weights, comm, device, chunk_size):
    """``(n, count, mean, variance, gaps)``: the total weight, and per feature the weight of the
    observed (non-NaN) values, their mean and variance (float64 (D,) tensors) over the rows of
    every rank, and whether any value is missing. A feature no row observes is an error."""
    d = rows.shape[1]
    device = v.resolve_device(device, rows)
    zero = torch.zeros(d, dtype=f64, device=device)

    def pass_over(centre):
        chunks = DataChunks(
            rows,
            centre,
            f64,
            device,
            chunk_size,
            32 * d,
            transform=factor.features,
            weights=weights,
        )
        total = Stats(n=0.0, count=zero, s1=zero, s2=zero, gaps=0.0)
        for F, w in chunks.iter_weighted():
            x, o = factor.split(F)
            ow = o if w is None else o * w[:, None]
            n = float(F.shape[0]) if w is None else w.sum()
            gaps = (o.numel() - o.sum()).to(f64)
            total = total + Stats(
                n=n, count=ow.sum(0), s1=(ow * x).sum(0), s2=(ow * x.square()).sum(0), gaps=gaps
            )
        return comm.reduce(total)

    first = pass_over(zero)
    _positive_total(first.scalar("n"))
    count = first["count"]
    empty = torch.nonzero(count <= 0).reshape(-1).tolist()
    if empty:
        raise ValueError(
            f"Feature(s) {empty[:10]} have no observed value (every row is missing them, or "
            "only rows of weight 0 hold them), so nothing can be learned about them. Drop those "
            "columns."
        )
    mean = first["s1"] / count
    second = pass_over(mean)
    variance = (second["s2"] / count - (second["s1"] / count).square()).clamp(min=0.0)
    return first.scalar("n"), count, mean, variance, second.scalar("gaps") > 0


class FactorRun:
    """The rows of one fit as :class:`lvmkit.models.factor.FactorMixture` reads them (centred on
    ``shift``, gaps marked), the model, and its starts: ``init`` 'pca' (each component's
    probabilistic-PCA solution of its rows, gaps filled by the column means), a mixture start
    ('kmeans', 'k-means++', 'random_from_data', 'random': the rows' components), or 'random'
    loadings for one component."""

    def __init__(self, estimator, comm, rows, weights, shift, *, k, q, isotropic, floor, gaps):
        self.estimator, self.comm, self.rows, self.weights = estimator, comm, rows, weights
        self.k, self.q, self.isotropic = k, q, isotropic
        self.device = v.resolve_device(estimator.device, rows)
        self.dtype = v.resolve_dtype(estimator.dtype)
        self.shift = shift.to(self.device)
        self.floor = floor.to(self.device)
        d = rows.shape[1]
        self.per_row = (torch.finfo(self.dtype).bits // 8) * (
            4 * d + k * (2 * d + 2 * q * q + 3 * q)
        )
        self.chunks = self._chunks(factor.features)
        self.model = factor.FactorMixture(k, q, isotropic, self.dtype, self.floor, gaps)

    def _chunks(self, transform):
        return DataChunks(
            self.rows,
            self.shift,
            self.dtype,
            self.device,
            self.estimator.chunk_size,
            self.per_row,
            transform=transform,
            weights=self.weights,
        )

    def start(self, init, generator, variance, noise=None) -> factor.FactorParams:
        k, q = self.k, self.q
        if init == "random" and k == 1:
            return factor.random_start(variance, 1, q, generator, self.isotropic, self.floor)
        if init == "pca" or k == 1:
            labels = _one_component
        else:
            filled = self._chunks(lambda X: torch.nan_to_num(X, nan=0.0))
            labels = initial_responsibilities(filled, k, generator, init, self.comm)
        nk, means, cov = factor.filled_moments(self.chunks, labels, k, self.comm)
        params = factor.ppca_start(nk, means, cov, q, self.isotropic, self.floor)
        if noise is not None:  # the user's starting noise variances
            params.noise = noise.to(device=self.device, dtype=f64)[None].expand(k, -1).contiguous()
        return params

    def log_likelihood(self, params) -> float:
        """The mean log-likelihood per sample of the observed values under ``params``."""
        return self.model.bound(e_pass(self.model, self.chunks, params, self.comm))


def fit_em(
    estimator, comm, rows, weights, moments, *, k, q, isotropic, floor, init, tol, noise=None
):
    """EM of :class:`lvmkit.models.factor.FactorMixture` on the rows (gaps marginalized), from
    ``estimator.n_init`` starts (see :class:`FactorRun`); ``tol`` on the mean log-likelihood per
    sample. Returns ``(result, finals, run)``, the best result's parameters in the frame of the
    data minus ``run.shift``."""
    _, _, mean, variance, gaps = moments
    run = FactorRun(
        estimator,
        comm,
        rows,
        weights,
        mean,
        k=k,
        q=q,
        isotropic=isotropic,
        floor=floor,
        gaps=gaps,
    )
    rng = ranks.random_state(getattr(estimator, "random_state", None), comm)
    n_init = getattr(estimator, "n_init", 1)
    verbose = getattr(estimator, "_verbose_printer", lambda *a: None)

    def run_one(i):
        params = run.start(init, _generator(rng, run.device), variance, noise)
        return run_em(
            run.model,
            run.chunks,
            params,
            estimator.max_iter,
            tol,
            on_iteration=callbacks.reporter(
                estimator, i, n_init, estimator.max_iter, verbose(i, n_init)
            ),
            comm=comm,
        )

    best, finals = best_of_restarts(n_init, run_one)
    return best, finals, run


def has_gaps(rows, comm) -> bool:
    """Whether any rank's rows hold a missing value (NaN)."""
    gaps = (
        bool(torch.isnan(rows).any())
        if isinstance(rows, torch.Tensor)
        else bool(np.isnan(rows).any())
    )
    return bool(comm.max(gaps))


def check_not_constant(variance: torch.Tensor, what: str) -> None:
    """Factor analysis's noise of a constant feature would be 0 (an unbounded likelihood)."""
    constant = torch.nonzero(variance <= 0).reshape(-1).tolist()
    if constant:
        raise ValueError(
            f"Feature(s) {constant[:10]} are constant (variance 0), so {what} would give them a "
            "noise variance of 0 and an unbounded likelihood. Drop constant columns (for example "
            "sklearn.feature_selection.VarianceThreshold)."
        )


def _one_component(x, start):
    return torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)


class LatentFactorModel(Persistent, TransformerMixin, BaseEstimator):
    """What every fitted linear-Gaussian model (probabilistic PCA, factor analysis, their
    mixtures) answers from its :class:`lvmkit.models.factor.FactorParams`: densities of the
    observed values, latent coordinates and imputations, for rows with or without gaps (NaN)."""

    #: rows per block of the prediction passes
    _block = 2048

    def fit(self, X, y=None, sample_weight=None):
        """Fit to ``X`` (an array-like (n_samples, n_features) or a tensor; NaN marks a missing
        value, marginalized exactly; a row of weight w counts w times). Under
        ``torch.distributed`` every rank passes its own rows and all end with the fit of all of
        them. A failed fit leaves the model as it was. Returns ``self``."""
        _atomic(self, self._fit_unsafe, X, sample_weight)
        return self

    def _fit_unsafe(self, X, sample_weight):
        v.validate_params(self, self._constraints)
        comm = distributed.current(self.device)
        self.__dict__.pop("_stepwise_", None)  # fit ends any stepwise run
        return ranks.collectively(comm, self._fit_on, comm, X, sample_weight)

    def _fit_on(self, comm, X, sample_weight):
        raise NotImplementedError

    def _factor_params(self) -> factor.FactorParams:
        """The fitted model as (K-component) parameters, float64, in the data's frame."""
        raise NotImplementedError

    def _structure(self, variance: torch.Tensor) -> tuple:
        """``(K, q, isotropic, noise floor (D,))`` of the EM model, given the features'
        variances."""
        raise NotImplementedError

    def _store_params(self, params: factor.FactorParams, shift: torch.Tensor) -> None:
        """Set the fitted attributes from EM's parameters in the frame of the data minus
        ``shift``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ stepwise EM
    def partial_fit(self, X, y=None, sample_weight=None):
        """One step of stepwise (online) EM (Cappé & Moulines 2009) on the mini-batch ``X``
        (NaN allowed): its statistics are blended into running ones with the step
        γ_t = (t + learning_offset)^(−learning_decay) (0.7 and 10 unless the estimator has these
        parameters), then the M-step. The first call starts from the batch (or from ``fit``'s
        parameters when the model is fitted). ``lower_bound_`` is the batch's log-likelihood per
        sample under the parameters entering the step. Returns ``self``."""
        _atomic(self, self._partial_fit_unsafe, X, sample_weight)
        return self

    def _partial_fit_unsafe(self, X, sample_weight):
        v.validate_params(self, self._constraints)
        comm = distributed.current(self.device)
        return ranks.collectively(comm, self._partial_fit_on, comm, X, sample_weight)

    def _partial_fit_on(self, comm, X, sample_weight):
        state = getattr(self, "_stepwise_", None)
        fitted = hasattr(self, "loadings_")
        rows, weights = checked_rows(self, X, sample_weight, comm, reset=not fitted)
        if state is None:  # a new stepwise run
            moments = observed_moments(rows, weights, comm, self.device, self.chunk_size)
            k, q, isotropic, floor = self._structure(moments[3])
            if fitted:
                params = self._factor_params()
                shift = (params.weights[:, None] * params.means).sum(0)
                params = params.shifted(shift)
            else:
                shift = moments[2]
            run = FactorRun(
                self,
                comm,
                rows,
                weights,
                shift,
                k=k,
                q=q,
                isotropic=isotropic,
                floor=floor,
                gaps=True,
            )
            if not fitted:
                rng = ranks.random_state(getattr(self, "random_state", None), comm)
                init = getattr(self, "init_params", "pca")
                params = run.start(init, _generator(rng, run.device), moments[3])
            params = params.to(run.device)
            state = (run.model, run.shift, StepwiseState(), params, run.floor)
        model, shift, stepwise, params, floor = state
        run = FactorRun(
            self,
            comm,
            rows,
            weights,
            shift,
            k=model.n_components,
            q=model.n_factors,
            isotropic=model.isotropic,
            floor=floor,
            gaps=True,
        )
        batch = Batch(list(run.chunks.iter_weighted()), rows.shape[1], run.device)
        params, ll, n = stepwise_step(
            model,
            batch,
            params,
            stepwise,
            getattr(self, "learning_decay", 0.7),
            getattr(self, "learning_offset", 10.0),
            comm,
        )
        self._stepwise_ = (model, shift, stepwise, params, floor)
        self._store_params(params, shift)
        self.lower_bound_ = ll / max(n, 1e-300)
        self.n_samples_ = getattr(self, "n_samples_", 0.0) + n if fitted else n
        return self

    def _n_parameters(self) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------------ posteriors
    def _checked(self, X) -> np.ndarray:
        check_is_fitted(self, "loadings_")
        X = v.check_X(self, X, reset=False, allow_nan=True)
        return v.to_numpy(X) if isinstance(X, torch.Tensor) else np.asarray(X, dtype=np.float64)

    def _posterior_blocks(self, X: np.ndarray):
        """``(rows, log p(x_o, k) (n, K), E[z | x_o, k] (K, n, q))`` per block of rows."""
        params = self._factor_params()
        k, d, q = params.loadings.shape[0], params.loadings.shape[1], params.loadings.shape[2]
        model = factor.FactorMixture(k, q, False, f64, torch.zeros(d, dtype=f64), True)
        for start in range(0, X.shape[0], self._block):
            rows = torch.as_tensor(X[start : start + self._block], dtype=f64)
            log_joint, mean, _ = model.posterior(factor.features(rows), params)
            yield rows, log_joint, mean

    def score_samples(self, X) -> np.ndarray:
        """log p(x) of every row, exact (n_samples,); for a row with gaps (NaN), the
        log-likelihood of its observed values (0 for a row with none)."""
        X = self._checked(X)
        parts = [torch.logsumexp(lj, 1) for _, lj, _ in self._posterior_blocks(X)]
        return torch.cat(parts).numpy() if parts else np.zeros(0)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample of ``X`` (nats; of the observed values)."""
        return float(np.mean(self.score_samples(X)))

    def _latent(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``(E[z | x_o, k̂] (n, q), p(k | x_o) (n, K))``, k̂ the most probable component."""
        X = self._checked(X)
        means, resp = [], []
        for _, lj, mean in self._posterior_blocks(X):
            r = torch.softmax(lj, 1)
            best = torch.argmax(r, 1)
            means.append(mean[best, torch.arange(mean.shape[1])])
            resp.append(r)
        q = self.loadings_.shape[-1]
        if not means:
            return np.zeros((0, q)), np.zeros(
                (0, len(np.atleast_1d(self._factor_params().weights)))
            )
        return torch.cat(means).numpy(), torch.cat(resp).numpy()

    def transform(self, X) -> np.ndarray:
        """The posterior mean E[z | x] of every row (n_samples, q), from its observed values."""
        return self._latent(X)[0]

    def impute(self, X) -> np.ndarray:
        """A copy of ``X`` (float64) with every missing value (NaN) replaced by its conditional
        mean given the row's observed values, E[x_m | x_o] = Σ_k p(k | x_o) (μ_k + W_k E[z | x_o,
        k])_m. Observed values are returned unchanged; a row with no observed value gets the
        model's mean."""
        X = self._checked(X)
        params = self._factor_params()
        out = []
        for rows, lj, mean in self._posterior_blocks(X):
            r = torch.softmax(lj, 1)  # (n, K)
            fill = params.means[:, None, :] + mean @ params.loadings.transpose(1, 2)  # (K, n, D)
            fill = torch.einsum("nk,knd->nd", r, fill)
            out.append(torch.where(torch.isnan(rows), fill, rows))
        return torch.cat(out).numpy() if out else X.copy()

    def bic(self, X) -> float:
        """−2 log L + p log N (lower is better)."""
        n = np.asarray(X).shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X) -> float:
        """−2 log L + 2 p (lower is better)."""
        return -2 * self.score(X) * np.asarray(X).shape[0] + 2 * self._n_parameters()

    def _get_state(self):
        check_is_fitted(self, "loadings_")
        return learned_state(self)

    def _set_state(self, tensors, extra):
        for name, value in {**extra, **tensors}.items():
            setattr(self, name, value)


class LinearGaussian(LatentFactorModel):
    """One factor model: probabilistic PCA or factor analysis (see the module docstring)."""

    def _noise(self) -> np.ndarray:
        """The per-feature noise variances Ψ (D,)."""
        raise NotImplementedError

    def _factor_params(self) -> factor.FactorParams:
        return factor.FactorParams(
            torch.ones(1, dtype=f64),
            *(_tensor(a)[None] for a in (self.mean_, self.loadings_, self._noise())),
        )

    def get_covariance(self) -> np.ndarray:
        """C = W Wᵀ + Ψ (n_features, n_features)."""
        check_is_fitted(self, "loadings_")
        W = self.loadings_
        return W @ W.T + np.diag(self._noise())

    def get_precision(self) -> np.ndarray:
        """C⁻¹ by the Woodbury identity: Ψ⁻¹ − Ψ⁻¹ W G Wᵀ Ψ⁻¹, G = (I + Wᵀ Ψ⁻¹ W)⁻¹."""
        check_is_fitted(self, "loadings_")
        W, inv_psi = self.loadings_, 1.0 / self._noise()
        G = np.linalg.inv(np.eye(W.shape[1]) + (W.T * inv_psi) @ W)
        A = W * inv_psi[:, None]
        return np.diag(inv_psi) - A @ G @ A.T

    def inverse_transform(self, Z) -> np.ndarray:
        """The mean of p(x | z) = W z + μ for latent coordinates ``Z`` (n, q)."""
        check_is_fitted(self, "loadings_")
        Z = np.asarray(Z, dtype=np.float64)
        q = self.loadings_.shape[1]
        if Z.ndim != 2 or Z.shape[1] != q:
            raise ValueError(
                f"Z must have shape (n_samples, {q}) (latent coordinates); got {Z.shape}."
            )
        return Z @ self.loadings_.T + self.mean_

    def sample(self, n_samples=1, random_state=None):
        """Draw ``(X, Z)``: z ~ N(0, I), x = W z + μ + ε, ε ~ N(0, Ψ)."""
        check_is_fitted(self, "loadings_")
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1; got {n_samples!r}.")
        rng = check_random_state(random_state)
        Z = rng.standard_normal((n_samples, self.loadings_.shape[1]))
        noise = rng.standard_normal((n_samples, self.mean_.shape[0])) * np.sqrt(self._noise())
        return self.inverse_transform(Z) + noise, Z


def _tensor(array) -> torch.Tensor:
    """A C-ordered float64 tensor (a fitted and a loaded model then compute in the same order)."""
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float64))
