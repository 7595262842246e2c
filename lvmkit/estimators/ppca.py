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

Attributes follow scikit-learn's PCA: ``components_`` (q, D) the principal axes, ``mean_``,
``explained_variance_`` (λ_1 … λ_q), ``explained_variance_ratio_``, ``noise_variance_`` (σ²),
``n_components_``; and ``loadings_`` (D, q), the W above, and ``loglike_``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state

from lvmkit import _validation as v
from lvmkit import distributed
from lvmkit._persist import Persistent, learned_state, register
from lvmkit.data.chunks import DataChunks
from lvmkit.estimators import _ranks as ranks
from lvmkit.estimators._mixture import _atomic, _check_sample_weight
from lvmkit.families._base import LOG_2PI
from lvmkit.models.stats import Stats

f64 = torch.float64


@register
class ProbabilisticPCA(Persistent, TransformerMixin, BaseEstimator):
    """Probabilistic PCA (Tipping & Bishop 1999), the maximum-likelihood fit in closed form.

    Parameters
    ----------
    n_components : int, default=2
        The latent dimension q, 1 ≤ q < n_features (σ² is estimated from the D − q discarded
        directions).
    device : str or torch.device, optional
        Where the statistics pass runs (default: where X is, else the CPU).
    chunk_size : int, optional
        Rows per chunk of the statistics pass (None: sized from memory).

    Attributes
    ----------
    components_ (q, D), mean_ (D,), explained_variance_ (q,), explained_variance_ratio_ (q,),
    noise_variance_, loadings_ (D, q), n_components_, loglike_ (the mean log-likelihood per sample
    of the training data at the fit), n_samples_ (the total sample weight), n_features_in_.
    """

    _constraints = {
        "n_components": v.Interval(1, None, integer=True),
        "device": v.DEVICE,
        "chunk_size": v.any_of(
            v.NONE, v.Interval(1, None, integer=True), description="None or an int >= 1"
        ),
    }

    def __init__(self, n_components=2, *, device=None, chunk_size=None):
        self.n_components = n_components
        self.device = device
        self.chunk_size = chunk_size

    # ================================================================== fitting
    def fit(self, X, y=None, sample_weight=None):
        """The maximum-likelihood W, μ and σ² from one pass of statistics over ``X`` (an
        array-like (n_samples, n_features) or a tensor; rows of weight w count w times). Under
        ``torch.distributed`` every rank passes its own rows and all end with the fit of all of
        them. Returns ``self``."""
        _atomic(self, self._fit_unsafe, X, sample_weight)
        return self

    def _fit_unsafe(self, X, sample_weight):
        v.validate_params(self, self._constraints)
        comm = distributed.current(self.device)
        return ranks.collectively(comm, self._fit_on, comm, X, sample_weight)

    def _fit_on(self, comm, X, sample_weight):
        def prepare():
            rows = v.check_X(self, X, reset=True, min_samples=0 if comm.active else 2)
            return rows, _check_sample_weight(sample_weight, rows.shape[0], 0)

        (rows, weights), _, _ = ranks.prepare_together(comm, self, prepare)
        d, q = self.n_features_in_, self.n_components
        if q >= d:
            raise ValueError(
                f"n_components={q} must be smaller than n_features={d}: probabilistic PCA "
                "estimates the noise variance from the directions it leaves out. Use "
                f"n_components <= {d - 1}."
            )
        device = v.resolve_device(self.device, rows)
        # a provisional centre (one pass), so the second moments are accumulated centred
        centre = torch.as_tensor(ranks.moments(rows, comm)[0], dtype=f64, device=device)
        chunks = DataChunks(rows, centre, f64, device, self.chunk_size, 16 * d, weights=weights)
        total = Stats(
            n=torch.zeros((), dtype=f64, device=device),
            s1=torch.zeros(d, dtype=f64, device=device),
            s2=torch.zeros(d, d, dtype=f64, device=device),
        )
        for x, w in chunks.iter_weighted():
            xw = x if w is None else x * w[:, None]
            n = float(x.shape[0]) if w is None else w.sum()
            total = total + Stats(n=torch.as_tensor(n, dtype=f64, device=device),
                                  s1=xw.sum(0), s2=xw.T @ x)  # fmt: skip
        total = comm.reduce(total)
        n = total.scalar("n")
        if n <= 0:
            raise ValueError("There are no rows (of positive weight) to fit.")
        offset = total["s1"] / n
        cov = total["s2"] / n - offset[:, None] * offset[None, :]
        eigenvalues, vectors = torch.linalg.eigh(0.5 * (cov + cov.T))
        eigenvalues, vectors = eigenvalues.flip(0).clamp(min=0.0), vectors.flip(1)
        sigma2 = float(eigenvalues[q:].mean())
        if not sigma2 > 1e-12 * float(eigenvalues[0]):  # zero up to rounding
            raise ValueError(
                f"The data have no variance outside their first {q} principal directions, so the "
                "noise variance is 0 and the likelihood unbounded. Use fewer components, or check "
                "for duplicated or constant features."
            )
        kept = eigenvalues[:q]
        self.mean_ = v.to_numpy(centre + offset)
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
        return self

    # ================================================================== the fitted model
    def get_covariance(self) -> np.ndarray:
        """C = W Wᵀ + σ² I (n_features, n_features)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "components_")
        W = self.loadings_
        return W @ W.T + self.noise_variance_ * np.eye(W.shape[0])

    def get_precision(self) -> np.ndarray:
        """C⁻¹ by the Woodbury identity: (I − W M⁻¹ Wᵀ) / σ², with M = Wᵀ W + σ² I."""
        W, s2 = self.loadings_, self.noise_variance_
        M = W.T @ W + s2 * np.eye(W.shape[1])
        return (np.eye(W.shape[0]) - W @ np.linalg.solve(M, W.T)) / s2

    def _check(self, X) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "components_")
        X = v.check_X(self, X, reset=False)
        return v.to_numpy(X) if isinstance(X, torch.Tensor) else np.asarray(X, dtype=np.float64)

    def score_samples(self, X) -> np.ndarray:
        """log p(x) of every row under N(μ, W Wᵀ + σ² I), exact (n_samples,), in O(n D q)."""
        X = self._check(X)
        d, q = X.shape[1], self.n_components_
        R = X - self.mean_
        proj = R @ self.components_.T  # coordinates along the principal axes
        lam, s2 = self.explained_variance_, self.noise_variance_
        rest = np.maximum((R * R).sum(1) - (proj * proj).sum(1), 0.0)
        maha = (proj * proj / np.maximum(lam, s2)).sum(1) + rest / s2
        log_det = np.log(np.maximum(lam, s2)).sum() + (d - q) * math.log(s2)
        return -0.5 * (d * LOG_2PI + log_det + maha)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample of ``X`` (nats)."""
        return float(np.mean(self.score_samples(X)))

    def transform(self, X) -> np.ndarray:
        """The posterior mean E[z | x] = M⁻¹ Wᵀ (x − μ) of every row (n_samples, q)."""
        X = self._check(X)
        W, s2 = self.loadings_, self.noise_variance_
        M = W.T @ W + s2 * np.eye(W.shape[1])
        return np.linalg.solve(M, W.T @ (X - self.mean_).T).T

    def inverse_transform(self, Z) -> np.ndarray:
        """The mean of p(x | z) = W z + μ for latent coordinates ``Z`` (n, q)."""
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.n_components_:
            raise ValueError(
                f"Z must have shape (n_samples, {self.n_components_}) (latent coordinates); got "
                f"{Z.shape}."
            )
        return Z @ self.loadings_.T + self.mean_

    def sample(self, n_samples=1, random_state=None):
        """Draw ``(X, Z)``: z ~ N(0, I), x = W z + μ + σ ε."""
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1; got {n_samples!r}.")
        rng = check_random_state(random_state)
        Z = rng.standard_normal((n_samples, self.n_components_))
        noise = rng.standard_normal((n_samples, self.mean_.shape[0]))
        return self.inverse_transform(Z) + math.sqrt(self.noise_variance_) * noise, Z

    def _n_parameters(self) -> int:
        d, q = self.mean_.shape[0], self.n_components_
        return d + d * q - q * (q - 1) // 2 + 1  # μ, W up to rotation, σ²

    def bic(self, X) -> float:
        """−2 log L + p log N (lower is better)."""
        n = np.asarray(X).shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X) -> float:
        """−2 log L + 2 p (lower is better)."""
        return -2 * self.score(X) * np.asarray(X).shape[0] + 2 * self._n_parameters()

    # ================================================================== persistence
    def _get_state(self):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "components_")
        return learned_state(self)

    def _set_state(self, tensors, extra):
        for name, value in {**extra, **tensors}.items():
            setattr(self, name, value)


def _signed(vectors: torch.Tensor) -> torch.Tensor:
    """Eigenvectors with a deterministic sign: the largest-magnitude entry of each positive."""
    idx = vectors.abs().argmax(0)
    signs = torch.sign(vectors[idx, torch.arange(vectors.shape[1], device=vectors.device)])
    return vectors * torch.where(signs == 0, 1.0, signs)
