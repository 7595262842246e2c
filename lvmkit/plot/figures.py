"""Whole-model pictures for the command line and reports: the model over its data, its samples.

``plot_model(model, X)`` draws the picture ``lvmkit plot`` saves, chosen by the model's class
through :data:`MODEL_PLOTS` (class name -> function); Gaussian mixtures show their clusters with
covariance ellipses, Poisson and Bernoulli mixtures their components (as images when the data are
images), and any model without an entry its ``predict`` labels over the data, or the data alone.
A model defined elsewhere registers its own picture with :func:`register_model_plot`.

Data with more than two features are drawn on two chosen features (``dims``) or, by default, on
their first two principal components; Gaussian ellipses are then the exact projections of each
component's covariance. Functions return a matplotlib ``Figure`` and never call ``plt.show``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "MODEL_PLOTS",
    "image_grid",
    "plot_model",
    "plot_samples",
    "project",
    "register_model_plot",
]

#: class name -> function(model, X, *, dims, feature_names, image_shape) -> Figure
MODEL_PLOTS: dict[str, Callable] = {}


def register_model_plot(class_name: str):
    """Decorator: the function drawing ``lvmkit plot`` for estimators of ``class_name``."""

    def add(fn):
        MODEL_PLOTS[class_name] = fn
        return fn

    return add


def _figure(width=6.5, height=5.0):
    from matplotlib.figure import Figure  # no pyplot: no window, no global state

    return Figure(figsize=(width, height))


# ====================================================================== projection
class Projection:
    """A linear map of the data onto two axes: chosen features, or the first two principal
    components (``W`` is D x 2, ``center`` the data mean)."""

    def __init__(self, X: np.ndarray, dims=None, feature_names=None):
        X = np.asarray(X, dtype=np.float64)
        d = X.shape[1]
        names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(d)]
        if dims is None and d <= 2:
            dims = (0, 1) if d == 2 else (0,)
        if dims is not None:
            dims = tuple(int(i) for i in dims)
            bad = [i for i in dims if not 0 <= i < d]
            if bad:
                raise ValueError(
                    f"dims {list(dims)} out of range: the data have {d} feature(s), 0..{d - 1} "
                    "(0-based). Choose two of them."
                )
            self.W = np.zeros((d, len(dims)))
            self.W[list(dims), range(len(dims))] = 1.0
            self.center = np.zeros(d)
            self.labels = [names[i] for i in dims]
        else:
            self.center = X.mean(0)
            _, s, vt = np.linalg.svd(X - self.center, full_matrices=False)
            self.W = vt[:2].T
            share = s**2 / max(float((s**2).sum()), 1e-300)
            self.labels = [f"PC{i + 1} ({100 * share[i]:.0f}% of variance)" for i in range(2)]

    def __call__(self, X) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.center) @ self.W

    def covariance(self, cov: np.ndarray) -> np.ndarray:
        return self.W.T @ cov @ self.W


def project(X, dims=None, feature_names=None) -> Projection:
    """The :class:`Projection` used by the pictures here."""
    return Projection(X, dims, feature_names)


# ====================================================================== pieces
def image_grid(images: np.ndarray, ax=None, ncols: int | None = None, titles=None, cmap="gray"):
    """Tile (n, H, W) or (n, H, W, C) images into one picture on ``ax``."""
    images = np.asarray(images, dtype=np.float64)
    if ax is None:
        ax = _figure(6, 6).add_subplot()
    n = images.shape[0]
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    h, w = images.shape[1:3]
    extra = images.shape[3:]
    lo, hi = float(images.min()), float(images.max())
    scaled = (images - lo) / (hi - lo) if hi > lo else np.zeros_like(images)
    top = 1 if titles is None else _title_gap(ax, nrows, ncols, h, w)
    canvas = np.ones((nrows * (h + top) + 1, ncols * (w + 1) + 1, *extra))
    for i in range(n):
        r, c = divmod(i, ncols)
        canvas[
            top + r * (h + top) : top + r * (h + top) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w
        ] = scaled[i]
    ax.imshow(canvas, cmap=cmap if not extra else None, interpolation="nearest", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if titles is not None:
        for i, title in enumerate(titles):
            r, c = divmod(i, ncols)
            ax.text(
                1 + c * (w + 1) + w / 2,
                top + r * (h + top) - 0.5,
                title,
                ha="center",
                va="bottom",
                fontsize=7,
            )
    return ax


def _title_gap(ax, nrows, ncols, h, w, fontsize=7):
    """Blank image rows above each row of tiles, enough for a ``fontsize`` title not to be
    drawn over the tiles above it (estimated from the axes' size on the figure)."""
    box = ax.get_window_extent()
    text_px = 1.4 * fontsize * ax.figure.dpi / 72  # line height, with room to spare
    top = 1
    for _ in range(3):
        scale = min(box.width / (ncols * (w + 1) + 1), box.height / (nrows * (h + top) + 1))
        top = max(1, int(np.ceil(text_px / max(scale, 1e-9))) + 1)
    return top


def _labels_of(model, X):
    predict = getattr(model, "predict", None)
    if predict is None:
        return None
    try:
        labels = np.asarray(predict(X))
    except Exception:  # a model whose predict is not cluster labels (or needs other input)
        return None
    return labels if labels.ndim == 1 and labels.dtype.kind in "iu" else None


def _colors(k: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
    return np.array([cmap(c % cmap.N) for c in range(k)])


def _scatter_labels(ax, Z, labels, k=None):
    if Z.shape[1] == 1:
        Z = np.column_stack([Z[:, 0], np.random.default_rng(0).uniform(-1, 1, len(Z))])
    if labels is None:
        ax.scatter(Z[:, 0], Z[:, 1], s=8, alpha=0.6, linewidths=0, color="C0")
        return
    k = int(labels.max()) + 1 if k is None else k
    ax.scatter(Z[:, 0], Z[:, 1], c=_colors(k)[labels], s=8, alpha=0.6, linewidths=0)


# ====================================================================== model pictures
def plot_model(model, X, *, dims=None, feature_names=None, image_shape=None):
    """The picture of ``model`` over data ``X`` (n, features): see the module docstring."""
    X = np.asarray(X, dtype=np.float64)
    for klass in type(model).__mro__:
        fn = MODEL_PLOTS.get(klass.__name__)
        if fn is not None:
            return fn(model, X, dims=dims, feature_names=feature_names, image_shape=image_shape)
    return _plot_labels(model, X, dims=dims, feature_names=feature_names, image_shape=image_shape)


def _plot_labels(model, X, *, dims=None, feature_names=None, image_shape=None, title=None):
    fig = _figure()
    ax = fig.add_subplot()
    proj = project(X, dims, feature_names)
    labels = _labels_of(model, X)
    _scatter_labels(ax, proj(X), labels)
    ax.set_xlabel(proj.labels[0])
    if len(proj.labels) > 1:
        ax.set_ylabel(proj.labels[1])
    ax.set_title(title or f"{type(model).__name__} on {len(X)} samples")
    return fig


@register_model_plot("GaussianMixture")
def _plot_gaussian_mixture(model, X, *, dims=None, feature_names=None, image_shape=None):
    from lvmkit.plot.mixture import dense_covariances, plot_clusters

    if image_shape is not None:
        return _plot_component_images(model, model.means_, image_shape, "component means")
    fig = _figure()
    ax = fig.add_subplot()
    k, d = model.means_.shape
    if d == 1:
        return _plot_density_1d(model, X, fig, ax, feature_names)
    proj = project(X, dims, feature_names)
    covs = dense_covariances(model.covariances_, model.covariance_type, k, d)
    view = _ProjectedMixture(
        labels=model.predict(X),
        weights=model.weights_,
        means=proj(model.means_),
        covariances=np.stack([proj.covariance(c) for c in covs]),
    )
    plot_clusters(
        view,
        proj(X),
        dims=(0, 1),
        ax=ax,
        feature_names=proj.labels,
        title=f"{k} components ({model.covariance_type} covariance), {len(X)} samples",
    )
    return fig


def _plot_density_1d(model, X, fig, ax, feature_names):
    grid = np.linspace(X.min() - X.std(), X.max() + X.std(), 400)
    ax.hist(X[:, 0], bins=min(60, max(10, len(X) // 10)), density=True, color="0.8")
    ax.plot(grid, np.exp(model.score_samples(grid[:, None])), color="C3", label="mixture density")
    ax.set_xlabel(feature_names[0] if feature_names else "x0")
    ax.set_ylabel("density")
    ax.legend()
    ax.set_title(f"{model.n_components} components, {len(X)} samples")
    return fig


class _ProjectedMixture:
    """What ``plot_clusters`` reads of a mixture, in projected coordinates."""

    covariance_type = "full"

    def __init__(self, labels, weights, means, covariances):
        self._labels, self.weights_ = labels, weights
        self.means_, self.covariances_ = means, covariances

    def predict(self, X):
        return self._labels


@register_model_plot("PoissonMixture")
@register_model_plot("BernoulliMixture")
def _plot_discrete_mixture(model, X, *, dims=None, feature_names=None, image_shape=None):
    name = "rates" if hasattr(model, "rates_") else "probs"
    values = getattr(model, f"{name}_")
    if image_shape is not None:
        return _plot_component_images(model, values, image_shape, f"component {name}")
    fig = _figure(11, 4.5)
    ax1, ax2 = fig.subplots(1, 2)
    proj = project(X, dims, feature_names)
    labels = model.predict(X)
    _scatter_labels(ax1, proj(X), labels, model.n_components)
    if values.shape[1] >= 2 or dims is not None:
        centers = proj(values)
        if centers.shape[1] > 1:
            ax1.scatter(
                centers[:, 0],
                centers[:, 1],
                marker="x",
                color="black",
                s=60,
                label=f"component {name}",
            )
            ax1.legend(fontsize="small")
    ax1.set_xlabel(proj.labels[0])
    if len(proj.labels) > 1:
        ax1.set_ylabel(proj.labels[1])
    ax1.set_title(f"{model.n_components} components, {len(X)} samples")
    shown = values[:, :50]
    im = ax2.imshow(shown, aspect="auto", cmap="viridis", interpolation="nearest")
    ax2.set_xlabel("feature" + (" (first 50)" if values.shape[1] > 50 else ""))
    ax2.set_ylabel("component")
    ax2.set_title(
        f"{name} (weights {', '.join(f'{w:.2f}' for w in model.weights_[:6])}"
        f"{', ...' if model.n_components > 6 else ''})"
    )
    fig.colorbar(im, ax=ax2)
    fig.tight_layout()
    return fig


def _plot_component_images(model, values, image_shape, what):
    k = values.shape[0]
    fig = _figure(min(12, 1.5 + 1.3 * min(k, 10)), 1.5 + 1.4 * int(np.ceil(k / 10)))
    ax = fig.add_subplot()
    order = np.argsort(-model.weights_)
    image_grid(
        np.asarray(values)[order].reshape(k, *image_shape),
        ax,
        ncols=min(k, 10),
        titles=[f"{model.weights_[i]:.2f}" for i in order],
    )
    ax.set_title(f"{what}, by weight ({k} components)")
    return fig


@register_model_plot("MixtureAnomalyDetector")
def _plot_detector(model, X, *, dims=None, feature_names=None, image_shape=None):
    fig = _figure(11, 4.5)
    ax1, ax2 = fig.subplots(1, 2)
    scores = model.score_samples(X)
    ax1.hist(scores, bins=50, color="0.6")
    ax1.axvline(
        model.threshold_, color="C3", linestyle="--", label=f"threshold {model.threshold_:.3g}"
    )
    ax1.set_xlabel("log-density (nats)")
    ax1.set_ylabel("samples")
    ax1.legend()
    proj = project(X, dims, feature_names)
    Z = proj(X)
    outlier = model.predict(X) == -1
    if Z.shape[1] == 1:
        Z = np.column_stack([Z[:, 0], scores])
    ax2.scatter(
        Z[~outlier, 0], Z[~outlier, 1], s=8, color="C0", alpha=0.5, linewidths=0, label="inlier"
    )
    ax2.scatter(Z[outlier, 0], Z[outlier, 1], s=18, color="C3", marker="x", label="outlier")
    ax2.set_xlabel(proj.labels[0])
    if len(proj.labels) > 1:
        ax2.set_ylabel(proj.labels[1])
    ax2.legend(fontsize="small")
    ax2.set_title(f"{int(outlier.sum())} of {len(X)} samples flagged")
    fig.tight_layout()
    return fig


# ====================================================================== samples
def plot_samples(
    samples: np.ndarray,
    labels=None,
    *,
    image_shape=None,
    feature_names=None,
    data=None,
    title: str | None = None,
):
    """Drawn samples: an image grid when ``image_shape`` is known, a scatter for 2-D data (over
    the ``data`` in grey when given), otherwise a pairwise plot of the first four features."""
    samples = np.asarray(samples, dtype=np.float64)
    n, d = samples.shape
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(d)]
    if image_shape is not None:
        fig = _figure(7, 7)
        ax = fig.add_subplot()
        image_grid(samples[:100].reshape(-1, *image_shape), ax)
        ax.set_title(title or f"{min(n, 100)} samples")
        return fig
    k = None if labels is None else int(np.max(labels)) + 1
    colors = None if labels is None else _colors(k)[np.asarray(labels)]
    if d <= 2:
        fig = _figure()
        ax = fig.add_subplot()
        if d == 1:
            ax.hist(samples[:, 0], bins=min(60, max(10, n // 10)), color="C0", alpha=0.8)
            ax.set_xlabel(names[0])
            ax.set_ylabel("samples")
        else:
            if data is not None:
                D = np.asarray(data, dtype=np.float64)
                ax.scatter(D[:, 0], D[:, 1], s=6, color="0.75", linewidths=0, label="data")
            ax.scatter(
                samples[:, 0],
                samples[:, 1],
                s=10,
                c=colors if colors is not None else "C0",
                linewidths=0,
                label="samples",
            )
            ax.set_xlabel(names[0])
            ax.set_ylabel(names[1])
            if data is not None:
                ax.legend(fontsize="small")
        ax.set_title(title or f"{n} samples")
        return fig
    m = min(d, 4)
    fig = _figure(2.4 * m, 2.4 * m)
    axes = fig.subplots(m, m, squeeze=False)
    for i in range(m):
        for j in range(m):
            ax = axes[i][j]
            if i == j:
                ax.hist(samples[:, i], bins=30, color="C0", alpha=0.8)
            else:
                ax.scatter(
                    samples[:, j],
                    samples[:, i],
                    s=4,
                    linewidths=0,
                    c=colors if colors is not None else "C0",
                )
            if i == m - 1:
                ax.set_xlabel(names[j])
            if j == 0:
                ax.set_ylabel(names[i])
            ax.tick_params(labelsize=6)
    fig.suptitle(title or f"{n} samples (first {m} of {d} features)")
    fig.tight_layout()
    return fig
