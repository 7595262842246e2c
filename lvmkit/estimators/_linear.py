"""What the linear-Gaussian latent variable models share: x = W z + μ + ε, z ~ N(0, I_q),
ε ~ N(0, Ψ) with Ψ diagonal (factor analysis) or σ² I (probabilistic PCA).

Then x ~ N(μ, C), C = W Wᵀ + Ψ, and the posterior p(z | x) = N(G Wᵀ Ψ⁻¹ (x − μ), G) with
G = (I + Wᵀ Ψ⁻¹ W)⁻¹ is exact. For complete data both models depend on the rows only through N,
Σ x and Σ x xᵀ: :func:`second_moments` gathers them in one pass of additive statistics, in chunks
and summed over processes (:mod:`lvmkit.distributed`), as the mixtures' E-steps do, and the fits
work on the D × D covariance from there. A subclass sets ``mean_``, ``loadings_`` (D, q) and a
per-feature ``_noise()`` (D,); densities, posteriors, sampling and model files are here.
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
from lvmkit.estimators._mixture import _atomic, _check_sample_weight
from lvmkit.families._base import LOG_2PI
from lvmkit.models.stats import Stats

f64 = torch.float64


def second_moments(estimator, X, sample_weight, comm, device, chunk_size):
    """``(n, mean (D,), S (D, D))``: the total weight, the weighted mean and the covariance over
    ``n`` (maximum likelihood, not n − 1) of the rows of every rank, float64. Checks ``X``
    (sets ``n_features_in_``) with every rank agreeing first."""

    def prepare():
        rows = v.check_X(estimator, X, reset=True, min_samples=0 if comm.active else 2)
        return rows, _check_sample_weight(sample_weight, rows.shape[0], 0)

    (rows, weights), _, _ = ranks.prepare_together(comm, estimator, prepare)
    d = estimator.n_features_in_
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
    n = total.scalar("n")
    if n <= 0:
        raise ValueError(
            "There are no rows (of positive weight) to fit; give rows of positive weight."
        )
    offset = total["s1"] / n
    cov = total["s2"] / n - offset[:, None] * offset[None, :]
    return n, centre + offset, 0.5 * (cov + cov.T)


class LinearGaussian(Persistent, TransformerMixin, BaseEstimator):
    """The fitted model's densities, posteriors and draws (see the module docstring)."""

    def fit(self, X, y=None, sample_weight=None):
        """Fit from one pass of statistics over ``X`` (an array-like (n_samples, n_features) or a
        tensor; a row of weight w counts w times). Under ``torch.distributed`` every rank passes
        its own rows and all end with the fit of all of them. A failed fit leaves the model as it
        was. Returns ``self``."""
        _atomic(self, self._fit_unsafe, X, sample_weight)
        return self

    def _fit_unsafe(self, X, sample_weight):
        v.validate_params(self, self._constraints)
        comm = distributed.current(self.device)
        return ranks.collectively(comm, self._fit_on, comm, X, sample_weight)

    def _fit_on(self, comm, X, sample_weight):
        """The fit from :func:`second_moments` (a subclass's)."""
        raise NotImplementedError

    def _noise(self) -> np.ndarray:
        """The per-feature noise variances Ψ (D,)."""
        raise NotImplementedError

    def _n_parameters(self) -> int:
        raise NotImplementedError

    def _checked(self, X) -> np.ndarray:
        check_is_fitted(self, "loadings_")
        X = v.check_X(self, X, reset=False)
        return v.to_numpy(X) if isinstance(X, torch.Tensor) else np.asarray(X, dtype=np.float64)

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

    def score_samples(self, X) -> np.ndarray:
        """log p(x) of every row under N(μ, W Wᵀ + Ψ), exact (n_samples,)."""
        X = self._checked(X)
        L = np.linalg.cholesky(self.get_covariance())
        Y = np.linalg.solve(L, (X - self.mean_).T)
        log_det = 2.0 * np.log(np.diag(L)).sum()
        return -0.5 * (X.shape[1] * LOG_2PI + log_det + (Y * Y).sum(0))

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample of ``X`` (nats)."""
        return float(np.mean(self.score_samples(X)))

    def transform(self, X) -> np.ndarray:
        """The posterior mean E[z | x] = G Wᵀ Ψ⁻¹ (x − μ) of every row (n_samples, q)."""
        X = self._checked(X)
        W, inv_psi = self.loadings_, 1.0 / self._noise()
        G = np.linalg.inv(np.eye(W.shape[1]) + (W.T * inv_psi) @ W)
        return (X - self.mean_) @ (W * inv_psi[:, None]) @ G

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
