"""Mixtures of factor analyzers (Ghahramani & Hinton 1996) and of probabilistic PCA (Tipping &
Bishop 1999): a Gaussian mixture whose K covariances are low rank plus diagonal,
Σ_k = W_k W_kᵀ + Ψ_k, each component with its own q-dimensional latent space.

Between a diagonal and a full Gaussian mixture: D q + D parameters per component instead of D or
D (D + 1) / 2, and O(D q²) per row and component instead of O(D²). Fitted by the mixture EM on the
engine of every lvmkit model (:mod:`lvmkit.fit.em`: chunks, restarts, processes), the model of
:mod:`lvmkit.models.factor`; missing values (NaN) are marginalized exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from lvmkit import _validation as v
from lvmkit._persist import register
from lvmkit.estimators._linear import (
    LatentFactorModel,
    _tensor,
    checked_rows,
    fit_em,
    observed_moments,
)
from lvmkit.models import factor

f64 = torch.float64
INIT = ("kmeans", "k-means++", "kmeans++", "random_from_data", "random")


@register
class MixtureOfFactorAnalyzers(LatentFactorModel):
    """A mixture of K factor analyzers (or of probabilistic PCAs), fitted by EM.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components K.
    n_factors : int, default=2
        The latent dimension q of every component, 1 ≤ q < n_features.
    noise : {'diagonal', 'isotropic'}, default='diagonal'
        Ψ_k diagonal (mixture of factor analyzers) or σ_k² I (mixture of probabilistic PCA).
    tol : float, default=1e-3
        EM stops when the mean log-likelihood per sample changes by less than ``tol``.
    reg_covar : float, default=1e-6
        The floor of every noise variance (keeps a component on a flat feature finite).
    max_iter : int, default=100
    n_init : int, default=1
        Starts; the fit with the highest log-likelihood is kept.
    init_params : {'kmeans', 'k-means++', 'random_from_data', 'random'}, default='kmeans'
        How rows are first assigned to components (gaps filled by the column means); each
        component then starts at the probabilistic-PCA solution of its rows.
    random_state : int, RandomState or None
    device : str or torch.device, optional
    dtype : {'float64', 'float32'}, default='float64'
        The compute dtype of the posteriors (the statistics are float64).
    chunk_size : int, optional
        Rows per chunk of every pass (None: sized from memory).
    learning_decay, learning_offset : float
        Stepwise EM's step sizes for ``partial_fit``: γ_t = (t + offset)^(−decay).
    verbose : int, default=0

    Attributes
    ----------
    weights_ (K,), means_ (K, D), loadings_ (K, D, q), noise_variance_ (K, D), lower_bound_,
    lower_bounds_ (the log-likelihood per sample entering every iteration), converged_, n_iter_,
    n_features_in_.
    """

    _constraints = {
        "n_components": v.Interval(1, None, integer=True),
        "n_factors": v.Interval(1, None, integer=True),
        "noise": v.Options(("diagonal", "isotropic")),
        "tol": v.Interval(0, None),
        "reg_covar": v.Interval(0, None, open_low=True),
        "max_iter": v.Interval(1, None, integer=True),
        "n_init": v.Interval(1, None, integer=True),
        "init_params": v.Options(INIT),
        "random_state": v.RANDOM_STATE,
        "device": v.DEVICE,
        "dtype": v.DTYPE,
        "chunk_size": v.any_of(
            v.NONE, v.Interval(1, None, integer=True), description="None or an int >= 1"
        ),
        "learning_decay": v.Interval(0.5, 1, open_low=True),
        "learning_offset": v.Interval(0, None),
        "verbose": v.Interval(0, None, integer=True),
    }

    def __init__(
        self,
        n_components=1,
        n_factors=2,
        *,
        noise="diagonal",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        random_state=None,
        device=None,
        dtype="float64",
        chunk_size=None,
        learning_decay=0.7,
        learning_offset=10.0,
        verbose=0,
    ):
        self.n_components = n_components
        self.n_factors = n_factors
        self.noise = noise
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def _fit_on(self, comm, X, sample_weight):
        rows, weights = checked_rows(self, X, sample_weight, comm)
        self._check_shape()
        moments = observed_moments(rows, weights, comm, self.device, self.chunk_size)
        floor = torch.full_like(moments[3], float(self.reg_covar))
        result, _, run = fit_em(
            self,
            comm,
            rows,
            weights,
            moments,
            k=self.n_components,
            q=self.n_factors,
            isotropic=self.noise == "isotropic",
            floor=floor,
            init=self.init_params,
            tol=self.tol,
        )
        if not result.converged:
            v.warn(
                f"MixtureOfFactorAnalyzers did not converge in max_iter={self.max_iter} "
                f"iterations (the last change of the log-likelihood per sample was above "
                f"tol={self.tol}). Increase max_iter or tol.",
                ConvergenceWarning,
            )
        if result.reseeded:
            components, iterations = result.reseed_summary()
            v.warn(
                f"Components {components} lost all their rows and were re-seeded at the "
                f"worst-explained row (iterations {iterations}). Fewer components may suit the "
                "data better.",
                UserWarning,
            )
        self._store_params(result.params, run.shift)
        self.lower_bounds_ = list(result.lower_bounds)
        self.lower_bound_ = result.final
        self.n_iter_, self.converged_ = result.n_iter, result.converged
        self.n_samples_ = moments[0]
        return self

    def _check_shape(self):
        d, q = self.n_features_in_, self.n_factors
        if q >= d:
            raise ValueError(
                f"n_factors={q} must be smaller than n_features={d}: a component's noise is "
                f"what its factors leave unexplained. Use n_factors <= {d - 1}."
            )

    def _structure(self, variance):
        """(K, q, isotropic, noise floor) of the EM model (see LatentFactorModel.partial_fit)."""
        self._check_shape()
        floor = torch.full_like(variance, float(self.reg_covar))
        return self.n_components, self.n_factors, self.noise == "isotropic", floor

    def _store_params(self, params: factor.FactorParams, shift: torch.Tensor) -> None:
        self.weights_ = v.to_numpy(params.weights)
        self.means_ = v.to_numpy(params.means + shift)
        self.loadings_ = v.to_numpy(params.loadings)
        self.noise_variance_ = v.to_numpy(params.noise)

    def _factor_params(self) -> factor.FactorParams:
        return factor.FactorParams(
            *(
                _tensor(a)
                for a in (self.weights_, self.means_, self.loadings_, self.noise_variance_)
            )
        )

    # ------------------------------------------------------------------ the fitted model
    def predict_proba(self, X) -> np.ndarray:
        """p(k | x_o) of every row (n_samples, K), from its observed values."""
        return self._latent(X)[1]

    def predict(self, X) -> np.ndarray:
        """The most probable component of every row (n_samples,)."""
        return np.argmax(self.predict_proba(X), axis=1)

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def inverse_transform(self, Z, labels=None) -> np.ndarray:
        """The mean of p(x | z, k) = W_k z + μ_k for latent coordinates ``Z`` (n, q) in the
        components ``labels`` (n,) (each component has its own latent space; with one component
        ``labels`` may be left out)."""
        check_is_fitted(self, "loadings_")
        Z = np.asarray(Z, dtype=np.float64)
        k, _, q = self.loadings_.shape
        if Z.ndim != 2 or Z.shape[1] != q:
            raise ValueError(
                f"Z must have shape (n_samples, {q}) (latent coordinates); got {Z.shape}."
            )
        if labels is None:
            if k > 1:
                raise ValueError(
                    f"inverse_transform needs the component of every row (labels=, 0 … {k - 1}): "
                    "each of the mixture's components has its own latent space. Use "
                    "labels=model.predict(X) for rows that transform(X) encoded."
                )
            labels = np.zeros(len(Z), dtype=np.int64)
        labels = np.asarray(labels)
        if labels.shape != (len(Z),) or not np.isin(labels, np.arange(k)).all():
            raise ValueError(
                f"labels must hold one component in 0 … {k - 1} per row of Z ({len(Z)} rows)."
            )
        return np.einsum("ndq,nq->nd", self.loadings_[labels], Z) + self.means_[labels]

    def get_covariances(self) -> np.ndarray:
        """Σ_k = W_k W_kᵀ + Ψ_k (K, D, D)."""
        check_is_fitted(self, "loadings_")
        W = self.loadings_
        return W @ W.transpose(0, 2, 1) + np.stack([np.diag(p) for p in self.noise_variance_])

    def sample(self, n_samples=1, random_state=None):
        """Draw ``(X, labels)``: k ~ weights, z ~ N(0, I), x = W_k z + μ_k + ε, ε ~ N(0, Ψ_k)."""
        check_is_fitted(self, "loadings_")
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1; got {n_samples!r}.")
        rng = check_random_state(random_state)
        labels = rng.choice(
            len(self.weights_), size=n_samples, p=self.weights_ / self.weights_.sum()
        )
        z = rng.standard_normal((n_samples, self.loadings_.shape[2]))
        eps = rng.standard_normal((n_samples, self.means_.shape[1]))
        X = (
            np.einsum("ndq,nq->nd", self.loadings_[labels], z)
            + self.means_[labels]
            + eps * np.sqrt(self.noise_variance_[labels])
        )
        return X, labels

    def _n_parameters(self) -> int:
        k, d, q = self.loadings_.shape
        return n_parameters(k, d, q, self.noise == "isotropic")

    def _verbose_printer(self, restart: int, n_restarts: int):
        if not self.verbose:
            return None

        def report(n_iter, lower_bound, change):
            print(
                f"MixtureOfFactorAnalyzers start {restart + 1}/{n_restarts} iteration {n_iter}: "
                f"log-likelihood per sample {lower_bound:.6f} (change {change:.3g})"
            )

        return report


def n_parameters(n_components: int, n_features: int, n_factors: int, isotropic=False) -> int:
    """Free parameters of a mixture of factor analyzers (the loadings up to rotation)."""
    k, d, q = n_components, n_features, n_factors
    return (k - 1) + k * d + k * (d * q - q * (q - 1) // 2) + (k if isotropic else k * d)
