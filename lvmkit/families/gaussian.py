"""Multivariate normal observations for a K-component mixture.

One family, one page: log-densities of every sample under every component, additive sufficient
statistics of responsibility-weighted data, weighted maximum likelihood from those statistics, and
sampling. Four covariance structures share the code:

============  =========================  ==================================
type          ``covariances``            ``precisions_cholesky``
============  =========================  ==================================
full          (K, D, D)                  (K, D, D) upper triangular
tied          (D, D)                     (D, D) upper triangular
diag          (K, D)                     (K, D)
spherical     (K,)                       (K,)
============  =========================  ==================================

``precisions_cholesky`` P is the factor with precision = P Pᵀ, as in scikit-learn, so that the
Mahalanobis term is ``‖(x − μ) P‖²`` and log det Σ⁻¹ = 2 Σ log diag P. Precisions are never
formed by inverting a covariance: P = L⁻ᵀ from the Cholesky factor L of Σ.

Numerics
--------
All tensors passed to :meth:`Gaussian.log_prob` and :meth:`Gaussian.statistics` are in the compute
dtype (float32 or float64). Statistics are returned in float64 and the M-step runs in float64.

Statistics are N_k = Σ r, S_k = Σ r x and second moments, sums over rows in float64, so they add
up across chunks and processes computed under the same parameters. :meth:`Gaussian.portable` puts
them in a frame that does not depend on the parameters (about the origin of the data the caller
passes, which the engine centres on a float64 shift, see :mod:`lvmkit.data.chunks`), where
statistics of different iterations can be blended (stepwise EM).

* ``full``: the E-step computes whitened residuals y = (x − μ_k) P_k once for the densities, and
  the batch M-step's statistics are Σ r y yᵀ of those residuals: centred on the component means
  *and* whitened, so they are near r·I at convergence whatever the scale of the data (float32
  loses nothing to the data's offset). :meth:`Gaussian.maximize` maps them back with L = P⁻ᵀ and
  corrects for the mean shift; :meth:`Gaussian.portable` maps them, in float64, to Σ r x xᵀ.
* ``diag``, ``spherical``, ``tied``: the quadratic forms are matrix products on the centred data;
  the second-moment statistics are formed in float64 from compute-dtype values (products of
  float32 numbers are exact in float64), with the same eps₆₄ bound. This keeps the E- and M-steps at
  matrix-multiply speed for these structures; see DESIGN.md.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import Tensor

from lvmkit import _validation as v
from lvmkit.families._base import EPS_NK, LOG_2PI, column_sums
from lvmkit.families._base import buffer as _buffer

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class CovarianceJitterWarning(UserWarning):
    """A covariance matrix was not positive definite and jitter was added to its diagonal."""


@dataclass
class GaussianParams:
    """Means and Cholesky factors of the precisions, on one device and in one dtype."""

    means: Tensor
    precisions_cholesky: Tensor
    # Constants of the E-step derived from the two above (see Gaussian.prepare); filled lazily.
    prepared: dict | None = None
    # The covariances P was factorised from (jitter included), kept by the M-step (float64).
    covariances: Tensor | None = None

    def to(self, dtype: torch.dtype | None = None, device=None) -> GaussianParams:
        return GaussianParams(
            self.means.to(dtype=dtype, device=device),
            self.precisions_cholesky.to(dtype=dtype, device=device),
        )


class Gaussian:
    """Gaussian observation family with one of four covariance structures.

    Parameters
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    reg_covar : float
        Non-negative value added to the diagonal of every covariance estimate.
    """

    def __init__(self, covariance_type: str = "full", reg_covar: float = 1e-6):
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}."
            )
        self.covariance_type = covariance_type
        self.reg_covar = float(reg_covar)

    # ------------------------------------------------------------------ log-densities
    def features(self, X: Tensor) -> Tensor:
        """What the E-step reads for each row, computed once per data set (not per iteration).

        ``[x, 1]`` (n, D+1) for 'full', so that the whitened residuals x P_k − μ_k P_k of all
        components are one GEMM with no separate bias pass; ``x`` for 'tied'; ``[x², x]``
        (n, 2D) for 'diag' and 'spherical', whose quadratic forms and statistics are then single
        matrix products.
        """
        ct = self.covariance_type
        if ct == "tied":
            return X
        if ct == "full":
            return torch.cat([X, torch.ones_like(X[:, :1])], 1)
        return torch.cat([X.square(), X], 1)

    def data_of(self, features: Tensor) -> Tensor:
        """The data ``x`` back from :meth:`features` (the last axis)."""
        ct = self.covariance_type
        if ct == "tied":
            return features
        if ct == "full":
            return features[..., :-1]
        return features[..., features.shape[-1] // 2 :]

    def prepare(self, params: GaussianParams) -> dict:
        """Per-iteration constants of :meth:`log_prob`, computed once per M-step, not per chunk."""
        if params.prepared is not None:
            return params.prepared
        means, P = params.means, params.precisions_cholesky
        k, d = means.shape
        ct = self.covariance_type
        if ct == "full":
            # Y[k] = [x, 1] @ [P_k; −μ_k P_k]: whitened residuals of every component, laid out
            # component-major (K, n, D) so the scatter products below read contiguous blocks.
            prep = {
                "P_aug": torch.cat([P, -torch.bmm(means.unsqueeze(1), P)], 1).contiguous(),
                "log_det": torch.log(torch.diagonal(P, dim1=-2, dim2=-1)).sum(-1),
            }
        elif ct == "tied":
            b = means @ P
            prep = {
                "P": P,
                "b_T": b.T.contiguous(),
                "b_sq": b.square().sum(1),
                "log_det": torch.log(torch.diagonal(P)).sum().expand(k),
            }
        else:
            prec = P.square() if ct == "diag" else P.square()[:, None].expand(k, d)
            # Σ_d prec (x − μ)² = [x², x] @ [precᵀ; −2 (μ prec)ᵀ] + Σ_d μ² prec: one GEMM.
            prep = {
                "W": torch.cat([prec.T, -2.0 * (means * prec).T], 0).contiguous(),
                "c": (means.square() * prec).sum(1),
                "log_det": torch.log(P).sum(1) if ct == "diag" else d * torch.log(P),
            }
        params.prepared = prep
        return prep

    def log_prob(
        self, X: Tensor, params: GaussianParams, workspace: dict | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """log N(x_n | μ_k, Σ_k) for every sample and component.

        ``X`` is :meth:`features` of the data. Returns ``(log_prob, cache)``: ``log_prob`` is
        (n, K); ``cache`` holds the whitened residuals (K, n, D) for ``full`` (reused by
        :meth:`statistics`), else ``None``. ``workspace``, a dict the caller keeps across chunks,
        lets the residuals reuse one buffer: a fresh multi-MiB allocation per chunk costs page
        faults that doubled the time of the GEMM that fills it.
        """
        prep = self.prepare(params)
        n, d = X.shape
        cache = None
        ct = self.covariance_type
        if ct == "full":  # X holds [x, 1]
            P_aug = prep["P_aug"]
            k = P_aug.shape[0]
            d -= 1
            out = _buffer(workspace, "Y", (k, n, d), P_aug)
            Y = torch.bmm(X.expand(k, n, d + 1), P_aug, out=out)
            maha = torch.linalg.vector_norm(
                Y, dim=-1, out=_buffer(workspace, "maha", (k, n), P_aug)
            ).square_()
            log_prob = maha.mul_(-0.5).add_(prep["log_det"][:, None] - 0.5 * d * LOG_2PI)
            return log_prob.T, Y
        elif ct == "tied":
            XP = X @ prep["P"]
            k = prep["b_T"].shape[1]
            maha = torch.addmm(
                XP.square().sum(1, keepdim=True) + prep["b_sq"],
                XP,
                prep["b_T"],
                alpha=-2.0,
                out=_buffer(workspace, "maha", (n, k), XP),
            )
        else:  # diag, spherical: X holds the features [x², x]
            W = prep["W"]
            maha = torch.addmm(prep["c"], X, W, out=_buffer(workspace, "maha", (n, W.shape[1]), W))
            d //= 2
        # Expanded quadratic forms can round a tiny distance below zero.
        maha = maha.clamp_(min=0.0)
        return maha.mul_(-0.5).add_(prep["log_det"] - 0.5 * d * LOG_2PI), cache

    # ------------------------------------------------------------------ statistics
    def statistics(
        self,
        X: Tensor,
        resp: Tensor,
        params: GaussianParams,
        cache: Tensor | None,
        workspace: dict | None = None,
    ) -> dict[str, Tensor]:
        """Additive sufficient statistics of features ``X`` weighted by ``resp`` (n, K).

        Sums over rows, in float64, so statistics of chunks (and of processes) computed under the
        same ``params`` add up to those of the whole data. For ``full`` the scatter is Σ r y yᵀ of
        the residuals whitened by ``params`` (and ``cache`` from :meth:`log_prob` with the same
        params); :meth:`portable` maps it to the parameter-free frame. Pass ``cache=None`` to
        compute the residuals here.
        """
        f64 = torch.float64
        ct = self.covariance_type
        if ct == "full":  # X holds [x, 1]
            d = X.shape[1] - 1
            if cache is None:
                _, cache = self.log_prob(X, params)
            # Σ r x and Σ r (the ones column) in one GEMM in the compute dtype; chunk sums are
            # accumulated in float64.
            first = (resp.T @ X).to(f64)
            nk, sx = first[:, d], first[:, :d]
            root = torch.sqrt(resp.T, out=_buffer(workspace, "root", resp.T.shape, resp))
            Ys = cache.mul_(root.unsqueeze(-1))  # (K, n, D); overwrites the cache
            syy = torch.bmm(Ys.transpose(1, 2), Ys).to(f64)
            return {"nk": nk, "sx": sx, "syy": syy}
        stats = {"nk": column_sums(resp)}
        if ct == "tied":
            X64 = X.to(f64)
            r64 = resp.to(f64)
            stats["sx"] = r64.T @ X64
            # Σ_n (Σ_k r_nk) x xᵀ: a row's total responsibility is its sample weight.
            stats["sxx"] = X64.T @ (X64 * r64.sum(1, keepdim=True))
            return stats
        # diag, spherical: X holds [x², x], so one GEMM gives Σ r x² and Σ r x. Per-chunk sums
        # are in the compute dtype, then accumulated in float64 across chunks.
        both = (resp.T @ X).to(f64)
        d = X.shape[1] // 2
        stats["sxx"], stats["sx"] = both[:, :d], both[:, d:]
        return stats

    @staticmethod
    def default_reference(n_components: int, X: Tensor) -> GaussianParams:
        """Identity whitening at the origin (the data's shift): the reference of statistics
        computed before any parameters exist (initialisation)."""
        k, d = n_components, X.shape[1]
        eye = torch.eye(d, dtype=X.dtype, device=X.device).expand(k, d, d).contiguous()
        return GaussianParams(torch.zeros(k, d, dtype=X.dtype, device=X.device), eye)

    def reference_at(self, stats: dict[str, Tensor]) -> GaussianParams | None:
        """Identity whitening centred on the statistics' own means (float64): where a second
        initialisation pass accumulates the 'full' scatter, centred (None for other types)."""
        if self.covariance_type != "full":
            return None
        nk = stats["nk"] + EPS_NK
        means = stats["sx"] / nk[:, None]
        k, d = means.shape
        eye = torch.eye(d, dtype=means.dtype, device=means.device).expand(k, d, d).contiguous()
        return GaussianParams(means, eye)

    # ------------------------------------------------------------------ initialisation
    def single_family(self) -> Gaussian:
        """The family of the lecture initialisation's single Gaussian ('tied' uses 'full')."""
        ct = self.covariance_type
        return Gaussian("full" if ct == "tied" else ct, self.reg_covar)

    def lecture_params(self, rows: Tensor, single_stats, n_components: int) -> dict:
        """Means at random rows; every covariance the single-Gaussian estimate from all the data."""
        _, cov = self.single_family().maximize(single_stats)
        ct = self.covariance_type
        k = n_components
        covariances = cov[0] if ct == "tied" else cov.expand(k, *cov.shape[1:]).clone()
        return {"means": rows, "covariances": covariances}

    def initial_params(self, estimate, user: dict) -> GaussianParams:
        """Parameters from an initial estimate ``(means, covariances)`` (or the lecture dict),
        the user's ``means`` and Cholesky factors ``P`` (model coordinates) taking precedence."""
        if isinstance(estimate, dict):
            means, covariances = estimate["means"], estimate["covariances"]
        else:
            means, covariances = estimate if estimate is not None else (None, None)
        means = user.get("means", means)
        if "P" in user:
            P = user["P"]
            covariances = self.covariances_from_cholesky(P, self.covariance_type)
        else:
            P, covariances = self.precisions_cholesky(covariances)
        return GaussianParams(means, P, covariances=covariances)

    @staticmethod
    def user_complete(user: dict) -> bool:
        return "means" in user and "P" in user

    # ------------------------------------------------------------------ M-step
    def portable(self, stats: dict[str, Tensor], params: GaussianParams) -> dict[str, Tensor]:
        """The statistics in the parameter-independent frame: for ``full``, the whitened scatter
        Σ r y yᵀ under ``params`` (the compute-dtype parameters the E-step used) becomes
        Σ r x xᵀ about the data's origin, in float64:
        Σ r (x − μ)(x − μ)ᵀ = L Σ r y yᵀ Lᵀ with L = P⁻ᵀ, plus μ Sᵀ + S μᵀ − N μ μᵀ.
        Statistics of different iterations (stepwise EM) can then be blended. Other covariance
        types are already in that frame."""
        if "syy" not in stats:
            return dict(stats)
        # float64 copies of *these* (compute-dtype) values, which whitened the residuals.
        L = _covariance_cholesky(params.precisions_cholesky.to(torch.float64))
        mu = params.means.to(torch.float64)
        nk, sx = stats["nk"], stats["sx"]
        mu_s = mu[:, :, None] * sx[:, None, :]
        sxx = (
            L @ stats["syy"] @ L.mT
            + mu_s
            + mu_s.mT
            - nk[:, None, None] * (mu[:, :, None] * mu[:, None, :])
        )
        out = {k: v for k, v in stats.items() if k != "syy"}
        out["sxx"] = sxx
        return out

    def maximize(self, stats: dict[str, Tensor], reference=None) -> tuple[Tensor, Tensor]:
        """Weighted maximum likelihood from summed statistics: ``(means, covariances)`` in float64.

        For ``full``, statistics with the whitened scatter ``syy`` need the float64
        ``reference`` parameters they were computed under (batch EM: the well-conditioned form,
        centred on the component means); portable statistics (``sxx``) need none.
        """
        nk = stats["nk"] + EPS_NK
        means = stats["sx"] / nk[:, None]
        ct = self.covariance_type
        if ct == "full":
            if "syy" in stats:  # centred on the reference means and whitened by its factors
                L = _covariance_cholesky(reference.precisions_cholesky)
                scatter = L @ (stats["syy"] / nk[:, None, None]) @ L.mT
                delta = means - reference.means
            else:  # portable: about the data's origin
                scatter, delta = stats["sxx"] / nk[:, None, None], means
            cov = scatter - delta[:, :, None] * delta[:, None, :]
            cov = 0.5 * (cov + cov.mT)
            cov.diagonal(dim1=-2, dim2=-1).add_(self.reg_covar)
        elif ct == "tied":
            n_total = stats["nk"].sum()
            between = (means * nk[:, None]).T @ means
            cov = (stats["sxx"] - between) / n_total
            cov = 0.5 * (cov + cov.T)
            cov.diagonal().add_(self.reg_covar)
        else:
            var = stats["sxx"] / nk[:, None] - means.square() + self.reg_covar
            cov = var if ct == "diag" else var.mean(1)
        return means, cov

    def m_step(
        self, stats: dict[str, Tensor], weights: Tensor, params=None, reseed=None
    ) -> GaussianParams:
        """The closed-form M-step (float64): maximum likelihood, re-seeding, factorisation.

        ``weights`` are the new mixing weights; ``params`` the (float64) parameters the
        statistics were computed under. ``reseed = (empty, point)`` moves the empty
        components' means to ``point`` (the worst-explained sample) with the others' pooled
        covariance. A covariance that does not factorise gets escalating jitter (with a
        :class:`CovarianceJitterWarning`); the covariances actually used are kept.
        """
        means, covariances = self.maximize(stats, params)
        return self.finish(means, covariances, weights, reseed)

    def finish(self, means, covariances, weights, reseed=None) -> GaussianParams:
        """Re-seed the empty components (``reseed = (empty, point)``: their means at ``point``,
        the others' pooled covariance), then factorise with escalating jitter where needed."""
        if reseed is not None:
            empty, point = reseed
            keep = torch.ones_like(weights, dtype=torch.bool)
            keep[empty] = False
            means[empty] = point.to(means)
            if self.covariance_type != "tied":
                if bool(keep.any()):
                    w = weights[keep] / weights[keep].sum()
                    pooled = torch.tensordot(w, covariances[keep], dims=1)
                else:
                    pooled = covariances.mean(0)
                covariances[empty] = pooled
        P, covariances = self.precisions_cholesky(covariances)
        return GaussianParams(means, P, covariances=covariances)

    @staticmethod
    def covariances_from_cholesky(P: Tensor, covariance_type: str) -> Tensor:
        """Σ = (P Pᵀ)⁻¹ from the Cholesky factors of the precisions, without inverting Σ⁻¹."""
        if covariance_type in ("diag", "spherical"):
            return P.square().reciprocal()
        L = _covariance_cholesky(P)
        return L @ L.mT

    # ------------------------------------------------------------------ gradient view
    def unconstrained(self, params: GaussianParams) -> dict[str, Tensor]:
        """Means and Cholesky factors as free tensors: off-diagonal entries and log-diagonal."""
        P = params.precisions_cholesky
        if self.covariance_type in ("diag", "spherical"):
            return {"means": params.means, "log_P": torch.log(P)}
        diag = torch.diagonal(P, dim1=-2, dim2=-1)
        return {"means": params.means, "P_upper": torch.triu(P, 1), "log_P": torch.log(diag)}

    def constrained(self, u: dict[str, Tensor]) -> GaussianParams:
        """Inverse of :meth:`unconstrained` (differentiable)."""
        if self.covariance_type in ("diag", "spherical"):
            return GaussianParams(u["means"], torch.exp(u["log_P"]))
        P = torch.triu(u["P_upper"], 1) + torch.diag_embed(torch.exp(u["log_P"]))
        return GaussianParams(u["means"], P)

    def summarize(self, stats: dict[str, Tensor], reference: GaussianParams) -> dict[str, Tensor]:
        """Centred statistics: N_k, x̄_k and the scatter about x̄_k, plus reg_covar·N_k·I.

        The regularisation enters as it does in EM: the maximiser of the expected
        log-likelihood below is exactly the M-step's Σ = S/N_k + reg_covar·I.
        """
        nk = stats["nk"] + EPS_NK
        mean, cov = self.maximize(stats, reference)
        if self.covariance_type == "tied":
            scatter = cov * nk.sum()
        elif self.covariance_type == "full":
            scatter = cov * nk[:, None, None]
        elif self.covariance_type == "diag":
            scatter = cov * nk[:, None]
        else:  # spherical: the trace of the scatter
            scatter = cov * nk * mean.shape[1]
        return {"nk": nk, "mean": mean, "scatter": scatter}

    def expected_log_likelihood(self, summary: dict[str, Tensor], params: GaussianParams) -> Tensor:
        """Σ_n Σ_k r_nk log N(x_n | μ_k, Σ_k) from centred statistics (differentiable in params)."""
        nk, scatter = summary["nk"], summary["scatter"]
        delta = summary["mean"] - params.means
        P = params.precisions_cholesky
        d = delta.shape[1]
        const = -0.5 * d * LOG_2PI * nk.sum()
        ct = self.covariance_type
        if ct == "full":
            log_det = torch.log(torch.diagonal(P, dim1=-2, dim2=-1)).sum(-1)
            spread = (P * (scatter @ P)).sum((-2, -1))
            shift = torch.bmm(delta.unsqueeze(1), P).squeeze(1).square().sum(1)
            return const + (nk * log_det).sum() - 0.5 * (spread + nk * shift).sum()
        if ct == "tied":
            log_det = torch.log(torch.diagonal(P)).sum()
            spread = (P * (scatter @ P)).sum()
            shift = (nk * (delta @ P).square().sum(1)).sum()
            return const + nk.sum() * log_det - 0.5 * (spread + shift)
        if ct == "diag":
            prec = P.square()
            return (
                const
                + (nk[:, None] * torch.log(P)).sum()
                - 0.5 * (prec * (scatter + nk[:, None] * delta.square())).sum()
            )
        prec = P.square()
        return (
            const
            + (nk * d * torch.log(P)).sum()
            - 0.5 * (prec * (scatter + nk * delta.square().sum(1))).sum()
        )

    # ------------------------------------------------------------------ factors
    def precisions_cholesky(self, covariances: Tensor) -> tuple[Tensor, Tensor]:
        """Cholesky factors of the precisions from covariances (float64).

        Returns ``(precisions_cholesky, covariances)``: on a failed factorisation, jitter
        escalating by 10x is added to the offending components' diagonal (with a
        :class:`CovarianceJitterWarning`) and the covariances actually used are returned.
        """
        ct = self.covariance_type
        cov = covariances.clone()
        base = max(self.reg_covar, 1e-12)
        if ct in ("diag", "spherical"):
            bad = ~(cov > 0) | ~torch.isfinite(cov)
            if bool(bad.any()):
                scale = _finite_scale(cov)
                cov = torch.where(bad, torch.full_like(cov, base * scale), cov)
                _warn_jitter(ct, bad if ct == "spherical" else bad.any(1), base * scale)
            return cov.rsqrt(), cov
        batched = cov if ct == "full" else cov.unsqueeze(0)
        L, info = torch.linalg.cholesky_ex(batched)
        jitter = base * _finite_scale(torch.diagonal(batched, dim1=-2, dim2=-1))
        failed = info > 0
        if bool(failed.any()):
            eye = torch.eye(batched.shape[-1], dtype=cov.dtype, device=cov.device)
            reported = failed.clone()
            for _ in range(12):
                batched = torch.where(failed[:, None, None], batched + jitter * eye, batched)
                L, info = torch.linalg.cholesky_ex(batched)
                failed = info > 0
                if not bool(failed.any()):
                    break
                jitter *= 10.0
            else:
                raise FloatingPointError(
                    "Cholesky factorisation of the covariance failed even after adding jitter "
                    f"up to {jitter:.3g} to its diagonal: the data may contain non-finite or "
                    "enormous values. Standardize X or increase reg_covar."
                )
            _warn_jitter(ct, reported, jitter)
        eye = torch.eye(batched.shape[-1], dtype=cov.dtype, device=cov.device)
        P = torch.linalg.solve_triangular(L, eye.expand_as(L), upper=False).mT
        if ct == "tied":
            return P[0], batched[0]
        return P, batched

    @staticmethod
    def precisions_from_cholesky(P: Tensor, covariance_type: str) -> Tensor:
        """Precision matrices (or vectors) Σ⁻¹ = P Pᵀ from their Cholesky factors."""
        if covariance_type in ("full", "tied"):
            return P @ P.mT
        return P.square()

    def precisions_cholesky_from_precisions(self, precisions: Tensor) -> Tensor:
        """P with P Pᵀ = precision, upper triangular, for user-supplied precisions (float64)."""
        if self.covariance_type in ("diag", "spherical"):
            return precisions.sqrt()
        # The upper factor of A is flip(chol(flip(A))) (reverse rows and columns).
        flipped = precisions.flip(-1, -2)
        L, info = torch.linalg.cholesky_ex(flipped)
        if bool((info > 0).any()):
            raise ValueError(
                "precisions_init must be symmetric positive-definite; its Cholesky "
                "factorisation failed. Pass inverse covariance matrices, not covariances."
            )
        return L.flip(-1, -2)

    # ------------------------------------------------------------------ counting, sampling
    def n_parameters(self, n_components: int, n_features: int) -> int:
        k, d = n_components, n_features
        cov = {
            "full": k * d * (d + 1) // 2,
            "tied": d * (d + 1) // 2,
            "diag": k * d,
            "spherical": k,
        }[self.covariance_type]
        return cov + k * d

    def sample(self, labels: Tensor, means: Tensor, covariances: Tensor, generator) -> Tensor:
        """One draw from component ``labels[i]`` for every i (float64), vectorised over samples."""
        n, d = labels.shape[0], means.shape[1]
        eps = torch.randn(n, d, generator=generator, dtype=means.dtype, device=means.device)
        ct = self.covariance_type
        if ct == "full":
            L = torch.linalg.cholesky(covariances)
            noise = torch.bmm(L[labels], eps.unsqueeze(-1)).squeeze(-1)
        elif ct == "tied":
            noise = eps @ torch.linalg.cholesky(covariances).T
        elif ct == "diag":
            noise = eps * covariances[labels].sqrt()
        else:
            noise = eps * covariances[labels].sqrt().unsqueeze(1)
        return means[labels] + noise


def _covariance_cholesky(P: Tensor) -> Tensor:
    """L = P⁻ᵀ, the lower Cholesky factor of the covariance whose precision is P Pᵀ (P upper)."""
    eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    return torch.linalg.solve_triangular(P, eye.expand_as(P), upper=True).mT


def _finite_scale(values: Tensor) -> float:
    """A positive scale of the data's variances, for sizing jitter."""
    finite = values[torch.isfinite(values) & (values > 0)]
    return float(finite.mean()) if finite.numel() else 1.0


_JITTER: ContextVar[list | None] = ContextVar("lvmkit_jitter_events", default=None)


@contextmanager
def jitter_report():
    """Within the block (a whole fit), covariance jitter is counted instead of warned about at
    every M-step; one :class:`CovarianceJitterWarning` at the end (if the block succeeds) says
    which components needed it, in how many factorisations, and the largest jitter added."""
    events: list = []
    token = _JITTER.set(events)
    try:
        yield events
    except BaseException:
        _JITTER.reset(token)
        raise
    _JITTER.reset(token)
    if events:
        kinds = {ct for ct, _, _ in events}
        components = sorted({c for _, comps, _ in events for c in comps})
        largest = max(j for _, _, j in events)
        _warn_jitter(kinds.pop(), components, largest, len(events))


def _warn_jitter(covariance_type: str, components, jitter: float, times: int = 1) -> None:
    if isinstance(components, Tensor):
        components = torch.nonzero(components.reshape(-1)).reshape(-1).tolist()
    events = _JITTER.get()
    if events is not None:  # inside a fit: one warning at its end
        events.append((covariance_type, list(components), float(jitter)))
        return
    where = "the tied covariance" if covariance_type == "tied" else f"component(s) {components}"
    when = f" in {times} factorisations during this fit" if times > 1 else ""
    up_to = "up to " if times > 1 else ""
    v.warn(
        f"Covariance of {where} was not positive definite{when}; added {up_to}{jitter:.3g} to its "
        "diagonal. This happens with duplicate points, constant features or too many "
        "components: increase reg_covar, remove constant features, or use fewer components.",
        CovarianceJitterWarning,
    )
