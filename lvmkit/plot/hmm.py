"""Pictures of fitted hidden Markov models: a sequence coloured by its states, the transition
matrix, the emissions; and the HMMs' report sections and ``lvmkit plot`` picture.

- :func:`plot_states`: one sequence of the data, its first features (lines for real values,
  points for counts and symbols, a raster for 0/1 features) over a background coloured by the
  Viterbi state of every step, and beneath it, on the same time axis, the state posteriors
  p(z_t | sequence) as a stacked area.
- :func:`plot_sequence`: the same picture for given states (a sampled sequence's).
- :func:`plot_transmat`: the transition matrix as a heat map, the probabilities written in the
  cells (black or white, whichever reads on the cell's colour).
- :func:`plot_emissions`: rates (Poisson) or probabilities (Bernoulli, categorical) per state as a
  heat map; :func:`emission_table` the means (and standard deviations) of Gaussian states as HTML.
- :func:`plot_hmm`: ``lvmkit plot``'s picture, a sequence and the transition matrix side by side.

Every function returns a matplotlib ``Figure`` made without pyplot (constrained layout), or draws
on the ``fig`` (a Figure or SubFigure) or ``ax`` it is given.
"""

from __future__ import annotations

import html

import numpy as np

from lvmkit.plot.figures import _colors

__all__ = [
    "emission_table",
    "hmm_sections",
    "plot_emissions",
    "plot_hmm",
    "plot_log_likelihood",
    "plot_sequence",
    "plot_states",
    "plot_transmat",
]

HMM_CLASSES = ("GaussianHMM", "PoissonHMM", "BernoulliHMM", "CategoricalHMM", "GMMHMM")
_LINES = (("black", "-"), ("0.35", "--"), ("0.55", ":"))
_MARKERS = ("o", "s", "^")


def _figure(width, height):
    from matplotlib.figure import Figure  # no pyplot: no window, no global state

    return Figure(figsize=(width, height), layout="constrained")


def _emission(model) -> str:
    """'categorical', 'bernoulli', 'poisson' or 'gaussian' (GaussianHMM, GMMHMM)."""
    names = {klass.__name__ for klass in type(model).__mro__}
    for name, kind in (
        ("CategoricalHMM", "categorical"),
        ("BernoulliHMM", "bernoulli"),
        ("PoissonHMM", "poisson"),
    ):
        if name in names:
            return kind
    return "gaussian"


def _bounds(n_rows: int, lengths, sequence: int) -> tuple[int, int]:
    lengths = [n_rows] if lengths is None else [int(n) for n in lengths]
    if sum(lengths) != n_rows:
        raise ValueError(
            f"lengths sum to {sum(lengths)} but X has {n_rows} rows; lengths must give the rows "
            "of every sequence of X, in order."
        )
    if not -len(lengths) <= sequence < len(lengths):
        raise ValueError(
            f"sequence {sequence} is out of range: X holds {len(lengths)} sequence(s), "
            f"0..{len(lengths) - 1}."
        )
    sequence %= len(lengths)
    start = int(sum(lengths[:sequence]))
    return start, start + lengths[sequence]


def _feature_names(d: int, feature_names) -> list[str]:
    if feature_names is not None and len(feature_names) == d:
        return [str(n) for n in feature_names]
    return [f"x{i}" for i in range(d)]


# ====================================================================== a sequence
def plot_states(
    model,
    X,
    lengths=None,
    sequence: int = 0,
    *,
    fig=None,
    features=None,
    feature_names=None,
    sequence_name=None,
    max_steps: int = 2000,
):
    """Sequence ``sequence`` (0-based) of ``X`` split by ``lengths`` (hmmlearn's convention;
    None: X is one sequence): its features over its Viterbi states, and the state posteriors
    beneath on the same time axis.

    ``features``: up to three feature positions to draw (default: the first three; a 0/1 raster
    shows up to 20). ``sequence_name``: how the title names the sequence (default: its
    position). Sequences longer than ``max_steps`` show their first ``max_steps`` steps.
    Returns the Figure (``fig`` when given: a Figure or SubFigure to draw on).
    """
    X = np.asarray(X)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    a, b = _bounds(len(X), lengths, sequence)
    rows = X[a:b]
    states = np.asarray(model.predict(rows))
    posteriors = np.asarray(model.predict_proba(rows))
    name = sequence_name if sequence_name is not None else str(sequence % max(1, _count(lengths)))
    n = len(rows)
    shown = f"first {max_steps} of {n} steps" if n > max_steps else f"{n} steps"
    return plot_sequence(
        model,
        rows,
        states,
        posteriors,
        fig=fig,
        features=features,
        feature_names=feature_names,
        title=f"sequence {name} ({shown}): Viterbi states and state posteriors",
        max_steps=max_steps,
    )


def _count(lengths) -> int:
    return 1 if lengths is None else len(lengths)


def plot_sequence(
    model,
    rows,
    states,
    posteriors=None,
    *,
    fig=None,
    features=None,
    feature_names=None,
    title=None,
    max_steps: int = 2000,
):
    """One sequence ``rows`` (T, D) drawn over the background colour of ``states`` (T,), and,
    when given, the ``posteriors`` (T, K) as a stacked area beneath (shared time axis). The
    model gives the number of states and how the features are drawn."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows.reshape(-1, 1)
    states = np.asarray(states, dtype=np.int64)
    k = int(model.n_components)
    colors = _colors(k)
    T = min(len(rows), max_steps)
    rows, states = rows[:T], states[:T]
    if fig is None:
        fig = _figure(10, 5.6 if posteriors is not None else 4)
    if posteriors is not None:
        top, bottom = fig.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.5]}, squeeze=True
        )
    else:
        top, bottom = fig.subplots(1, 1), None
    named = _draw_features(top, model, rows, features, feature_names)
    _shade(top, states, colors)
    top.set_xlim(-0.5, T - 0.5)
    from matplotlib.patches import Patch

    used = np.bincount(states, minlength=k)
    # Legends right of the axes, one per axes (constrained layout makes room for an axes'
    # own legend): the features beside their lines, the states beside the posteriors.
    outside = dict(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        fontsize="small",
        title_fontsize="small",
        frameon=False,
    )
    lines = top.get_lines() if named else []
    if bottom is not None:
        patches = [Patch(facecolor=colors[j], alpha=0.9, label=f"{j}") for j in range(k)]
        if lines:
            top.legend(handles=lines, **outside)
        bottom.legend(handles=patches, title="state", ncols=int(np.ceil(k / 5)), **outside)
    else:
        patches = [Patch(facecolor=colors[j], alpha=0.45, label=f"state {j}") for j in range(k)]
        top.legend(handles=[*patches, *lines], ncols=1 if k <= 10 else 2, **outside)
    if bottom is not None:
        post = np.asarray(posteriors, dtype=np.float64)[:T]
        edges = np.arange(T + 1) - 0.5  # step t fills [t - 0.5, t + 0.5]
        bottom.stackplot(
            edges,
            np.vstack([post, post[-1:]]).T,
            colors=colors[:k],
            step="post",
            linewidth=0,
            alpha=0.9,
        )
        bottom.set_ylim(0, 1)
        bottom.set_yticks([0, 0.5, 1])
        bottom.set_ylabel("p(state | seq.)")
        bottom.set_xlabel("step")
        bottom.set_xlim(-0.5, T - 0.5)
    else:
        top.set_xlabel("step")
    if title is None:
        title = f"{T} steps; states visited: " + ", ".join(str(j) for j in range(k) if used[j] > 0)
    fig.suptitle(title, fontsize="medium")
    return fig


def _draw_features(ax, model, rows, features, feature_names) -> bool:
    """Draw the features; whether the lines are labelled (several features) for a legend."""
    kind = _emission(model)
    d = rows.shape[1]
    names = _feature_names(d, feature_names)
    t = np.arange(len(rows))
    if kind == "categorical":
        ax.plot(t, rows[:, 0], linestyle="none", marker="o", markersize=3.5, color="black")
        m = int(getattr(model, "n_features_", int(rows.max()) + 1))
        if m <= 12:
            ax.set_yticks(range(m))
        ax.set_ylim(-0.6, max(m, int(rows.max()) + 1) - 0.4)
        ax.set_ylabel(names[0] if feature_names is not None else "symbol")
        return False
    picked = _picked(features, d, 20 if kind == "bernoulli" else 3)
    if kind == "bernoulli":  # a raster: a tick where feature j is 1
        for row, j in enumerate(picked):
            on = t[rows[:, j] > 0.5]
            ax.plot(
                on, np.full(len(on), row), linestyle="none", marker="|", markersize=8, color="black"
            )
        ax.set_yticks(range(len(picked)))
        ax.set_yticklabels([names[j] for j in picked], fontsize="small")
        ax.set_ylim(len(picked) - 0.5, -0.5)
        ax.set_ylabel("features equal to 1")
        return False
    for i, j in enumerate(picked):
        color, style = _LINES[i]
        if kind == "poisson":
            ax.plot(
                t,
                rows[:, j],
                linestyle="none",
                marker=_MARKERS[i],
                markersize=3.5,
                color=color,
                label=names[j],
            )
        else:
            ax.plot(t, rows[:, j], linestyle=style, linewidth=1.1, color=color, label=names[j])
    if kind == "poisson":
        ax.set_ylim(bottom=-0.5)
    if len(picked) == 1:
        ax.set_ylabel(names[picked[0]])
        return False
    ax.set_ylabel("count" if kind == "poisson" else "value")
    return True


def _picked(features, d: int, most: int) -> list[int]:
    if features is None:
        return list(range(min(d, most)))
    picked = [int(j) for j in features]
    bad = [j for j in picked if not 0 <= j < d]
    if bad or not picked or len(picked) > most:
        raise ValueError(
            f"features {picked}: give 1 to {most} positions among the {d} feature(s), "
            f"0..{d - 1} (0-based)."
        )
    return picked


def _shade(ax, states, colors) -> None:
    """The background of step t in the colour of its state: one collection per state."""
    change = np.flatnonzero(np.diff(states)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(states)]])
    transform = ax.get_xaxis_transform()  # x in steps, y from the bottom (0) to the top (1)
    for j in np.unique(states):
        mine = states[starts] == j
        spans = [(s - 0.5, e - s) for s, e in zip(starts[mine], ends[mine], strict=True)]
        ax.broken_barh(
            spans,
            (0, 1),
            transform=transform,
            facecolors=colors[j],
            alpha=0.28,
            linewidth=0,
            zorder=0,
        )


# ====================================================================== matrices
def _cell_fontsize(ax, n_rows: int, n_cols: int, chars: int = 4) -> float:
    """A font size at which ``chars`` characters fit a cell of the heat map on ``ax``."""
    box = ax.get_window_extent()
    dpi = ax.figure.dpi if hasattr(ax.figure, "dpi") else 100
    cell_w = 0.8 * box.width / max(n_cols, 1) / dpi * 72  # points, after the colour bar
    cell_h = 0.8 * box.height / max(n_rows, 1) / dpi * 72
    return float(np.clip(min(cell_w / (0.62 * chars + 0.6), cell_h / 1.9), 5.0, 11.0))


def _annotate(ax, image, values, fmt: str, chars: int) -> None:
    size = _cell_fontsize(ax, *values.shape, chars=chars)
    for (i, j), v in np.ndenumerate(values):
        r, g, b, _ = image.cmap(image.norm(v))
        dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
        ax.text(
            j,
            i,
            format(v, fmt),
            ha="center",
            va="center",
            fontsize=size,
            color="white" if dark else "black",
        )


def _heatmap(ax, values, *, cmap, vmin, vmax, fmt, chars, label, annotate=True, colorbar=True):
    image = ax.imshow(
        values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
    )
    k, m = values.shape
    if annotate and k <= 20 and m <= 20:
        _annotate(ax, image, values, fmt, chars)
    ax.set_yticks(range(k) if k <= 20 else range(0, k, max(1, k // 10)))
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label=label, shrink=0.9)
    return image


def plot_transmat(model, ax=None, colorbar: bool = True):
    """The transition matrix ``transmat_`` (row: from, column: to) as a heat map with the
    probabilities written in the cells (and a colour bar unless ``colorbar=False``). Returns
    the Figure."""
    A = np.asarray(model.transmat_, dtype=np.float64)
    k = len(A)
    if ax is None:
        side = float(np.clip(1.6 + 0.55 * k, 3.6, 8.0))
        ax = _figure(side + (1.3 if colorbar else 0.3), side).add_subplot()
    _heatmap(
        ax,
        A,
        cmap="Blues",
        vmin=0.0,
        vmax=1.0,
        fmt=".2f",
        chars=4,
        label="probability",
        colorbar=colorbar,
    )
    ax.set_aspect("equal")
    ax.set_xticks(range(k) if k <= 20 else range(0, k, max(1, k // 10)))
    ax.set_xlabel("to state")
    ax.set_ylabel("from state")
    ax.set_title("transition matrix", fontsize="medium")
    return ax.figure


_EMISSION_VALUES = {
    "poisson": ("lambdas_", "rate (mean count)", ".3g", 5),
    "bernoulli": ("emissionprob_", "p(feature = 1)", ".2f", 4),
    "categorical": ("emissionprob_", "p(symbol)", ".2f", 4),
}


def plot_emissions(model, ax=None, feature_names=None, max_columns: int = 40):
    """The emission parameters per state as a heat map (row: state): rates of a PoissonHMM,
    p(x = 1) of a BernoulliHMM, symbol probabilities of a CategoricalHMM, means of a
    GaussianHMM. Returns the Figure."""
    kind = _emission(model)
    if kind == "gaussian":
        values = np.asarray(model.means_, dtype=np.float64)
        if values.ndim == 3:  # GMMHMM: the state's mixture mean
            values = np.einsum("km,kmd->kd", np.asarray(model.weights_), values)
        label, fmt, chars = "mean", ".3g", 5
    else:
        attr, label, fmt, chars = _EMISSION_VALUES[kind]
        values = np.asarray(getattr(model, attr), dtype=np.float64)
    k, m = values.shape
    shown = values[:, :max_columns]
    if ax is None:
        width = float(np.clip(2.6 + 0.62 * shown.shape[1], 4.5, 11.0))
        height = float(np.clip(1.4 + 0.42 * k, 2.6, 7.0))
        ax = _figure(width, height).add_subplot()
    probabilities = kind in ("bernoulli", "categorical")
    _heatmap(
        ax,
        shown,
        cmap="viridis",
        vmin=0.0 if kind != "gaussian" else None,
        vmax=1.0 if probabilities else None,
        fmt=fmt,
        chars=chars,
        label=label,
    )
    if kind == "categorical":
        names = [str(j) for j in range(m)]
        ax.set_xlabel("symbol")
    else:
        names = _feature_names(m, feature_names)
        ax.set_xlabel("feature" + (f" (first {max_columns} of {m})" if m > max_columns else ""))
    cols = shown.shape[1]
    ticks = range(cols) if cols <= 20 else range(0, cols, max(1, cols // 10))
    ax.set_xticks(list(ticks))
    long = any(len(names[j]) > 3 for j in ticks)
    ax.set_xticklabels(
        [names[j] for j in ticks], rotation=35 if long else 0, ha="right" if long else "center"
    )
    ax.set_ylabel("state")
    ax.set_title(f"{label} per state", fontsize="medium")
    return ax.figure


def emission_table(model, feature_names=None, max_features: int = 12) -> str:
    """HTML table of the Gaussian emissions: every state's mean ± standard deviation per
    feature (a GMMHMM: one row per mixture component, with its weight)."""
    means = np.asarray(model.means_, dtype=np.float64)
    d = means.shape[-1]
    names = _feature_names(d, feature_names)[:max_features]
    shown = len(names)
    cov = np.asarray(model.covars_, dtype=np.float64)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    if means.ndim == 2:  # GaussianHMM: covars_ is (K, D, D) whatever the type
        sd = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0))
        rows.append(f"<tr><th>state</th>{head}</tr>")
        for j in range(len(means)):
            cells = "".join(f"<td>{means[j, i]:.4g} ± {sd[j, i]:.3g}</td>" for i in range(shown))
            rows.append(f"<tr><td>{j}</td>{cells}</tr>")
    else:  # GMMHMM (K, M, D)
        k, m, _ = means.shape
        sd = _gmm_sd(model, cov, k, m, d)
        weights = np.asarray(model.weights_, dtype=np.float64)
        rows.append(f"<tr><th>state</th><th>component</th><th>weight</th>{head}</tr>")
        for j in range(k):
            for c in range(m):
                cells = "".join(
                    f"<td>{means[j, c, i]:.4g} ± {sd[j, c, i]:.3g}</td>" for i in range(shown)
                )
                rows.append(f"<tr><td>{j}</td><td>{c}</td><td>{weights[j, c]:.3f}</td>{cells}</tr>")
    note = (
        f'<p class="note">Mean ± standard deviation per state; the first {shown} of {d} '
        "features.</p>"
        if shown < d
        else '<p class="note">Mean ± standard deviation per state and feature.</p>'
    )
    return '<table class="emission">' + "".join(rows) + "</table>" + note


def _gmm_sd(model, cov, k, m, d):
    ct = model.covariance_type
    if ct == "diag":
        var = cov
    elif ct == "spherical":
        var = np.repeat(cov[..., None], d, axis=-1)
    elif ct == "full":
        var = np.diagonal(cov, axis1=-2, axis2=-1)
    else:  # tied: one (D, D) per state
        var = np.repeat(np.diagonal(cov, axis1=-2, axis2=-1)[:, None, :], m, axis=1)
    return np.sqrt(np.maximum(var, 0))


def states_table(model, X=None, lengths=None) -> str:
    """HTML table per state: start probability, probability of staying, expected stay
    (1 / (1 − a_kk) steps), and, with data, the share of its rows on the Viterbi path."""
    start = np.asarray(model.startprob_, dtype=np.float64)
    stay = np.diag(np.asarray(model.transmat_, dtype=np.float64))
    share = None
    if X is not None:
        states = np.asarray(model.predict(X, lengths))
        share = np.bincount(states, minlength=len(start)) / max(len(states), 1)
    head = "<tr><th>state</th><th>start probability</th><th>p(stay)</th><th>expected stay (steps)"
    head += "</th>" + ("<th>share of the data's rows (Viterbi)</th>" if share is not None else "")
    rows = [head + "</tr>"]
    for j in range(len(start)):
        duration = "∞" if stay[j] >= 1 else f"{1 / (1 - stay[j]):.3g}"
        cells = f"<td>{j}</td><td>{start[j]:.3f}</td><td>{stay[j]:.3f}</td><td>{duration}</td>"
        if share is not None:
            cells += f"<td>{share[j]:.3f}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return '<table class="states">' + "".join(rows) + "</table>"


# ====================================================================== training, the whole model
def plot_log_likelihood(model, ax=None):
    """``lower_bounds_``: the total log-likelihood of the training sequences entering every
    Baum-Welch iteration. Returns the Figure."""
    from matplotlib.ticker import MaxNLocator

    bounds = np.asarray(getattr(model, "lower_bounds_", []), dtype=np.float64)
    if ax is None:
        ax = _figure(6.5, 4).add_subplot()
    ax.plot(np.arange(1, len(bounds) + 1), bounds, marker=".")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("log-likelihood (nats, total)")
    ax.set_title("training curve", fontsize="medium")
    ax.grid(alpha=0.3)
    return ax.figure


def plot_hmm(
    model,
    X,
    lengths=None,
    sequence: int = 0,
    *,
    features=None,
    feature_names=None,
    sequence_name=None,
    max_steps: int = 2000,
):
    """``lvmkit plot``'s picture of an HMM: sequence ``sequence`` of ``X`` over its Viterbi
    states with the posteriors beneath (:func:`plot_states`), and the transition matrix."""
    k = int(model.n_components)
    side = float(np.clip(1.4 + 0.45 * k, 3.2, 6.0))
    fig = _figure(9.5 + side, max(5.6, side + 0.8))
    left, right = fig.subfigures(1, 2, width_ratios=[9.5, side], wspace=0.02)
    plot_states(
        model,
        X,
        lengths,
        sequence,
        fig=left,
        features=features,
        feature_names=feature_names,
        sequence_name=sequence_name,
        max_steps=max_steps,
    )
    plot_transmat(model, ax=right.add_subplot(), colorbar=False)  # the cells hold the values
    return fig


# ====================================================================== report and `lvmkit plot`
def hmm_sections(model, X, context) -> list:
    """Report sections of an HMM: the log-likelihood curve, the first sequence over its states,
    the transition matrix (with a table of the states), the emission parameters."""
    from lvmkit.plot.report import Section

    lengths = context.lengths if context.lengths is not None else [len(X)]
    ids = context.extra.get("sequence_ids")
    sections = []
    bounds = getattr(model, "lower_bounds_", None)
    if bounds is not None and len(bounds):
        sections.append(
            Section(
                "Log-likelihood curve",
                figure=plot_log_likelihood(model),
                note=f"Total log-likelihood of the training sequences entering each of "
                f"{len(bounds)} Baum-Welch iteration(s); the fit ended at "
                f"{model.lower_bound_:.6g} nats"
                + (" (converged)." if getattr(model, "converged_", False) else "."),
            )
        )
    name = ids[0] if ids else None
    sections.append(
        Section(
            "Sequence and states",
            figure=plot_states(
                model, X, lengths, 0, feature_names=context.feature_names, sequence_name=name
            ),
            note=f"The first of {len(lengths)} sequence(s): background, the state of every step "
            "on the most probable path (Viterbi); beneath, p(state | the whole sequence) "
            "(forward-backward). 'lvmkit plot MODEL DATA --sequence ID' draws another.",
        )
    )
    sections.append(
        Section(
            "Transition matrix",
            figure=plot_transmat(model),
            html=states_table(model, X, lengths),
            note="Row: the state at step t; column: the state at step t + 1.",
        )
    )
    if _emission(model) == "gaussian":
        sections.append(
            Section(
                "Emission parameters",
                html=emission_table(model, context.feature_names),
            )
        )
    else:
        sections.append(
            Section(
                "Emission parameters",
                figure=plot_emissions(model, feature_names=context.feature_names),
            )
        )
    return sections


def _model_plot(model, X, *, dims=None, feature_names=None, image_shape=None):
    """``plot_model`` of an HMM: X as one sequence (see :func:`plot_hmm` for several)."""
    return plot_hmm(model, X, None, features=dims, feature_names=feature_names)


def _register() -> None:
    from lvmkit.plot.figures import register_model_plot
    from lvmkit.plot.report import register_sections

    for name in HMM_CLASSES:
        register_sections(name)(hmm_sections)
        register_model_plot(name)(_model_plot)


_register()
