"""Pictures of fitted mixtures: clusters with covariance ellipses, criteria against K.

Functions draw on a matplotlib ``Axes`` (a new figure when none is given) and return it; nothing
here calls ``plt.show``. Import cost is paid only when a plot is drawn.
"""

from __future__ import annotations

import numpy as np


def dense_covariances(
    covariances: np.ndarray, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Every component's covariance as a (K, D, D) array, whatever the covariance type."""
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (n_components, n_features, n_features)).copy()
    if covariance_type == "diag":
        return np.einsum("kd,de->kde", cov, np.eye(n_features))
    return cov[:, None, None] * np.eye(n_features)


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(6, 5), layout="constrained").add_subplot()


def plot_clusters(
    mixture,
    X,
    dims: tuple[int, int] = (0, 1),
    ax=None,
    feature_names=None,
    n_std=(1.0, 2.0),
    title: str | None = None,
):
    """Scatter of ``X`` on two features, coloured by most probable component, with each
    component's covariance ellipses (the exact 2-D marginal) at ``n_std`` standard deviations.
    """
    from matplotlib.patches import Ellipse

    ax = _axes(ax)
    X = np.asarray(X, dtype=np.float64)
    i, j = dims
    labels = mixture.predict(X)
    k, d = mixture.means_.shape
    cmap = _colors(k)
    ax.scatter(X[:, i], X[:, j], c=cmap[labels], s=8, alpha=0.6, linewidths=0)
    covs = dense_covariances(mixture.covariances_, mixture.covariance_type, k, d)
    for c in range(k):
        sub = covs[c][np.ix_([i, j], [i, j])]
        values, vectors = np.linalg.eigh(sub)
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        for s in n_std:
            width, height = 2 * s * np.sqrt(np.maximum(values[::-1], 0))
            ax.add_patch(
                Ellipse(
                    mixture.means_[c, [i, j]],
                    width,
                    height,
                    angle=angle,
                    fill=False,
                    edgecolor=cmap[c],
                    linewidth=2 if s == n_std[0] else 1,
                    alpha=0.9 if s == n_std[0] else 0.5,
                )
            )
        ax.plot(*mixture.means_[c, [i, j]], marker="x", color="black", markersize=8)
        ax.annotate(
            f"{c} ({mixture.weights_[c]:.2f})",
            mixture.means_[c, [i, j]],
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8,
        )
    names = feature_names if feature_names is not None else [f"x{m}" for m in range(d)]
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    ax.set_title(title or f"{k} components ({mixture.covariance_type} covariance)")
    return ax


def plot_criterion(n_components, values, best=None, ax=None, label: str = "BIC"):
    """A model-selection criterion (e.g. BIC) against the number of components."""
    ax = _axes(ax)
    ax.plot(list(n_components), list(values), marker="o")
    if best is not None:
        ax.axvline(best, linestyle="--", color="grey", label=f"selected K = {best}")
        ax.legend()
    ax.set_xlabel("number of components K")
    ax.set_ylabel(label)
    ax.set_title(f"{label} against K (lower is better)")
    return ax


def plot_lower_bounds(lower_bounds, ax=None):
    """The EM lower bound (mean log-likelihood per sample) at every iteration."""
    ax = _axes(ax)
    ax.plot(np.arange(1, len(lower_bounds) + 1), lower_bounds, marker=".")
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("lower bound (nats per sample)")
    return ax


def _colors(k: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
    return np.array([cmap(c % cmap.N) for c in range(k)])


def plot_algorithm_curves(fits: dict, axes=None, title: str | None = None):
    """Lower bound against iteration and against seconds for several fits of one model.

    ``fits`` maps a label (e.g. 'em', 'gem', 'gradient') to a fitted mixture. Returns the two
    axes.
    """
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    best = max(f.lower_bound_ for f in fits.values())
    for label, fit in fits.items():
        lb = np.asarray(fit.lower_bounds_)
        gap = np.maximum(best - lb, 1e-12)
        axes[0].semilogy(np.arange(1, len(lb) + 1), gap, label=f"{label} ({fit.n_iter_} it.)")
        axes[1].semilogy(fit.lower_bound_seconds_, gap, label=label)
    axes[0].set_xlabel("iteration")
    axes[1].set_xlabel("seconds")
    for ax in axes:
        ax.set_ylabel("best bound − bound (nats per sample)")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    if title:
        axes[0].figure.suptitle(title)
    return axes
