"""Regimes of US economic growth with a hidden Markov model (lvmkit.GaussianHMM).

statsmodels ships quarterly US macroeconomic data (``macrodata``, 1959Q1-2009Q3). Real GDP growth,
annualised (400 x the difference of log real GDP, in % per year), is fitted by a 2-state Gaussian
HMM whose states share one variance (``covariance_type='tied'``): the states then differ in their
mean only, and the low-growth state finds the recessions. With a variance per state ('diag') the
likelihood prefers to split the series by volatility instead (the calm years after 1984, the
"Great Moderation"), and the summary shows it. The script prints the states, the transition
matrix with the expected duration of each regime, the quarters decoded (Viterbi) as the
low-growth regime against the NBER's recession quarters, and BIC for 1 to 3 states. A second data
set, the Nile's annual flow at Aswan (1871-1970), has one change point, in 1899, that a 2-state
HMM finds.

    python examples/hmm_regimes.py --out out      # writes out/hmm_regimes.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

# NBER business-cycle peaks and troughs (quarterly dates) from 1960 to 2009: NBER Business Cycle
# Dating Committee, "US Business Cycle Expansions and Contractions",
# https://www.nber.org/research/data/us-business-cycle-expansions-and-contractions
# A recession's quarters here run from the quarter after the peak to the trough quarter, the
# quarters over which output falls (GDP growth of a quarter is its change since the previous one).
NBER_PEAKS_TROUGHS = [
    ("1960Q2", "1961Q1"),
    ("1969Q4", "1970Q4"),
    ("1973Q4", "1975Q1"),
    ("1980Q1", "1980Q3"),
    ("1981Q3", "1982Q4"),
    ("1990Q3", "1991Q1"),
    ("2001Q1", "2001Q4"),
    ("2007Q4", "2009Q2"),
]


def _quarter_index(label: str) -> int:
    """'1960Q2' -> a count of quarters (4 * year + quarter - 1)."""
    year, quarter = label.split("Q")
    return 4 * int(year) + int(quarter) - 1


def _label(index: int) -> str:
    return f"{index // 4}Q{index % 4 + 1}"


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) positions of every run of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def _stationary(transmat: np.ndarray) -> np.ndarray:
    """The stationary distribution of a transition matrix (its left eigenvector for 1)."""
    values, vectors = np.linalg.eig(transmat.T)
    p = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    return p / p.sum()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the figure (default: out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="fewer restarts (for tests)")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    import statsmodels.api as sm
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    from lvmkit import GaussianHMM

    n_init = 3 if args.quick else 10  # restarts of the model shown
    n_init_grid = 2 if args.quick else 5  # restarts of every model of the BIC table

    def hmm(k: int, covariance_type: str, restarts: int) -> GaussianHMM:
        return GaussianHMM(
            k,
            covariance_type=covariance_type,
            n_iter=1000,
            tol=1e-4,
            n_init=restarts,
            random_state=args.seed,
            dtype="float64",
        )

    # --- the data: annualised quarterly growth of real GDP, in % per year
    macro = sm.datasets.macrodata.load_pandas().data
    growth = 400 * np.diff(np.log(macro["realgdp"].to_numpy()))
    X = growth.reshape(-1, 1)
    quarters = np.array(
        [4 * int(y) + int(q) - 1 for y, q in zip(macro["year"], macro["quarter"], strict=True)]
    )[1:]
    labels = [_label(q) for q in quarters]
    t = quarters / 4.0  # the start of each quarter, in years (1960.25 = 1960Q2)
    print(
        f"US real GDP growth (statsmodels macrodata): {len(X)} quarters, {labels[0]}-{labels[-1]}, "
        f"annualised % per year (400 x diff log realgdp); mean {growth.mean():.2f}, "
        f"sd {growth.std():.2f}\n"
    )

    # --- the model: 2 states sharing one variance
    model = hmm(2, "tied", n_init).fit(X)
    means = model.means_[:, 0]
    low = int(np.argmin(means))  # the recession regime
    high = 1 - low
    names = {high: "expansion", low: "recession"}
    variances = model.covars_[:, 0, 0]  # full matrices whatever the type (hmmlearn's getter)
    A = model.transmat_
    share = _stationary(A)
    print(
        f"2-state GaussianHMM, tied covariance, float64, best of {n_init} restarts: "
        f"log-likelihood {model.score(X):.3f} "
        f"(restarts' final values {model.restarts_.min():.3f} to {model.restarts_.max():.3f}; "
        f"{model.n_iter_} EM iterations)"
    )
    print("state      mean (%/yr)  variance    sd  long-run share  expected duration")
    for k in (high, low):
        print(
            f"{names[k]:<10} {means[k]:11.2f} {variances[k]:9.2f} {np.sqrt(variances[k]):5.2f} "
            f"{share[k]:15.2f} {1 / (1 - A[k, k]):10.1f} quarters"
        )
    print("transition matrix (row: this quarter's regime, column: the next quarter's):")
    print(f"{'':>12}{names[high]:>11}{names[low]:>11}")
    for k in (high, low):
        print(f"{names[k]:>12}{A[k, high]:11.4f}{A[k, low]:11.4f}")
    print("expected duration of a regime = 1 / (1 - a_kk) quarters\n")

    # --- a variance per state instead
    diag = hmm(2, "diag", n_init_grid).fit(X)
    d_var = diag.covars_[:, 0, 0]
    d_states = diag.predict(X)
    calm = int(np.argmin(d_var))
    calm_quarters = d_states == calm
    print(
        f"the same with covariance_type='diag' (a variance per state; best of {n_init_grid} "
        f"restarts): log-likelihood {diag.score(X):.3f}, higher than the tied model's, but its "
        f"states split the series by volatility, not by growth: means "
        f"{diag.means_[calm, 0]:.2f} and {diag.means_[1 - calm, 0]:.2f} %/yr, sd "
        f"{np.sqrt(d_var[calm]):.2f} and {np.sqrt(d_var[1 - calm]):.2f}; the calm state holds "
        f"{calm_quarters.mean():.0%} of all quarters but {calm_quarters[t >= 1985].mean():.0%} of "
        "those from 1985 on (the Great Moderation). The example keeps the tied model.\n"
    )

    # --- the decoded recession regime against the NBER's recessions
    states = model.predict(X)  # Viterbi: the most probable sequence of regimes
    _, posterior = model.score_samples(X)
    p_low = posterior[:, low]
    hmm_low = states == low
    nber = np.zeros(len(X), dtype=bool)
    position = {q: i for i, q in enumerate(quarters)}
    print("NBER recession (peak -> trough)   quarters of falling output   decoded as recession")
    for peak, trough in NBER_PEAKS_TROUGHS:
        span = [position[q] for q in range(_quarter_index(peak) + 1, _quarter_index(trough) + 1)]
        nber[span] = True
        found = int(hmm_low[span].sum())
        print(
            f"  {peak} -> {trough}{'':17}{len(span):2d}{'':25}{found}/{len(span)}"
            f"{'   (missed)' if found == 0 else ''}"
        )
    both = int((hmm_low & nber).sum())
    print(
        f"decoded recession quarters: {int(hmm_low.sum())}; in an NBER recession: {both} of the "
        f"{int(nber.sum())} NBER quarters; agreement on {np.mean(hmm_low == nber):.0%} of all "
        f"{len(X)} quarters"
    )
    extra = [f"{labels[a]}-{labels[b]}" if a != b else labels[a] for a, b in _runs(hmm_low & ~nber)]
    ahead = sum(  # quarters of the regime just before an NBER recession's first quarter
        bool(hmm_low[i] and not nber[i] and nber[i + 1 : i + 3].any()) for i in range(len(X))
    )
    print(
        f"decoded as recession outside the NBER's dates: {', '.join(extra)} "
        f"({ahead} of these {int((hmm_low & ~nber).sum())} quarters lead an NBER recession by one "
        "or two quarters: the peak quarter, or the one before)"
    )
    map_states = model.decode(X, algorithm="map")[1]
    print(
        f"Viterbi and the posterior's most probable regime (algorithm='map') differ on "
        f"{int((map_states != states).sum())} quarter(s)\n"
    )

    # --- BIC for 1 to 3 states
    print(f"BIC (lower is better; best of {n_init_grid} restarts, the shown model's for K=2 tied):")
    print(" K        tied        diag")
    bics = {}
    for k in (1, 2, 3):
        row = []
        for ct in ("tied", "diag"):
            if k == 2:
                fitted = model if ct == "tied" else diag
            else:
                fitted = hmm(k, ct, n_init_grid).fit(X)
            bics[k, ct] = fitted.bic(X)
            row.append(bics[k, ct])
        print(f"{k:2d} {row[0]:11.2f} {row[1]:11.2f}")
    best_tied = min((1, 2, 3), key=lambda k: bics[k, "tied"])
    print(
        f"-> with tied covariance BIC selects {best_tied} states; with a variance per state "
        f"it selects {min((1, 2, 3), key=lambda k: bics[k, 'diag'])} (the volatility regimes)\n"
    )

    # --- the Nile: one change point
    nile = sm.datasets.nile.load_pandas().data
    years = nile["year"].to_numpy().astype(int)
    flow = nile["volume"].to_numpy().astype(float).reshape(-1, 1)
    river = hmm(2, "tied", n_init_grid).fit(flow)
    river_states = river.predict(flow)
    change = years[1:][np.diff(river_states) != 0]
    first, second = river_states[0], river_states[-1]
    print(
        f"Nile at Aswan (statsmodels nile, {years[0]}-{years[-1]}, 10^8 m^3 per year): a 2-state "
        f"tied GaussianHMM finds mean flows {river.means_[first, 0]:.0f} then "
        f"{river.means_[second, 0]:.0f}, sd {np.sqrt(river.covars_[0, 0, 0]):.0f}; regime "
        f"change(s) at {', '.join(str(y) for y in change)}; P(stay) "
        f"{river.transmat_[first, first]:.3f} before, {river.transmat_[second, second]:.3f} after"
    )

    # --- figure
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "hmm_regimes.png"
    with rc_context({"font.size": 12}):  # readable when the page shrinks the figure
        fig = Figure(figsize=(11, 10.5), layout="constrained")
        grid = fig.add_gridspec(3, 1, height_ratios=[3, 1.5, 2.4])
        ax = fig.add_subplot(grid[0])
        shade = dict(color="#d62728", alpha=0.18, linewidth=0)
        for a, b in _runs(hmm_low):
            ax.axvspan(t[a], t[b] + 0.25, **shade)
        ax.axhline(0, color="0.5", linewidth=0.8)
        ax.plot(t + 0.125, growth, color="black", linewidth=1.1, label="real GDP growth")
        for k, style in ((high, "--"), (low, ":")):
            ax.axhline(
                means[k],
                color="#1f77b4" if k == high else "#d62728",
                linestyle=style,
                linewidth=1.4,
                label=f"{names[k]} mean, {means[k]:.1f} %/yr",
            )
        ax.fill_between([], [], **shade, label="decoded recession regime (Viterbi)")
        ax.set(
            ylabel="growth (% per year, annualised)",
            xlim=(t[0], t[-1] + 0.25),
            ylim=(growth.min() - 1.5, growth.max() + 9.5),  # room for the legend above the series
            title="US real GDP growth and the regimes of a 2-state Gaussian HMM (tied covariance)",
        )
        ax.legend(loc="upper center", ncols=2, fontsize="medium", framealpha=0.95)
        ax.tick_params(labelbottom=False)

        ax2 = fig.add_subplot(grid[1], sharex=ax)
        ax2.fill_between(t + 0.125, p_low, color="#d62728", alpha=0.25, linewidth=0, step="mid")
        ax2.step(
            t + 0.125, p_low, where="mid", color="#d62728", linewidth=1.2, label="P(recession)"
        )
        # the NBER's recessions as a strip above the probabilities
        ax2.broken_barh(
            [(t[a], t[b] + 0.25 - t[a]) for a, b in _runs(nber)],
            (1.1, 0.14),
            color="0.25",
            label="NBER recession",
        )
        ax2.set(
            ylabel="P(recession regime\n| all quarters)",
            ylim=(0, 1.3),
            yticks=[0, 0.5, 1],
            xlabel="year",
        )
        ax2.axhline(1, color="0.7", linewidth=0.6)
        # between the 1991 and 2001 recessions, where the probability is near 0
        ax2.legend(
            loc="center left", bbox_to_anchor=(0.655, 0.55), fontsize="medium", framealpha=0.95
        )

        ax3 = fig.add_subplot(grid[2])
        level = river.means_[river_states, 0]
        ax3.plot(
            years,
            flow[:, 0],
            color="black",
            marker="o",
            markersize=3,
            linewidth=0.9,
            label="annual flow",
        )
        ax3.step(
            years,
            level,
            where="mid",
            color="#1f77b4",
            linewidth=2,
            label="mean of the decoded regime",
        )
        for y in change:
            ax3.axvline(
                y - 0.5, color="#d62728", linestyle="--", linewidth=1.2, label=f"regime change, {y}"
            )
        ax3.set(
            xlabel="year",
            ylabel="flow (10$^8$ m$^3$ per year)",
            xlim=(years[0] - 1, years[-1] + 1),
            ylim=(flow.min() - 50, flow.max() + 280),  # room for the legend
            title="The Nile at Aswan: a 2-state Gaussian HMM finds the change point",
        )
        ax3.legend(loc="upper right", fontsize="medium", framealpha=0.95)

        fig.savefig(path, dpi=110)
    print(f"\nwrote {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
