"""Gaussian mixtures of rows with missing values (NaN, missing at random), with the EM protocol.

A row's missing coordinates are marginalized exactly: its likelihood is that of its observed
sub-vector, log p(x_o) = log Σ_k π_k N(x_o | μ_ko, Σ_koo). :class:`GapMixture` is a
:class:`lvmkit.models.mixture.Mixture` whose E-step reads the rows with their gaps, so the EM loop
(chunks, sample weights, restarts, tolerance, the all-reduce across processes, stepwise EM) is the
one every model uses. NaN marks a missing value in the (shifted, compute-dtype) rows; the features
the E-step reads are the rows with NaN replaced by 0, the column's mean in the shifted frame (see
:func:`observed_moments`), and the 0/1 mask of observed values.

'full' and 'tied' (Ghahramani & Jordan 1994). With Λ = Σ⁻¹ and e = (x − μ) zeroed at the missing
coordinates m, the conditional mean of the missing block is x̂_m = μ_m − Λ_mm⁻¹ (Λ e)_m, its
conditional covariance Λ_mm⁻¹, and with z = x̂ − μ (z_o = e_o) the observed Mahalanobis term is
‖z P‖² (P Pᵀ = Λ): the complete Mahalanobis term of the row completed by x̂, minimised over the
missing block, so an error in x̂ enters only at second order. log |Σ_oo| = log |Σ| + log |Λ_mm|.
Only the missing block, m × m per row and component, is factorised, in float64 (a row of D
coordinates with m missing costs O(m³) there, plus the O(D²) products every row pays); the rows of
a chunk are sorted by their number of missing values so rows with as many gaps are factorised in
one batched call. The M-step uses the expected sufficient statistics: N_k, Σ r z and
Σ r (z zᵀ + Λ_mm⁻¹ in the missing block), centred on the means the E-step used (their portable
form about the origin for stepwise EM); that is EM with z and x_m latent, and it never lowers the
observed-data likelihood. This E-step runs in float64 whatever the compute dtype: a float32
factorisation fails once a block's condition number nears 1/eps ≈ 1e7, which reg_covar = 1e-6
against a feature of unit variance reaches. Posterior probabilities below 1e-20
(``POSTERIOR_FLOOR``) are left out of the statistics (of N_k and the sums alike, so they stay
consistent; their share is far below rounding): most (row, component) pairs then need no m × m
inverse, which is most of the cost.

'diag' and 'spherical'. Given the component, the coordinates are independent, so the observed
sub-vector's log-density is a masked sum: one matrix product of [x², x, o] (the zero-filled data
and the mask) with the parameters, in the compute dtype, as the complete-data path. The M-step is
the exact maximiser of Σ r log N(x_o | μ_ko, Σ_koo) (EM with z the only latent variable): per
dimension, the mean and variance of the rows that observe it (Σ r o x², Σ r o x, Σ r o); a
dimension no row of a component observes keeps its values. 'spherical' pools the per-dimension
scatter over the observed counts.

A row with no observed value has likelihood 1 (log 0, the probability of observing nothing): it
gets weight 0 in the E-step (it changes nothing in the fit), ``log_evidence`` 0, posterior π and
conditional mean Σ π_k μ_k.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from lvmkit.data.chunks import CPU_CHUNK_BYTES, GPU_CHUNK_BYTES
from lvmkit.distributed import LOCAL, Local
from lvmkit.families._base import EPS_NK, LOG_2PI, column_sums
from lvmkit.families.gaussian import Gaussian, GaussianParams
from lvmkit.models.mixture import Mixture, MixtureParams
from lvmkit.models.stats import Stats
from lvmkit.posteriors.exact import responsibilities

F64 = torch.float64
# Posterior probabilities below this are left out of the 'full'/'tied' statistics (see e_step).
POSTERIOR_FLOOR = 1e-20


# ====================================================================== data
def has_missing(data) -> bool:
    """Whether in-memory ``data`` (an array or tensor) holds a NaN. Data read in chunks (a
    memory map, files) is not scanned: their readers refuse NaN with their own error."""
    if isinstance(data, torch.Tensor):
        return bool(torch.isnan(data).any())
    if isinstance(data, np.ndarray) and not isinstance(data, np.memmap):
        return bool(np.isnan(data).any())
    return False


def fill_missing(X: Tensor) -> Tensor:
    """``X`` with every NaN replaced by 0 (in the shifted frame, the column's observed mean)."""
    return torch.where(torch.isnan(X), torch.zeros((), dtype=X.dtype, device=X.device), X)


def observed_moments(
    data, weights=None, comm: Local = LOCAL, names=None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column sample-weighted mean and variance (float64) of the observed (non-NaN) values
    of every rank's rows: two passes on this rank, merged across ranks column by column with
    Chan's update. The mean is where the shifted data are centred, so it is also the value
    initialisation fills the gaps with; weighted, a row of weight 2 fills as the row twice.

    Raises a ValueError naming the first column that no row of positive weight observes (on
    every rank): a mixture cannot learn the distribution of a column it never sees.
    """
    if isinstance(data, torch.Tensor):
        X = data.to(F64)
        w = torch.ones(X.shape[0], dtype=F64, device=X.device)
        if weights is not None:
            w = torch.as_tensor(np.asarray(weights), dtype=F64, device=X.device)
        seen = (~torch.isnan(X)).to(F64) * w[:, None]
        X0 = torch.where(torch.isnan(X), 0.0, X)
        total = seen.sum(0)
        mean = (seen * X0).sum(0) / total.clamp(min=1e-300)
        m2 = (seen * (X0 - mean).square()).sum(0)
        total, mean, m2 = (t.cpu().numpy() for t in (total, mean, m2))
    else:
        X = np.asarray(data, dtype=np.float64)
        w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        gap = np.isnan(X)
        seen = np.where(gap, 0.0, w[:, None])
        X0 = np.where(gap, 0.0, X)
        total = seen.sum(0)
        mean = (seen * X0).sum(0) / np.maximum(total, 1e-300)
        m2 = (seen * np.square(X0 - mean)).sum(0)
    if comm.active:
        parts = comm.gather_rows(np.concatenate([total, mean, m2])[None])
        total, mean, m2 = (np.zeros_like(mean) for _ in range(3))
        for part in parts:
            w_b, mean_b, m2_b = part[0].reshape(3, -1)
            merged = total + w_b
            delta = mean_b - mean
            share = np.divide(w_b, merged, out=np.zeros_like(merged), where=merged > 0)
            mean = mean + delta * share
            m2 = m2 + m2_b + delta**2 * total * share
            total = merged
    empty = np.flatnonzero(~(total > 0))
    if empty.size:
        j = int(empty[0])
        label = f"column {j}" + (f" ({names[j]!r})" if names is not None else "")
        more = f" (and {empty.size - 1} more column(s))" if empty.size > 1 else ""
        weighted = "" if weights is None else " in the rows of positive sample_weight"
        raise ValueError(
            f"X's {label}{more} has no observed value{weighted}: every entry is NaN, so a "
            f"Gaussian mixture cannot learn its distribution. Drop that column (e.g. "
            f"X[:, columns_to_keep]) or fill it before fitting."
        )
    return mean, m2 / total


# ====================================================================== the model
class GapMixture(Mixture):
    """A Gaussian mixture whose rows may have missing coordinates (NaN), for the EM loop.

    Parameters are the plain Gaussian mixture's (:class:`MixtureParams` of
    :class:`GaussianParams`), so fitting, prediction and persistence share them; only the
    features the E-step reads, the E-step, the M-step and the initial fill differ.

    Parameters
    ----------
    family : :class:`lvmkit.families.gaussian.Gaussian`, any covariance type
    n_components : int
    dtype : compute dtype of the data ('full' and 'tied' compute their E-step in float64)
    """

    def __init__(self, family: Gaussian, n_components: int, dtype: torch.dtype):
        super().__init__(family, n_components, dtype)
        self.covariance_type = family.covariance_type
        self.dense = self.covariance_type in ("full", "tied")

    # ------------------------------------------------------------------ features
    def features(self, X: Tensor) -> Tensor:
        """What the E-step reads for each row (computed once for data in memory): the zero-filled
        row x⁰ and the observed mask o, ``[x⁰, o]`` (n, 2D) for 'full' and 'tied',
        ``[x⁰², x⁰, o]`` (n, 3D) for 'diag' and 'spherical' (one matrix product then gives the
        masked quadratic forms)."""
        seen = ~torch.isnan(X)
        x0 = torch.where(seen, X, torch.zeros((), dtype=X.dtype, device=X.device))
        o = seen.to(X.dtype)
        return torch.cat([x0, o] if self.dense else [x0.square(), x0, o], 1)

    def _split(self, F: Tensor) -> tuple[Tensor, Tensor]:
        """The zero-filled data and the mask from :meth:`features`."""
        d = F.shape[-1] // (2 if self.dense else 3)
        return F[..., -2 * d : -d], F[..., -d:]

    def data_of(self, F: Tensor) -> Tensor:
        """The rows back from :meth:`features`, missing values at 0 (the column means)."""
        return self._split(F)[0]

    def observed_any(self, F: Tensor) -> Tensor:
        """(n,) True for the rows with at least one observed value."""
        return self._split(F)[1].amax(1) > 0 if F.shape[0] else F.new_zeros(0, dtype=torch.bool)

    # ------------------------------------------------------------------ initialisation
    def initialize(self, chunks, method, generator, user=None, comm: Local = LOCAL):
        """The plain mixture's initialisation (``method``) on the rows with every missing value
        filled by its column's mean (0 in the shifted frame), rows with no observed value left
        out (weight 0); EM then uses the observed values."""
        filled = chunks.mapped(fill_missing)
        if not chunks.streamed:
            X, w = chunks.all_rows()
            seen = ~torch.isnan(X).all(1)
            if comm.max(not bool(seen.all())):
                filled.weights = seen.to(chunks.dtype) if w is None else w * seen
                rows = comm.sum([float((filled.weights > 0).sum())])[0]
                if rows < self.n_components:
                    raise ValueError(
                        f"Only {rows:g} row(s) of X have an observed value (and a positive "
                        f"sample_weight), fewer than n_components={self.n_components}: a row "
                        "whose every value is NaN tells nothing. Use fewer components or more "
                        "rows with observed values."
                    )
        return super().initialize(filled, method, generator, user, comm)

    # ------------------------------------------------------------------ parameters
    def _prepared(self, params: MixtureParams) -> dict:
        """Per-parameter constants of the E-step, made once per parameter set."""
        key = ("gaps", self.dtype)
        prep = params.compute.get(key)
        if prep is not None:
            return prep
        c = params.components
        means, P = c.means.to(F64), c.precisions_cholesky.to(F64)
        k, d = means.shape
        if self.dense:
            P = P.expand(k, d, d).contiguous() if P.ndim == 2 else P
            prep = {
                "means": means,
                "P": P,
                "precision": P @ P.mT,
                "log_det": torch.log(torch.diagonal(P, dim1=-2, dim2=-1)).sum(-1),
                "log_weights": torch.log(params.weights.to(F64)),
            }
        else:
            P = P[:, None].expand(k, d) if P.ndim == 1 else P
            prec = P.square()
            W = torch.cat([prec.T, -2.0 * (means * prec).T, (means.square() * prec).T], 0)
            prep = {
                "W": W.to(self.dtype).contiguous(),
                "c": (torch.log(P) - 0.5 * LOG_2PI).T.to(self.dtype).contiguous(),
                "log_weights": torch.log(params.weights).to(self.dtype),
            }
        params.compute[key] = prep
        return prep

    # ------------------------------------------------------------------ densities
    def log_joint(self, X: Tensor, params: MixtureParams) -> tuple[Tensor, None]:
        """log p(x_o, z = k) (n, K) of features ``X`` (float64 for 'full' and 'tied')."""
        prep = self._prepared(params)
        if not self.dense:
            return self._diag_log_prob(X, prep).add_(prep["log_weights"]), None
        out = torch.empty(X.shape[0], self.n_components, dtype=F64, device=X.device)
        for rows, part in self._dense_parts(X, prep):
            out[rows] = part["log_prob"]
        return out.add_(prep["log_weights"]), None

    def log_evidence(self, X: Tensor, params: MixtureParams) -> Tensor:
        """log p(x_o) for every row (n,); 0 for a row with no observed value."""
        value = torch.logsumexp(self.log_joint(X, params)[0], dim=1)
        return torch.where(self.observed_any(X), value, torch.zeros_like(value))

    def conditional_mean(self, X: Tensor, params: MixtureParams) -> Tensor:
        """E[x | x_o] (n, D), float64, in the model's (shifted) coordinates:
        Σ_k p(k | x_o) (μ_k + Σ_k,·o Σ_k,oo⁻¹ (x_o − μ_ko)) at the missing coordinates (for
        'diag' and 'spherical' Σ_k p(k | x_o) μ_k), the observed values elsewhere."""
        prep = self._prepared(params)
        means = params.components.means.to(F64)
        if not self.dense:
            log_joint = self._diag_log_prob(X, prep).add_(prep["log_weights"]).to(F64)
            out = torch.softmax(log_joint, dim=1) @ means
        else:
            out = torch.empty(X.shape[0], means.shape[1], dtype=F64, device=X.device)
            for rows, part in self._dense_parts(X, prep):
                resp = torch.softmax(part["log_prob"] + prep["log_weights"], dim=1)
                z = part["z"]  # (K, n, D): the completed rows' residuals
                out[rows] = resp @ means + torch.einsum("nk,knd->nd", resp, z)
        x0, o = self._split(X)
        return torch.where(o > 0, x0.to(F64), out)

    def _diag_log_prob(self, X: Tensor, prep: dict) -> Tensor:
        """Σ_d o_d log N(x_d | μ_kd, σ²_kd) (n, K): one product for the quadratic forms (clamped
        at 0, an expanded form may round below), one for the normalisers of the observed
        coordinates. A single row is computed as the first of two (see Mixture.log_joint)."""
        one = X.shape[0] == 1
        F = X.expand(2, -1) if one else X
        d = F.shape[1] // 3
        maha = (F @ prep["W"]).clamp_(min=0.0)
        log_prob = torch.addmm(maha, F[:, 2 * d :], prep["c"], beta=-0.5)
        return log_prob[:1] if one else log_prob

    def _dense_parts(self, X: Tensor, prep: dict, keep: bool = False):
        """The 'full'/'tied' E-step of a chunk, in float64, in slices of rows sorted by their
        number of missing values: yields ``(rows, part)`` with ``rows`` the slice's row numbers
        in the chunk and ``part`` its ``log_prob`` (n, K), residuals ``z`` (K, n, D) of the
        completed rows and, with ``keep``, ``blocks``: for each run of rows with m missing values,
        (first row, last row + 1, flat indices of their m × m blocks in a D × D matrix, the
        Cholesky factors of their blocks Λ_mm)."""
        n = X.shape[0]
        if n == 0:
            return
        x0, o = self._split(X)
        x0, o = x0.to(F64), o > 0
        d = x0.shape[1]
        k = self.n_components
        n_obs = o.sum(1)
        # a row with no observed value is computed as a complete one (its value is set below)
        n_miss = torch.where(n_obs > 0, d - n_obs, 0)
        order = torch.argsort(n_miss, stable=True)
        x0, o, n_obs, n_miss = x0[order], o[order], n_obs[order], n_miss[order]
        # slices within the memory budget: K·(5D + 3m²) float64 values per row
        budget = GPU_CHUNK_BYTES if x0.device.type == "cuda" else 2 * CPU_CHUNK_BYTES
        cumulative = torch.cumsum(8.0 * k * (5 * d + 3 * n_miss.to(F64).square()), 0)
        n_slices = max(1, math.ceil(float(cumulative[-1]) / budget))
        marks = torch.arange(1, n_slices, dtype=F64, device=x0.device) * budget
        ends = torch.searchsorted(cumulative, marks).cpu().tolist()
        bounds = sorted({0, n, *(int(e) for e in ends if 0 < e < n)})
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            part = self._dense_slice(x0[a:b], o[a:b], n_obs[a:b], n_miss[a:b], prep, keep)
            yield order[a:b], part

    def _dense_slice(self, x0, o, n_obs, n_miss, prep, keep):
        means, P, precision = prep["means"], prep["P"], prep["precision"]
        k, d = means.shape
        n = x0.shape[0]
        o64 = o.to(F64)
        z = (x0.unsqueeze(0) - means.unsqueeze(1)) * o64  # e: residuals, 0 where missing
        log_det_mm = torch.zeros(k, n, dtype=F64, device=x0.device)
        blocks = []
        sizes, lengths = torch.unique_consecutive(n_miss, return_counts=True)
        first = int(lengths[sizes == 0].sum())  # the complete rows come first (sorted)
        if first < n:
            g = torch.bmm(z[:, first:], precision)  # (Λ e) of the rows with gaps
            j = 0
            for m, length in zip(sizes.tolist(), lengths.tolist(), strict=True):
                i, j = j, j + length
                if m == 0:
                    continue
                idx = torch.nonzero(~o[i:j])[:, 1].view(j - i, m)  # missing coordinates
                kidx = idx.unsqueeze(0).expand(k, -1, -1)
                u = g[:, i - first : j - first].gather(2, kidx)  # (Λ e)_m = Λ_mo e_o
                flat = (idx.unsqueeze(2) * d + idx.unsqueeze(1)).reshape(-1)
                block = precision.view(k, d * d).index_select(1, flat).view(k, j - i, m, m)
                R, info = torch.linalg.cholesky_ex(block)
                if bool((info > 0).any()):
                    raise FloatingPointError(
                        "A block of a component's precision matrix could not be factorised: "
                        "the covariances are numerically singular. Increase reg_covar or "
                        "standardize X."
                    )
                v = torch.cholesky_solve(u.unsqueeze(-1), R).squeeze(-1)
                if keep:  # for the conditional covariances Λ_mm⁻¹ of the statistics
                    blocks.append((i, j, flat, R))
                z[:, i:j].scatter_(2, kidx, -v)  # x̂_m − μ_m = −Λ_mm⁻¹ Λ_mo e_o
                log_det_mm[:, i:j] = torch.log(torch.diagonal(R, dim1=-2, dim2=-1)).sum(-1)
        maha = torch.bmm(z, P).square_().sum(-1)  # (K, n)
        log_prob = prep["log_det"][:, None] - log_det_mm - 0.5 * maha
        log_prob = log_prob.T - (0.5 * LOG_2PI) * n_obs.to(F64)[:, None]
        log_prob = torch.where((n_obs > 0)[:, None], log_prob, torch.zeros_like(log_prob))
        return {"log_prob": log_prob, "z": z, "blocks": blocks}

    # ------------------------------------------------------------------ E-step
    def e_step(self, X: Tensor, weights: Tensor | None, params: MixtureParams) -> Stats:
        """Posterior and expected sufficient statistics of one chunk of features; a row with no
        observed value has weight 0 (it is not counted in ``n_samples``)."""
        seen = self.observed_any(X)
        w = seen.to(X.dtype) if weights is None else weights * seen
        prep = self._prepared(params)
        if not self.dense:
            log_joint = self._diag_log_prob(X, prep).add_(prep["log_weights"])
            log_evidence, resp = responsibilities(log_joint, inplace=True)
            resp.mul_(w[:, None])
            both = (resp.T @ X).to(F64)
            d = X.shape[1] // 3
            return Stats(
                nk=column_sums(resp),
                sxx=both[:, :d],
                sx=both[:, d : 2 * d],
                no=both[:, 2 * d :],
                log_likelihood=(log_evidence * w).sum(dtype=F64),
                n_samples=w.sum(dtype=F64),
            )
        k, d = self.n_components, X.shape[1] // 2
        dev = X.device
        stats = {
            "nk": torch.zeros(k, dtype=F64, device=dev),
            "sd": torch.zeros(k, d, dtype=F64, device=dev),
            "sdd": torch.zeros(k, d, d, dtype=F64, device=dev),
            "log_likelihood": torch.zeros((), dtype=F64, device=dev),
            "n_samples": w.sum(dtype=F64),
        }
        w = w.to(F64)
        for rows, part in self._dense_parts(X, prep, keep=True):
            log_evidence, resp = responsibilities(part["log_prob"] + prep["log_weights"], True)
            wr = w[rows]
            stats["log_likelihood"] += (log_evidence * wr).sum()
            # Posteriors below 1e-20 are left out of the statistics (of every kind, so they stay
            # consistent): most (row, component) pairs then need no m x m inverse.
            resp = torch.where(resp > POSTERIOR_FLOOR, resp * wr[:, None], 0.0)
            rT = resp.T  # (K, n)
            z = part["z"]
            stats["nk"] += rT.sum(1)
            stats["sd"] += torch.bmm(rT.unsqueeze(1), z).squeeze(1)
            zs = z.mul_(rT.sqrt().unsqueeze(-1))
            scatter = torch.bmm(zs.mT, zs)
            flat = scatter.view(-1)
            for i, j, where, R in part["blocks"]:
                comp, row = torch.nonzero(rT[:, i:j] > 0, as_tuple=True)
                if comp.numel():
                    inverse = torch.cholesky_inverse(R[comp, row])  # Λ_mm⁻¹ (pairs, m, m)
                    inverse.mul_(rT[comp, i + row][:, None, None])
                    target = comp[:, None] * (d * d) + where.view(j - i, -1)[row]
                    flat.index_add_(0, target.reshape(-1), inverse.reshape(-1))
            stats["sdd"] += scatter
        return Stats(stats)

    def zero_stats(self, chunks, params: MixtureParams) -> Stats:
        """Statistics of no rows, in this model's layout."""
        empty = torch.zeros(0, chunks.n_features, dtype=self.dtype, device=chunks.device)
        return self.e_step(self.features(empty), None, params)

    def worst(self, X: Tensor, weights: Tensor | None, params: MixtureParams):
        """The lowest log p(x_o) among the rows with an observed value and positive weight, and
        that row with its gaps at the column means (float64)."""
        log_evidence = self.log_evidence(X, params).to(F64)
        keep = self.observed_any(X)
        if weights is not None:
            keep = keep & (weights > 0)
        log_evidence = torch.where(keep, log_evidence, torch.inf)
        i = torch.argmin(log_evidence)
        return float(log_evidence[i]), self.data_of(X[i]).to(F64)

    def portable(self, stats: Stats, params: MixtureParams) -> Stats:
        """The statistics about the origin (parameter-free, for stepwise EM): for 'full' and
        'tied', N_k, Σ r x̂ and Σ r (x̂ x̂ᵀ + the conditional covariance) (pooled over the
        components for 'tied', as the complete-data statistics are); 'diag' and 'spherical'
        already are."""
        if "sd" not in stats:
            return Stats(dict(stats))
        mu = params.components.means.to(F64)
        nk, sd = stats["nk"], stats["sd"]
        mu_s = mu[:, :, None] * sd[:, None, :]
        sxx = stats["sdd"] + mu_s + mu_s.mT + nk[:, None, None] * (mu[:, :, None] * mu[:, None, :])
        out = {name: value for name, value in stats.items() if name not in ("sd", "sdd")}
        out["sx"] = sd + nk[:, None] * mu
        out["sxx"] = sxx.sum(0) if self.covariance_type == "tied" else sxx
        return Stats(out)

    def adopt(self, running: Stats) -> Stats:
        """Running stepwise statistics of the complete-data mixture in this model's layout (for
        'diag' and 'spherical' every row observed every coordinate: Σ r o = N_k)."""
        if self.dense or "no" in running:
            return running
        out = dict(running)
        out["no"] = running["nk"][:, None].expand_as(running["sx"]).clone()
        return Stats(out)

    # ------------------------------------------------------------------ M-step
    def m_step(self, stats: Stats, params: MixtureParams, reseed=None) -> MixtureParams:
        """Closed-form M-step (float64) from the expected statistics; re-seeding and the
        factorisation (with jitter) as the complete-data mixture."""
        nk = stats["nk"] + EPS_NK
        weights = nk / nk.sum()
        if self.dense:
            means, covariances = self._maximize_dense(stats, params, nk)
        else:
            means, covariances = self._maximize_diag(stats, params)
        components = self._finish(means, covariances, weights, reseed)
        if reseed is not None:
            weights = weights.clone()
            weights[reseed[0]] = 1.0 / len(weights)
            weights = weights / weights.sum()
        return MixtureParams(weights, components)

    def _maximize_dense(self, stats: Stats, params: MixtureParams, nk: Tensor):
        tied = self.covariance_type == "tied"
        if "sd" in stats:  # centred on the means the E-step used
            delta = stats["sd"] / nk[:, None]
            means = params.components.means.to(F64) + delta
            outer = nk[:, None, None] * (delta[:, :, None] * delta[:, None, :])
            if tied:
                cov = (stats["sdd"] - outer).sum(0) / nk.sum()
            else:
                cov = stats["sdd"] / nk[:, None, None] - outer / nk[:, None, None]
        else:  # portable, about the origin
            means = stats["sx"] / nk[:, None]
            if tied:
                cov = (stats["sxx"] - (means * nk[:, None]).T @ means) / nk.sum()
            else:
                cov = stats["sxx"] / nk[:, None, None] - means[:, :, None] * means[:, None, :]
        cov = 0.5 * (cov + cov.mT)
        cov.diagonal(dim1=-2, dim2=-1).add_(self.family.reg_covar)
        return means, cov

    def _maximize_diag(self, stats: Stats, params: MixtureParams):
        no, sx, sxx = stats["no"], stats["sx"], stats["sxx"]
        old = params.components
        threshold = max(float(torch.finfo(self.dtype).eps) * stats.scalar("n_samples"), 1e-12)
        seen = no > threshold
        count = torch.where(seen, no, torch.ones_like(no))
        means = torch.where(seen, sx / count, old.means.to(F64))
        old_cov = old.covariances
        if old_cov is None:
            old_cov = Gaussian.covariances_from_cholesky(
                old.precisions_cholesky, self.covariance_type
            )
        old_cov = old_cov.to(F64)
        reg = self.family.reg_covar
        if self.covariance_type == "diag":
            var = torch.where(seen, sxx / count - means.square() + reg, old_cov)
            return means, var
        # spherical: Σ_d Σ_n r o (x − μ)² over Σ_d Σ_n r o, with the new means
        scatter = (sxx - 2.0 * means * sx + means.square() * no).sum(1)
        total = no.sum(1)
        var = torch.where(total > threshold, scatter / total.clamp(min=1e-300) + reg, old_cov)
        return means, var

    def _finish(self, means, covariances, weights, reseed) -> GaussianParams:
        """Re-seed the empty components at the worst-explained row (the others' pooled
        covariance), then factorise (escalating jitter where needed), as ``Gaussian.m_step``."""
        return self.family.finish(means, covariances, weights, reseed)


def gap_layout(running) -> bool:
    """Whether running stepwise statistics come from :class:`GapMixture` ('diag' and
    'spherical' add the observed counts; 'full' and 'tied' share the complete-data layout)."""
    return running is not None and "no" in running


__all__ = ["GapMixture", "fill_missing", "gap_layout", "has_missing", "observed_moments"]
