"""Seconds per EM iteration of Gaussian-mixture fitting: lvmkit vs scikit-learn
vs pomegranate, on the same data from the same initial parameters.

Run from the repository root::

    .venv/bin/python bench/gmm.py            # full run, writes BENCHMARKS.md
    .venv/bin/python bench/gmm.py --quick    # smoke test (seconds), prints only

Protocol
--------
* Data: a synthetic mixture (N x D, K components, random full covariances,
  fixed seed), float64 NumPy.
* Initial parameters: k-means (scikit-learn, fixed seed) on a subsample, then
  the hard-assignment weights / means / covariances (+ ``reg_covar``).  The
  same arrays go to every implementation: ``weights_init``, ``means_init`` and
  ``precisions_init`` (inverse covariances; K x D inverse variances for
  'diag') for lvmkit and scikit-learn, the covariances themselves for
  pomegranate (see :class:`Pomegranate`).
* Timing: every fit runs a fixed number of EM iterations (``tol=0``; nothing
  stops early).  Per repeat, each implementation fits with ``n_iter`` and with
  1 iteration, interleaved across implementations so that machine noise hits
  all of them alike; best of ``--repeats``.  Seconds per iteration is the
  marginal cost ``(T(n_iter) - T(1)) / (n_iter - 1)``, so one-off work inside
  ``fit`` (data conversion / transfer, scikit-learn's throw-away
  initialisation, the final E-step) is excluded for everyone; the table also
  shows the raw ``T(n_iter)``.  A warm-up fit precedes the repeats.
* Thread hand-over: an untimed ``--settle`` sleep (default 0.3 s) precedes
  every timed fit.  NumPy's OpenBLAS threads and torch's OpenMP threads keep
  spin-waiting after they finish; on this 2-core machine the previous
  library's spinning threads made the next library's first ~0.1 s of work
  3-5x slower (measured), which would bias T(1) and hence s/iter.
* Threads are not limited: torch and NumPy's BLAS use all cores (recorded in
  the output).
* Speedups are ratios of seconds per iteration measured in the same run:
  ``sklearn / row`` (sklearn runs in float64 only, whatever it is given) and
  ``pomegranate (same dtype) / row``.
* GFLOP/s uses the flop model of :func:`flops_per_iter` for every row and is
  compared with the torch GEMM rate of the row's dtype measured in the same
  run (:func:`bench._common.gemm_gflops`).
* Final log-likelihood: each implementation's own mean log-likelihood per
  sample of X with its final parameters (``score(X)``,
  ``log_probability(X).mean()``), from the last timed ``n_iter`` fit.  As a
  cross-check every final parameter set is also evaluated by one reference
  (scikit-learn's ``score`` in float64 with the parameters plugged in), and
  the first-iteration log-likelihood (of the initial parameters) is compared
  across implementations to prove they start from the same point.
* Optional CUDA rows (lvmkit only) at a larger size when a GPU is present
  (``--no-gpu`` to skip).

A full run takes about 5-10 minutes on the 2-core development machine
(pomegranate's float64 'full' fits dominate); ``--quick`` takes ~30 s.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as a script
    sys.path.append(str(Path(__file__).resolve().parent.parent))
from bench import _common  # noqa: E402

SECTION = "bench/gmm.py"
COV_TYPES = ("full", "diag")
DTYPES = ("float32", "float64")
IMPLS = ("lvmkit", "sklearn", "pomegranate")
REG_COVAR = 1e-6


# --------------------------------------------------------------------------
# Data and initial parameters
# --------------------------------------------------------------------------
def make_data(n: int, d: int, k: int, seed: int) -> np.ndarray:
    """N x D float64 sample of a random K-component Gaussian mixture.

    Means ~ N(0, 1.5^2 I) (well separated in D=16 but not trivially so),
    covariances ``s * (A A^T / D + 0.1 I)`` with Gaussian ``A`` and a random
    scale ``s`` in [0.5, 1.5], weights ~ Dirichlet(5)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.normal(scale=1.5, size=(k, d))
    a = rng.normal(size=(k, d, d))
    covs = (a @ a.transpose(0, 2, 1)) / d + 0.1 * np.eye(d)
    covs *= rng.uniform(0.5, 1.5, size=(k, 1, 1))
    labels = rng.choice(k, size=n, p=weights)
    x = np.empty((n, d))
    for j in range(k):
        idx = np.flatnonzero(labels == j)
        chol = np.linalg.cholesky(covs[j])
        x[idx] = means[j] + rng.normal(size=(idx.size, d)) @ chol.T
    return x


@dataclass(frozen=True)
class InitParams:
    """Initial mixture parameters shared by all implementations (float64)."""

    covariance_type: str
    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, D)
    covariances: np.ndarray  # (K, D, D) for 'full', (K, D) variances for 'diag'
    precisions: np.ndarray  # inverse of ``covariances`` (same shape)


def make_inits(
    x: np.ndarray, k: int, seed: int, cov_types, subsample: int = 20_000
) -> dict[str, InitParams]:
    """k-means on a subsample, then hard-assignment weights, means and
    (full or diagonal) covariances + ``REG_COVAR``, one set per type."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    xs = x[rng.choice(len(x), size=min(len(x), subsample), replace=False)]
    labels = KMeans(n_clusters=k, n_init=1, max_iter=20, random_state=seed).fit_predict(xs)
    d = x.shape[1]
    groups = [xs[labels == j] for j in range(k)]
    if min(len(g) for g in groups) < 2:
        raise RuntimeError("k-means produced a (near-)empty cluster; change --seed")
    weights = np.array([len(g) for g in groups], dtype=np.float64) / len(xs)
    means = np.stack([g.mean(0) for g in groups])
    inits = {}
    for cov_type in cov_types:
        if cov_type == "full":
            covs = np.stack([np.cov(g.T, bias=True) + REG_COVAR * np.eye(d) for g in groups])
            precs = np.linalg.inv(covs)
            precs = 0.5 * (precs + precs.transpose(0, 2, 1))  # exactly symmetric
        else:
            covs = np.stack([g.var(0) + REG_COVAR for g in groups])
            precs = 1.0 / covs
        inits[cov_type] = InitParams(cov_type, weights, means, covs, precs)
    return inits


def flops_per_iter(n: int, d: int, k: int, cov_type: str) -> float:
    """Flop-count model of one EM iteration (dominant matmul terms only).

    full: E-step whitening ``(X - mu_k) @ L_k`` for every k, 2 N K D^2, plus
          M-step weighted scatter ``(r_k * (X - mu_k))^T (X - mu_k)``,
          2 N K D^2: total 4 N K D^2.
    diag: E-step ``X^2 @ P^T`` and ``X @ (mu * P)^T``, 2 x 2 N K D, plus
          M-step ``r^T X`` and ``r^T X^2``, 2 x 2 N K D: total 8 N K D.
    Lower-order work (log-sum-exp, exponentials, N x K elementwise) is not
    counted, so the figure is a lower bound on what actually executes."""
    if cov_type == "full":
        return 4.0 * n * k * d * d
    return 8.0 * n * k * d


# --------------------------------------------------------------------------
# Implementations under test: one small adapter each
# --------------------------------------------------------------------------
class Impl:
    """One implementation at one (covariance type, dtype, device).

    Subclasses supply how to build and fit a model from :class:`InitParams`
    for a fixed number of EM iterations, how it scores data, and its fitted
    parameters as float64 NumPy (for the reference evaluation)."""

    name = "?"

    def __init__(self, cov_type: str, dtype: str, device: str = "cpu"):
        self.cov_type, self.dtype, self.device = cov_type, dtype, device

    def prepare(self, x: np.ndarray) -> Any:
        """Data in the form ``fit`` takes (converted once, outside timing)."""
        return x

    def fit(self, data: Any, init: InitParams, n_iter: int) -> Any:
        raise NotImplementedError

    def initial_loglik(self, data: Any, init: InitParams) -> float:
        """Mean log-likelihood of the initial parameters, as the library's
        own first EM iteration computes it."""
        raise NotImplementedError

    def score(self, model: Any, data: Any) -> float:
        raise NotImplementedError

    def fitted_params(self, model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weights, means, covariances) as float64 NumPy."""
        raise NotImplementedError


_numpy64 = _common.to_numpy64


class SklearnAPI(Impl):
    """Any estimator with scikit-learn's GaussianMixture API."""

    def estimator_class(self):
        raise NotImplementedError

    def extra_kwargs(self) -> dict[str, Any]:
        return {}

    def fit(self, x, init, n_iter):
        est = self.estimator_class()(
            n_components=len(init.weights),
            covariance_type=self.cov_type,
            tol=0.0,
            reg_covar=REG_COVAR,
            max_iter=n_iter,
            weights_init=init.weights.copy(),
            means_init=init.means.copy(),
            precisions_init=init.precisions.copy(),
            random_state=0,
            **self.extra_kwargs(),
        )
        with warnings.catch_warnings():  # tol=0: "did not converge" is expected
            warnings.filterwarnings("ignore", message=".*converge.*")
            return est.fit(x)

    def initial_loglik(self, x, init):
        return float(self.fit(x, init, 1).lower_bounds_[0])

    def score(self, est, x):
        return float(est.score(x))

    def fitted_params(self, est):
        return _numpy64(est.weights_), _numpy64(est.means_), _numpy64(est.covariances_)


class Lvmkit(SklearnAPI):
    name = "lvmkit"

    def estimator_class(self):
        from lvmkit import GaussianMixture

        return GaussianMixture

    def extra_kwargs(self):
        return {"dtype": self.dtype, "device": self.device}


class Sklearn(SklearnAPI):
    """scikit-learn computes in float64 whatever it is given."""

    name = "sklearn"

    def estimator_class(self):
        from sklearn.mixture import GaussianMixture

        return GaussianMixture

    def extra_kwargs(self):
        # With weights/means/precisions all given, scikit-learn still computes
        # (and discards) an initial responsibility matrix; 'random_from_data'
        # is its cheapest way to do so (the default runs k-means on all of X).
        # It changes nothing else (and is excluded from s/iter anyway).
        return {"init_params": "random_from_data"}


def _regularized_normal_class():
    from pomegranate.distributions import Normal

    class RegularizedNormal(Normal):
        """pomegranate ``Normal`` whose M-step adds ``reg_covar`` to the
        variances, as scikit-learn's ``reg_covar`` does.

        pomegranate 1.1.2 accepts ``min_cov`` but never applies it, so stock
        pomegranate has no covariance regularisation.  Its M-step computes
        ``covs = xxw_sum / w_sum - (xw_sum / w_sum)^2``; adding
        ``reg_covar * w_sum`` to the diagonal of the second-moment sum
        ``xxw_sum`` beforehand therefore yields exactly ``covs + reg_covar I``
        (O(K D) extra work per iteration)."""

        def __init__(self, *args, reg_covar: float = 0.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.reg_covar = reg_covar

        def from_summaries(self):
            if self.reg_covar and not self.frozen:
                diag = self._xxw_sum.diagonal() if self.covariance_type == "full" else self._xxw_sum
                diag.add_(self.reg_covar * self._w_sum)
            super().from_summaries()

    return RegularizedNormal


_torch_default_dtype = _common.default_dtype


class Pomegranate(Impl):
    """pomegranate 1.x ``GeneralMixtureModel`` of ``Normal`` components.

    * Initial parameters are pinned by constructing every ``Normal`` with
      ``means`` and ``covs`` (for 'diag', ``covs`` are the variances) and the
      mixture with ``priors=weights``: when all components are initialised
      the mixture sets ``_initialized = True`` and ``fit`` never runs its
      k-means initialisation.
    * ``fit`` runs ``max_iter`` E+M steps and stops early only when the
      log-likelihood improvement is ``< tol``; ``tol=-inf`` disables that
      (``tol=0`` would stop on a round-off-level decrease).
    * dtype: pomegranate computes in the dtype of the tensors it is given,
      *except* that internal buffers (each Normal's sufficient statistics, the
      mixture's prior accumulator) are created in torch's *default* dtype
      (``Distribution.dtype`` is read off a dummy float parameter made with
      the default dtype).  Given float64 tensors alone it would accumulate the
      M-step statistics in float32.  So the model is built and fitted with
      torch's default dtype set to the run's dtype (restored afterwards).
    * Regularisation: see :func:`_regularized_normal_class` (``reg_covar``
      from ``--pomegranate-reg-covar``, default 1e-6 like the others).
    """

    name = "pomegranate"

    def __init__(self, cov_type, dtype, device="cpu", reg_covar: float = REG_COVAR):
        super().__init__(cov_type, dtype, device)
        self.reg_covar = reg_covar

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def prepare(self, x):
        return torch.tensor(x, dtype=self.torch_dtype, device=self.device)

    def _build(self, init: InitParams, n_iter: int):
        from pomegranate.gmm import GeneralMixtureModel

        normal = _regularized_normal_class()

        def t(a):  # torch.tensor copies: pomegranate updates parameters in place
            return torch.tensor(a, dtype=self.torch_dtype, device=self.device)

        components = [
            normal(means=t(m), covs=t(c), covariance_type=self.cov_type, reg_covar=self.reg_covar)
            for m, c in zip(init.means, init.covariances, strict=False)
        ]
        model = GeneralMixtureModel(
            components, priors=t(init.weights), max_iter=n_iter, tol=-math.inf, random_state=0
        )
        assert model._initialized, "pomegranate would re-initialise with k-means"
        return model

    def fit(self, x, init, n_iter):
        with _torch_default_dtype(self.torch_dtype):
            return self._build(init, n_iter).fit(x)

    def initial_loglik(self, x, init):
        with _torch_default_dtype(self.torch_dtype):
            return float(self._build(init, 1).log_probability(x).mean())

    def score(self, model, x):
        with _torch_default_dtype(self.torch_dtype):
            return float(model.log_probability(x).mean())

    def fitted_params(self, model):
        return (
            _numpy64(model.priors),
            _numpy64(torch.stack([d.means for d in model.distributions])),
            _numpy64(torch.stack([d.covs for d in model.distributions])),
        )


IMPL_CLASSES = {cls.name: cls for cls in (Lvmkit, Sklearn, Pomegranate)}


def reference_loglik(x: np.ndarray, cov_type: str, weights, means, covs) -> float:
    """Mean log-likelihood per sample of ``x`` under the given parameters,
    evaluated by scikit-learn in float64 (one evaluator for every row)."""
    from scipy.linalg import solve_triangular
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(n_components=len(weights), covariance_type=cov_type)
    gm.weights_, gm.means_, gm.covariances_ = weights, means, covs
    if cov_type == "full":
        eye = np.eye(means.shape[1])
        gm.precisions_cholesky_ = np.stack(
            [solve_triangular(np.linalg.cholesky(c), eye, lower=True).T for c in covs]
        )
    else:
        gm.precisions_cholesky_ = 1.0 / np.sqrt(covs)
    return float(gm.score(x))


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------
@dataclass
class Result:
    impl: Impl
    n_iter: int
    flops: float
    t_full: list[float] = field(default_factory=list)  # T(n_iter) per repeat
    t_one: list[float] = field(default_factory=list)  # T(1) per repeat
    init_ll: float = math.nan
    final_ll: float = math.nan
    ref_ll: float = math.nan

    @property
    def key(self):
        i = self.impl
        return (i.device, i.cov_type, i.dtype, i.name)

    @property
    def fit_seconds(self) -> float:
        return _common.best_of(self.t_full)

    @property
    def sec_per_iter(self) -> float:
        """Marginal seconds per iteration, (T(n) - T(1)) / (n - 1); falls back
        to T(n) / n when n == 1 or noise makes the difference non-positive."""
        return _common.marginal_seconds(self.t_full, self.t_one, self.n_iter)


def run_group(
    x: np.ndarray,
    init: InitParams,
    impls: list[Impl],
    n_iter: int,
    repeats: int,
    settle: float,
    log,
) -> list[Result]:
    """Warm up, then time all ``impls`` interleaved; score the last fits."""
    n, d = x.shape
    k = len(init.weights)
    flops = flops_per_iter(n, d, k, init.covariance_type)
    results = [Result(impl, n_iter, flops) for impl in impls]
    data = [impl.prepare(x) for impl in impls]
    for res, xd in zip(results, data, strict=True):
        res.impl.fit(xd, init, min(2, n_iter))  # warm-up
        res.init_ll = res.impl.initial_loglik(xd, init)
    t_one, t_full, models = _common.time_interleaved(
        [
            lambda n, impl=impl, xd=xd: impl.fit(xd, init, n)
            for impl, xd in zip(impls, data, strict=True)
        ],
        n_iter,
        repeats,
        labels=[f"{i.device} {i.cov_type} {i.dtype} {i.name}" for i in impls],
        devices=[i.device for i in impls],
        settle=settle,
        log=log,
    )
    for res, t1, tn in zip(results, t_one, t_full, strict=True):
        res.t_one, res.t_full = t1, tn
    for res, xd, model in zip(results, data, models, strict=True):
        res.final_ll = res.impl.score(model, xd)
        res.ref_ll = reference_loglik(x, init.covariance_type, *res.impl.fitted_params(model))
    return results


def check_targets(results: list[Result], log) -> None:
    """Warn (stderr) when a row misses the agreement targets: float64 runs
    must start from sklearn's first-iteration log-likelihood (1e-6) and end
    within 1e-4 nats/sample of sklearn's final one."""
    for r in results:
        i = r.impl
        sk = _find(results, i.device, i.cov_type, "float64", "sklearn")
        if sk is None or sk is r:
            continue
        tag = f"{i.cov_type} {i.dtype} {i.name}"
        if i.dtype == "float64" and abs(r.init_ll - sk.init_ll) > 1e-6:
            log(
                f"WARNING {tag}: first-iteration loglik differs from sklearn by"
                f" {abs(r.init_ll - sk.init_ll):.2e} (not the same initial parameters?)"
            )
        if abs(r.final_ll - sk.final_ll) > 1e-4:
            log(
                f"WARNING {tag}: final loglik differs from sklearn by"
                f" {abs(r.final_ll - sk.final_ll):.2e} > 1e-4"
            )


def build_impls(args, names, cov_type: str, device: str) -> list[Impl]:
    """Instances in a fixed order: lvmkit rows, then sklearn (float64 only),
    then pomegranate rows."""
    options = {"pomegranate": {"reg_covar": args.pomegranate_reg_covar}}
    impls = []
    for name in IMPLS:
        if name not in names:
            continue
        for dtype in ("float64",) if name == "sklearn" else args.dtypes:
            impls.append(IMPL_CLASSES[name](cov_type, dtype, device, **options.get(name, {})))
    return impls


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------
HEADERS = [
    "covariance",
    "dtype",
    "impl",
    "s/iter",
    "fit s (T(n))",
    "speedup vs sklearn",
    "speedup vs pomegranate",
    "GFLOP/s",
    "% of GEMM peak",
    "final loglik/sample",
    "|Δ| vs sklearn",
]
ALIGN = "lll" + "r" * (len(HEADERS) - 3)
CHECK_HEADERS = [
    "covariance",
    "dtype",
    "impl",
    "iter-1 loglik/sample",
    "|Δ iter-1| vs sklearn",
    "|own score − reference eval|",
]
CHECK_ALIGN = "lll" + "r" * (len(CHECK_HEADERS) - 3)


def _find(results, device, cov_type, dtype, name) -> Result | None:
    for r in results:
        if r.key == (device, cov_type, dtype, name):
            return r
    return None


def _ratio(ref: Result | None, row: Result) -> str:
    if ref is None or ref is row:
        return "—"
    return f"{ref.sec_per_iter / row.sec_per_iter:.2f}×"


_sci = _common.fmt_sci


def table_rows(results: list[Result], peaks: dict) -> list[list[str]]:
    rows = []
    for r in results:
        i = r.impl
        sk = _find(results, i.device, i.cov_type, "float64", "sklearn")
        # pomegranate of the same dtype (sklearn, float64 only, vs pomegranate float64)
        pg = _find(results, i.device, i.cov_type, i.dtype, "pomegranate")
        gflops = r.flops / r.sec_per_iter / 1e9
        peak = peaks.get((i.device, i.dtype))
        label = i.name if i.device == "cpu" else f"{i.name} ({i.device})"
        rows.append(
            [
                i.cov_type,
                i.dtype,
                label,
                f"{r.sec_per_iter:.4g}",
                f"{r.fit_seconds:.3g}",
                _ratio(sk, r),
                _ratio(pg, r),
                f"{gflops:.3g}",
                f"{100 * gflops / peak:.1f}%" if peak else "—",
                f"{r.final_ll:.6f}",
                _sci(abs(r.final_ll - sk.final_ll)) if sk and sk is not r else "—",
            ]
        )
    return rows


def check_rows(results: list[Result]) -> list[list[str]]:
    rows = []
    for r in results:
        i = r.impl
        sk = _find(results, i.device, i.cov_type, "float64", "sklearn")
        rows.append(
            [
                i.cov_type,
                i.dtype,
                i.name if i.device == "cpu" else f"{i.name} ({i.device})",
                f"{r.init_ll:.8f}",
                _sci(abs(r.init_ll - sk.init_ll)) if sk and sk is not r else "—",
                _sci(abs(r.final_ll - r.ref_ll)),
            ]
        )
    return rows


def render(args, info, peaks, cpu_results, gpu_results, gemm_n) -> str:
    cmd = ".venv/bin/python bench/gmm.py" + "".join(" " + shlex.quote(a) for a in args.argv)
    peak_txt = ", ".join(
        f"{dt} {peaks[(dev, dt)]:.3g} GFLOP/s" + ("" if dev == "cpu" else f" ({dev})")
        for (dev, dt) in peaks
    )
    out = [
        "## Gaussian mixture EM: lvmkit vs scikit-learn vs pomegranate",
        "",
        f"Command: `{cmd}`",
        "",
        *_common.machine_lines(info),
        f"- Data: synthetic {args.n_components}-component mixture, N={args.n_samples:,},"
        f" D={args.n_features}, K={args.n_components} (seed {args.seed}); initial parameters"
        " from k-means on a 20k subsample, identical for every implementation;"
        f" reg_covar={REG_COVAR:g}.",
        "- pomegranate: `GeneralMixtureModel` of `Normal(means, covs)` built from the same"
        " initial parameters (no k-means re-initialisation), `tol=-inf`;"
        f" reg_covar={args.pomegranate_reg_covar:g} added to the variances in its M-step"
        " (stock 1.1.2 ignores `min_cov`, i.e. has none); built and fitted with torch's"
        " default dtype set to the run's dtype (stock 1.1.2 otherwise accumulates its"
        " sufficient statistics in float32 even for float64 input).",
        f"- Timing: {args.n_iter} EM iterations per fit (tol=0, no early stop);"
        f" s/iter = (T({args.n_iter}) − T(1)) / {max(args.n_iter - 1, 1)}, best of"
        f" {args.repeats} interleaved repeats after a warm-up; speedup = other's s/iter / this"
        " row's, same run (sklearn is float64 only; pomegranate compared at the same dtype).",
        f"- GEMM peak (torch {gemm_n}×{gemm_n} matmul, best of 5, same run): {peak_txt}.",
        "- GFLOP/s model per iteration: full 4·N·K·D² (E whitening + M scatter matmuls),"
        " diag 8·N·K·D; lower-order work not counted.",
        "- final loglik/sample: each library's own mean log-likelihood of X with its final"
        f" parameters after the {args.n_iter}-iteration fit; |Δ| vs sklearn target ≤ 1e-4.",
        "",
        _common.markdown_table(HEADERS, table_rows(cpu_results, peaks), ALIGN),
    ]
    if gpu_results:
        out += [
            "",
            f"CUDA rows (lvmkit only): N={args.gpu_n_samples:,}, D={args.gpu_n_features},"
            f" K={args.gpu_n_components}, same protocol.",
            "",
            _common.markdown_table(HEADERS, table_rows(gpu_results, peaks), ALIGN),
        ]
    out += [
        "",
        "Consistency checks: log-likelihood of the initial parameters as each library's first"
        " EM iteration computes it (all start from the same point), and each final parameter"
        " set re-evaluated by one reference (scikit-learn `score`, float64, parameters plugged"
        " in) against the library's own score.",
        "",
        _common.markdown_table(CHECK_HEADERS, check_rows(cpu_results + gpu_results), CHECK_ALIGN),
    ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: N=5000, 5 iterations, 2 repeats, small GEMM, no CUDA rows;"
        " prints only (nothing written unless --output is given)",
    )
    p.add_argument("--n-samples", type=int, default=None, help="N (default 200000)")
    p.add_argument("--n-features", type=int, default=16, help="D")
    p.add_argument("--n-components", type=int, default=16, help="K")
    p.add_argument("--n-iter", type=int, default=None, help="EM iterations per fit (default 20)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats, best of (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--settle",
        type=float,
        default=0.3,
        help="untimed sleep (s) before each timed fit, so the previous library's"
        " spinning BLAS/OpenMP threads go idle (see bench/_common.timed)",
    )
    p.add_argument("--covariance-types", nargs="+", choices=COV_TYPES, default=list(COV_TYPES))
    p.add_argument(
        "--dtypes",
        nargs="+",
        choices=DTYPES,
        default=list(DTYPES),
        help="dtypes for lvmkit and pomegranate (sklearn is always float64)",
    )
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument(
        "--pomegranate-reg-covar",
        type=float,
        default=REG_COVAR,
        help="variance added in pomegranate's M-step (0 = stock pomegranate)",
    )
    p.add_argument("--gemm-size", type=int, default=None, help="GEMM benchmark size (default 2048)")
    p.add_argument("--no-gpu", action="store_true", help="skip CUDA rows even if a GPU is present")
    p.add_argument("--gpu-n-samples", type=int, default=1_000_000)
    p.add_argument("--gpu-n-features", type=int, default=64)
    p.add_argument("--gpu-n-components", type=int, default=64)
    p.add_argument("--gpu-gemm-size", type=int, default=8192)
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file to update (default: the repository's BENCHMARKS.md;"
        " with --quick: none)",
    )
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    quick = args.quick
    args.n_samples = args.n_samples or (5_000 if quick else 200_000)
    args.n_iter = args.n_iter or (5 if quick else 20)
    args.repeats = args.repeats or (2 if quick else 3)
    args.gemm_size = args.gemm_size or (512 if quick else 2048)
    if quick:
        args.no_gpu = True
    _common.resolve_output(args, quick)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    info = _common.machine_info(("torch", "numpy", "sklearn", "pomegranate", "lvmkit"))
    log(
        f"machine: {info['cpu']}, {info['cores']} cores; torch threads {info['torch_threads']};"
        f" BLAS {info['blas_threads']}"
    )

    use_gpu = torch.cuda.is_available() and not args.no_gpu and "lvmkit" in args.impls
    peaks = {}
    for dt in args.dtypes if "sklearn" not in args.impls else sorted({*args.dtypes, "float64"}):
        peaks[("cpu", dt)] = _common.gemm_gflops(getattr(torch, dt), n=args.gemm_size)
        if use_gpu:
            peaks[("cuda", dt)] = _common.gemm_gflops(
                getattr(torch, dt), n=args.gpu_gemm_size, device="cuda"
            )
    log("GEMM GFLOP/s: " + ", ".join(f"{k[0]} {k[1]}: {v:.3g}" for k, v in peaks.items()))

    log(f"data: N={args.n_samples} D={args.n_features} K={args.n_components}")
    x = make_data(args.n_samples, args.n_features, args.n_components, args.seed)
    inits = make_inits(x, args.n_components, args.seed, args.covariance_types)
    cpu_results: list[Result] = []
    for cov_type in args.covariance_types:
        impls = build_impls(args, args.impls, cov_type, "cpu")
        cpu_results += run_group(
            x, inits[cov_type], impls, args.n_iter, args.repeats, args.settle, log
        )
    del x

    gpu_results: list[Result] = []
    if use_gpu:
        log(f"CUDA data: N={args.gpu_n_samples} D={args.gpu_n_features} K={args.gpu_n_components}")
        xg = make_data(args.gpu_n_samples, args.gpu_n_features, args.gpu_n_components, args.seed)
        ginits = make_inits(xg, args.gpu_n_components, args.seed, args.covariance_types)
        for cov_type in args.covariance_types:
            impls = build_impls(args, ["lvmkit"], cov_type, "cuda")
            gpu_results += run_group(
                xg, ginits[cov_type], impls, args.n_iter, args.repeats, args.settle, log
            )

    check_targets(cpu_results, log)
    text = render(args, info, peaks, cpu_results, gpu_results, args.gemm_size)
    print(text)
    if args.output is not None:
        path = _common.write_section(text, SECTION, args.output)
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
