"""Figures of the linear-Gaussian latent variable models: probabilistic PCA, factor analysis and
mixtures of factor analyzers (x = W z + μ + ε, z ~ N(0, I_q)).

* :func:`plot_explained_variance`: the variance of every latent dimension over the noise floor,
  and the cumulative share of the data's variance;
* :func:`plot_loadings`: the loadings W as a heat map (features × latent dimensions, a diverging
  colour map centred at 0), one panel per component of a mixture;
* :func:`plot_latent_map`: the posterior means E[z | x] of the rows on two latent coordinates,
  coloured by component for a mixture;
* :func:`plot_imputations`: hide a share of the observed values at random, impute them with the
  model's ``impute`` and draw imputed against true values, with the RMSE of the model and of
  column-mean imputation (any model with ``impute``).

Every function returns a matplotlib Figure (made without pyplot: no window, no global state) and
draws on ``fig`` (a Figure or SubFigure) when given. ``lvmkit plot`` (the latent map beside the
loadings) and the sections of ``lvmkit report`` are registered at the end for
``ProbabilisticPCA``, ``FactorAnalysis`` and ``MixtureOfFactorAnalyzers``; the modules
``lvmkit.plot.ppca``, ``lvmkit.plot.factor`` and ``lvmkit.plot.mfa``, named like the estimators'
own, import this one so that the report finds it.
"""

from __future__ import annotations

import html
import inspect
import warnings

import numpy as np

__all__ = [
    "imputation_errors",
    "learned_summary",
    "linear_sections",
    "plot_explained_variance",
    "plot_imputations",
    "plot_latent_map",
    "plot_linear",
    "plot_loadings",
    "plot_samples_over_data",
]

CLASSES = ("ProbabilisticPCA", "FactorAnalysis", "MixtureOfFactorAnalyzers")


def _figure(width, height):
    from matplotlib.figure import Figure  # no pyplot: no window, no global state

    return Figure(figsize=(width, height), layout="constrained")


# ====================================================================== the model's parameters
def _loadings(model) -> np.ndarray:
    """The loadings of every component, (K, D, q): K = 1 for PPCA and factor analysis."""
    W = np.asarray(model.loadings_, dtype=np.float64)
    return W[None] if W.ndim == 2 else W


def _noise(model) -> np.ndarray:
    """The noise variances of every component, (K, D)."""
    W = _loadings(model)
    psi = np.asarray(model.noise_variance_, dtype=np.float64)
    return np.broadcast_to(psi.reshape(-1, psi.shape[-1]) if psi.ndim else psi, W.shape[:2]).copy()


def _is_mixture(model) -> bool:
    return np.ndim(model.loadings_) == 3


def _weights(model) -> np.ndarray:
    return np.asarray(getattr(model, "weights_", np.ones(1)), dtype=np.float64)


def _shown_components(model, most: int) -> list[int]:
    """The components to draw: all, or the ``most`` heaviest (by weight, heaviest first)."""
    w = _weights(model)
    order = np.argsort(-w, kind="stable")
    return [int(k) for k in (order if len(w) <= most else order[:most])]


def _names(model, d: int, feature_names=None) -> list[str]:
    names = (
        feature_names if feature_names is not None else getattr(model, "feature_names_in_", None)
    )
    if names is None or len(names) != d:
        return [f"x{i}" for i in range(d)]
    return [str(n) for n in names]


def _as_rows(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X.reshape(len(X), -1)


def _subsample(X, most: int, seed) -> np.ndarray:
    if len(X) <= most:
        return X
    rows = np.sort(np.random.default_rng(seed).choice(len(X), most, replace=False))
    return X[rows]


def _what(model) -> str:
    if _is_mixture(model):
        return "mixture of factor analyzers"
    return "probabilistic PCA" if hasattr(model, "explained_variance_") else "factor analysis"


def learned_summary(model) -> list[tuple[str, str]]:
    """(label, value) rows of what a linear-Gaussian model learned: the latent dimension, the
    variance the latent dimensions explain, the noise, the training log-likelihood (``lvmkit
    info`` and the report show them)."""
    W, psi = _loadings(model), _noise(model)
    k, d, q = W.shape
    rows = []
    if _is_mixture(model):
        rows.append(("latent dimension", f"{q} factors in each of {k} components"))
    else:
        chosen = " (chosen by Minka's evidence, 'mle')" if model.n_components == "mle" else ""
        rows.append(("latent dimension", f"{q}{chosen}"))
    if hasattr(model, "explained_variance_ratio_"):
        ratio = np.asarray(model.explained_variance_ratio_, dtype=np.float64)
        shown = ", ".join(f"{r:.3f}" for r in ratio[:10]) + (", ..." if len(ratio) > 10 else "")
        rows.append(("explained variance ratio", f"{shown} (total {ratio.sum():.3f})"))
        rows.append(("noise variance σ²", f"{float(model.noise_variance_):.6g}"))
    else:
        signal = (W**2).sum(axis=(1, 2))
        share = signal / (signal + psi.sum(1))
        label = "share of the variance the factors explain"
        if k == 1:
            rows.append((label, f"{share[0]:.3f}"))
            rows.append(
                (
                    "noise variances Ψ",
                    f"min {psi.min():.4g}, mean {psi.mean():.4g}, max {psi.max():.4g}",
                )
            )
        else:
            shown = ", ".join(f"{s:.3f}" for s in share[:10]) + (", ..." if k > 10 else "")
            rows.append((label + " (per component)", shown))
            rows.append(
                ("noise variances Ψ (all components)", f"min {psi.min():.4g}, max {psi.max():.4g}")
            )
    rotation = getattr(model, "rotation", None)
    if rotation:
        rows.append(("rotation of the loadings", str(rotation)))
    bounds = getattr(model, "lower_bounds_", None)
    loglike = getattr(model, "loglike_", None)
    if isinstance(loglike, (int, float)) and not isinstance(loglike, bool):
        rows.append(("training log-likelihood (nats/sample)", f"{float(loglike):.6g}"))
    elif bounds is not None and len(bounds) and not hasattr(model, "lower_bound_"):
        rows.append(("training log-likelihood (nats/sample)", f"{float(bounds[-1]):.6g}"))
    return rows


# ====================================================================== explained variance
def plot_explained_variance(model, *, fig=None, max_components: int = 8):
    """Left: the variance of every latent dimension with the noise floor (probabilistic PCA: the
    eigenvalues λ_j over σ²; factor analysis: the factors' squared loadings ‖w_j‖² over the mean
    noise variance; a mixture: one bar per component and dimension). Right: the cumulative share
    of the data's variance the first j dimensions explain. Returns the Figure."""
    W, psi = _loadings(model), _noise(model)
    k, d, q = W.shape
    fig = fig if fig is not None else _figure(10, 4)
    ax1, ax2 = fig.subplots(1, 2)
    dims = np.arange(1, q + 1)
    if hasattr(model, "explained_variance_"):  # probabilistic PCA: the eigenvalue scree
        variance = np.asarray(model.explained_variance_, dtype=np.float64)
        sigma2 = float(model.noise_variance_)
        ax1.bar(dims, variance, color="C0", label="variance along axis j (λ_j)")
        ax1.axhline(sigma2, color="C3", linestyle="--", label=f"noise floor σ² = {sigma2:.3g}")
        ratio = np.cumsum(np.asarray(model.explained_variance_ratio_, dtype=np.float64))
        ax2.plot(dims, ratio, marker="o", color="C0")
        ax1.set_ylabel("variance")
    else:
        shown = _shown_components(model, max_components)
        width = 0.8 / len(shown)
        mixture = _is_mixture(model)
        for i, c in enumerate(shown):
            signal = (W[c] ** 2).sum(0)
            color = f"C{i % 10}" if mixture else "C0"
            name = f"component {c} ({_weights(model)[c]:.2f})" if mixture else "factor ‖w_j‖²"
            offset = (i - (len(shown) - 1) / 2) * width
            ax1.bar(dims + offset, signal, width=width, color=color, label=name)
            floor = float(psi[c].mean())
            ax1.axhline(
                floor,
                color=color if mixture else "C3",
                linestyle="--",
                linewidth=1,
                label=None if mixture else f"mean noise variance Ψ = {floor:.3g}",
            )
            total = signal.sum() + psi[c].sum()
            ax2.plot(dims, np.cumsum(signal) / total, marker="o", color=color, label=name)
        ax1.set_ylabel("variance explained (squared loadings)")
        if mixture:
            ax2.legend(fontsize=7)
            ax1.set_title("dashed: each component's mean noise variance", fontsize=8)
    ax1.set_xlabel("latent dimension")
    ax1.set_xticks(dims)
    ax1.legend(fontsize=7)
    ax2.set_xlabel("latent dimensions kept")
    ax2.set_xticks(dims)
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("cumulative share of the variance")
    ax2.grid(alpha=0.3)
    ax2.set_title("cumulative share of the data's variance", fontsize=10)
    fig.suptitle(f"explained variance ({_what(model)}, q = {q})", fontsize=11)
    return fig


# ====================================================================== loadings
def plot_loadings(model, feature_names=None, *, fig=None, max_components: int = 6):
    """The loadings W (features × latent dimensions) as a heat map, red positive and blue
    negative around 0, with the values written in when there are few; for a mixture one panel
    per component (the ``max_components`` heaviest). Feature names: ``feature_names``, else the
    model's ``feature_names_in_``, else x0, x1, .... Returns the Figure."""
    W = _loadings(model)
    k, d, q = W.shape
    names = _names(model, d, feature_names)
    shown = _shown_components(model, max_components)
    label_w = min(max(len(n) for n in names), 30) * 0.07
    if fig is None:
        width = 1.6 + label_w + len(shown) * (0.55 * q + 0.6)
        fig = _figure(min(max(width, 4.5), 16), min(max(1.4 + 0.24 * d, 3.2), 12))
    axes = np.atleast_1d(fig.subplots(1, len(shown), sharey=True, squeeze=False)[0])
    scale = float(np.abs(W[shown]).max()) or 1.0
    image = None
    for ax, c in zip(axes, shown, strict=True):
        image = ax.imshow(
            W[c], cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto", interpolation="nearest"
        )
        ax.set_xticks(range(q), [f"z{j + 1}" for j in range(q)], fontsize=8)
        if d * q <= 160:
            _annotate(ax, image, W[c])
        if k > 1:
            ax.set_title(f"component {c} ({_weights(model)[c]:.2f})", fontsize=9)
    step = 1 if d <= 40 else int(np.ceil(d / 40))
    axes[0].set_yticks(range(0, d, step), names[::step], fontsize=8 if d <= 25 else 6)
    axes[0].set_ylabel("feature")
    fig.colorbar(image, ax=list(axes), label="loading", shrink=0.9)
    rotation = getattr(model, "rotation", None)
    more = f", the {len(shown)} heaviest of {k} components" if len(shown) < k else ""
    fig.suptitle(
        f"loadings W: {d} features × {q} latent dimensions"
        + (f"\n({rotation}-rotated)" if rotation else "")
        + (f"\n({more[2:]})" if more else ""),
        fontsize=10,
    )
    return fig


def _annotate(ax, image, values) -> None:
    size = 7 if values.size <= 60 else 5.5
    for (i, j), v in np.ndenumerate(values):
        r, g, b, _ = image.cmap(image.norm(v))
        dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=size,
                color="white" if dark else "black")  # fmt: skip


# ====================================================================== latent map
def plot_latent_map(
    model, X, labels=None, *, dims=(0, 1), fig=None, max_points: int = 5000, random_state=0
):
    """The posterior means E[z | x] (``model.transform``) of the rows of ``X`` on two latent
    coordinates (``dims``, 0-based; a histogram when q = 1), coloured by ``labels`` (default:
    a mixture's most probable component of every row). At most ``max_points`` rows, drawn at
    random. Returns the Figure."""
    X = _subsample(np.asarray(X, dtype=np.float64), max_points, random_state)
    Z = np.asarray(model.transform(X), dtype=np.float64)
    q = Z.shape[1]
    if labels is None and hasattr(model, "predict") and _is_mixture(model):
        labels = np.asarray(model.predict(X))
    elif labels is not None:
        labels = _subsample(np.asarray(labels), max_points, random_state)
    fig = fig if fig is not None else _figure(5.8, 5)
    ax = fig.add_subplot()
    dims = tuple(int(i) for i in (dims if dims is not None else (0, 1)))
    bad = [i for i in dims if not 0 <= i < q]
    if bad or len(dims) != 2 or dims[0] == dims[1]:
        raise ValueError(
            f"dims {list(dims)}: give two different latent coordinates, 0-based, of the model's "
            f"{q} (0..{q - 1})."
        )
    from lvmkit.plot.figures import _colors

    groups = [(None, np.ones(len(Z), bool))]
    if labels is not None:
        groups = [(lab, labels == lab) for lab in np.unique(labels)]
    colors = _colors(max(len(groups), 1))
    for i, (lab, sel) in enumerate(groups):
        name = None if lab is None else f"component {lab}"
        if q == 1:
            ax.hist(Z[sel, 0], bins=40, alpha=0.6, color=colors[i], label=name)
        else:
            ax.scatter(Z[sel, dims[0]], Z[sel, dims[1]], s=7, alpha=0.6, linewidths=0,
                       color=colors[i], label=name)  # fmt: skip
    if q == 1:
        ax.set_xlabel("z1")
        ax.set_ylabel("rows")
    else:
        ax.set_xlabel(f"z{dims[0] + 1}")
        ax.set_ylabel(f"z{dims[1] + 1}")
    if labels is not None and len(groups) <= 20:
        ax.legend(fontsize=7, markerscale=2)
    under = " under each row's most probable component" if _is_mixture(model) else ""
    ax.set_title(f"latent map: E[z | x]{under}, {len(Z)} rows", fontsize=10)
    ax.grid(alpha=0.25)
    return fig


# ====================================================================== imputation
def imputation_errors(model, X, fraction: float = 0.2, random_state=0) -> dict:
    """Hide a ``fraction`` of the observed values of ``X`` at random (every row keeps one), fill
    them with ``model.impute`` and with the column means of what stays observed, and compare
    with the truth. Returns a dict: ``truth``, ``imputed``, ``column_means`` (the hidden values
    and both guesses, 1-D), ``feature`` (the column of each), ``rmse``, ``rmse_column_means``,
    ``n_hidden``, ``n_observed``."""
    if not hasattr(model, "impute"):
        raise ValueError(
            f"a {type(model).__name__} has no impute; the imputation check needs a model that "
            "imputes (ProbabilisticPCA, FactorAnalysis, MixtureOfFactorAnalyzers, "
            "GaussianMixture)."
        )
    if not 0 < fraction < 1:
        raise ValueError(
            f"fraction must lie in (0, 1), the share of values hidden; got {fraction}."
        )
    X = _as_rows(X)
    rng = np.random.default_rng(random_state)
    observed = ~np.isnan(X)
    hide = observed & (rng.random(X.shape) < fraction)
    emptied = np.flatnonzero(observed.any(1) & ~(observed & ~hide).any(1))
    for i in emptied:  # every row keeps one observed value
        hide[i, rng.choice(np.flatnonzero(hide[i]))] = False
    if not hide.any():
        raise ValueError(
            f"no value to hide: {int(observed.sum())} observed value(s) in {len(X)} row(s) at "
            f"fraction {fraction}; give more rows or a larger fraction."
        )
    gappy = X.copy()
    gappy[hide] = np.nan
    filled = np.asarray(model.impute(gappy), dtype=np.float64).reshape(X.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column hidden entirely
        means = np.nanmean(gappy, axis=0)
    means = np.where(np.isnan(means), np.nanmean(X, axis=0), means)
    rows, cols = np.nonzero(hide)
    truth, imputed, baseline = X[hide], filled[hide], means[cols]
    return {
        "truth": truth,
        "imputed": imputed,
        "column_means": baseline,
        "feature": cols,
        "rmse": float(np.sqrt(np.mean((imputed - truth) ** 2))),
        "rmse_column_means": float(np.sqrt(np.mean((baseline - truth) ** 2))),
        "n_hidden": int(hide.sum()),
        "n_observed": int(observed.sum()),
    }


def plot_imputations(
    model, X, fraction: float = 0.2, random_state=0, *, feature_names=None, fig=None
):
    """Imputations beside the truth: a ``fraction`` of the observed values of ``X`` hidden at
    random and imputed by ``model.impute``, drawn against their true values (the diagonal is a
    perfect guess), coloured by feature; the title gives the RMSE of the model's imputation and
    of column-mean imputation (see :func:`imputation_errors`). Returns the Figure."""
    result = imputation_errors(model, X, fraction, random_state)
    d = _as_rows(X[:1]).shape[1]
    names = _names(model, d, feature_names)
    fig = fig if fig is not None else _figure(5.8, 5.2)
    ax = fig.add_subplot()
    truth, imputed, feature = result["truth"], result["imputed"], result["feature"]
    if d <= 10:
        from lvmkit.plot.figures import _colors

        colors = _colors(d)
        for j in np.unique(feature):
            sel = feature == j
            ax.scatter(truth[sel], imputed[sel], s=9, alpha=0.7, linewidths=0, color=colors[j],
                       label=names[j])  # fmt: skip
        ax.legend(fontsize=7, markerscale=1.5, title="feature", title_fontsize=7)
    else:
        ax.scatter(truth, imputed, s=7, alpha=0.6, linewidths=0, color="C0")
    both = np.concatenate([truth, imputed])
    lo, hi = float(both.min()), float(both.max())
    pad = 0.03 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.3", linewidth=1, zorder=0)
    ax.set_xlabel("true value (hidden)")
    ax.set_ylabel("imputed value")
    ax.set_title(
        f"imputed against true: RMSE {result['rmse']:.4g} "
        f"(column means: {result['rmse_column_means']:.4g})\n"
        f"{result['n_hidden']} of {result['n_observed']} observed values hidden at random",
        fontsize=9,
    )
    ax.grid(alpha=0.25)
    return fig


# ====================================================================== lvmkit plot and report
def plot_linear(model, X, *, dims=None, feature_names=None, image_shape=None):
    """``lvmkit plot`` for a linear-Gaussian model: the latent map of ``X`` (``dims``: two
    latent coordinates) beside the loadings heat map."""
    X = _as_rows(X)
    k, d, q = _loadings(model).shape
    shown = len(_shown_components(model, 3))
    right = 1.2 + shown * (0.5 * q + 0.6) + min(max(len(n) for n in _names(model, d)), 30) * 0.07
    fig = _figure(5.8 + max(right, 3.5), min(max(1.4 + 0.24 * d, 5), 12))
    left, right_fig = fig.subfigures(1, 2, width_ratios=[5.8, max(right, 3.5)])
    plot_latent_map(model, X, dims=dims if dims is not None else (0, 1), fig=left)
    plot_loadings(model, feature_names, fig=right_fig, max_components=3)
    return fig


def _learned_table(rows) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    return f'<table class="summary">{cells}</table>'


def _samples(model, n: int, seed: int):
    if "random_state" in inspect.signature(model.sample).parameters:
        drawn = model.sample(n, random_state=seed)
    else:
        drawn = model.sample(n)
    samples, labels = drawn if isinstance(drawn, tuple) else (drawn, None)
    labels = None if labels is None else np.asarray(labels)
    if labels is not None and (labels.ndim != 1 or labels.dtype.kind not in "iu"):
        labels = None  # latent coordinates (probabilistic PCA, factor analysis), not labels
    return np.asarray(samples, dtype=np.float64), labels


def linear_sections(model, X, context) -> list:
    """Report sections of a linear-Gaussian model: what it learned, the training curve (when it
    has one), explained variance, loadings, the latent map, imputations beside the truth (when
    the model imputes) and samples."""
    from lvmkit.plot.report import Section, _curve_section

    X = _as_rows(X)
    names = context.feature_names
    out = [Section("What the model learned", html=_learned_table(learned_summary(model)))]
    out.append(_curve_section(model))
    out.append(
        Section(
            "Explained variance",
            figure=plot_explained_variance(model),
            note="Bars: the variance of every latent dimension; dashed: the noise floor. Right: "
            "the share of the data's variance the first dimensions explain.",
        )
    )
    out.append(
        Section(
            "Loadings",
            figure=plot_loadings(model, names),
            note="How much each feature moves with each latent dimension (x = W z + μ + ε); "
            "the sign of a latent dimension is arbitrary.",
        )
    )
    out.append(
        Section(
            "Latent map",
            figure=plot_latent_map(model, X, random_state=context.seed),
            note="The posterior mean E[z | x] of every row (at most 5000, drawn at random)"
            + ("; coloured by most probable component." if _is_mixture(model) else "."),
        )
    )
    if hasattr(model, "impute"):
        rows = _subsample(X, 2000, context.seed)
        try:
            fig = plot_imputations(model, rows, 0.2, context.seed, feature_names=names)
            note = (
                f"20% of the observed values of {len(rows)} rows hidden at random and imputed by "
                "the model (E[x_missing | x_observed]), against the column means of what stayed "
                "observed."
            )
            out.append(Section("Imputations beside the truth", figure=fig, note=note))
        except ValueError as exc:
            out.append(Section("Imputations beside the truth", note=f"Not drawn: {exc}"))
    samples, labels = _samples(model, context.n_samples, context.seed)
    out.append(
        Section(
            "Samples",
            figure=plot_samples_over_data(model, samples, labels, X, feature_names=names),
            note="Drawn from the model, over the data in grey"
            + (" (the first two principal components of the data)" if X.shape[1] > 2 else "")
            + ("; coloured by the component each was drawn from." if labels is not None else "."),
        )
    )
    return [s for s in out if s is not None]


def plot_samples_over_data(model, samples, labels, X, *, feature_names=None, fig=None):
    """Samples of the model over the complete rows of ``X`` in grey, on the data's first two
    principal components (its two features for 2-D data). Returns the Figure."""
    from lvmkit.plot.figures import _colors, project

    X = _as_rows(X)
    complete = X[~np.isnan(X).any(1)]
    proj = project(complete if len(complete) > 2 else samples, None, feature_names)
    fig = fig if fig is not None else _figure(5.8, 5)
    ax = fig.add_subplot()
    if len(complete):
        D = proj(complete)
        ax.scatter(D[:, 0], D[:, -1], s=6, color="0.75", linewidths=0, label="data")
    S = proj(samples)
    color = "C0" if labels is None else _colors(int(labels.max()) + 1)[labels]
    ax.scatter(S[:, 0], S[:, -1], s=8, c=color, linewidths=0, alpha=0.8, label="samples")
    ax.set_xlabel(proj.labels[0])
    ax.set_ylabel(proj.labels[-1])
    ax.legend(fontsize=7, markerscale=2)
    ax.set_title(f"{len(samples)} samples from the model", fontsize=10)
    return fig


def _register() -> None:
    from lvmkit.plot.figures import register_model_plot
    from lvmkit.plot.report import register_sections

    for name in CLASSES:
        register_sections(name)(linear_sections)
        register_model_plot(name)(plot_linear)


_register()
