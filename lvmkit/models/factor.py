"""Mixtures of factor analyzers, with missing values, on the EM protocol of :mod:`lvmkit.fit.em`.

Component k of K: z ~ N(0, I_q), x | z, k ~ N(W_k z + μ_k, Ψ_k), Ψ_k diagonal (factor analysis)
or σ_k² I (probabilistic PCA). K = 1 is factor analysis or probabilistic PCA; K > 1 is Ghahramani
& Hinton's (1996) mixture of factor analyzers, or Tipping & Bishop's mixture of PPCA.

A row observes the coordinates o (NaN marks the others, missing at random). Given k, the posterior
of z given the observed coordinates is Gaussian and exact:

    M = I + W_oᵀ Ψ_o⁻¹ W_o,   E[z] = M⁻¹ W_oᵀ Ψ_o⁻¹ (x_o − μ_o),   Cov[z] = M⁻¹,

and log N(x_o | μ_o, W_o W_oᵀ + Ψ_o) = −½ (|o| log 2π + log|Ψ_o| + log|M| + rᵀ Ψ_o⁻¹ r − bᵀ M⁻¹ b)
(Woodbury and the determinant lemma on the observed block; r = x_o − μ_o, b = W_oᵀ Ψ_o⁻¹ r). All
rows and components at once: M is I + Σ_d o_d W_d W_dᵀ / ψ_d, one matrix product of the mask with
the per-feature outer products, and only rows with gaps get their own M.

The M-step regresses every observed coordinate on z̃ = [z; 1] (the mean is learned jointly with the
loadings, as in Ghahramani & Hinton's exact M-step). Because x_o given z factorises over the
coordinates, the expected complete-data log-likelihood of feature d of component k involves only
the rows observing d:

    [W_kd, μ_kd] = B_kd A_kd⁻¹,   ψ_kd = (c_kd − [W_kd, μ_kd] · B_kd) / m_kd,

with the additive statistics A_kd = Σ γ o_d E[z̃ z̃ᵀ], B_kd = Σ γ o_d x_d E[z̃], c_kd = Σ γ o_d x_d²,
m_kd = Σ γ o_d (γ = the responsibility times the sample weight). Missing values are integrated
out, not filled in, so this EM converges faster than treating them as latent (Ilin & Raiko 2010).
A_kd is stored as Σ γ E[z̃ z̃ᵀ] minus the part of the rows *missing* d, which is zero (and not
computed) for complete data. The statistics are sums over rows, so they add over chunks and
processes, and they do not depend on the parameters (stepwise EM blends them as they are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lvmkit.distributed import LOCAL, Local
from lvmkit.families._base import EPS_NK, LOG_2PI
from lvmkit.models.stats import Stats
from lvmkit.posteriors.exact import responsibilities

f64 = torch.float64


@dataclass
class FactorParams:
    """Weights (K,), means (K, D), loadings (K, D, q), noise variances (K, D); float64, in the
    frame of the data the model reads (the data minus a fixed shift)."""

    weights: Tensor
    means: Tensor
    loadings: Tensor
    noise: Tensor
    compute: dict = field(default_factory=dict, repr=False, compare=False)

    def to(self, device) -> FactorParams:
        return FactorParams(
            *(t.to(device) for t in (self.weights, self.means, self.loadings, self.noise))
        )

    def shifted(self, shift: Tensor) -> FactorParams:
        """The same model in the frame of the data minus ``shift`` (D,)."""
        return FactorParams(self.weights, self.means - shift, self.loadings, self.noise)


def features(X: Tensor) -> Tensor:
    """``[x⁰, o]`` (n, 2D): the values with gaps set to 0, and the 0/1 mask of observed values."""
    observed = ~torch.isnan(X)
    return torch.cat([torch.where(observed, X, 0.0), observed.to(X.dtype)], 1)


def split(F: Tensor) -> tuple[Tensor, Tensor]:
    d = F.shape[1] // 2
    return F[:, :d], F[:, d:]


class FactorMixture:
    """The EM model (see the module docstring).

    Parameters
    ----------
    n_components, n_factors : K and q
    isotropic : σ_k² I noise (probabilistic PCA) instead of a diagonal Ψ_k
    dtype : compute dtype of the posteriors (the statistics are float64)
    floor : (D,) lower bound of every noise variance (float64)
    gaps : whether any row of the data has a missing value (the statistics then carry the
        per-feature corrections; every rank must agree)
    """

    advice = "Standardize X, use fewer factors, or check for constant or duplicated features."

    def __init__(self, n_components, n_factors, isotropic, dtype, floor: Tensor, gaps: bool):
        self.n_components, self.n_factors = int(n_components), int(n_factors)
        self.isotropic, self.dtype, self.floor, self.gaps = isotropic, dtype, floor, bool(gaps)

    # ------------------------------------------------------------------ posteriors
    def _prepared(self, params: FactorParams) -> dict:
        cached = params.compute.get(self.dtype)
        if cached is None:
            W, psi = params.loadings, params.noise
            Wpsi = W / psi[..., None]
            outer = Wpsi[..., :, None] * W[..., None, :]  # (K, D, q, q): W_d W_dᵀ / ψ_d
            eye = torch.eye(self.n_factors, dtype=f64, device=W.device)
            k, d, q = W.shape
            means = params.means
            inv_psi = 1.0 / psi
            cached = {
                "log_weights": torch.log(params.weights),
                # b = x⁰ Ψ⁻¹W − o (μ Ψ⁻¹W), all components side by side (D, K q)
                "Wpsi": Wpsi.permute(1, 0, 2).reshape(d, k * q),
                "muWpsi": (means[..., None] * Wpsi).permute(1, 0, 2).reshape(d, k * q),
                # rᵀ Ψ⁻¹ r = x⁰² ψ⁻¹ − 2 x⁰ (μ ψ⁻¹) + o (μ² ψ⁻¹), (D, K) each
                "inv_psi": inv_psi.T,
                "mu_psi": (means * inv_psi).T,
                "mu2_psi": (means.square() * inv_psi).T,
                "log_psi": torch.log(psi),
                "outer": outer.flatten(2),
                "M": eye + outer.sum(1),
            }
            cached = {name: t.to(self.dtype) for name, t in cached.items()}
            params.compute[self.dtype] = cached
        return cached

    def posterior(self, F: Tensor, params: FactorParams):
        """For every row and component: log p(x_o, k) (n, K), E[z | x_o, k] (K, n, q) and
        Cov[z | x_o, k] (K, n or 1, q, q): one shared per component when no row has gaps."""
        p = self._prepared(params)
        x, o = split(F)
        n, d = x.shape
        k, q = self.n_components, self.n_factors
        missing = 1.0 - o
        gaps = bool(missing.any())
        b = x @ p["Wpsi"]
        quad = x.square() @ p["inv_psi"] - 2.0 * (x @ p["mu_psi"])
        if gaps:
            b -= o @ p["muWpsi"]
            quad += o @ p["mu2_psi"]
            dropped = (missing @ p["outer"].permute(1, 0, 2).reshape(d, -1)).reshape(n, k, q, q)
            M = p["M"][:, None] - dropped.transpose(0, 1)
            log_psi = (o @ p["log_psi"].T).T  # (K, n)
            n_obs = o.sum(1)
        else:
            b -= p["muWpsi"].sum(0)
            quad += p["mu2_psi"].sum(0)
            M = p["M"][:, None]
            log_psi = p["log_psi"].sum(1, keepdim=True)
            n_obs = torch.full((n,), float(d), dtype=x.dtype, device=x.device)
        b = b.reshape(n, k, q).transpose(0, 1)  # (K, n, q)
        quad = quad.T  # (K, n)
        L, info = torch.linalg.cholesky_ex(M)
        if bool((info > 0).any()):  # not positive-definite in this dtype: float64
            L = torch.linalg.cholesky(M.to(f64)).to(M.dtype)
        # M⁻¹ = L⁻ᵀ L⁻¹ (a triangular solve is cheaper than cholesky_inverse for small batches)
        inverse = torch.linalg.solve_triangular(
            L, torch.eye(q, dtype=L.dtype, device=L.device).expand_as(L), upper=False
        )
        cov = inverse.transpose(-1, -2) @ inverse
        mean = (cov @ b[..., None])[..., 0]
        log_det = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # (K, n or 1)
        log_prob = -0.5 * (n_obs * LOG_2PI + log_psi + log_det + quad - (b * mean).sum(-1))
        return log_prob.T + p["log_weights"], mean, cov

    def log_evidence(self, F: Tensor, params: FactorParams) -> Tensor:
        return torch.logsumexp(self.posterior(F, params)[0], dim=1)

    # ------------------------------------------------------------------ E-step
    def e_step(self, F: Tensor, weights: Tensor | None, params: FactorParams) -> Stats:
        log_joint, mean, cov = self.posterior(F, params)
        log_evidence, resp = responsibilities(log_joint, inplace=True)
        if weights is None:
            total = log_evidence.sum(dtype=f64)
            n = torch.full((), float(F.shape[0]), dtype=f64, device=F.device)
        else:
            resp.mul_(weights[:, None])
            total = (log_evidence * weights).sum(dtype=f64)
            n = weights.sum(dtype=f64)
        x, o = (t.to(f64) for t in split(F))
        g = resp.T.to(f64)  # (K, n)
        z = torch.cat([mean.to(f64), torch.ones_like(mean[..., :1], dtype=f64)], -1)  # z̃
        zg = z * g[..., None]
        cov = cov.to(f64)
        outer = zg.transpose(1, 2) @ z  # Σ γ E[z̃] E[z̃]ᵀ (K, q+1, q+1)
        q = self.n_factors
        if cov.shape[1] == 1:
            outer[:, :q, :q] += g.sum(1)[:, None, None] * cov[:, 0]
        else:
            outer[:, :q, :q] += torch.einsum("kn,knab->kab", g, cov)
        stats = {
            "nk": g.sum(1),
            "A": outer,
            "B": torch.matmul(x.T, zg),  # (K, D, q+1); gaps hold 0 in x
            "c": g @ x.square(),
            "log_likelihood": total,
            "n_samples": n,
        }
        if self.gaps:
            stats.update(self._gap_statistics(o, g, z, cov))
        return Stats(stats)

    def _gap_statistics(self, o: Tensor, g: Tensor, z: Tensor, cov: Tensor) -> dict:
        """The parts of A and m of the rows *missing* each feature (K, D, …)."""
        k, q1 = g.shape[0], z.shape[-1]
        d = o.shape[1]
        missing = 1.0 - o
        rows = torch.nonzero(missing.any(1)).reshape(-1)
        A = torch.zeros(k, d, q1, q1, dtype=f64, device=o.device)
        m = g @ missing
        if rows.numel():
            zs, gs = z[:, rows], g[:, rows]
            second = zs[..., :, None] * zs[..., None, :]
            second[..., : q1 - 1, : q1 - 1] += cov[:, rows] if cov.shape[1] > 1 else cov
            second = (second * gs[..., None, None]).flatten(2)  # (K, m, (q+1)²)
            A = torch.matmul(missing[rows].T, second).reshape(k, d, q1, q1)
        return {"A_gap": A, "m_gap": m}

    def zero_stats(self, chunks, params: FactorParams) -> Stats:
        d = chunks.n_features
        empty = torch.zeros(0, 2 * d, dtype=self.dtype, device=chunks.device)
        return self.e_step(empty, None, params)

    def portable(self, stats: Stats, params: FactorParams) -> Stats:
        return stats  # sums of data and posterior moments: no parameter enters them

    # ------------------------------------------------------------------ M-step
    def empty_components(self, stats: Stats) -> Tensor:
        threshold = max(float(torch.finfo(self.dtype).eps) * stats.scalar("n_samples") * 10, 1e-12)
        return torch.nonzero(stats["nk"] < threshold).reshape(-1)

    def worst(self, F: Tensor, weights, params: FactorParams):
        log_evidence = self.log_evidence(F, params)
        if weights is not None:
            log_evidence = torch.where(weights > 0, log_evidence, torch.inf)
        i = torch.argmin(log_evidence)
        return float(log_evidence[i]), split(F)[0][i].to(f64)

    def m_step(self, stats: Stats, params: FactorParams, reseed=None) -> FactorParams:
        nk = stats["nk"] + EPS_NK
        q = self.n_factors
        A, B, c = stats["A"], stats["B"], stats["c"]
        ridge = 1e-12 * torch.diagonal(A, dim1=-2, dim2=-1).amax(-1)
        eye = torch.eye(q + 1, dtype=f64, device=A.device)
        if self.gaps:
            A = A[:, None] - stats["A_gap"]  # (K, D, q+1, q+1)
            m = nk[:, None] - stats["m_gap"]
            A = A + ridge[:, None, None, None] * eye
            Wt = torch.linalg.solve(A, B[..., None])[..., 0]
        else:
            m = nk[:, None].expand_as(c)
            A = A + ridge[:, None, None] * eye
            Wt = torch.linalg.solve(A, B.transpose(1, 2)).transpose(1, 2)
        residual = (c - (Wt * B).sum(-1)).clamp(min=0.0)
        m = m.clamp(min=EPS_NK)
        if self.isotropic:
            noise = (residual.sum(1) / m.sum(1))[:, None].expand_as(residual)
        else:
            noise = residual / m
        noise = torch.maximum(noise, self.floor)
        weights = nk / nk.sum()
        W, means = Wt[..., :q].contiguous(), Wt[..., q].contiguous()
        if reseed is not None:
            empty, point = reseed
            biggest = int(torch.argmax(nk))
            means[empty] = point
            W[empty] = W[biggest]
            noise = noise.clone()
            noise[empty] = noise[biggest]
            weights = weights.clone()
            weights[empty] = 1.0 / len(weights)
            weights = weights / weights.sum()
        return FactorParams(weights, means, W, noise.contiguous())

    def bound(self, stats: Stats) -> float:
        return stats.scalar("log_likelihood") / max(stats.scalar("n_samples"), 1e-300)


# ---------------------------------------------------------------------- starts
def filled_moments(chunks, labels_of, k: int, comm: Local = LOCAL):
    """Per-component weight (K,), mean (K, D) and covariance (K, D, D) of the rows with their gaps
    filled by 0 (the frame's origin: the column means), rows assigned by ``labels_of(x⁰, start)``
    (one-hot (n, K)); summed over chunks and ranks."""
    total = None
    start = 0
    for F, w in chunks.iter_weighted():
        x = split(F)[0].to(f64)
        h = labels_of(x, start).to(f64)
        start += x.shape[0]
        if w is not None:
            h = h * w.to(f64)[:, None]
        xh = x[None] * h.T[..., None]  # (K, n, D)
        part = Stats(n=h.sum(0), s1=h.T @ x, s2=xh.transpose(1, 2) @ x)
        total = part if total is None else total + part
    if total is None:
        d = chunks.n_features
        zero = dict(dtype=f64, device=chunks.device)
        total = Stats(
            n=torch.zeros(k, **zero), s1=torch.zeros(k, d, **zero), s2=torch.zeros(k, d, d, **zero)
        )
    total = comm.reduce(total)
    n = total["n"].clamp(min=EPS_NK)
    mean = total["s1"] / n[:, None]
    cov = total["s2"] / n[:, None, None] - mean[:, :, None] * mean[:, None, :]
    return total["n"], mean, 0.5 * (cov + cov.transpose(1, 2))


def ppca_start(nk, mean, cov, q: int, isotropic: bool, floor: Tensor) -> FactorParams:
    """The probabilistic-PCA solution of each component's covariance (the noise of factor
    analysis starts at what the loadings leave of each variance)."""
    eigenvalues, vectors = torch.linalg.eigh(cov)
    eigenvalues, vectors = eigenvalues.flip(-1).clamp(min=0.0), vectors.flip(-1)
    sigma2 = eigenvalues[:, q:].mean(-1)
    W = (
        vectors[..., :q]
        * torch.sqrt((eigenvalues[:, :q] - sigma2[:, None]).clamp(min=0.0))[:, None]
    )
    if isotropic:
        noise = sigma2[:, None].expand(-1, cov.shape[1])
    else:
        noise = torch.diagonal(cov, dim1=-2, dim2=-1) - W.square().sum(-1)
    noise = torch.maximum(noise, floor).contiguous()
    weights = nk.clamp(min=EPS_NK) / nk.clamp(min=EPS_NK).sum()
    return FactorParams(weights, mean, W.contiguous(), noise)


def random_start(variance: Tensor, k: int, q: int, generator, isotropic: bool, floor: Tensor):
    """A random start: loadings N(0, s² / q) with s² the mean variance, means at the column means
    (the origin) plus a small random offset per component, noise at the variances."""
    d = variance.shape[0]
    scale = math.sqrt(max(float(variance.mean()), 1e-300))
    kw = dict(dtype=f64, device=generator.device, generator=generator)
    W = torch.randn(k, d, q, **kw) * (scale / math.sqrt(q))
    means = torch.randn(k, d, **kw) * (0.1 * scale) if k > 1 else torch.zeros(1, d, dtype=f64)
    device = variance.device
    noise = variance.mean().expand(k, d) if isotropic else variance.expand(k, d)
    noise = torch.maximum(noise, floor).contiguous()
    weights = torch.full((k,), 1.0 / k, dtype=f64, device=device)
    return FactorParams(weights, means.to(device), W.to(device), noise)
