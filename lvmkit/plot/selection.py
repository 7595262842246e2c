"""Pictures of model selection: a criterion against K, and the local optima of the restarts.

Functions draw on a matplotlib ``Axes`` (a new figure when none is given) and return it; nothing
here calls ``plt.show``. matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lvmkit.estimators.selection import CRITERIA, restart_report

__all__ = ["plot_restarts", "plot_selection"]

_LABELS = {
    "bic": "BIC (lower is better)",
    "aic": "AIC (lower is better)",
    "heldout_loglik": "held-out log-likelihood / sample",
    "lower_bound": "train lower bound / sample",
}


def plot_selection(table: pd.DataFrame, ax=None):
    """The criterion of :func:`~lvmkit.estimators.selection.select_components` against K.

    The chosen K is starred and marked by a dashed line. The per-sample log-likelihoods (train
    lower bound and held-out) are drawn too: on a twin axis (right, dotted) for 'bic' and 'aic',
    on the same axis for 'heldout'. The twin axis, when drawn, shares x with ``ax`` (find it in
    ``ax.figure.axes``); ``ax`` is returned.
    """
    ax = _axes(ax)
    criterion = table.attrs.get("criterion", "bic")
    best = table.attrs.get("best_n_components")
    column = CRITERIA[criterion][0]
    k = table["n_components"].to_numpy()
    per_sample = ["lower_bound", "heldout_loglik"]
    # The criterion's own curve first (colour C0); the per-sample curves follow.
    ax.plot(k, table[column], marker="o", color="C0", label=_LABELS[column])
    if criterion == "heldout":
        other = ax
        per_sample.remove(column)
    else:
        other = ax.twinx()
        other.set_ylabel("log-likelihood per sample (nats)")
    for i, name in enumerate(per_sample, start=1):
        other.plot(k, table[name], marker=".", linestyle=":", color=f"C{i}", label=_LABELS[name])
    if best is not None:
        at = table["n_components"] == best
        ax.plot(
            k[at],
            table.loc[at, column],
            marker="*",
            markersize=16,
            color="C3",
            zorder=5,
            linestyle="none",
            label=f"chosen K = {best}",
        )
        ax.axvline(best, linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("number of components K")
    ax.set_ylabel(_LABELS[column])
    ax.set_xticks(k if len(k) <= 20 else k[:: int(np.ceil(len(k) / 20))])
    handles = [h for a in dict.fromkeys([ax, other]) for h in a.get_legend_handles_labels()[0]]
    # Below the plot: the twin axis is drawn over ax, and no corner is free of curves.
    ax.legend(
        handles=handles,
        fontsize="small",
        loc="upper center",
        ncol=2,
        bbox_to_anchor=(0.5, -0.16),
        frameon=False,
    )
    ax.set_title(f"choosing K by {criterion}")
    return ax


def plot_restarts(estimator_or_table, ax=None):
    """The final lower bound of every restart: how often EM stops at a worse local optimum.

    - A fitted estimator with ``restarts_``: each restart's final bound (run order on x), the best
      starred and a dashed line at its level.
    - A table from ``select_components``: for every K, each restart's gap to that K's best
      restart (nats per sample; 0 = reached the best optimum found). Points above 0 are local
      optima. Needs ``table.attrs['restarts']``.
    """
    ax = _axes(ax)
    if isinstance(estimator_or_table, pd.DataFrame):
        return _restarts_by_k(estimator_or_table, ax)
    report = restart_report(estimator_or_table)
    ax.plot(
        report["restart"],
        report["lower_bound"],
        marker="o",
        linestyle="none",
        color="C0",
        label="final bound of a restart",
    )
    best = report.iloc[0]
    ax.plot(
        best["restart"],
        best["lower_bound"],
        marker="*",
        markersize=16,
        color="C3",
        linestyle="none",
        label=f"best (restart {int(best['restart'])})",
    )
    ax.axhline(best["lower_bound"], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("restart (in the order run)")
    ax.set_ylabel("final lower bound per sample (nats)")
    ax.set_xticks(report["restart"].sort_values().to_numpy())
    worst = report["gap_to_best"].max()
    ax.set_title(
        f"{len(report)} restarts: best {best['lower_bound']:.4f}, "
        f"worst {worst:.3g} nats/sample below"
    )
    ax.legend(fontsize="small")
    return ax


def _restarts_by_k(table: pd.DataFrame, ax):
    restarts = table.attrs.get("restarts")
    if restarts is None:
        raise ValueError(
            "plot_restarts: the table must carry attrs['restarts'] (every restart's final bound "
            "per K), as select_components' table does; got a DataFrame without it. Pass the "
            "table returned by select_components, or a fitted estimator."
        )
    frames = [restart_report(list(bounds)).assign(n_components=k) for k, bounds in restarts.items()]
    long = pd.concat(frames, ignore_index=True)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.15, 0.15, len(long)) * (
        long.groupby("n_components")["restart"].transform("size").to_numpy() > 1
    )
    ax.scatter(
        long["n_components"] + jitter,
        long["gap_to_best"],
        s=22,
        alpha=0.7,
        color="C0",
        edgecolors="none",
        label="one restart",
    )
    ax.axhline(0, linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("number of components K")
    ax.set_ylabel("gap to the best restart (nats / sample)")
    k = np.asarray(sorted(restarts))
    ax.set_xticks(k if len(k) <= 20 else k[:: int(np.ceil(len(k) / 20))])
    ax.set_title("final bound of every restart (0 = best found)")
    ax.legend(fontsize="small")
    return ax


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(6, 4.5), layout="constrained").add_subplot()
