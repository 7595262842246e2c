"""Figures of the inference diagnostics: gradient variance per estimator, and the gap decomposition.

Each function takes the result of :func:`lvmkit.estimators.diagnostics.gradient_variance` or
:func:`~lvmkit.estimators.diagnostics.gap_report` and returns a ``matplotlib.figure.Figure`` made
without pyplot (no window, no global state).
"""

from __future__ import annotations

import numpy as np

from lvmkit.plot.figures import _figure  # a Figure without pyplot: no window, no global state

__all__ = ["plot_gap_report", "plot_gradient_variance"]


def plot_gradient_variance(result, *, bins: int = 30):
    """Two panels: the mean per-coordinate variance of each estimator's encoder gradient (bars, log
    scale, labelled with the ratio to the reparameterized one), and histograms of one coordinate's
    draws (``result.coordinate``), one per estimator, with the mean marked.

    result : a :class:`~lvmkit.estimators.diagnostics.GradientVariance`.
    """
    table = getattr(result, "table", None)
    if table is None or not hasattr(result, "samples"):
        raise ValueError(
            f"plot_gradient_variance needs the result of lvmkit's gradient_variance(vae, X); got "
            f"{type(result).__name__}."
        )
    fig = _figure(10.0, 4.0)
    ax_bar, ax_hist = fig.subplots(1, 2)
    names = list(table.index)
    colors = [f"C{i}" for i in range(len(names))]
    values = table["mean_variance"].to_numpy(dtype=float)
    shown = np.where(values > 0, values, np.nan)
    bars = ax_bar.bar(range(len(names)), shown, color=colors)
    ax_bar.set_yscale("log")
    ax_bar.set_xticks(range(len(names)), names, rotation=15, ha="right")
    ax_bar.set_ylabel("mean variance per coordinate")
    ax_bar.set_title(
        f"encoder gradient, {result.n_repeats} draws, {int(table['n_samples'].iloc[0])} z per "
        f"point",
        fontsize=9,
    )
    if "variance_ratio" in table:
        for bar, ratio in zip(bars, table["variance_ratio"].to_numpy(dtype=float), strict=False):
            if np.isfinite(bar.get_height()):
                ax_bar.annotate(
                    f"×{ratio:.3g}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
    for name, color in zip(names, colors, strict=False):
        draws = np.asarray(result.samples[name], dtype=float)
        ax_hist.hist(draws, bins=bins, density=True, histtype="step", color=color, label=name)
        ax_hist.axvline(draws.mean(), color=color, linestyle="--", linewidth=1)
    ax_hist.set_xlabel(f"gradient of {result.coordinate}")
    ax_hist.set_ylabel("density")
    ax_hist.set_title("one coordinate's draws (dashed: means)", fontsize=9)
    ax_hist.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_gap_report(report):
    """Two panels: the mean approximation and amortization gaps stacked into the inference gap
    (nats per data point, with Monte Carlo error bars), and the per-point gaps as a scatter.

    report : a :class:`~lvmkit.estimators.diagnostics.GapReport`.
    """
    if not hasattr(report, "approximation_gap") or not hasattr(report, "summary"):
        raise ValueError(
            f"plot_gap_report needs the result of lvmkit's gap_report(vae, X); got "
            f"{type(report).__name__}."
        )
    table = report.summary()
    fig = _figure(9.0, 3.8)
    ax_bar, ax_pts = fig.subplots(1, 2)
    approx, amort = table.loc["approximation_gap"], table.loc["amortization_gap"]
    ax_bar.bar(
        [0], [approx["mean"]], color="C0", label="approximation gap", yerr=[approx["mc_stderr"]]
    )
    ax_bar.bar(
        [0],
        [amort["mean"]],
        bottom=[approx["mean"]],
        color="C1",
        label="amortization gap",
        yerr=[amort["mc_stderr"]],
    )
    ax_bar.set_xticks([0], [f"n = {report.n}"])
    ax_bar.set_xlim(-1, 1)
    ax_bar.set_ylabel("nats per data point")
    ax_bar.set_title("log p(x) − ELBO(encoder), split", fontsize=9)
    ax_bar.legend(fontsize=8)
    ax_pts.scatter(report.approximation_gap, report.amortization_gap, s=8, alpha=0.7)
    ax_pts.axhline(0, color="0.6", linewidth=0.8)
    ax_pts.axvline(0, color="0.6", linewidth=0.8)
    ax_pts.set_xlabel("approximation gap (nats)")
    ax_pts.set_ylabel("amortization gap (nats)")
    ax_pts.set_title("per data point", fontsize=9)
    fig.tight_layout()
    return fig
