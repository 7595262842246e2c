"""One self-contained HTML page about a fitted model: summary, training curve, its pictures.

``write_report(model, X, path)`` writes the page; every figure is an embedded PNG (base64), the
CSS is inline, and nothing is fetched from anywhere, so the file can be mailed or archived alone.

What the page shows comes from *section providers*, functions keyed by the estimator's class name
in :data:`SECTIONS`: ``provider(model, X, context) -> list[Section]``. Mixtures provide the
training curve, their clusters (with covariance ellipses for Gaussians), BIC against K (refitted
on at most ``context.bic_rows`` rows, one restart per K), samples and the restarts. Another
estimator adds its own with::

    from lvmkit.plot.report import Section, register_sections

    @register_sections("VAE")
    def vae_sections(model, X, context):
        return [Section("Samples", figure=...), Section("Reconstructions", figure=...),
                Section("Latent map", figure=...)]

in a module of ``lvmkit.plot`` named like the estimator's own module (``lvmkit/estimators/vae.py``
-> ``lvmkit/plot/vae.py``): the report imports it on first need. A class without a provider gets
the generic sections (training curve, ``lvmkit plot``'s picture, samples).
"""

from __future__ import annotations

import base64
import html
import importlib
import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lvmkit.plot.figures import _figure  # a Figure without pyplot: no window, no global state

__all__ = [
    "ReportContext",
    "SECTIONS",
    "Section",
    "model_summary",
    "register_sections",
    "render_html",
    "write_report",
]


@dataclass
class Section:
    """One part of the page: a title, then a figure (matplotlib) and/or HTML, then a note."""

    title: str
    figure: object | None = None
    html: str | None = None
    note: str | None = None


@dataclass
class ReportContext:
    """What section providers may use besides the model and the data."""

    feature_names: list[str] | None = None
    image_shape: tuple[int, ...] | None = None
    seed: int = 0
    bic: bool = True
    bic_rows: int = 2000
    n_samples: int = 500
    extra: dict = field(default_factory=dict)
    #: sequence models (HMMs): the rows of each sequence of X, in order (None: one sequence)
    lengths: list[int] | None = None


#: class name -> provider(model, X, context) -> list[Section]
SECTIONS: dict[str, Callable] = {}


def register_sections(class_name: str):
    """Decorator: the report sections of estimators of ``class_name`` (see the module doc)."""

    def add(fn):
        SECTIONS[class_name] = fn
        return fn

    return add


def _provider(model):
    for klass in type(model).__mro__:
        if klass.__name__ in SECTIONS:
            return SECTIONS[klass.__name__]
    module = type(model).__module__
    if module.startswith("lvmkit."):
        try:
            importlib.import_module(f"lvmkit.plot.{module.rsplit('.', 1)[-1]}")
        except ImportError:
            pass
        for klass in type(model).__mro__:
            if klass.__name__ in SECTIONS:
                return SECTIONS[klass.__name__]
    return _generic_sections


# ====================================================================== summary
_FACTS = (
    ("n_components", "components"),
    ("n_features_in_", "features"),
    ("converged_", "converged"),
    ("n_iter_", "iterations (best restart)"),
    ("lower_bound_", "final lower bound (nats/sample)"),
    ("threshold_", "log-density threshold"),
)


# what the facts are for a sequence model (an HMM): its bound is the total log-likelihood
_SEQUENCE_FACTS = {
    "n_components": "hidden states",
    "lower_bound_": "final log-likelihood (nats, all training sequences)",
}


def _is_sequence_model(model) -> bool:
    """Whether ``model`` reads sequences (hmmlearn's ``score(X, lengths)``)."""
    import inspect

    try:
        return "lengths" in inspect.signature(model.score).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def model_summary(model, X=None, lengths=None) -> list[tuple[str, str]]:
    """(label, value) rows describing a fitted model (and its fit to ``X`` when given; for a
    sequence model ``lengths`` splits the rows of ``X`` into sequences)."""
    from lvmkit import __version__

    sequences = _is_sequence_model(model)
    # a model may name its facts (a topic model's components are topics, its features words)
    named = dict(_SEQUENCE_FACTS if sequences else {}, **getattr(model, "_summary_labels", {}))
    rows = [("model", type(model).__name__)]
    for attr, label in _FACTS:
        value = getattr(model, attr, None)
        if value is not None:
            rows.append((named.get(attr, label), _fmt(value)))
    weights = getattr(model, "weights_", None)
    if weights is not None and np.ndim(weights) == 1:
        shown = ", ".join(f"{w:.3f}" for w in np.asarray(weights)[:12])
        rows.append(("mixing weights", shown + (", ..." if len(weights) > 12 else "")))
    if X is not None:
        shape = " x ".join(str(s) for s in X.shape[1:])
        rows.append(
            (
                "data",
                f"{X.shape[0]} samples x {shape} features"
                if X.ndim == 2
                else f"{X.shape[0]} samples of shape {shape}",
            )
        )
        if sequences:
            rows += _sequence_fit(model, X, lengths)
        elif hasattr(model, "score_samples"):
            rows.append(
                (
                    getattr(model, "_score_label", "mean log-likelihood on the data (nats/sample)"),
                    _fmt(float(np.mean(model.score_samples(X)))),
                )
            )
        for crit in ("bic", "aic") if not sequences else ():
            if hasattr(model, crit):
                rows.append((f"{crit.upper()} on the data", _fmt(float(getattr(model, crit)(X)))))
    params = model.get_params(deep=False) if hasattr(model, "get_params") else {}
    shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items() if not _is_default_noise(k, v))
    rows.append(("hyperparameters", shown))
    rows.append(("lvmkit version", __version__))
    return rows


def _sequence_fit(model, X, lengths) -> list[tuple[str, str]]:
    lengths = [len(X)] if lengths is None else [int(n) for n in lengths]
    total = float(model.score(X, lengths))
    rows = [
        (
            "sequences",
            f"{len(lengths)} ({min(lengths)} to {max(lengths)} rows)"
            if len(lengths) > 1
            else f"1 ({lengths[0]} rows)",
        ),
        ("log-likelihood of the data (nats, total)", _fmt(total)),
        ("mean log-likelihood per row (nats)", _fmt(total / max(len(X), 1))),
    ]
    for crit in ("bic", "aic"):
        if hasattr(model, crit):
            rows.append(
                (f"{crit.upper()} on the data", _fmt(float(getattr(model, crit)(X, lengths))))
            )
    return rows


def _is_default_noise(name: str, value) -> bool:
    return value is None or name in ("verbose", "verbose_interval")


def _short(value) -> str:
    if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
        return f"<array {tuple(value.shape)}>"
    if hasattr(value, "get_params"):
        return f"{type(value).__name__}(...)"
    return repr(value)


def _fmt(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


# ====================================================================== sections
def _curve_section(model) -> Section | None:
    bounds = getattr(model, "lower_bounds_", None)
    if bounds is None or len(bounds) == 0:
        return None
    from lvmkit.plot.mixture import plot_lower_bounds

    fig = _figure(6.5, 4)
    from matplotlib.ticker import MaxNLocator

    ax = plot_lower_bounds(bounds, ax=fig.add_subplot())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("training curve")
    ax.grid(alpha=0.3)
    note = f"{len(bounds)} iteration(s); final bound {bounds[-1]:.6g} nats per sample."
    return Section("Training curve", figure=fig, note=note)


def _samples_section(model, X, context: ReportContext) -> Section | None:
    if not hasattr(model, "sample"):
        return None
    from lvmkit.plot.figures import plot_samples

    drawn = model.sample(context.n_samples if context.image_shape is None else 64)
    samples, labels = drawn if isinstance(drawn, tuple) else (drawn, None)
    samples = np.asarray(samples)
    if samples.ndim > 2:  # samples in their own (image) shape
        context.image_shape = context.image_shape or tuple(samples.shape[1:])
        samples = samples.reshape(len(samples), -1)
    data = X if samples.shape[1] == 2 else None
    fig = plot_samples(
        samples,
        labels,
        image_shape=context.image_shape,
        feature_names=context.feature_names,
        data=data,
        title=f"{len(samples)} samples from the model",
    )
    return Section(
        "Samples",
        figure=fig,
        note="Coloured by the component each was drawn from."
        if labels is not None and context.image_shape is None
        else None,
    )


def _generic_sections(model, X, context: ReportContext) -> list[Section]:
    from lvmkit.plot.figures import plot_model

    out = [_curve_section(model)]
    out.append(
        Section(
            "The model over the data",
            figure=plot_model(
                model,
                X.reshape(len(X), -1),
                feature_names=context.feature_names,
                image_shape=context.image_shape,
            ),
        )
    )
    out.append(_samples_section(model, X, context))
    return [s for s in out if s is not None]


@register_sections("GaussianMixture")
@register_sections("PoissonMixture")
@register_sections("BernoulliMixture")
def mixture_sections(model, X, context: ReportContext) -> list[Section]:
    """Training curve, clusters, BIC against K, samples, restarts."""
    from lvmkit.plot.figures import plot_model

    out = [_curve_section(model)]
    title = "Components" if context.image_shape is not None else "Clusters"
    note = None
    if hasattr(model, "covariances_") and context.image_shape is None and X.shape[1] > 1:
        note = "Ellipses: 1 and 2 standard deviations of each component" + (
            ", projected exactly onto the first two principal components."
            if X.shape[1] > 2
            else "."
        )
    out.append(
        Section(
            title,
            figure=plot_model(
                model, X, feature_names=context.feature_names, image_shape=context.image_shape
            ),
            note=note,
        )
    )
    if context.bic:
        out.append(_bic_section(model, X, context))
    out.append(_samples_section(model, X, context))
    restarts = getattr(model, "restarts_", None)
    if restarts is not None and len(restarts) > 1:
        from lvmkit.plot.selection import plot_restarts

        fig = _figure(6.5, 4)
        plot_restarts(model, ax=fig.add_subplot())
        out.append(Section("Restarts", figure=fig))
    return [s for s in out if s is not None]


def _bic_section(model, X, context: ReportContext) -> Section | None:
    from sklearn.base import clone

    from lvmkit.plot.mixture import plot_criterion

    k = int(model.n_components)
    rng = np.random.default_rng(context.seed)
    rows = (
        X
        if len(X) <= context.bic_rows
        else X[np.sort(rng.choice(len(X), context.bic_rows, replace=False))]
    )
    ks = [j for j in range(max(1, k - 3), k + 4) if j <= len(rows) // 2]
    if len(ks) < 2:
        return None
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in ks:
            fit = clone(model).set_params(
                n_components=j, n_init=1, warm_start=False, verbose=0, random_state=context.seed
            )
            for name in (
                "weights_init",
                "means_init",
                "precisions_init",
                "rates_init",
                "probs_init",
            ):
                if name in fit.get_params():
                    fit.set_params(**{name: None})
            values.append(fit.fit(rows).bic(rows))
    best = ks[int(np.argmin(values))]
    fig = _figure(6.5, 4)
    ax = plot_criterion(ks, values, best=best, ax=fig.add_subplot())
    ax.axvline(k, color="C3", linestyle=":", label=f"this model, K = {k}")
    ax.legend()
    return Section(
        "BIC against K",
        figure=fig,
        note=(
            f"Each K refitted for this report on {len(rows)} of the {len(X)} rows, one restart "
            f"each; lowest BIC at K = {best}."
        ),
    )


@register_sections("MixtureAnomalyDetector")
def detector_sections(model, X, context: ReportContext) -> list[Section]:
    from lvmkit.plot.figures import plot_model

    inner = _provider(model.estimator_)(model.estimator_, X, context)
    return [
        Section("Outliers", figure=plot_model(model, X, feature_names=context.feature_names))
    ] + inner


# ====================================================================== HTML
_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto;
       max-width: 1000px; color: #222; background: #fff; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; border-bottom: 2px solid #3465a4; padding-bottom: .2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; color: #3465a4; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #eef2f8; font-weight: 600; }
figure { margin: .5em 0; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
.note { color: #555; font-size: .92em; }
footer { margin-top: 3em; color: #777; font-size: .85em; }
"""


def figure_to_data_uri(fig) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (pyplot figures are closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    if getattr(fig, "number", None) is not None:  # a pyplot figure: release it
        import matplotlib.pyplot as plt

        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(title: str, summary: list[tuple[str, str]], sections: list[Section]) -> str:
    """The page: a summary table, then every section (figures embedded)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Summary</h2>",
        '<table class="summary">',
    ]
    for label, value in summary:
        parts.append(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>")
    parts.append("</table>")
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.figure is not None:
            uri = figure_to_data_uri(section.figure)
            parts.append(f'<figure><img alt="{html.escape(section.title)}" src="{uri}"></figure>')
        if section.html:
            parts.append(section.html)
        if section.note:
            parts.append(f'<p class="note">{html.escape(section.note)}</p>')
        parts.append("</section>")
    parts.append("<footer>Written by lvmkit report.</footer></body></html>")
    return "\n".join(parts)


def write_report(
    model,
    X,
    path,
    *,
    title: str | None = None,
    context: ReportContext | None = None,
    summary_extra: list[tuple[str, str]] | None = None,
) -> Path:
    """Write the report on ``model`` and its data ``X`` (n, features) to ``path`` (HTML)."""
    from lvmkit._persist import write_atomic

    context = context or ReportContext()
    X = np.asarray(X, dtype=np.float64)  # in the model's input shape (images may stay (n, H, W))
    summary = model_summary(model, X, context.lengths) + list(summary_extra or [])
    sections = _provider(model)(model, X, context)
    page = render_html(title or f"lvmkit report: {type(model).__name__}", summary, sections)
    return write_atomic(Path(path), page.encode("utf-8"))
