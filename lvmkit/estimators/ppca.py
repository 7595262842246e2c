"""Probabilistic PCA: the linear-Gaussian latent variable model, fitted in closed form.

z ~ N(0, I_q), x | z ~ N(W z + μ, σ² I_D), so x ~ N(μ, C) with C = W Wᵀ + σ² I. Tipping & Bishop
(1999) give the maximum-likelihood solution from the eigen-decomposition of the sample covariance
S (divided by N, not N − 1): with eigenvalues λ_1 ≥ … ≥ λ_D and eigenvectors U,

    σ² = mean(λ_{q+1}, …, λ_D),    W = U_q (Λ_q − σ² I)^{1/2}  (up to a rotation),

and the maximised log-likelihood per sample is −½ (D log 2π + Σ_{j≤q} log λ_j + (D − q) log σ² + D).
The posterior p(z | x) = N(M⁻¹ Wᵀ (x − μ), σ² M⁻¹) with M = Wᵀ W + σ² I is exact, so EM's bound
touches log p(x) here too. The data enter only through N, Σ x and Σ x xᵀ: additive statistics of
one pass over the rows, in chunks (data on disk stream) and summed over processes
(:mod:`lvmkit.distributed`), exactly as the mixtures' E-step statistics are.

With missing values (NaN), or ``solver='em'``, the fit is EM on the rows
(:class:`lvmkit.models.factor.FactorMixture` with one component and isotropic noise), which
marginalizes each row's gaps exactly and reports the observed values' log-likelihood; it starts
from the closed form of the rows with gaps filled by the column means (``init='pca'``) or from
random loadings (``init='random'``).

Attributes follow scikit-learn's PCA: ``components_`` (q, D) the principal axes, ``mean_``,
``explained_variance_`` (λ_1 … λ_q), ``explained_variance_ratio_``, ``noise_variance_`` (σ²),
``n_components_``; and ``loadings_`` (D, q), the W above, and ``loglike_``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from lvmkit import _validation as v
from lvmkit._persist import register
from lvmkit.estimators._linear import (
    LinearGaussian,
    checked_rows,
    fit_em,
    has_gaps,
    observed_moments,
    second_moments,
)
from lvmkit.families._base import LOG_2PI

f64 = torch.float64


@register
class ProbabilisticPCA(LinearGaussian):
    """Probabilistic PCA (Tipping & Bishop 1999), the maximum-likelihood fit in closed form.

    Parameters
    ----------
    n_components : int or 'mle', default=2
        The latent dimension q, 1 ≤ q < n_features (σ² is estimated from the D − q discarded
        directions); 'mle' chooses q by Minka's (2000) Laplace approximation of the evidence,
        as scikit-learn's ``PCA(n_components='mle')``.
    device : str or torch.device, optional
        Where the statistics pass runs (default: where X is, else the CPU).
    chunk_size : int, optional
        Rows per chunk of the statistics pass (None: sized from memory).
    solver : {'auto', 'eigen', 'em'}, default='auto'
        'eigen': the closed form (complete data only); 'em': EM; 'auto': the closed form for
        complete data, EM when a value is missing.
    init : {'pca', 'random'}, default='pca'
        EM's start: the closed form of the rows with gaps filled by the column means, or random
        loadings.
    tol : float, default=1e-6
        EM stops when the mean log-likelihood per sample changes by less than ``tol``.
    max_iter : int, default=1000
        EM iterations at most.
    random_state : int, RandomState or None
        Seeds ``init='random'``.
    dtype : {'float64', 'float32'} or torch dtype, default='float64'
        The compute dtype of EM's posteriors (its statistics are float64).

    Attributes
    ----------
    components_ (q, D), mean_ (D,), explained_variance_ (q,), explained_variance_ratio_ (q,),
    noise_variance_, loadings_ (D, q), n_components_, loglike_ (the mean log-likelihood per sample
    of the training data at the fit, of the observed values; also ``lower_bound_``), n_samples_
    (the total sample weight), n_features_in_; after EM also lower_bounds_ (the log-likelihood per
    sample entering every iteration), n_iter_, converged_.
    """

    _constraints = {
        "n_components": v.any_of(
            v.Interval(1, None, integer=True),
            v.Options(("mle",)),
            description="an int >= 1 or 'mle'",
        ),
        "device": v.DEVICE,
        "chunk_size": v.any_of(
            v.NONE, v.Interval(1, None, integer=True), description="None or an int >= 1"
        ),
        "solver": v.Options(("auto", "eigen", "em")),
        "init": v.Options(("pca", "random")),
        "tol": v.Interval(0, None),
        "max_iter": v.Interval(1, None, integer=True),
        "random_state": v.RANDOM_STATE,
        "dtype": v.DTYPE,
    }

    def __init__(
        self,
        n_components=2,
        *,
        device=None,
        chunk_size=None,
        solver="auto",
        init="pca",
        tol=1e-6,
        max_iter=1000,
        random_state=None,
        dtype="float64",
    ):
        self.n_components = n_components
        self.device = device
        self.chunk_size = chunk_size
        self.solver = solver
        self.init = init
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.dtype = dtype

    def _fit_on(self, comm, X, sample_weight):
        rows, weights = checked_rows(self, X, sample_weight, comm)
        d, q = self.n_features_in_, self.n_components
        if q != "mle" and q >= d:
            raise ValueError(
                f"n_components={q} must be smaller than n_features={d}: probabilistic PCA "
                "estimates the noise variance from the directions it leaves out. Use "
                f"n_components <= {d - 1}."
            )
        gaps = has_gaps(rows, comm)
        if gaps or self.solver == "em":
            return self._fit_em(comm, rows, weights, gaps)
        n, mean, cov = second_moments(rows, weights, comm, self.device, self.chunk_size)
        eigenvalues, vectors = torch.linalg.eigh(0.5 * (cov + cov.T))
        eigenvalues, vectors = eigenvalues.flip(0).clamp(min=0.0), vectors.flip(1)
        if q == "mle":
            if d < 2:
                raise ValueError("n_components='mle' needs at least 2 features.")
            q = minka_dimension(v.to_numpy(eigenvalues), n)
        sigma2 = float(eigenvalues[q:].mean())
        if not sigma2 > 1e-12 * float(eigenvalues[0]):  # zero up to rounding
            raise ValueError(
                f"The data have no variance outside their first {q} principal directions, so the "
                "noise variance is 0 and the likelihood unbounded. Use fewer components, or check "
                "for duplicated or constant features."
            )
        kept = eigenvalues[:q]
        self.mean_ = v.to_numpy(mean)
        self.components_ = v.to_numpy(_signed(vectors[:, :q]).T)
        self.explained_variance_ = v.to_numpy(kept)
        self.explained_variance_ratio_ = v.to_numpy(kept / eigenvalues.sum())
        self.noise_variance_ = sigma2
        self.loadings_ = self.components_.T * np.sqrt(
            np.maximum(self.explained_variance_ - sigma2, 0)
        )
        self.n_components_ = q
        self.n_samples_ = n
        self.loglike_ = -0.5 * (
            d * LOG_2PI + float(torch.log(kept).sum()) + (d - q) * math.log(sigma2) + d
        )
        self.lower_bound_ = self.loglike_  # the bound is tight: the likelihood itself
        return self

    def _fit_em(self, comm, rows, weights, gaps):
        q = self.n_components
        if self.solver == "eigen":
            raise ValueError(
                "solver='eigen' needs complete data, and X has missing values (NaN). Use "
                "solver='auto' or 'em', which marginalize them."
            )
        if q == "mle":
            raise ValueError(
                "n_components='mle' needs complete data (the eigenvalues of the covariance), and "
                "X has missing values (NaN). Give an int, chosen by held-out log-likelihood "
                "(score) or bic."
            )
        moments = observed_moments(rows, weights, comm, self.device, self.chunk_size)
        n, variance = moments[0], moments[3]
        floor = torch.full_like(variance, 1e-12 * max(float(variance.mean()), 1e-300))
        result, _, run = fit_em(
            self,
            comm,
            rows,
            weights,
            moments,
            k=1,
            q=q,
            isotropic=True,
            floor=floor,
            init=self.init,
            tol=self.tol,
        )
        self._warn_unconverged(result)
        self._store_params(result.params, run.shift)
        self.n_samples_ = n
        self.lower_bounds_ = list(result.lower_bounds)
        self.n_iter_, self.converged_ = result.n_iter, result.converged
        self.loglike_ = self.lower_bound_ = run.log_likelihood(result.params)
        return self

    def _store_params(self, params, shift):
        """The attributes from EM's (one-component) parameters in the frame minus ``shift``."""
        W, sigma2 = params.loadings[0].cpu(), float(params.noise[0, 0])
        u, singular, _ = torch.linalg.svd(W, full_matrices=False)
        explained = singular.square() + sigma2
        self.mean_ = v.to_numpy(params.means[0] + shift)
        self.components_ = v.to_numpy(_signed(u).T)
        self.explained_variance_ = v.to_numpy(explained)
        self.explained_variance_ratio_ = v.to_numpy(
            explained / (singular.square().sum() + W.shape[0] * sigma2)
        )
        self.noise_variance_ = sigma2
        self.loadings_ = self.components_.T * np.sqrt(
            np.maximum(self.explained_variance_ - sigma2, 0)
        )
        self.n_components_ = W.shape[1]

    def _structure(self, variance):
        """(K, q, isotropic, noise floor) of the EM model (see LatentFactorModel.partial_fit)."""
        q = getattr(self, "n_components_", self.n_components)
        if q == "mle":
            raise ValueError("partial_fit needs an int n_components (not 'mle').")
        return 1, q, True, torch.full_like(variance, 1e-12 * max(float(variance.mean()), 1e-300))

    def _warn_unconverged(self, result):
        if not result.converged:
            v.warn(
                f"ProbabilisticPCA's EM did not converge in max_iter={self.max_iter} iterations "
                f"(the last change of the log-likelihood per sample was above tol={self.tol}). "
                "Increase max_iter or tol.",
                ConvergenceWarning,
            )

    # ================================================================== the fitted model
    def _noise(self) -> np.ndarray:
        return np.full(self.mean_.shape[0], self.noise_variance_)

    def _n_parameters(self) -> int:
        d, q = self.mean_.shape[0], self.n_components_
        return d + d * q - q * (q - 1) // 2 + 1  # μ, W up to rotation, σ²


def minka_dimension(spectrum: np.ndarray, n_samples: float) -> int:
    """The latent dimension 1 ≤ k < D of highest evidence under Minka's (2000) Laplace
    approximation for probabilistic PCA, from the covariance eigenvalues ``spectrum``
    (descending; their scale does not matter)."""
    lam = np.maximum(np.asarray(spectrum, dtype=np.float64), np.finfo(np.float64).tiny)
    d, n = lam.shape[0], float(n_samples)
    from scipy.special import gammaln

    best_k, best = 1, -np.inf
    for k in range(1, d):
        v_ = max(lam[k:].mean(), np.finfo(np.float64).eps)
        i = np.arange(1, k + 1)
        # log p(U): the uniform prior over the Stiefel manifold of k directions
        log_pu = -k * math.log(2.0) + np.sum(
            gammaln((d - i + 1) / 2.0) - np.log(np.pi) * (d - i + 1) / 2.0
        )
        log_pl = -n / 2.0 * np.log(lam[:k]).sum()
        log_pv = -n * (d - k) / 2.0 * math.log(v_)
        m = d * k - k * (k + 1) / 2.0
        log_pp = math.log(2.0 * np.pi) * (m + k) / 2.0
        hat = np.concatenate([lam[:k], np.full(d - k, v_)])
        # log |A_Z|: the Hessian's determinant over the pairs (i < k, j > i)
        ii, jj = np.triu_indices(d, 1)
        keep = ii < k
        ii, jj = ii[keep], jj[keep]
        log_pa = np.sum(np.log((lam[ii] - lam[jj]) * (1.0 / hat[jj] - 1.0 / hat[ii])) + math.log(n))
        value = log_pu + log_pl + log_pv + log_pp - log_pa / 2.0 - k * math.log(n) / 2.0
        if value > best:
            best_k, best = k, value
    return best_k


def _signed(vectors: torch.Tensor) -> torch.Tensor:
    """Eigenvectors with a deterministic sign: the largest-magnitude entry of each positive."""
    idx = vectors.abs().argmax(0)
    signs = torch.sign(vectors[idx, torch.arange(vectors.shape[1], device=vectors.device)])
    return vectors * torch.where(signs == 0, 1.0, signs)
