"""Factor analysis by EM: x = W z + μ + ε, z ~ N(0, I_q), ε ~ N(0, Ψ) with Ψ diagonal.

EM (Rubin & Thayer 1982; Ghahramani & Hinton 1996) raises the same bound as every lvmkit model;
the posterior p(z | x) is Gaussian and exact, so the bound touches log p(x) after each E-step.
For complete data the expected statistics Σ E[z], Σ x E[z]ᵀ and Σ E[z zᵀ] are linear in the data's
first two moments, so one pass of additive statistics (:func:`lvmkit.estimators._linear.
second_moments`: chunked, weighted, summed over processes) is all EM needs; every iteration then
works on the D × D covariance S:

    G = (I + Wᵀ Ψ⁻¹ W)⁻¹,   B = G Wᵀ Ψ⁻¹                       (E-step)
    W ← S Bᵀ (G + B S Bᵀ)⁻¹,   Ψ ← diag(S − W B S)             (M-step)

and the log-likelihood per sample is −½ (D log 2π + log|C| + tr(C⁻¹ S)), C = W Wᵀ + Ψ, both by
the Woodbury identity in O(D q²). EM starts from the probabilistic-PCA solution of S.
``rotation`` ('varimax', 'quartimax') rotates the fitted loadings afterwards (Kaiser 1958); the
likelihood does not change.

With missing values (NaN) the moments are not enough; EM then runs on the rows
(:class:`lvmkit.models.factor.FactorMixture` with one component), marginalizing each row's gaps
exactly, with ``loglike_`` the observed values' log-likelihood.
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
    check_not_constant,
    checked_rows,
    fit_em,
    has_gaps,
    observed_moments,
    second_moments,
)
from lvmkit.estimators._mixture import as_float64
from lvmkit.families._base import LOG_2PI

f64 = torch.float64
# The floor of every noise variance, relative to the feature's variance (a Heywood case: a
# feature the factors explain entirely would otherwise get Ψ = 0 and an unbounded likelihood).
NOISE_FLOOR = 1e-6


@register
class FactorAnalysis(LinearGaussian):
    """Factor analysis fitted by EM (scikit-learn's FactorAnalysis names).

    Parameters
    ----------
    n_components : int, optional
        The number of factors q (None: n_features - 1).
    tol : float, default=1e-2
        EM stops when the total log-likelihood changes by less than ``tol`` (as scikit-learn).
    max_iter : int, default=1000
    noise_variance_init : array (n_features,), optional
        The starting Ψ (default: from the probabilistic-PCA solution).
    rotation : {None, 'varimax', 'quartimax'}
        A rotation of the fitted loadings (the likelihood is unchanged).
    device : str or torch.device, optional
        Where the statistics pass runs.
    chunk_size : int, optional
        Rows per chunk of the statistics pass.

    Attributes
    ----------
    components_ (q, D) the loadings Wᵀ (rotated if asked), loadings_ (D, q) = W, mean_,
    noise_variance_ (D,), loglike_ (the total log-likelihood at every iteration, as
    scikit-learn's), lower_bounds_ (the same per sample), n_iter_, converged_, n_features_in_.
    """

    _constraints = {
        "n_components": v.any_of(
            v.NONE, v.Interval(1, None, integer=True), description="None or an int >= 1"
        ),
        "tol": v.Interval(0, None),
        "max_iter": v.Interval(1, None, integer=True),
        "noise_variance_init": v.any_of(v.NONE, v.ARRAY_LIKE, description="None or an array"),
        "rotation": v.Options((None, "varimax", "quartimax")),
        "device": v.DEVICE,
        "chunk_size": v.any_of(
            v.NONE, v.Interval(1, None, integer=True), description="None or an int >= 1"
        ),
        "dtype": v.DTYPE,
    }

    def __init__(
        self,
        n_components=None,
        *,
        tol=1e-2,
        max_iter=1000,
        noise_variance_init=None,
        rotation=None,
        device=None,
        chunk_size=None,
        dtype="float64",
    ):
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.noise_variance_init = noise_variance_init
        self.rotation = rotation
        self.device = device
        self.chunk_size = chunk_size
        self.dtype = dtype

    def _fit_on(self, comm, X, sample_weight):
        rows, weights = checked_rows(self, X, sample_weight, comm)
        d = self.n_features_in_
        q = d - 1 if self.n_components is None else self.n_components
        if not 1 <= q < d:
            raise ValueError(
                f"n_components={q} must lie in 1 … n_features - 1 = {d - 1}: the noise of a "
                "feature is what its factors leave unexplained. Use fewer factors."
            )
        if has_gaps(rows, comm):
            return self._fit_em(comm, rows, weights, q)
        n, mean, S = second_moments(rows, weights, comm, self.device, self.chunk_size)
        S = S.cpu()
        check_not_constant(torch.diagonal(S), "factor analysis")
        floor = NOISE_FLOOR * torch.clamp(torch.diagonal(S), min=1e-300)
        W, psi = _initial(S, q, self.noise_variance_init, floor)
        lls, previous, converged = [], -math.inf, False
        for _ in range(self.max_iter):
            ll, G, B = _e_step(S, W, psi)
            lls.append(ll)
            if ll - previous < self.tol / n:  # tol on the total, as scikit-learn's
                converged = True
                break
            previous = ll
            SB = S @ B.T
            W = torch.linalg.solve((G + B @ SB).T, SB.T).T
            psi = torch.clamp(torch.diagonal(S) - (W * SB).sum(1), min=floor)
        if not converged:
            self._warn_unconverged()
        return self._store(v.to_numpy(mean), W.numpy(), psi.numpy(), lls, converged, n)

    def _fit_em(self, comm, rows, weights, q):
        """EM on the rows, their gaps marginalized (see the module docstring)."""
        moments = observed_moments(rows, weights, comm, self.device, self.chunk_size)
        n, variance = moments[0], moments[3]
        check_not_constant(variance, "factor analysis")
        noise = None
        if self.noise_variance_init is not None:
            noise = _given_noise(self.noise_variance_init, variance.shape[0])
        result, _, run = fit_em(
            self,
            comm,
            rows,
            weights,
            moments,
            k=1,
            q=q,
            isotropic=False,
            floor=NOISE_FLOOR * variance,
            init="pca",
            tol=self.tol / n,
            noise=noise,
        )
        if not result.converged:
            self._warn_unconverged()
        self._store_params(result.params, run.shift)
        return self._store(
            self.mean_,
            self.loadings_,
            self.noise_variance_,
            list(result.lower_bounds),
            result.converged,
            n,
        )

    def _store_params(self, params, shift):
        """The fitted attributes from EM's (one-component) parameters (frame minus ``shift``)."""
        self.mean_ = v.to_numpy(params.means[0] + shift)
        self.loadings_ = v.to_numpy(params.loadings[0])
        self.components_ = self.loadings_.T.copy()
        self.noise_variance_ = v.to_numpy(params.noise[0])

    def _structure(self, variance):
        """(K, q, isotropic, noise floor) of the EM model (see LatentFactorModel.partial_fit)."""
        d = variance.shape[0]
        q = d - 1 if self.n_components is None else self.n_components
        return 1, q, False, NOISE_FLOOR * variance

    def _store(self, mean, W, psi, lls, converged, n):
        if self.rotation is not None:
            W = W @ _rotation(W, self.rotation)
        self.mean_ = mean
        self.loadings_ = W
        self.components_ = W.T.copy()
        self.noise_variance_ = psi
        self.lower_bounds_ = lls
        self.loglike_ = [ll * n for ll in lls]
        self.lower_bound_ = lls[-1]
        self.n_iter_ = len(lls)
        self.converged_ = converged
        self.n_samples_ = n
        return self

    def _warn_unconverged(self):
        v.warn(
            f"FactorAnalysis did not converge in max_iter={self.max_iter} EM iterations (the "
            f"last change of the total log-likelihood was above tol={self.tol}). Increase "
            "max_iter or tol.",
            ConvergenceWarning,
        )

    def _noise(self) -> np.ndarray:
        return np.asarray(self.noise_variance_, dtype=np.float64)

    def _n_parameters(self) -> int:
        d, q = self.loadings_.shape
        return d + d * q - q * (q - 1) // 2 + d  # μ, W up to rotation, Ψ


def _initial(S, q, given, floor):
    """The probabilistic-PCA solution of S (or the given Ψ with W from S scaled by it)."""
    eigenvalues, vectors = torch.linalg.eigh(S)
    eigenvalues, vectors = eigenvalues.flip(0).clamp(min=0.0), vectors.flip(1)
    sigma2 = eigenvalues[q:].mean()
    W = vectors[:, :q] * torch.sqrt(torch.clamp(eigenvalues[:q] - sigma2, min=0.0))
    if given is None:
        psi = torch.clamp(torch.diagonal(S) - (W * W).sum(1), min=floor)
    else:
        psi = _given_noise(given, floor.shape[0])
    return W, psi


def _given_noise(given, d: int) -> torch.Tensor:
    psi = torch.as_tensor(as_float64(given, "noise_variance_init"), dtype=f64)
    if psi.shape != (d,) or not bool((psi > 0).all()):
        raise ValueError(
            f"noise_variance_init must hold {d} positive variances (one per feature); got "
            f"shape {tuple(psi.shape)}."
        )
    return psi


def _e_step(S, W, psi):
    """The log-likelihood per sample of C = W Wᵀ + Ψ on S, and the posterior's G and B."""
    d, q = W.shape
    A = W / psi[:, None]  # Ψ⁻¹ W
    G = torch.linalg.inv(torch.eye(q, dtype=f64) + W.T @ A)
    B = G @ A.T
    log_det = torch.log(psi).sum() - torch.logdet(G)  # |C| = |Ψ| |I + Wᵀ Ψ⁻¹ W|
    # tr(C⁻¹ S) with C⁻¹ = Ψ⁻¹ − A G Aᵀ
    trace = (torch.diagonal(S) / psi).sum() - (A * (S @ A @ G)).sum()
    return float(-0.5 * (d * LOG_2PI + log_det + trace)), G, B


def _rotation(W: np.ndarray, method: str, tol: float = 1e-8, max_iter: int = 500) -> np.ndarray:
    """The orthogonal rotation R maximising the varimax (γ = 1) or quartimax (γ = 0) criterion of
    W R (Kaiser 1958; the SVD form of the update)."""
    gamma = 1.0 if method == "varimax" else 0.0
    p, k = W.shape
    R = np.eye(k)
    criterion = 0.0
    for _ in range(max_iter):
        L = W @ R
        target = L**3 - (gamma / p) * L @ np.diag((L**2).sum(0))
        u, s, vt = np.linalg.svd(W.T @ target)
        R = u @ vt
        previous, criterion = criterion, s.sum()
        if criterion < previous * (1 + tol):
            break
    return R
