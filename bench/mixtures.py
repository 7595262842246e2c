"""Seconds per EM iteration of Bernoulli- and Poisson-mixture fitting: lvmkit vs
pomegranate, on the same data from the same initial parameters.

Run from the repository root::

    .venv/bin/python bench/mixtures.py            # full run, writes BENCHMARKS.md
    .venv/bin/python bench/mixtures.py --quick    # smoke test (< 1 min), prints only

Protocol (the same as ``bench/gmm.py``)
---------------------------------------
* Data.  Bernoulli: binarized MNIST (Larochelle & Murray static binarization,
  ``../shared/data/binarized-mnist/binarized_mnist_train.amat.gz``, 50,000 x
  784), or, when that file is absent, a synthetic Bernoulli mixture of the
  same shape; K = 50.  Poisson: synthetic counts from a K = 16 Poisson mixture
  (rates ~ Gamma(2, scale 2.5), weights ~ Dirichlet(5)), N = 200,000, D = 32.
  Both seeded.
* Initial parameters: k-means (scikit-learn, fixed seed) on a subsample, then
  hard-assignment weights and smoothed per-cluster means: probabilities
  ``(S + 1) / (n + 2)`` (Laplace), rates ``(S + 1) / (n + 1)``, weights
  ``(n + 1) / (n_sub + K)`` -- strictly inside every library's admissible box.
  The same float64 arrays go to both libraries (lvmkit: ``weights_init`` and
  ``probs_init`` / ``rates_init``; pomegranate: see :class:`Pomegranate`).
* Timing: every fit runs a fixed number of EM iterations (``tol=0``; nothing
  stops early).  Per repeat, each implementation fits with ``n_iter`` and with
  1 iteration, interleaved across implementations; best of ``--repeats``.
  Seconds per iteration is the marginal cost ``(T(n_iter) - T(1)) /
  (n_iter - 1)`` (:func:`bench._common.marginal_seconds`), so one-off work in
  ``fit`` (input validation, conversion, the final E-step) is excluded for
  everyone; the table also shows the raw ``T(n_iter)``.  A one-iteration
  warm-up fit precedes the repeats, and an untimed ``--settle`` sleep every
  timed fit (see :func:`bench._common.timed`).  pomegranate's Bernoulli
  mixture on MNIST takes tens of seconds per iteration on a 2-core machine,
  so the Bernoulli group defaults to 5 iterations and 2 repeats (its
  per-iteration times are far above the machine's noise); Poisson uses 20
  iterations and 3 repeats like ``bench/gmm.py``.  With so few iterations,
  lvmkit's T(n) - T(1) spans well under a second, and one T(1) disturbed by
  another process skews its marginal cost (seen: a row at 102% of the GEMM
  peak).  So within each repeat an implementation whose (T(1), T(n)) pair took
  under ``--min-seconds`` (5 s) repeats the pair until 5 s are spent (at most
  10 pairs; :func:`bench._common.time_interleaved`): the fast library gets
  several chances at an undisturbed measurement while its peer runs once.
  A row faster than the GEMM peak is reported as a warning.
* Speedup = pomegranate's s/iter (same dtype, same run) / lvmkit's.  The
  issue's target is >= 5x for every row; the script prints a target table.
* GFLOP/s: flop model 4 N K D per iteration (E-step ``X @ W``, 2 N K D;
  M-step ``R^T X``, 2 N K D), against the torch GEMM rate of the row's dtype
  measured in the same run (:func:`bench._common.gemm_gflops`).
* Log-likelihoods: each library's own mean log-likelihood per sample of X with
  its final parameters (``score(X)``; ``log_probability(X).mean()``) from the
  last timed fit, with |delta| to the other library at the same dtype.  Two
  cross-checks: the first-iteration log-likelihood (of the initial parameters)
  of every row against lvmkit's float64 one (same start to ~1e-8), and every
  final parameter set re-evaluated by one float64 NumPy/SciPy reference
  (:func:`reference_loglik`) against the library's own score.
* Optional CUDA rows (lvmkit only, same data) when a GPU is present
  (``--no-gpu`` to skip).

A full run takes about 25-35 minutes on the 2-core development machine
(pomegranate's Bernoulli fits dominate); ``--quick`` takes ~30 s.
"""

from __future__ import annotations

import argparse
import gzip
import math
import shlex
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as a script
    sys.path.append(str(Path(__file__).resolve().parent.parent))
from bench import _common  # noqa: E402

SECTION = "bench/mixtures.py"
MODELS = ("bernoulli", "poisson")
DTYPES = ("float32", "float64")
IMPLS = ("lvmkit", "pomegranate")
TARGET_SPEEDUP = 5.0
MNIST_TRAIN = (
    _common.REPO_ROOT.parent
    / "shared"
    / "data"
    / "binarized-mnist"
    / "binarized_mnist_train.amat.gz"
)
# Added to every component's total responsibility by lvmkit (as scikit-learn does),
# mirrored in pomegranate's M-step so that an empty component cannot divide 0 by 0.
EPS_NK = 10.0 * float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------
# The two observation families: everything that differs between them
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    name: str  # "bernoulli" / "poisson"
    title: str
    lvmkit_class: str  # lvmkit estimator
    param: str  # lvmkit's fitted attribute without "_" ("probs" / "rates")
    floor_kwarg: str  # lvmkit's clipping parameter ("min_prob" / "min_rate")
    pomegranate_class: str  # pomegranate.distributions class
    pomegranate_param: str  # its parameter ("probs" / "lambdas")

    def bounds(self, floor: float) -> tuple[float, float]:
        """The box lvmkit's M-step clips the parameters into."""
        return (floor, 1.0 - floor) if self.name == "bernoulli" else (floor, math.inf)

    def smoothed_means(self, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Per-cluster means pulled strictly inside the admissible box."""
        n = counts[:, None]
        return (sums + 1.0) / (n + 2.0) if self.name == "bernoulli" else (sums + 1.0) / (n + 1.0)

    def component_logpdf(self, x: np.ndarray, values: np.ndarray) -> np.ndarray:
        """log p(x_n | component k) (N, K), float64 NumPy/SciPy."""
        from scipy.special import gammaln

        if self.name == "bernoulli":
            return x @ np.log(values).T + (1.0 - x) @ np.log1p(-values).T
        return x @ np.log(values).T - values.sum(1) - gammaln(x + 1.0).sum(1, keepdims=True)


FAMILIES = {
    "bernoulli": Family(
        "bernoulli", "Bernoulli", "BernoulliMixture", "probs", "min_prob", "Bernoulli", "probs"
    ),
    "poisson": Family(
        "poisson", "Poisson", "PoissonMixture", "rates", "min_rate", "Poisson", "lambdas"
    ),
}


# --------------------------------------------------------------------------
# Data and initial parameters
# --------------------------------------------------------------------------
def read_binarized_mnist(path: Path, n_rows: int | None = None) -> np.ndarray:
    """The ``.amat.gz`` file as a (N, 784) float64 0/1 array: one image per line,
    784 single-character values separated by single spaces."""
    with gzip.open(path, "rb") as fh:
        raw = np.frombuffer(fh.read(), dtype=np.uint8)
    width = 784
    if raw.size % (2 * width):
        raise ValueError(f"{path}: unexpected size {raw.size} (not N x 784 '0 1 ...' lines)")
    seps = raw[1::2].reshape(-1, width)
    if not ((seps[:, :-1] == ord(" ")).all() and (seps[:, -1] == ord("\n")).all()):
        raise ValueError(f"{path}: values are not single characters separated by spaces")
    x = (raw[::2].reshape(-1, width) - ord("0")).astype(np.float64)
    if not np.isin(x, (0.0, 1.0)).all():
        raise ValueError(f"{path}: values other than 0 and 1")
    return x if n_rows is None else x[:n_rows]


def make_mixture_data(family: Family, n: int, d: int, k: int, seed: int) -> np.ndarray:
    """N x D float64 sample of a random K-component mixture of the family
    (weights ~ Dirichlet(5); probabilities ~ Beta(0.5, 0.5), rates ~
    Gamma(2, scale 2.5))."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    labels = rng.choice(k, size=n, p=weights)
    if family.name == "bernoulli":
        values = rng.beta(0.5, 0.5, size=(k, d))
        return (rng.random((n, d)) < values[labels]).astype(np.float64)
    values = rng.gamma(2.0, 2.5, size=(k, d))
    return rng.poisson(values[labels]).astype(np.float64)


def load_data(family: Family, args) -> tuple[np.ndarray, str]:
    """(X, description) for one family."""
    if family.name == "bernoulli":
        if MNIST_TRAIN.exists() and not args.synthetic_bernoulli:
            x = read_binarized_mnist(MNIST_TRAIN, args.bernoulli_n_samples)
            return x, (
                f"binarized MNIST train (Larochelle & Murray static binarization,"
                f" `{MNIST_TRAIN.name}`{', first rows' if args.bernoulli_n_samples else ''}),"
                f" N={len(x):,}, D={x.shape[1]}, K={args.bernoulli_n_components}"
            )
        n = args.bernoulli_n_samples or 50_000
        k = args.bernoulli_n_components
        x = make_mixture_data(family, n, 784, k, args.seed)
        return x, (
            f"synthetic {k}-component Bernoulli mixture (binarized MNIST not found at"
            f" `{MNIST_TRAIN}`), N={n:,}, D=784, K={k} (seed {args.seed})"
        )
    n, d, k = args.poisson_n_samples, args.poisson_n_features, args.poisson_n_components
    x = make_mixture_data(family, n, d, k, args.seed)
    return x, (
        f"synthetic {k}-component Poisson mixture (rates ~ Gamma(2, scale 2.5), mean count"
        f" {x.mean():.2f}, max {int(x.max())}), N={n:,}, D={d}, K={k} (seed {args.seed})"
    )


@dataclass(frozen=True)
class InitParams:
    """Initial mixture parameters shared by all implementations (float64)."""

    weights: np.ndarray  # (K,)
    values: np.ndarray  # (K, D): probabilities or rates


def make_init(family: Family, x: np.ndarray, k: int, seed: int, subsample: int) -> InitParams:
    """k-means on a subsample; hard-assignment weights and smoothed means
    (:meth:`Family.smoothed_means`), so no empty cluster can break anything."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    xs = x[rng.choice(len(x), size=min(len(x), subsample), replace=False)]
    labels = KMeans(n_clusters=k, n_init=1, max_iter=20, random_state=seed).fit_predict(xs)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.stack([xs[labels == j].sum(0) for j in range(k)])
    weights = (counts + 1.0) / (counts.sum() + k)
    return InitParams(weights / weights.sum(), family.smoothed_means(sums, counts))


def flops_per_iter(n: int, d: int, k: int) -> float:
    """Flop-count model of one EM iteration: E-step ``X @ W`` (2 N K D) plus
    M-step ``R^T X`` (2 N K D); log-sum-exp, exponentials and other N x K
    elementwise work is not counted (a lower bound on what executes)."""
    return 4.0 * n * k * d


def reference_loglik(family: Family, x: np.ndarray, weights, values) -> float:
    """Mean log-likelihood per sample of ``x`` under (weights, values), float64
    NumPy/SciPy: one evaluator for every row."""
    from scipy.special import logsumexp

    return float(logsumexp(family.component_logpdf(x, values) + np.log(weights), axis=1).mean())


# --------------------------------------------------------------------------
# Implementations under test: one small adapter each
# --------------------------------------------------------------------------
class Impl:
    """One implementation at one (family, dtype, device)."""

    name = "?"

    def __init__(
        self, family: Family, dtype: str, device: str = "cpu", floor: float = 1e-6, **_options
    ):
        self.family, self.dtype, self.device, self.floor = family, dtype, device, floor

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def prepare(self, x: np.ndarray) -> Any:
        """Data in the form ``fit`` takes (converted once, outside timing)."""
        return x

    def fit(self, data: Any, init: InitParams, n_iter: int) -> Any:
        raise NotImplementedError

    def initial_loglik(self, data: Any, init: InitParams) -> float:
        """Mean log-likelihood of the initial parameters, as the library's own
        first EM iteration computes it."""
        raise NotImplementedError

    def score(self, model: Any, data: Any) -> float:
        raise NotImplementedError

    def fitted_params(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """(weights, probabilities or rates) as float64 NumPy."""
        raise NotImplementedError


class Lvmkit(Impl):
    """``lvmkit.BernoulliMixture`` / ``lvmkit.PoissonMixture`` (scikit-learn's contract)."""

    name = "lvmkit"

    def fit(self, x, init, n_iter):
        import lvmkit

        fam = self.family
        est = getattr(lvmkit, fam.lvmkit_class)(
            n_components=len(init.weights),
            tol=0.0,
            max_iter=n_iter,
            weights_init=init.weights.copy(),
            random_state=0,
            dtype=self.dtype,
            device=self.device,
            **{f"{fam.param}_init": init.values.copy(), fam.floor_kwarg: self.floor},
        )
        with warnings.catch_warnings():  # tol=0: "did not converge" is expected
            warnings.filterwarnings("ignore", message=".*converge.*")
            est.fit(x)
        if est.n_iter_ != n_iter:
            raise RuntimeError(f"lvmkit ran {est.n_iter_} iterations, not {n_iter}")
        return est

    def initial_loglik(self, x, init):
        return float(self.fit(x, init, 1).lower_bounds_[0])

    def score(self, est, x):
        return float(est.score(x))

    def fitted_params(self, est):
        values = getattr(est, f"{self.family.param}_")
        return _common.to_numpy64(est.weights_), _common.to_numpy64(values)


def _clipped_class(family: Family):
    """pomegranate's distribution whose M-step matches lvmkit's.

    Stock pomegranate 1.1.2 sets ``probs = xw_sum / w_sum`` (``lambdas`` alike)
    with no clipping: a pixel that is 0 in every image a component explains gets
    probability exactly 0, ``log 0 = -inf`` and ``0 * -inf = NaN`` in the next
    E-step's ``X @ log(p)`` (the whole fit turns NaN after one iteration on
    MNIST); a zero rate does the same in ``X * log(lambda)``.  lvmkit clips the
    M-step into ``[min_prob, 1 - min_prob]`` / ``[min_rate, inf)`` (the exact
    maximiser over that box) and adds ``EPS_NK`` to each component's total
    responsibility.  This subclass does both, in O(D) extra work per component
    and iteration."""
    import pomegranate.distributions as pd

    base = getattr(pd, family.pomegranate_class)
    attr = family.pomegranate_param

    class Clipped(base):
        def __init__(self, *args, low: float, high: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.low, self.high = low, high

        def from_summaries(self):
            if self.frozen:
                return
            self._w_sum += EPS_NK
            super().from_summaries()
            getattr(self, attr).data.clamp_(self.low, self.high)
            self._reset_cache()  # recompute the cached logs from the clipped values

    Clipped.__name__ = Clipped.__qualname__ = f"Clipped{base.__name__}"
    return Clipped


class Pomegranate(Impl):
    """pomegranate 1.x ``GeneralMixtureModel`` of ``Bernoulli(probs=...)`` /
    ``Poisson(lambdas=...)`` components.

    * Initial parameters are pinned by constructing every component with its
      parameters and the mixture with ``priors=weights``: when all components
      are initialised the mixture sets ``_initialized = True`` and ``fit``
      never runs its k-means initialisation (asserted).
    * ``fit`` runs ``max_iter`` E+M steps and stops early only when the
      log-likelihood improvement is ``< tol``; ``tol=-inf`` disables that.
    * dtype: internal buffers (each component's sufficient statistics, the
      mixture's responsibility matrix and prior accumulator) are created in
      torch's *default* dtype, so the model is built and fitted with the default
      dtype set to the run's dtype (:func:`bench._common.default_dtype`).
    * Clipping: :func:`_clipped_class` (the same box as lvmkit's).
    * ``check_data=False`` (unless ``--pomegranate-check-data``): with the
      default ``True`` every component re-validates all of X on every E-step
      and M-step (``numpy.isin`` over N x D for Bernoulli), K times per
      iteration; off is pomegranate's documented fast setting for valid data.
    """

    name = "pomegranate"

    def __init__(self, family, dtype, device="cpu", floor=1e-6, check_data=False, **_options):
        super().__init__(family, dtype, device, floor)
        self.check_data = check_data

    def prepare(self, x):
        return torch.tensor(x, dtype=self.torch_dtype, device=self.device)

    def _build(self, init: InitParams, n_iter: int):
        from pomegranate.gmm import GeneralMixtureModel

        cls = _clipped_class(self.family)
        low, high = self.family.bounds(self.floor)

        def t(a):  # torch.tensor copies: pomegranate updates parameters in place
            return torch.tensor(a, dtype=self.torch_dtype, device=self.device)

        components = [
            cls(
                **{self.family.pomegranate_param: t(v)},
                low=low,
                high=high,
                check_data=self.check_data,
            )
            for v in init.values
        ]
        model = GeneralMixtureModel(
            components,
            priors=t(init.weights),
            max_iter=n_iter,
            tol=-math.inf,
            random_state=0,
            check_data=self.check_data,
        )
        assert model._initialized, "pomegranate would re-initialise with k-means"
        return model

    def fit(self, x, init, n_iter):
        with _common.default_dtype(self.torch_dtype):
            return self._build(init, n_iter).fit(x)

    def initial_loglik(self, x, init):
        with _common.default_dtype(self.torch_dtype):
            return float(self._build(init, 1).log_probability(x).mean())

    def score(self, model, x):
        with _common.default_dtype(self.torch_dtype):
            return float(model.log_probability(x).mean())

    def fitted_params(self, model):
        attr = self.family.pomegranate_param
        return (
            _common.to_numpy64(model.priors),
            _common.to_numpy64(torch.stack([getattr(d, attr) for d in model.distributions])),
        )


IMPL_CLASSES = {cls.name: cls for cls in (Lvmkit, Pomegranate)}


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
        return (i.device, i.family.name, i.dtype, i.name)

    @property
    def label(self) -> str:
        i = self.impl
        return i.name if i.device == "cpu" else f"{i.name} ({i.device})"

    @property
    def fit_seconds(self) -> float:
        return _common.best_of(self.t_full)

    @property
    def sec_per_iter(self) -> float:
        return _common.marginal_seconds(self.t_full, self.t_one, self.n_iter)


def run_group(
    family: Family,
    x: np.ndarray,
    init: InitParams,
    impls: list[Impl],
    n_iter: int,
    repeats: int,
    settle: float,
    min_seconds: float,
    log: Callable[[str], Any],
) -> list[Result]:
    """Warm up, then time all ``impls`` interleaved; score the last fits."""
    n, d = x.shape
    flops = flops_per_iter(n, d, len(init.weights))
    results = [Result(impl, n_iter, flops) for impl in impls]
    data = [impl.prepare(x) for impl in impls]
    for res, xd in zip(results, data, strict=True):
        res.impl.fit(xd, init, 1)  # warm-up
        res.init_ll = res.impl.initial_loglik(xd, init)
    t_one, t_full, models = _common.time_interleaved(
        [
            lambda k, impl=impl, xd=xd: impl.fit(xd, init, k)
            for impl, xd in zip(impls, data, strict=True)
        ],
        n_iter,
        repeats,
        labels=[f"{i.device} {family.name} {i.dtype} {i.name}" for i in impls],
        devices=[i.device for i in impls],
        settle=settle,
        log=log,
        min_seconds=min_seconds,
    )
    for res, xd, model, t1, tn in zip(results, data, models, t_one, t_full, strict=True):
        res.t_one, res.t_full = t1, tn
        res.final_ll = res.impl.score(model, xd)
        res.ref_ll = reference_loglik(family, x, *res.impl.fitted_params(model))
    return results


def build_impls(args, names, family: Family, device: str) -> list[Impl]:
    """lvmkit rows, then pomegranate rows, each at every dtype."""
    floor = args.min_prob if family.name == "bernoulli" else args.min_rate
    return [
        IMPL_CLASSES[name](
            family, dtype, device, floor=floor, check_data=args.pomegranate_check_data
        )
        for name in IMPLS
        if name in names
        for dtype in args.dtypes
    ]


def _find(results, device, family, dtype, name) -> Result | None:
    for r in results:
        if r.key == (device, family, dtype, name):
            return r
    return None


def _other(results, r: Result) -> Result | None:
    """The other library's row at the same family and dtype (CPU rows)."""
    i = r.impl
    other = "pomegranate" if i.name == "lvmkit" else "lvmkit"
    return _find(results, "cpu", i.family.name, i.dtype, other)


def _lvmkit64(results, r: Result) -> Result | None:
    return _find(results, r.impl.device, r.impl.family.name, "float64", "lvmkit")


def _speedup(results, r: Result) -> float | None:
    i = r.impl
    pg = _find(results, "cpu", i.family.name, i.dtype, "pomegranate")
    if pg is None or pg is r:
        return None
    return pg.sec_per_iter / r.sec_per_iter


def check_targets(results: list[Result], peaks: dict, log) -> None:
    """Warn (stderr) when the libraries do not start from the same point
    (float64 iter-1 log-likelihood vs lvmkit's, 1e-8 relative) or end apart by
    more than 1e-4 nats/sample at the same dtype, or when a row's GFLOP/s exceeds
    the GEMM peak (impossible: a noise-disturbed T(1))."""
    for r in results:
        tag = f"{r.impl.family.name} {r.impl.dtype} {r.label}"
        ref = _lvmkit64(results, r)
        if r.impl.dtype == "float64" and ref is not None and ref is not r:
            if abs(r.init_ll - ref.init_ll) > 1e-8 * max(1.0, abs(ref.init_ll)):
                log(
                    f"WARNING {tag}: first-iteration loglik differs from lvmkit float64 by"
                    f" {abs(r.init_ll - ref.init_ll):.2e} (not the same initial parameters?)"
                )
        other = _other(results, r)
        if other is not None and other is not r and abs(r.final_ll - other.final_ll) > 1e-4:
            log(
                f"WARNING {tag}: final loglik differs from {other.impl.name} by"
                f" {abs(r.final_ll - other.final_ll):.2e} > 1e-4"
            )
        if not math.isfinite(r.final_ll):
            log(f"WARNING {tag}: final loglik is {r.final_ll}")
        peak = peaks.get((r.impl.device, r.impl.dtype))
        if peak and r.flops / r.sec_per_iter / 1e9 > peak:
            log(
                f"WARNING {tag}: {r.flops / r.sec_per_iter / 1e9:.3g} GFLOP/s exceeds the GEMM"
                f" peak {peak:.3g}: s/iter is not credible (a disturbed T(1)?); rerun"
            )


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------
HEADERS = [
    "model",
    "dtype",
    "impl",
    "s/iter",
    "fit s (T(n))",
    "speedup vs pomegranate",
    "GFLOP/s",
    "% of GEMM peak",
    "final loglik/sample",
    "|Δ| vs other library",
]
ALIGN = "lll" + "r" * (len(HEADERS) - 3)
CHECK_HEADERS = [
    "model",
    "dtype",
    "impl",
    "iter-1 loglik/sample",
    "|Δ iter-1| vs lvmkit float64",
    "|own score − reference eval|",
]
CHECK_ALIGN = "lll" + "r" * (len(CHECK_HEADERS) - 3)
TARGET_HEADERS = [
    "model",
    "dtype",
    "lvmkit s/iter",
    "pomegranate s/iter",
    "speedup",
    f"≥ {TARGET_SPEEDUP:g}× met",
]


def table_rows(results: list[Result], all_results: list[Result], peaks: dict) -> list[list[str]]:
    rows = []
    for r in results:
        i = r.impl
        speedup = _speedup(all_results, r)
        other = _other(all_results, r)
        gflops = r.flops / r.sec_per_iter / 1e9
        peak = peaks.get((i.device, i.dtype))
        rows.append(
            [
                i.family.title,
                i.dtype,
                r.label,
                f"{r.sec_per_iter:.4g}",
                f"{r.fit_seconds:.3g}",
                "—" if speedup is None else f"{speedup:.2f}×",
                f"{gflops:.3g}",
                f"{100 * gflops / peak:.1f}%" if peak else "—",
                f"{r.final_ll:.6f}",
                _common.fmt_sci(abs(r.final_ll - other.final_ll))
                if other and other is not r
                else "—",
            ]
        )
    return rows


def check_rows(results: list[Result]) -> list[list[str]]:
    rows = []
    for r in results:
        ref = _lvmkit64(results, r)
        rows.append(
            [
                r.impl.family.title,
                r.impl.dtype,
                r.label,
                f"{r.init_ll:.8f}",
                _common.fmt_sci(abs(r.init_ll - ref.init_ll)) if ref and ref is not r else "—",
                _common.fmt_sci(abs(r.final_ll - r.ref_ll)),
            ]
        )
    return rows


def target_rows(results: list[Result]) -> list[list[str]]:
    rows = []
    for r in results:
        i = r.impl
        if i.name != "lvmkit" or i.device != "cpu":
            continue
        speedup = _speedup(results, r)
        pg = _find(results, "cpu", i.family.name, i.dtype, "pomegranate")
        if speedup is None:
            continue
        rows.append(
            [
                i.family.title,
                i.dtype,
                f"{r.sec_per_iter:.4g}",
                f"{pg.sec_per_iter:.4g}",
                f"{speedup:.1f}×",
                "yes" if speedup >= TARGET_SPEEDUP else "**no**",
            ]
        )
    return rows


def render(args, info, peaks, descriptions, cpu_results, gpu_results) -> str:
    cmd = ".venv/bin/python bench/mixtures.py" + "".join(" " + shlex.quote(a) for a in args.argv)
    peak_txt = ", ".join(
        f"{dt} {peaks[(dev, dt)]:.3g} GFLOP/s" + ("" if dev == "cpu" else f" ({dev})")
        for (dev, dt) in peaks
    )
    timing = "; ".join(
        f"{FAMILIES[m].title}: {args.n_iter[m]} EM iterations per fit, s/iter ="
        f" (T({args.n_iter[m]}) − T(1)) / {max(args.n_iter[m] - 1, 1)}, best of"
        f" {args.repeats[m]} interleaved repeats"
        for m in args.models
    )
    if args.min_seconds > 0:
        timing += (
            f"; within a repeat, an implementation whose (T(1), T(n)) pair took under"
            f" {args.min_seconds:g} s repeats the pair until {args.min_seconds:g} s are spent"
            " (≤ 10 pairs), all pairs counting towards the best-of"
        )
    check = "on" if args.pomegranate_check_data else "off (`check_data=False`, its fast setting)"
    out = [
        "## Bernoulli and Poisson mixture EM: lvmkit vs pomegranate",
        "",
        f"Command: `{cmd}`",
        "",
        *_common.machine_lines(info),
        *(f"- {FAMILIES[m].title} data: {descriptions[m]}." for m in args.models),
        f"- Initial parameters: k-means on a {args.init_subsample:,}-row subsample (seed"
        f" {args.seed}), hard-assignment weights and smoothed means (probabilities"
        " (S+1)/(n+2), rates (S+1)/(n+1)), identical float64 arrays for both libraries"
        " (`weights_init` + `probs_init`/`rates_init`; pomegranate components built with"
        " `probs=`/`lambdas=` and `priors=`, so `fit` does not re-initialise), `tol=0` /"
        " `tol=-inf`.",
        f"- Clipping: lvmkit clips its M-step to [min_prob, 1 − min_prob] "
        f"(min_prob={args.min_prob:g}) and rates to ≥ min_rate (min_rate={args.min_rate:g}) and "
        f"adds 10·eps to each component's responsibility total; stock pomegranate 1.1.2 does "
        f"neither (a pixel that is 0 in every image of a component gets p = 0, log 0 = −inf, "
        f"0·(−inf) = NaN: its MNIST fit is NaN after one iteration), so its `from_summaries` is "
        f"given the same clip and 10·eps here (O(K·D) work per iteration).",
        "- pomegranate dtype: built and fitted with torch's default dtype set to the run's dtype"
        " (stock 1.1.2 otherwise keeps its sufficient statistics and responsibility matrix in"
        f" float32 even for float64 input); input re-validation {check}.",
        f"- Timing: {timing}; a one-iteration warm-up first; tol=0, no early stop. speedup ="
        " pomegranate's s/iter / lvmkit's at the same dtype, same run.",
        f"- GEMM peak (torch {args.gemm_size}×{args.gemm_size} matmul, best of 5, same run):"
        f" {peak_txt}.",
        "- GFLOP/s model per iteration: 4·N·K·D (E-step X·W, M-step Rᵀ·X); lower-order work"
        " (log-sum-exp, exp, N×K elementwise) not counted.",
        "- final loglik/sample: each library's own mean log-likelihood of X with its final"
        " parameters; |Δ| vs the other library at the same dtype (target ≤ 1e-4).",
        "",
        _common.markdown_table(HEADERS, table_rows(cpu_results, cpu_results, peaks), ALIGN),
    ]
    if gpu_results:
        out += [
            "",
            "CUDA rows (lvmkit only): same data and protocol; speedup against the CPU"
            " pomegranate row of the same dtype.",
            "",
            _common.markdown_table(HEADERS, table_rows(gpu_results, cpu_results, peaks), ALIGN),
        ]
    out += [
        "",
        f"Target of the issue: lvmkit ≥ {TARGET_SPEEDUP:g}× faster than pomegranate per EM"
        " iteration (CPU, same dtype, this run).",
        "",
        _common.markdown_table(TARGET_HEADERS, target_rows(cpu_results), "ll" + "r" * 3 + "l"),
        "",
        "Consistency checks: log-likelihood of the initial parameters as each library's first"
        " EM iteration computes it (all start from the same point), and each final parameter"
        " set re-evaluated by one float64 NumPy/SciPy reference against the library's own"
        " score.",
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
        help="smoke test: 2,000 MNIST rows with K=10, Poisson N=5,000, 3 iterations,"
        " 1 repeat, small GEMM, no CUDA rows; prints only (nothing written"
        " unless --output is given)",
    )
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument(
        "--n-components",
        type=int,
        default=None,
        help="K for the Bernoulli mixture (default 50; alias of --bernoulli-n-components)",
    )
    p.add_argument("--bernoulli-n-components", type=int, default=None)
    p.add_argument(
        "--bernoulli-n-samples",
        type=int,
        default=None,
        help="use the first N MNIST rows (default all 50,000)",
    )
    p.add_argument(
        "--synthetic-bernoulli",
        action="store_true",
        help="synthetic Bernoulli data even when binarized MNIST is present",
    )
    p.add_argument("--poisson-n-samples", type=int, default=None, help="default 200000")
    p.add_argument("--poisson-n-features", type=int, default=32)
    p.add_argument("--poisson-n-components", type=int, default=16)
    p.add_argument(
        "--n-iter",
        type=int,
        default=None,
        help="EM iterations per fit for every model (default: Bernoulli 5, Poisson 20)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats, best of (default: Bernoulli 2, Poisson 3)",
    )
    p.add_argument(
        "--min-prob",
        type=float,
        default=1e-6,
        help="Bernoulli clip, lvmkit's min_prob, mirrored in pomegranate",
    )
    p.add_argument(
        "--min-rate",
        type=float,
        default=1e-6,
        help="Poisson clip, lvmkit's min_rate, mirrored in pomegranate",
    )
    p.add_argument(
        "--pomegranate-check-data",
        action="store_true",
        help="pomegranate's default check_data=True (re-validates X every step)",
    )
    p.add_argument(
        "--init-subsample",
        type=int,
        default=None,
        help="rows for the initial k-means (default 10000)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--settle",
        type=float,
        default=0.3,
        help="untimed sleep (s) before each timed fit (see bench/_common.timed)",
    )
    p.add_argument(
        "--min-seconds",
        type=float,
        default=None,
        help="within each repeat, an implementation whose (T(1), T(n)) pair took less"
        " repeats it until this many seconds are spent (at most 10 pairs; see"
        " bench/_common.time_interleaved; default 5, --quick 0.2); 0 = one pair per"
        " repeat as bench/gmm.py",
    )
    p.add_argument("--gemm-size", type=int, default=None, help="GEMM benchmark size (default 2048)")
    p.add_argument("--no-gpu", action="store_true", help="skip CUDA rows even if a GPU is present")
    p.add_argument("--gpu-gemm-size", type=int, default=8192)
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file to update (default: the repository's BENCHMARKS.md;"
        " with --quick: none)",
    )
    p.add_argument("--no-write", action="store_true", help="print the tables only")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    quick = args.quick
    args.bernoulli_n_components = (
        args.bernoulli_n_components or args.n_components or (10 if quick else 50)
    )
    if quick and args.bernoulli_n_samples is None:
        args.bernoulli_n_samples = 2_000
    args.poisson_n_samples = args.poisson_n_samples or (5_000 if quick else 200_000)
    args.init_subsample = args.init_subsample or (2_000 if quick else 10_000)
    defaults_iter = {"bernoulli": 3 if quick else 5, "poisson": 3 if quick else 20}
    defaults_rep = {"bernoulli": 1 if quick else 2, "poisson": 1 if quick else 3}
    args.n_iter = {m: args.n_iter or defaults_iter[m] for m in MODELS}
    args.repeats = {m: args.repeats or defaults_rep[m] for m in MODELS}
    args.gemm_size = args.gemm_size or (512 if quick else 2048)
    if args.min_seconds is None:
        args.min_seconds = 0.2 if quick else 5.0
    if quick:
        args.no_gpu = True
    _common.resolve_output(args, quick)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    info = _common.machine_info(("torch", "numpy", "pomegranate", "lvmkit"))
    log(
        f"machine: {info['cpu']}, {info['cores']} cores; torch threads {info['torch_threads']};"
        f" BLAS {info['blas_threads']}"
    )
    use_gpu = torch.cuda.is_available() and not args.no_gpu and "lvmkit" in args.impls
    peaks = {}
    for dt in args.dtypes:
        peaks[("cpu", dt)] = _common.gemm_gflops(getattr(torch, dt), n=args.gemm_size)
        if use_gpu:
            peaks[("cuda", dt)] = _common.gemm_gflops(
                getattr(torch, dt), n=args.gpu_gemm_size, device="cuda"
            )
    log("GEMM GFLOP/s: " + ", ".join(f"{k[0]} {k[1]}: {v:.3g}" for k, v in peaks.items()))

    descriptions: dict[str, str] = {}
    cpu_results: list[Result] = []
    gpu_results: list[Result] = []
    for m in args.models:
        family = FAMILIES[m]
        x, descriptions[m] = load_data(family, args)
        k = args.bernoulli_n_components if m == "bernoulli" else args.poisson_n_components
        log(f"{family.title}: {descriptions[m]}")
        init = make_init(family, x, k, args.seed, args.init_subsample)
        timing = (args.n_iter[m], args.repeats[m], args.settle, args.min_seconds, log)
        cpu_results += run_group(
            family, x, init, build_impls(args, args.impls, family, "cpu"), *timing
        )
        if use_gpu:
            gpu_results += run_group(
                family, x, init, build_impls(args, ["lvmkit"], family, "cuda"), *timing
            )
        del x

    check_targets(cpu_results + gpu_results, peaks, log)
    text = render(args, info, peaks, descriptions, cpu_results, gpu_results)
    print(text)
    if args.output is not None:
        path = _common.write_section(text, SECTION, args.output)
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
