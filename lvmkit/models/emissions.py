"""What a hidden Markov model's state emits: p(x_t | z_t = k), over the families lvmkit has.

An emission wraps an observation family (:mod:`lvmkit.families`) for the HMM: log-densities of
every row under every state, additive statistics of rows weighted by the state posteriors γ (in
the parameter-free frame, so they add across chunks and processes and blend across stepwise
steps), and the M-step, which for the Gaussian follows hmmlearn's maximum a posteriori updates
(``means_prior``, ``means_weight``, ``covars_prior``, ``covars_weight``) so that, from the same
parameters, every iteration matches hmmlearn's. :class:`MixtureEmission` is a Gaussian mixture per
state (GMMHMM): the family's components are the K·M (state, mixture component) pairs.

Parameters are in float64, in the model's coordinates (data centred on a float64 shift for the
Gaussian kinds; the estimator converts at its boundary).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lvmkit.families._base import EPS_NK, column_sums
from lvmkit.families.gaussian import Gaussian, GaussianParams

f64 = torch.float64


class Emission:
    """The protocol: a family, its features, densities, statistics and M-step for K states."""

    family = None
    letters = ""  # the emission's letters in ``params`` / ``init_params`` (hmmlearn's)

    def features(self, X: Tensor) -> Tensor:
        return self.family.features(X)

    def data_of(self, F: Tensor) -> Tensor:
        return self.family.data_of(F)

    def compute(self, params, dtype):
        """A compute-dtype copy of the parameters, prepared for :meth:`log_prob`."""
        out = params.to(dtype=dtype)
        self.family.prepare(out)
        return out

    def log_prob(self, F: Tensor, params, workspace=None):
        """log p(x | z = k) (n, K) and a cache for :meth:`statistics`."""
        return self.family.log_prob(F, params, workspace)

    def statistics(self, F: Tensor, gamma: Tensor, params, cache) -> dict[str, Tensor]:
        stats = self.family.statistics(F, gamma, params, cache)
        return self.family.portable(stats, params)

    def m_step(self, stats, params, reseed, update: str):
        raise NotImplementedError


class GaussianEmission(Emission):
    """Multivariate normal emissions, hmmlearn's GaussianHMM updates (its defaults: means_weight 0,
    covars_prior 1e-2, covars_weight 1, so a covariance is (0.01 + scatter) / N_k)."""

    letters = "mc"

    def __init__(self, covariance_type, means_prior, means_weight, covars_prior, covars_weight):
        self.family = Gaussian(covariance_type, reg_covar=0.0)
        self.covariance_type = covariance_type
        # float64 tensors: means_prior (K, D) in model coordinates, means_weight (K, 1);
        # covars_prior broadcastable to the scatter ((K, D) diag and spherical, (K, D, D) full,
        # (D, D) tied) and covars_weight ((K, 1), (K, 1, 1) or a scalar)
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    def m_step(self, stats, params: GaussianParams, reseed, update: str) -> GaussianParams:
        ct = self.covariance_type
        nk, sx, sxx = stats["nk"], stats["sx"], stats["sxx"]
        d = sx.shape[1]
        mw, mp = self.means_weight, self.means_prior  # (K, 1), (K, D)
        means = params.means.to(f64)
        if "m" in update:
            means = (mw * mp + sx) / (mw + nk[:, None])
        covariances = params.covariances
        if covariances is None:
            covariances = Gaussian.covariances_from_cholesky(params.precisions_cholesky, ct)
        if "c" in update:
            cp, cw = self.covars_prior, self.covars_weight
            md = means - mp
            if ct in ("diag", "spherical"):
                c_n = mw * md.square() + sxx - 2 * means * sx + means.square() * nk[:, None]
                cov = (cp + c_n) / torch.clamp(torch.clamp(cw - 1, min=0) + nk[:, None], min=1e-5)
                covariances = cov if ct == "diag" else cov.mean(1)
            else:
                outer = means[:, :, None] * sx[:, None, :]
                c_n = (
                    mw[:, :, None] * md[:, :, None] * md[:, None, :]
                    - outer
                    - outer.mT
                    + nk[:, None, None] * means[:, :, None] * means[:, None, :]
                )
                if ct == "full":
                    c_n = c_n + sxx
                    covariances = (cp + c_n) / (torch.clamp(cw - d, min=0) + nk[:, None, None])
                else:  # tied: sxx is Σ_n x xᵀ over every state, (D, D)
                    covariances = (cp + c_n.sum(0) + sxx) / (torch.clamp(cw - d, min=0) + nk.sum())
                covariances = 0.5 * (covariances + covariances.mT)
        if reseed is not None:
            empty, point = reseed
            keep = torch.ones(nk.shape[0], dtype=torch.bool, device=nk.device)
            keep[empty] = False
            means = means.clone()
            means[empty] = point.to(means)
            if ct != "tied":
                covariances = covariances.clone()
                covariances[empty] = (
                    covariances[keep].mean(0) if bool(keep.any()) else covariances.mean(0)
                )
        P, covariances = self.family.precisions_cholesky(covariances)
        return GaussianParams(means, P, covariances=covariances)

    def n_parameters(self, k: int, d: int) -> int:
        return self.family.n_parameters(k, d)


class IndependentEmission(Emission):
    """Poisson, Bernoulli or categorical emissions (a family of independent features), by the
    family's clipped maximiser; optional conjugate priors (Gamma for Poisson rates:
    λ = (α + Σ γ x) / (β + Σ γ); Dirichlet for categorical: max(prior − 1 + counts, 0))."""

    def __init__(self, family, letter: str, prior=None, weight=None):
        self.family = family
        self.letters = letter
        self.prior, self.weight = prior, weight

    def m_step(self, stats, params, reseed, update: str):
        if self.letters not in update:
            values = _values(params).to(f64)
        else:
            nk, sx = stats["nk"], stats["sx"]
            if self.letters == "l" and (self.prior is not None or self.weight is not None):
                alpha = _as(0.0 if self.prior is None else self.prior, sx)
                beta = _as(0.0 if self.weight is None else self.weight, sx)
                values = ((alpha + sx) / (beta + nk[:, None] + EPS_NK)).clamp(
                    min=self.family.min_rate
                )
            elif self.letters == "e" and self.prior is not None:
                counts = torch.clamp(_as(self.prior, sx) - 1.0 + sx, min=0.0)
                values = self.family.maximize({"nk": counts.sum(1), "sx": counts})
            else:
                values = self.family.maximize(stats)
        if reseed is not None:
            empty, point = reseed
            values = values.clone()
            values[empty] = self.family._clip(point.to(values).expand(int(empty.numel()), -1))
        return self.family.params_class(values)

    def n_parameters(self, k: int, d: int) -> int:
        return self.family.n_parameters(k, d)


@dataclass
class MixtureEmissionParams:
    """A Gaussian mixture per state: weights (K, M) and the K·M Gaussians (state-major)."""

    weights: Tensor
    gaussians: GaussianParams
    prepared: dict | None = None

    def to(self, dtype=None, device=None) -> MixtureEmissionParams:
        return MixtureEmissionParams(
            self.weights.to(dtype=dtype, device=device),
            self.gaussians.to(dtype=dtype, device=device),
        )


class MixtureEmission(Emission):
    """A mixture of ``n_mix`` Gaussians per state (hmmlearn's GMMHMM). Maximum likelihood with
    ``min_covar`` added to every covariance's diagonal; 'tied' ties the components of a state
    (one covariance per state, as hmmlearn)."""

    letters = "mcw"

    def __init__(self, n_states: int, n_mix: int, covariance_type: str, min_covar: float):
        self.k, self.m = int(n_states), int(n_mix)
        self.covariance_type = covariance_type
        inner = "full" if covariance_type == "tied" else covariance_type
        self.family = Gaussian(inner, reg_covar=min_covar)

    def compute(self, params: MixtureEmissionParams, dtype):
        out = params.to(dtype=dtype)
        self.family.prepare(out.gaussians)
        out.prepared = {"log_w": torch.log(out.weights).reshape(-1)}
        return out

    def log_prob(self, F, params: MixtureEmissionParams, workspace=None):
        lp, cache = self.family.log_prob(F, params.gaussians, workspace)
        joint = (lp + params.prepared["log_w"]).view(-1, self.k, self.m)
        per_state = torch.logsumexp(joint, dim=2)
        within = torch.exp(joint - per_state[:, :, None])  # p(mix component | state, x)
        return per_state, (within, cache)

    def statistics(self, F, gamma, params: MixtureEmissionParams, cache):
        within, gcache = cache
        resp = (gamma[:, :, None] * within).reshape(-1, self.k * self.m)
        stats = self.family.statistics(F, resp, params.gaussians, gcache)
        out = self.family.portable(stats, params.gaussians)
        out["mix"] = out.pop("nk")
        out["nk"] = column_sums(gamma)
        return out

    def m_step(self, stats, params: MixtureEmissionParams, reseed, update: str):
        mix = stats["mix"].view(self.k, self.m)
        weights = params.weights
        if "w" in update:
            w = mix + EPS_NK
            weights = w / w.sum(1, keepdim=True)
        means, cov = self.family.maximize(
            {"nk": stats["mix"], "sx": stats["sx"], "sxx": stats["sxx"]}
        )
        old = params.gaussians
        if "m" not in update:
            means = old.means.to(f64)
        if "c" not in update:
            cov = (
                old.covariances
                if old.covariances is not None
                else Gaussian.covariances_from_cholesky(
                    old.precisions_cholesky, self.family.covariance_type
                )
            )
        elif self.covariance_type == "tied":  # pool the components of each state
            nkm = (stats["mix"] + EPS_NK).view(self.k, self.m, 1, 1)
            pooled = (cov.view(self.k, self.m, *cov.shape[1:]) * nkm).sum(1) / nkm.sum(1)
            cov = pooled.repeat_interleave(self.m, 0)
        if reseed is not None:
            empty, point = reseed
            rows = (empty[:, None] * self.m + torch.arange(self.m, device=empty.device)).reshape(-1)
            means, cov, weights = means.clone(), cov.clone(), weights.clone()
            means[rows] = point.to(means)
            cov[rows] = cov.mean(0)
            weights[empty] = 1.0 / self.m
        P, cov = self.family.precisions_cholesky(cov)
        return MixtureEmissionParams(weights, GaussianParams(means, P, covariances=cov))

    def n_parameters(self, k: int, d: int) -> int:
        per = {"full": d * (d + 1) // 2, "diag": d, "spherical": 1}
        if self.covariance_type == "tied":
            cov = k * d * (d + 1) // 2
        else:
            cov = k * self.m * per[self.covariance_type]
        return k * (self.m - 1) + k * self.m * d + cov


def _values(params) -> Tensor:
    for name in ("rates", "probs"):
        if hasattr(params, name):
            return getattr(params, name)
    raise TypeError(f"unknown emission parameters {type(params).__name__}")


def _as(value, like: Tensor) -> Tensor:
    """A hyperparameter (a number or an array broadcastable to ``like``) as a float64 tensor."""
    return torch.as_tensor(value, dtype=f64, device=like.device)
