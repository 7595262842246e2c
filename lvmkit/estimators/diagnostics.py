"""Diagnostics of variational inference in a fitted VAE: where the ELBO loses nats, and how noisy
the encoder's gradient is under each estimator.

``gap_report`` splits the inference gap log p(x) − ELBO(q_encoder) of each data point in two
(Cremer, Li and Duvenaud 2018, "Inference suboptimality in variational autoencoders"):

    log p(x) − ELBO(q_encoder) = [log p(x) − ELBO(q*)]          approximation gap
                               + [ELBO(q*) − ELBO(q_encoder)]   amortization gap

where q* is the best diagonal Gaussian for that point alone, found by per-point stochastic
variational inference with the decoder fixed (:func:`lvmkit.posteriors.local.fit_local`), started
from the encoder's output (semi-amortized) or from the prior. The approximation gap is what the
Gaussian family costs; the amortization gap is what sharing one encoder across all points costs.
All in nats per data point.

``gradient_variance`` draws the gradient of the batch's mean ELBO with respect to the encoder's
parameters many times under each estimator (reparameterized, score function, score function with
a baseline: :mod:`lvmkit.objectives.score_function`) and reports its mean and variance.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.utils import check_random_state

from lvmkit.objectives.score_function import ESTIMATORS, elbo_surrogate
from lvmkit.posteriors.amortized import GaussianEncoder, rsample
from lvmkit.posteriors.amortized import log_prob as log_q
from lvmkit.posteriors.local import fit_local, standard_normal_kl

__all__ = ["GapReport", "GradientVariance", "gap_report", "gradient_variance"]

#: (attribute, label) of the rows of a gap report, in order.
GAP_ROWS = (
    ("log_px", "log p(x)"),
    ("elbo_optimal", "ELBO, optimal local q*"),
    ("elbo_encoder", "ELBO, encoder q(z | x)"),
    ("approximation_gap", "approximation gap  log p − ELBO(q*)"),
    ("amortization_gap", "amortization gap   ELBO(q*) − ELBO(q)"),
    ("inference_gap", "inference gap      log p − ELBO(q)"),
)

#: Importance-sampling proposals of gap_report: name -> its components.
PROPOSALS = {"mixture": ("optimal", "encoder"), "optimal": ("optimal",), "encoder": ("encoder",)}

#: Importance-sampling estimates of log p(x) are split into this many groups for their error.
IS_GROUPS = 10


# ====================================================================== shared checks
def _check_vae(vae, caller: str) -> None:
    module = getattr(vae, "module_", None)
    if module is None:
        raise ValueError(
            f"{caller} needs a fitted VAE; got an unfitted {type(vae).__name__}. Call fit(X) first."
        )
    if not isinstance(getattr(module, "encoder", None), GaussianEncoder) or not hasattr(
        module, "model"
    ):
        raise ValueError(
            f"{caller} needs a VAE: a model with a Gaussian encoder q(z | x) and a decoder; got "
            f"{type(vae).__name__}, whose encoder is not probabilistic."
        )
    if getattr(vae, "inference", "amortized") != "amortized":
        raise ValueError(
            f"{caller} studies the encoder of an amortized VAE; this VAE was fitted with "
            f"inference={vae.inference!r} and has no trained encoder. Fit it with "
            f"inference='amortized'."
        )


def _check_positive_int(name: str, value, low: int = 1, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(
            f"{name} must be an int >= {low}; got {value!r}.{' ' + hint if hint else ''}"
        )
    return int(value)


def _seed(random_state) -> int:
    return int(check_random_state(random_state).randint(2**31 - 1))


def _stderr(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")


# ====================================================================== gap report
@dataclass
class GapReport:
    """Per-point estimates of log p(x), two ELBOs and the gaps between them, in nats.

    Arrays of shape (n,), one entry per row of X: ``log_px`` (importance sampling, ``k`` draws
    from ``proposal``), ``elbo_optimal`` (ELBO of the per-point q*), ``elbo_encoder`` (ELBO of the
    encoder's q), ``approximation_gap`` = log_px − elbo_optimal, ``amortization_gap`` =
    elbo_optimal − elbo_encoder, ``inference_gap`` = log_px − elbo_encoder.

    ``mc_stderr`` maps each of those names to the per-point Monte Carlo standard errors: how much
    the number would move with other random draws for the *same* points. The two ELBOs use the same
    draws of eps (common random numbers), so the amortization gap's error is that of their
    difference, far below either's. ``summary()`` adds, for each mean, the standard error over data
    points: how much it would move on other data from the same distribution.

    Expected, up to Monte Carlo error: log_px >= elbo_optimal >= elbo_encoder (both gaps >= 0).
    ``svi_history`` is the mean training ELBO of the local fits at each step (per batch of points,
    concatenated when X was split).
    """

    log_px: np.ndarray
    elbo_optimal: np.ndarray
    elbo_encoder: np.ndarray
    approximation_gap: np.ndarray
    amortization_gap: np.ndarray
    inference_gap: np.ndarray
    mc_stderr: dict = field(repr=False)
    k: int = 0
    proposal: str = "mixture"
    init: str = "encoder"
    svi_steps: int = 0
    svi_lr: float = 0.0
    n_samples_elbo: int = 0
    svi_history: np.ndarray = field(default=None, repr=False)
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.log_px)

    def summary(self) -> pd.DataFrame:
        """One row per quantity: mean (nats per data point), stderr (over data points), mc_stderr
        (Monte Carlo error of the mean for these points: sqrt(Σ se_i²) / n)."""
        rows = []
        for name, label in GAP_ROWS:
            values = getattr(self, name)
            rows.append(
                {
                    "quantity": name,
                    "label": label,
                    "mean": float(values.mean()),
                    "stderr": _stderr(values),
                    "mc_stderr": float(np.sqrt(np.sum(self.mc_stderr[name] ** 2)) / len(values)),
                }
            )
        return pd.DataFrame(rows).set_index("quantity")

    def __str__(self) -> str:
        table = self.summary()
        head = (
            f"Inference gaps (Cremer, Li & Duvenaud 2018), nats per data point, n = {self.n}\n"
            f"log p(x): importance sampling, k = {self.k}, proposal = {self.proposal}; "
            f"q*: {self.svi_steps} Adam steps (lr {self.svi_lr:g}) from the {self.init}; "
            f"ELBOs from {self.n_samples_elbo} draws each\n"
        )
        width = max(len(label) for _, label in GAP_ROWS)
        lines = [f"{'':{width}}  {'mean':>12}  {'± s.e. (data)':>14}  {'± s.e. (MC)':>12}"]
        for name, label in GAP_ROWS:
            r = table.loc[name]
            lines.append(
                f"{label:{width}}  {r['mean']:12.4f}  {r['stderr']:14.4f}  {r['mc_stderr']:12.4f}"
            )
        gap = table.loc["inference_gap", "mean"]
        if gap > 0:
            share = table.loc["amortization_gap", "mean"] / gap
            lines.append(f"amortization share of the inference gap: {100 * share:.1f}%")
        return head + "\n".join(lines)

    def _repr_html_(self) -> str:  # notebooks
        return self.summary().to_html(float_format=lambda v: f"{v:.4f}")


def _mean_and_se(total: torch.Tensor, total_sq: torch.Tensor, shift: torch.Tensor, n: int):
    """Mean and standard error of the mean from shifted sums Σ(t − shift), Σ(t − shift)²."""
    m = total / n
    var = (total_sq - n * m.square()) / max(n - 1, 1)
    return shift + m, torch.sqrt(var.clamp(min=0) / n)


@torch.no_grad()
def _paired_elbos(model, flat, q_a, q_b, n_samples: int, generator):
    """ELBO of two diagonal Gaussians per point from the same eps draws: means and Monte Carlo
    standard errors of each and of their difference (a − b), all (B,), float64."""
    (mu_a, ls_a), (mu_b, ls_b) = q_a, q_b
    B = flat.shape[0]
    kl_a, kl_b = standard_normal_kl(mu_a, ls_a).double(), standard_normal_kl(mu_b, ls_b).double()
    chunk = max(1, min(n_samples, 50_000 // max(B, 1)))
    sums = None
    done = 0
    while done < n_samples:
        c = min(chunk, n_samples - done)
        eps = torch.randn(
            (c, *mu_a.shape), generator=generator, device=mu_a.device, dtype=mu_a.dtype
        )
        t_a = model.log_likelihood(flat, mu_a + torch.exp(ls_a) * eps).double() - kl_a
        t_b = model.log_likelihood(flat, mu_b + torch.exp(ls_b) * eps).double() - kl_b
        terms = (t_a, t_b, t_a - t_b)
        if sums is None:  # centre on the first chunk's means: shifted second moments
            shifts = [t.mean(0) for t in terms]
            sums = [
                [torch.zeros(B, dtype=torch.float64, device=flat.device) for _ in range(2)]
                for _ in terms
            ]
        for t, s, acc in zip(terms, shifts, sums, strict=True):
            d = t - s
            acc[0] += d.sum(0)
            acc[1] += d.square().sum(0)
        done += c
    return [_mean_and_se(acc[0], acc[1], s, n_samples) for acc, s in zip(sums, shifts, strict=True)]


@torch.no_grad()
def _log_px(proposals, model, flat, k: int, generator, max_rows: int = 50_000):
    """log p(x) by importance sampling from the equal mixture of the Gaussians ``proposals`` (a list
    of (mu, log_sigma)), stratified: each component gives its share of the ``k`` draws and every
    weight is p(x, z) / q_mix(z) (Hesterberg's defensive mixture when there are several). Returns
    (estimate, Monte Carlo standard error) per point, float64.

    The draws are split into groups of (nearly) equal size, each an unbiased estimate p̂_g of p(x);
    the error is the delta method on the scale of p: se(log p̂) ≈ sd(p̂_g / p̂) / sqrt(G).
    """
    B, C = flat.shape[0], len(proposals)
    n_groups = min(IS_GROUPS, k // C)
    logs = []
    for size in (len(a) for a in np.array_split(np.arange(k), n_groups)):
        parts = []
        for (mu, log_sigma), n in zip(
            proposals, (len(a) for a in np.array_split(np.arange(size), C)), strict=False
        ):
            total = torch.full((B,), -math.inf, dtype=torch.float64, device=flat.device)
            chunk = max(1, min(n, max_rows // max(B, 1)))
            for start in range(0, n, chunk):
                z = rsample(mu, log_sigma, min(chunk, n - start), generator=generator)
                log_mix = torch.logsumexp(
                    torch.stack([log_q(z, m, s) for m, s in proposals]), 0
                ) - math.log(C)
                log_w = (model.log_joint(flat, z) - log_mix).double()
                total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
            parts.append(total - math.log(n))  # the mean weight of this component's draws
        logs.append(torch.logsumexp(torch.stack(parts), 0) - math.log(C))  # exact for any split
    logs = torch.stack(logs)  # (G, B)
    sizes = torch.tensor(
        [len(a) for a in np.array_split(np.arange(k), n_groups)],
        dtype=torch.float64,
        device=flat.device,
    )
    estimate = torch.logsumexp(logs + torch.log(sizes)[:, None], dim=0) - math.log(k)
    if n_groups < 2:
        return estimate, torch.full_like(estimate, float("nan"))
    ratio = torch.exp(logs - estimate)
    return estimate, ratio.std(0, unbiased=True) / math.sqrt(n_groups)


def gap_report(
    vae,
    X,
    k: int = 5000,
    svi_steps: int = 1000,
    svi_lr: float = 0.02,
    n_samples_elbo: int = 1000,
    *,
    svi_samples: int = 1,
    init: str = "encoder",
    proposal: str = "mixture",
    batch_size: int = 1000,
    random_state=0,
) -> GapReport:
    """The approximation and amortization gaps of a fitted VAE on the rows of X (Cremer, Li and
    Duvenaud 2018), per data point and on average, in nats per data point.

    Parameters
    ----------
    vae : a fitted :class:`lvmkit.VAE`.
    X : data as the VAE takes it (grey-scale data of a Bernoulli VAE are scored as one seeded
        binarization, the same one ``score_samples`` and ``log_marginal`` use).
    k : importance samples per point for log p(x) (chunked; k = 5000 fits in memory).
    svi_steps, svi_lr, svi_samples : the per-point fit of q*
        (:func:`~lvmkit.posteriors.local.fit_local`: Adam steps, step size, draws per step; the
        last half of the steps are averaged).
    n_samples_elbo : draws per point for each ELBO (the same draws for q* and the encoder's q).
    init : 'encoder' (semi-amortized: start q* at the encoder's q, the usual choice, so q* is at
        least as good up to noise) or 'prior' (start at N(0, I): checks that the optimum found does
        not depend on the encoder).
    proposal : the importance-sampling proposal for log p(x):
        'mixture' (default): the equal mixture of q* and the encoder's q, half the draws from each
        (a defensive mixture: its weights p/q_mix are at most twice those of either component,
        so their second moment is at most twice that of the better of the two);
        'optimal': q* alone. The estimate's expectation then lies between ELBO(q*) and log p(x), but
        a mean-field q* is narrower than a correlated posterior, and importance weights from a
        too-narrow proposal are heavy-tailed: the estimate falls short of log p(x) by more than
        its error bar says (measured: 0.1-0.3 nats with k = 2000 on a 2-D linear-Gaussian model);
        'encoder': the encoder's q alone, the estimator of ``lvmkit.log_marginal``. A poorly
        placed encoder can make it fall below ELBO(q*): a negative approximation gap.
    batch_size : data points fitted and scored together (memory: batch_size × draws decoded rows).
    random_state : seed for every draw (importance sampling, the fits, the ELBOs); the same
        arguments give the same numbers.

    Returns
    -------
    GapReport: per-point arrays, Monte Carlo errors, ``summary()`` (a
    DataFrame) and a printable table.
    """
    _check_vae(vae, "gap_report")
    k = _check_positive_int("k", k, 1, "Use 1000 or more.")
    svi_steps = _check_positive_int(
        "svi_steps", svi_steps, 0, "Use a few hundred to a few thousand."
    )
    n_samples_elbo = _check_positive_int(
        "n_samples_elbo", n_samples_elbo, 2, "Use 1000 for errors well below 0.1 nats."
    )
    batch_size = _check_positive_int("batch_size", batch_size, 1)
    if init not in ("encoder", "prior"):
        raise ValueError(f"init must be 'encoder' (semi-amortized) or 'prior'; got {init!r}.")
    if proposal not in PROPOSALS:
        raise ValueError(
            f"proposal must be 'mixture' (q* and the encoder's q, half the draws each), 'optimal' "
            f"(q*) or 'encoder' (the encoder's q); got {proposal!r}."
        )
    if k < len(PROPOSALS[proposal]):
        raise ValueError(
            f"k must be at least {len(PROPOSALS[proposal])} for proposal={proposal!r} (one draw "
            f"per component); got {k}."
        )
    start = time.perf_counter()
    x_all = vae._input(X, for_likelihood=True)
    encoder, model = vae.module_.encoder, vae.module_.model
    seed = _seed(random_state)
    device = x_all.device
    g_fit = torch.Generator(device=device).manual_seed(seed)
    g_elbo = torch.Generator(device=device).manual_seed(seed + 1)
    g_is = torch.Generator(device=device).manual_seed(seed + 2)

    parts, history = [], []
    for s in range(0, x_all.shape[0], batch_size):
        x = x_all[s : s + batch_size]
        flat = x.reshape(x.shape[0], -1)
        with torch.no_grad():
            mu_e, ls_e = encoder(x)
        fit = fit_local(
            model,
            flat,
            init=(mu_e, ls_e) if init == "encoder" else None,
            steps=svi_steps,
            lr=svi_lr,
            n_samples=svi_samples,
            generator=g_fit,
            eval_samples=1,
        )
        history.append(fit.history)
        q_star = (fit.mu, fit.log_sigma)
        (e_opt, se_opt), (e_enc, se_enc), (diff, se_diff) = _paired_elbos(
            model, flat, q_star, (mu_e, ls_e), n_samples_elbo, g_elbo
        )
        chosen = {
            "optimal": [q_star],
            "encoder": [(mu_e, ls_e)],
            "mixture": [q_star, (mu_e, ls_e)],
        }[proposal]
        lp, se_lp = _log_px(chosen, model, flat, k, g_is)
        parts.append(
            [t.cpu().numpy() for t in (lp, se_lp, e_opt, se_opt, e_enc, se_enc, diff, se_diff)]
        )
    lp, se_lp, e_opt, se_opt, e_enc, se_enc, diff, se_diff = (
        np.concatenate(p) for p in zip(*parts, strict=True)
    )
    mc = {
        "log_px": se_lp,
        "elbo_optimal": se_opt,
        "elbo_encoder": se_enc,
        "approximation_gap": np.sqrt(se_lp**2 + se_opt**2),  # independent draws
        "amortization_gap": se_diff,  # common random numbers
        "inference_gap": np.sqrt(se_lp**2 + se_enc**2),
    }
    return GapReport(
        log_px=lp,
        elbo_optimal=e_opt,
        elbo_encoder=e_enc,
        approximation_gap=lp - e_opt,
        amortization_gap=diff,
        inference_gap=lp - e_enc,
        mc_stderr=mc,
        k=k,
        proposal=proposal,
        init=init,
        svi_steps=svi_steps,
        svi_lr=float(svi_lr),
        n_samples_elbo=n_samples_elbo,
        svi_history=np.concatenate(history) if history else np.empty(0),
        seconds=time.perf_counter() - start,
    )


# ====================================================================== gradient variance
@dataclass
class GradientVariance:
    """Repeated draws of the encoder's gradient (of the batch's mean ELBO, nats per data point).

    table : DataFrame, one row per estimator: n_samples (draws of z per point per gradient),
        total_variance (trace of the covariance of one gradient draw), mean_variance (per
        coordinate), variance_ratio (total variance over the reparameterized one, when measured),
        mean_norm (norm of the mean gradient), snr (mean_norm / sqrt(total_variance)), median_snr
        (median over coordinates of |mean| / sd), seconds_per_gradient.
    mean, variance : estimator -> (P,) arrays: per-coordinate mean and variance (ddof=1) over the
        repeats, the P coordinates being the encoder's parameters flattened in order.
    samples : estimator -> (n_repeats,) array: the draws of one coordinate, ``coordinate``.
    """

    table: pd.DataFrame
    mean: dict
    variance: dict
    samples: dict
    coordinate: str
    n_repeats: int
    n_points: int

    def __str__(self) -> str:
        cols = [
            "n_samples",
            "total_variance",
            "mean_variance",
            "variance_ratio",
            "snr",
            "median_snr",
        ]
        cols = [c for c in cols if c in self.table]
        return (
            f"Encoder gradient of the mean ELBO over {self.n_points} points, {self.n_repeats} "
            f"draws per estimator\n" + self.table[cols].to_string(float_format=lambda v: f"{v:.4g}")
        )

    def _repr_html_(self) -> str:
        return self.table.to_html(float_format=lambda v: f"{v:.4g}")


def _tracked_coordinate(named) -> tuple[int, str]:
    """The first entry of the last parameter (for an MLP encoder: the bias of the first latent
    mean's output unit), as (flat index, name)."""
    offset = sum(p.numel() for _, p in named[:-1])
    name = named[-1][0]
    return offset, f"{name}[0]"


def gradient_variance(
    vae,
    X,
    estimators=("reparameterization", "score", "score-baseline"),
    n_repeats: int = 200,
    n_samples: int = 2,
    random_state=0,
) -> GradientVariance:
    """Mean and variance of estimators of the gradient of the mean ELBO (nats per data point) over
    the rows of X with respect to the encoder's parameters, on the same model and the same batch.

    Parameters
    ----------
    vae : a fitted :class:`lvmkit.VAE`.
    X : one batch of data (all its rows are used in every gradient).
    estimators : names from :data:`lvmkit.objectives.score_function.ESTIMATORS`:
        'reparameterization', 'score' (no baseline), 'score-baseline' (leave-one-out baseline,
        needs n_samples >= 2), 'score-mean-baseline' (baseline f(mu), any n_samples).
    n_repeats : independent gradient draws per estimator (>= 2).
    n_samples : draws of z per data point in each gradient, the same for every estimator (default
        2, the fewest the leave-one-out baseline allows).
    random_state : seed; every estimator starts from the same generator state (common random
        numbers), so the comparison does not depend on the order of ``estimators``.

    Returns
    -------
    GradientVariance: a table (DataFrame, one row per estimator) and the per-coordinate moments.
    """
    _check_vae(vae, "gradient_variance")
    if isinstance(estimators, str):
        estimators = (estimators,)
    estimators = tuple(estimators)
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise ValueError(f"estimators must be names from {tuple(ESTIMATORS)}; got {estimators!r}.")
    n_repeats = _check_positive_int(
        "n_repeats", n_repeats, 2, "Use 100 or more for a stable variance."
    )
    n_samples = _check_positive_int("n_samples", n_samples, 1)
    if n_samples < 2 and "score-baseline" in estimators:
        raise ValueError(
            "estimator 'score-baseline' (leave-one-out baseline) needs n_samples >= 2; got "
            "n_samples=1. Use n_samples=2, or the estimator 'score-mean-baseline', whose baseline "
            "needs one draw."
        )
    x = vae._input(X, for_likelihood=True)
    encoder, model = vae.module_.encoder, vae.module_.model
    named = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(
            "the VAE's encoder has no trainable parameters; there is no gradient to measure."
        )
    params = [p for _, p in named]
    index, coordinate = _tracked_coordinate(named)
    seed = _seed(random_state)

    rows, means, variances, samples = [], {}, {}, {}
    for name in estimators:
        generator = torch.Generator(device=x.device).manual_seed(seed)
        draws = []
        total = total_sq = shift = None
        start = time.perf_counter()
        with torch.enable_grad():
            for _ in range(n_repeats):
                value = elbo_surrogate(
                    encoder, model, x, name, generator, n_samples
                ).surrogate.mean()
                grads = torch.autograd.grad(value, params)
                g = torch.cat([t.reshape(-1) for t in grads]).double()
                if shift is None:  # shifted sums: centred second moments
                    shift, total, total_sq = g.clone(), torch.zeros_like(g), torch.zeros_like(g)
                d = g - shift
                total += d
                total_sq += d.square()
                draws.append(g[index])
        seconds = (time.perf_counter() - start) / n_repeats
        m = total / n_repeats
        var = ((total_sq - n_repeats * m.square()) / (n_repeats - 1)).clamp(min=0)
        mean = shift + m
        if not bool(torch.isfinite(mean).all() and torch.isfinite(var).all()):
            raise FloatingPointError(
                f"gradient_variance: estimator {name!r} gave NaN or infinite gradients; the "
                f"model's ELBO is not finite on these data (check score_samples(X))."
            )
        mean_np, var_np = mean.cpu().numpy(), var.cpu().numpy()
        sd = np.sqrt(var_np)
        with np.errstate(divide="ignore", invalid="ignore"):
            coord_snr = np.where(sd > 0, np.abs(mean_np) / sd, np.inf)
        total_var = float(var_np.sum())
        norm = float(np.linalg.norm(mean_np))
        rows.append(
            {
                "estimator": name,
                "n_samples": n_samples,
                "total_variance": total_var,
                "mean_variance": float(var_np.mean()),
                "mean_norm": norm,
                "snr": norm / math.sqrt(total_var) if total_var > 0 else math.inf,
                "median_snr": float(np.median(coord_snr)),
                "seconds_per_gradient": seconds,
            }
        )
        means[name], variances[name] = mean_np, var_np
        samples[name] = torch.stack(draws).cpu().numpy()
    table = pd.DataFrame(rows).set_index("estimator")
    if "reparameterization" in table.index:
        table.insert(
            3,
            "variance_ratio",
            table["total_variance"] / table.loc["reparameterization", "total_variance"],
        )
    return GradientVariance(
        table, means, variances, samples, coordinate, n_repeats, int(x.shape[0])
    )
