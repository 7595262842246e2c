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

from lvmkit import _validation as v
from lvmkit._persist import register
from lvmkit.estimators._linear import LinearGaussian, second_moments
from lvmkit.families._base import LOG_2PI

f64 = torch.float64


@register
class ProbabilisticPCA(LinearGaussian):
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

    def _fit_on(self, comm, X, sample_weight):
        n, mean, cov = second_moments(self, X, sample_weight, comm, self.device, self.chunk_size)
        d, q = self.n_features_in_, self.n_components
        if q >= d:
            raise ValueError(
                f"n_components={q} must be smaller than n_features={d}: probabilistic PCA "
                "estimates the noise variance from the directions it leaves out. Use "
                f"n_components <= {d - 1}."
            )
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
        return self

    # ================================================================== the fitted model
    def _noise(self) -> np.ndarray:
        return np.full(self.mean_.shape[0], self.noise_variance_)

    def _n_parameters(self) -> int:
        d, q = self.mean_.shape[0], self.n_components_
        return d + d * q - q * (q - 1) // 2 + 1  # μ, W up to rotation, σ²


def _signed(vectors: torch.Tensor) -> torch.Tensor:
    """Eigenvectors with a deterministic sign: the largest-magnitude entry of each positive."""
    idx = vectors.abs().argmax(0)
    signs = torch.sign(vectors[idx, torch.arange(vectors.shape[1], device=vectors.device)])
    return vectors * torch.where(signs == 0, 1.0, signs)
