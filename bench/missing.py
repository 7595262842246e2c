"""Missing values and mixtures of factor analyzers (issue 14), in three parts, each with its own
section of BENCHMARKS.md.

    .venv/bin/python bench/missing.py --threads 1                # all three parts, each section
    .venv/bin/python bench/missing.py --part impute --threads 1  # or mixtures, iterations
    .venv/bin/python bench/missing.py --quick                    # small sizes, prints only

The tables in BENCHMARKS.md were made with ``--threads 1`` (about 4 minutes in all): on the shared
2-core machine, with other jobs running, 2-thread BLAS and OpenMP ran 3–10× slower than 1 thread
(scikit-learn's IterativeImputer and lvmkit's EM alike).

impute: scikit-learn's digits (1797 × 64, pixel counts 0–16), dequantized by adding U(0, 1) noise
(seed 0) so that densities are continuous; 20% of the values removed at random (seed 1); the root
mean squared error of each method's fill-ins on the removed values, and the seconds of fit +
impute: scikit-learn's SimpleImputer (mean), IterativeImputer (BayesianRidge, max_iter=10),
KNNImputer (5 neighbours); lvmkit's ProbabilisticPCA, FactorAnalysis,
MixtureOfFactorAnalyzers and GaussianMixture (full, diag; where it has ``impute``), all at their
defaults, their ``impute`` being E[x_missing | x_observed].

mixtures: the same dequantized digits, complete, split 1200 train / 597 test (seed 0); K = 10
components for every model, n_init = 1, random_state = 0, k-means starts, float64: lvmkit's
GaussianMixture (diag, full) against MixtureOfFactorAnalyzers (q = 2, 4, 8) and a mixture of
probabilistic PCA (noise='isotropic', q = 8): free parameters, train and held-out log-likelihood
per sample, fit seconds, iterations.

iterations: seconds per EM iteration without and with 20% of the values missing (seed 1), as
(T(20) − T(1)) / 19 with tol = 0 (the protocol of ``_common.time_interleaved``, best of
--repeats interleaved repeats): ProbabilisticPCA(10, solver='em') on the data of
``bench/factor.py`` (N = 100,000, D = 50), MixtureOfFactorAnalyzers(10, 4) on its first 20,000 rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as a script
    sys.path.append(str(Path(__file__).resolve().parent.parent))
from bench import _common  # noqa: E402
from bench.factor import simulate  # noqa: E402

PARTS = ("impute", "mixtures", "iterations")
SECTION = "bench/missing.py"
MISSING = 0.2
SETTLE = 0.3  # untimed sleep before every timed fit (see _common.timed)


# --------------------------------------------------------------------------- data
def digits(n: int | None = None) -> np.ndarray:
    """scikit-learn's digits, dequantized: counts + U(0, 1) (seed 0)."""
    from sklearn.datasets import load_digits

    X = load_digits().data
    X = X + np.random.default_rng(0).uniform(size=X.shape)
    return X if n is None else X[:n]


def remove(X: np.ndarray, fraction: float = MISSING, seed: int = 1):
    """``(X with NaN, mask)``: every value removed independently with probability ``fraction``."""
    mask = np.random.default_rng(seed).uniform(size=X.shape) < fraction
    out = X.copy()
    out[mask] = np.nan
    return out, mask


# --------------------------------------------------------------------------- helpers
class Log:
    """Notes on what the estimators did (non-monotone EM, errors, non-convergence)."""

    def __init__(self):
        self.notes: list[str] = []

    def check(self, name: str, model) -> None:
        bounds = np.asarray(getattr(model, "lower_bounds_", []), dtype=float)
        if bounds.size and not np.all(np.isfinite(bounds)):
            self.add(f"{name}: lower_bounds_ holds non-finite values")
        if bounds.size > 1:
            drops = np.diff(bounds)
            worst = float(drops.min())
            if worst < -1e-9 * max(1.0, float(np.abs(bounds).max())):
                self.add(
                    f"{name}: lower_bounds_ decreased (largest drop {-worst:.3g} at iteration "
                    f"{int(np.argmin(drops)) + 1})"
                )

    def add(self, note: str) -> None:
        print("NOTE:", note, flush=True)
        self.notes.append(note)


def quiet_fit(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def iterations(model) -> str:
    n = getattr(model, "n_iter_", None)
    if n is None:
        return "—"
    converged = getattr(model, "converged_", True)
    return f"{n}" + ("" if converged else " (max_iter)")


def header(title: str, command: str, args, info) -> list[str]:
    return [
        f"## {title}",
        "",
        f"Command: `{command}{'' if args.threads == 2 else f' --threads {args.threads}'}` "
        f"({args.threads} thread{'s' if args.threads > 1 else ''} everywhere: torch and the BLAS "
        "libraries)",
        "",
        *_common.machine_lines(info),
        f"- Load average (1 min) of the shared machine at the start / end of this part: "
        f"{args.load_start:.1f} / {os.getloadavg()[0]:.1f} on {info['cores']} cores (other jobs "
        "ran alongside; seconds are wall-clock).",
    ]


# --------------------------------------------------------------------------- part 1
def impute_part(args, info, log: Log) -> str:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    import lvmkit

    X = digits(400 if args.quick else None)
    Xm, mask = remove(X)
    n, d = X.shape
    truth = X[mask]
    quick = dict(max_iter=10) if args.quick else {}
    cases = [
        ("scikit-learn SimpleImputer", "strategy='mean'", lambda: SimpleImputer()),
        ("scikit-learn KNNImputer", "n_neighbors=5", lambda: KNNImputer(n_neighbors=5)),
        ("scikit-learn IterativeImputer", "BayesianRidge, max_iter=10",
         lambda: IterativeImputer(max_iter=10, random_state=0)),
    ]  # fmt: skip
    for q in (10, 20):
        cases.append((f"lvmkit ProbabilisticPCA({q})", "EM, tol=1e-6 per sample",
                      lambda q=q: lvmkit.ProbabilisticPCA(q, **quick)))  # fmt: skip
    for q in (10, 20):
        cases.append((f"lvmkit FactorAnalysis({q})", "EM, tol=1e-2 on the total",
                      lambda q=q: lvmkit.FactorAnalysis(q, **quick)))  # fmt: skip
    for q in (4, 8):
        cases.append((f"lvmkit MixtureOfFactorAnalyzers(10, {q})", "tol=1e-3 per sample",
                      lambda q=q: lvmkit.MixtureOfFactorAnalyzers(10, q, random_state=0,
                                                                  **quick)))  # fmt: skip
    gmm_note = ""
    if hasattr(lvmkit.GaussianMixture, "impute"):
        for kind in ("diag", "full"):
            cases.append((f"lvmkit GaussianMixture(10, '{kind}')", "tol=1e-3 per sample, float64",
                          lambda kind=kind: lvmkit.GaussianMixture(
                              10, covariance_type=kind, random_state=0, dtype="float64",
                              **quick)))  # fmt: skip
    else:
        gmm_note = "lvmkit's GaussianMixture has no `impute` in this version: its rows are absent."
        print(gmm_note, flush=True)

    def run(make):
        model = make()
        if hasattr(model, "impute"):
            return model, model.fit(Xm).impute(Xm)
        return model, model.fit_transform(Xm)

    rows, mean_rmse = [], None
    for name, settings, make in cases:
        try:
            seconds, (model, filled) = _common.timed(lambda make=make: quiet_fit(
                lambda: run(make)), settle=SETTLE)  # fmt: skip
        except Exception as error:  # an estimator in progress elsewhere: report, go on
            log.add(f"{name} failed on digits with 20% missing: {type(error).__name__}: {error}")
            continue
        log.check(name, model)
        if not np.all(np.isfinite(filled)):
            log.add(f"{name}: the imputed array holds non-finite values")
        if np.any(filled[~mask] != X[~mask]):
            log.add(f"{name}: observed values changed by the imputation")
        rmse = float(np.sqrt(np.mean((filled[mask] - truth) ** 2)))
        mean_rmse = rmse if mean_rmse is None else mean_rmse
        score = f"{model.score(Xm):.3f}" if name.startswith("lvmkit") else "—"
        rows.append([name, settings, f"{rmse:.3f}", f"{rmse / mean_rmse:.3f}", score,
                     iterations(model), _common.fmt_sig(seconds)])  # fmt: skip
        print(rows[-1], flush=True)
    table = _common.markdown_table(
        ["method", "settings", "RMSE on the removed values", "RMSE / mean imputation's",
         "log-likelihood of the observed values / row", "iterations", "fit + impute s"],
        rows, align=["l", "l", "r", "r", "r", "r", "r"],
    )  # fmt: skip
    body = header(
        "Missing values: imputation error on digits",
        ".venv/bin/python bench/missing.py --part impute",
        args,
        info,
    )
    body += [
        f"- Data: scikit-learn's digits, N = {n:,}, D = {d}, pixel counts 0–16 dequantized by "
        "adding U(0, 1) noise (seed 0) so that densities are continuous; "
        f"{MISSING:.0%} of the values removed independently at random (seed 1): "
        f"{int(mask.sum()):,} values, every row keeps at least {int((~mask).sum(1).min())} of "
        f"its {d}. RMSE over the removed values, in pixel units (their standard deviation is "
        f"{truth.std():.2f}); one fit of each method on the rows with gaps, then its "
        "imputation of the same rows.",
        "- lvmkit's models are fitted by EM on the observed values (each row's gaps marginalized "
        "exactly), at their default tol and max_iter, k-means starts and random_state=0 for the "
        "mixtures; their fill-in is the conditional mean E[x_missing | x_observed] "
        "(a posterior mixture of the components' conditional means). The log-likelihood "
        "column is the model's `score` on the rows with gaps (observed values only, nats).",
        "",
        table,
    ]
    if gmm_note:
        body += ["", gmm_note]
    return "\n".join(body)


# --------------------------------------------------------------------------- part 2
def mixtures_part(args, info, log: Log) -> str:
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    import lvmkit

    X = digits(600 if args.quick else None)
    order = np.random.default_rng(0).permutation(X.shape[0])
    n_train = 400 if args.quick else 1200
    train, test = X[order[:n_train]], X[order[n_train:]]
    k = 10
    common = dict(random_state=0, n_init=1, **(dict(max_iter=10) if args.quick else {}))
    cases = [
        ("GaussianMixture", "diagonal", "1e-6 (added to the variances)",
         lambda: lvmkit.GaussianMixture(k, covariance_type="diag", dtype="float64", **common)),
        ("GaussianMixture", "full", "1e-6 (added to the diagonal)",
         lambda: lvmkit.GaussianMixture(k, covariance_type="full", dtype="float64", **common)),
    ]  # fmt: skip
    for q in (2, 4, 8):
        cases.append(("MixtureOfFactorAnalyzers", f"W Wᵀ + Ψ, q = {q}",
                      "1e-6 (floor of Ψ)",
                      lambda q=q: lvmkit.MixtureOfFactorAnalyzers(k, q, **common)))  # fmt: skip
    cases.append(("MixtureOfFactorAnalyzers, noise='isotropic' (mixture of PPCA)",
                  "W Wᵀ + σ² I, q = 8", "1e-6 (floor of σ²)",
                  lambda: lvmkit.MixtureOfFactorAnalyzers(k, 8, noise="isotropic",
                                                          **common)))  # fmt: skip
    cases = [(f"lvmkit {name}", *rest) for name, *rest in cases]
    for kind, label in (("diag", "diagonal"), ("full", "full")):
        cases.append(("scikit-learn GaussianMixture (reference)", label, "1e-6",
                      lambda kind=kind: SkGaussianMixture(k, covariance_type=kind,
                                                          **common)))  # fmt: skip
    rows = []
    for name, covariance, reg, make in cases:
        label = f"{name} ({covariance})"
        try:
            seconds, model = _common.timed(
                lambda make=make: quiet_fit(lambda: make().fit(train)), settle=SETTLE
            )
        except Exception as error:
            log.add(f"{label} failed on digits: {type(error).__name__}: {error}")
            continue
        log.check(label, model)
        train_ll, test_ll = model.score(train), model.score(test)
        if not (np.isfinite(train_ll) and np.isfinite(test_ll)):
            log.add(f"{label}: non-finite log-likelihood (train {train_ll}, test {test_ll})")
        rows.append([name, covariance, f"{model._n_parameters():,}", reg, f"{train_ll:.3f}",
                     f"{test_ll:.3f}", _common.fmt_sig(seconds), iterations(model)])  # fmt: skip
        print(rows[-1], flush=True)
    table = _common.markdown_table(
        ["model (K = 10)", "component covariance", "free parameters", "reg_covar",
         "train log-likelihood / sample", "held-out log-likelihood / sample", "fit s",
         "iterations"],
        rows, align=["l", "l", "r", "l", "r", "r", "r", "r"],
    )  # fmt: skip
    body = header(
        "Mixtures of factor analyzers: held-out log-likelihood on digits",
        ".venv/bin/python bench/missing.py --part mixtures",
        args,
        info,
    )
    body += [
        f"- Data: scikit-learn's digits (D = {X.shape[1]}) dequantized by adding U(0, 1) noise "
        f"(seed 0), split at random (seed 0) into {len(train):,} training and {len(test):,} "
        "held-out rows; log-likelihoods in nats per sample (a density of the dequantized "
        "values).",
        "- Every model: K = 10 components, n_init = 1, random_state = 0, k-means start, tol = "
        "1e-3 on the mean log-likelihood per sample, max_iter = 100, float64. Free parameters: "
        "(K − 1) weights + K D means + per component D (diagonal), D (D + 1) / 2 (full), "
        "D q − q (q − 1) / 2 + D (factor analyzer: loadings up to rotation + Ψ) or "
        "D q − q (q − 1) / 2 + 1 (PPCA). scikit-learn's GaussianMixture (its own k-means "
        "start, same settings) for reference.",
        "- MNIST is not in this table: on a 10,000 × 784 subset (pixels / 255 + U(0, 1) / 256, "
        "K = 10, float64) single fits take far more than the minute each this benchmark allows "
        "(measured once, with 2 threads on the loaded machine: GaussianMixture full ~3.5 min "
        "for its k-means start and first iteration, then ~55 s per iteration; diag ~60 s, "
        "almost all of it the k-means start).",
        "",
        table,
    ]
    return "\n".join(body)


# --------------------------------------------------------------------------- part 3
def iterations_part(args, info, log: Log) -> str:
    import lvmkit

    n, d, q = (5_000, 20, 5) if args.quick else (100_000, 50, 10)
    n_mfa = 2_000 if args.quick else 20_000
    n_iter = 5 if args.quick else 20
    X = simulate(n, d, q)
    Xm, mask = remove(X)
    sets = {"0%": X, f"{MISSING:.0%}": Xm}

    def ppca(data):
        return lambda it: quiet_fit(
            lambda: lvmkit.ProbabilisticPCA(q, solver="em", tol=0, max_iter=it).fit(data)
        )

    def mfa(data):
        return lambda it: quiet_fit(
            lambda: lvmkit.MixtureOfFactorAnalyzers(10, 4, tol=0, max_iter=it, random_state=0).fit(
                data[:n_mfa]
            )
        )

    cases = []
    for name, maker, rows in (
        (f"ProbabilisticPCA({q}, solver='em')", ppca, n),
        ("MixtureOfFactorAnalyzers(10, 4)", mfa, n_mfa),
    ):
        for gap, data in sets.items():
            cases.append((name, rows, gap, maker(data)))
    labels = [f"{name}, {gap} missing" for name, _, gap, _ in cases]
    t_one, t_full, models = _common.time_interleaved(
        [fit for *_, fit in cases], n_iter, args.repeats, labels=labels, settle=SETTLE, log=print
    )
    per_iter = [_common.marginal_seconds(t_full[i], t_one[i], n_iter) for i in range(len(cases))]
    for label, model in zip(labels, models, strict=True):
        log.check(label, model)
        if model.n_iter_ != n_iter:
            log.add(f"{label}: n_iter_ = {model.n_iter_}, not {n_iter}, with tol=0")
    rows = []
    for i in range(0, len(cases), 2):
        name, nrows = cases[i][0], cases[i][1]
        complete, gappy = per_iter[i], per_iter[i + 1]
        rows.append([name, f"{nrows:,} × {d}", f"{complete:.4g}", f"{gappy:.4g}",
                     f"{gappy / complete:.2f}×",
                     f"{min(t_full[i]):.3g} / {min(t_full[i + 1]):.3g}"])  # fmt: skip
        print(rows[-1], flush=True)
    table = _common.markdown_table(
        ["model (lvmkit)", "data", "s / iteration, complete", f"s / iteration, {MISSING:.0%} "
         "missing", "ratio", f"best T({n_iter}) s, complete / with gaps"],
        rows,
    )  # fmt: skip
    body = header(
        "Missing values and mixtures of factor analyzers: time per EM iteration",
        ".venv/bin/python bench/missing.py --part iterations",
        args,
        info,
    )
    body += [
        f"- Data: `simulate` of `bench/factor.py` (N = {n:,}, D = {d}, a {q}-factor model, "
        f"seed 0), float64; the mixture on its first {n_mfa:,} rows. With gaps: {MISSING:.0%} of "
        "the values removed independently at random (seed 1).",
        f"- Timing: fits with tol = 0 and max_iter = 1 and {n_iter}, interleaved over the four "
        f"cases, best of {args.repeats} repeats; s / iteration = (T({n_iter}) − T(1)) / "
        f"{n_iter - 1}, so the start (column moments, k-means, the first PCA) is not counted.",
        "- Both fits run the same EM on the rows (`lvmkit.models.factor`); on complete data "
        "every row shares its posterior covariance per component, with gaps each row gets its "
        "own q × q posterior (its M = I + W_oᵀ Ψ_o⁻¹ W_o, a Cholesky factor) and the M-step "
        "solves one (q + 1) × (q + 1) system per feature and component instead of one per "
        "component. (ProbabilisticPCA's default solver on complete data is the closed form, "
        "not EM; `bench/factor.py` times it.)",
        "",
        table,
    ]
    return "\n".join(body)


# --------------------------------------------------------------------------- main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=(*PARTS, "all"), default="all")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    _common.resolve_output(args, args.quick)
    # load every BLAS/OpenMP library first: threadpool_limits only reaches those already loaded
    import scipy.linalg  # noqa: F401
    import sklearn.impute  # noqa: F401
    import sklearn.neighbors  # noqa: F401

    _common.limit_threads(args.threads)
    parts = {"impute": impute_part, "mixtures": mixtures_part, "iterations": iterations_part}
    chosen = PARTS if args.part == "all" else (args.part,)
    log = Log()
    for part in chosen:
        start = time.perf_counter()
        args.load_start = os.getloadavg()[0]
        info = _common.machine_info(("torch", "numpy", "sklearn"))
        body = parts[part](args, info, log)
        if log.notes:
            body += "\n\nNotes from this run: " + "; ".join(log.notes) + "."
            log.notes = []
        print(body)
        print(f"[{part}: {time.perf_counter() - start:.0f} s]", flush=True)
        if args.output:
            _common.write_section(body, f"{SECTION} {part}", args.output)
            print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
