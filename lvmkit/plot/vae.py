"""Figures of what a VAE learned: samples, reconstructions, interpolations, the latent space, curves.

Every function returns a matplotlib Figure (made without pyplot: no window, no global state).
Image-shaped models are shown as images; flat models with a square number of features are shown
as square images, others need ``image_shape`` (for example (8, 8) for scikit-learn's digits).
The report (``lvmkit report``) and ``lvmkit plot`` use these through the registrations at the end.
"""

from __future__ import annotations

import math

import numpy as np

from lvmkit.plot.figures import _figure  # a Figure without pyplot: no window, no global state


def _as_images(X, image_shape):
    X = np.asarray(X)
    if image_shape is not None:
        return X.reshape(X.shape[0], *image_shape)
    if X.ndim == 4:  # (N, C, H, W) -> (N, H, W, C), grey stays 2-D
        return X[:, 0] if X.shape[1] == 1 else np.moveaxis(X, 1, -1)
    if X.ndim == 3:
        return X
    side = int(round(math.sqrt(X.shape[1])))
    if side * side != X.shape[1]:
        raise ValueError(
            f"cannot show samples of {X.shape[1]} features as images; pass image_shape=(H, W)."
        )
    return X.reshape(X.shape[0], side, side)


def _model_images(model, image_shape):
    if image_shape is not None:
        return tuple(image_shape)
    shape = tuple(model.input_shape_)
    if len(shape) == 3:
        return shape if shape[0] != 1 else shape[1:]
    if len(shape) == 2:
        return shape
    side = int(round(math.sqrt(shape[0])))
    if side * side != shape[0]:
        raise ValueError(f"the model's samples have {shape[0]} features; pass image_shape=(H, W) to show them.")
    return (side, side)


def _grid(images, ncols, title=None, row_labels=None):
    n = len(images)
    nrows = math.ceil(n / ncols)
    fig = _figure(max(ncols * 0.9, 3.0), nrows * 0.9 + (0.4 if title else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            img = images[i]
            if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
                img = np.moveaxis(img, 0, -1)
            ax.imshow(np.clip(img, 0, 1) if img.ndim == 3 else img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    if row_labels:
        for r, label in enumerate(row_labels):
            axes[r, 0].text(-0.1, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.2)
    return fig


def sample_grid(model, n: int = 64, *, mean: bool = True, image_shape=None, random_state=0):
    """Decoded samples z ~ N(0, I): the means of p(x | z) (``mean=True``) or draws from it."""
    shape = _model_images(model, image_shape)
    X = model.sample(n, mean=mean, random_state=random_state)
    return _grid(_as_images(X.reshape(n, -1), shape), int(math.ceil(math.sqrt(n))),
                 title=f"samples from the model ({'means of p(x | z)' if mean else 'x ~ p(x | z)'})")


def reconstruction_grid(model, X, n: int = 10, *, image_shape=None):
    """Inputs (top row) above their reconstructions decode(encode(x)) (bottom row)."""
    shape = _model_images(model, image_shape)
    X = np.asarray(X)[:n]
    top = _as_images(X.reshape(len(X), -1), shape)
    bottom = _as_images(model.reconstruct(X).reshape(len(X), -1), shape)
    return _grid(np.concatenate([top, bottom]), len(X), title="input (top) and reconstruction (bottom)")


def interpolation_strip(model, x1, x2, steps: int = 10, *, image_shape=None):
    """Decoded points on the line between the latent codes of x1 and x2."""
    shape = _model_images(model, image_shape)
    path = model.interpolate(x1, x2, steps)
    return _grid(_as_images(path.reshape(steps, -1), shape), steps, title="latent interpolation")


def latent_map(model, X, labels=None, *, ax=None):
    """Posterior means of z, coloured by label; the first two principal axes when latent_dim > 2."""
    from matplotlib import colormaps

    Z = model.transform(X)
    how = "z"
    if Z.shape[1] > 2:
        from sklearn.decomposition import PCA

        Z = PCA(n_components=2).fit_transform(Z)
        how = "first two principal axes of z"
    elif Z.shape[1] == 1:
        Z = np.column_stack([Z[:, 0], np.zeros(len(Z))])
    fig = None
    if ax is None:
        fig = _figure(5.5, 4.8)
        ax = fig.add_subplot()
    if labels is None:
        ax.scatter(Z[:, 0], Z[:, 1], s=4, alpha=0.6)
    else:
        labels = np.asarray(labels)
        for i, lab in enumerate(np.unique(labels)):
            sel = labels == lab
            ax.scatter(Z[sel, 0], Z[sel, 1], s=4, alpha=0.7, color=colormaps["tab10"](i % 10), label=str(lab))
        ax.legend(markerscale=3, fontsize=7, loc="best", ncols=2)
    ax.set_title(f"latent map: encoder means ({how})", fontsize=10)
    ax.set_xlabel("z1"), ax.set_ylabel("z2")
    return fig or ax.figure


def manifold_grid(model, n: int = 15, *, image_shape=None):
    """For a 2-D latent space: decode a grid of z at Gaussian quantiles (the learned manifold)."""
    from scipy.stats import norm

    if model.latent_dim != 2:
        raise ValueError(f"manifold_grid needs latent_dim=2; this model has latent_dim={model.latent_dim}.")
    shape = _model_images(model, image_shape)
    q = norm.ppf(np.linspace(0.05, 0.95, n))
    Z = np.array([[a, b] for b in q[::-1] for a in q])
    return _grid(_as_images(model.decode(Z).reshape(len(Z), -1), shape), n, title="decoded latent grid (Gaussian quantiles)")


def training_curves(model, *, ax=None):
    """Per-epoch training ELBO, its reconstruction and KL terms, and the validation ELBO."""
    h = model.history_
    fig = None
    if ax is None:
        fig = _figure(9, 3.4)
        axes = fig.subplots(1, 2)
    else:
        axes = [ax, ax.twinx()]
    ep = h["epoch"]
    axes[0].plot(ep, h["elbo"], label="training ELBO")
    if any(v is not None for v in h["val_elbo"]):
        axes[0].plot(ep, [np.nan if v is None else v for v in h["val_elbo"]], label="validation ELBO")
    axes[0].plot(ep, h["reconstruction"], "--", label="reconstruction E[log p(x|z)]")
    axes[0].set_xlabel("epoch"), axes[0].set_ylabel("nats per sample")
    axes[0].legend(fontsize=7)
    axes[1].plot(ep, h["kl"], color="C3", label="KL(q(z|x) || p(z))")
    axes[1].set_xlabel("epoch"), axes[1].set_ylabel("KL, nats per sample")
    axes[1].legend(fontsize=7)
    if fig is not None:
        fig.tight_layout()
    return fig or axes[0].figure


# ---------------------------------------------------------------------- report and `lvmkit plot`
def _image_shape_or_none(model, image_shape):
    try:
        return _model_images(model, image_shape)
    except ValueError:
        return None


def vae_report_sections(model, X, context):
    """Report sections of a VAE or an autoencoder: curves, samples, reconstructions, latent map."""
    from lvmkit.plot.report import Section

    sections = [Section("Training curves", figure=training_curves(model),
                        note="ELBO per sample in nats (a lower bound on log p(x)); the model kept is "
                             f"the best validation epoch ({getattr(model, 'best_epoch_', None)}).")]
    shape = _image_shape_or_none(model, context.image_shape)
    X = np.asarray(X)
    if shape is not None:
        if hasattr(model, "sample"):
            sections.append(Section("Samples", figure=sample_grid(model, 64, image_shape=shape, random_state=context.seed),
                                    note="Means of p(x | z) for z drawn from the prior."))
        sections.append(Section("Reconstructions", figure=reconstruction_grid(model, X, 10, image_shape=shape)))
        if len(X) >= 2:
            sections.append(Section("Latent interpolation", figure=interpolation_strip(model, X[0], X[1], 10, image_shape=shape)))
        if model.latent_dim == 2 and hasattr(model, "sample"):
            sections.append(Section("Decoded latent grid", figure=manifold_grid(model, 12, image_shape=shape)))
    else:
        sections.append(Section("Samples", note="The samples are not images (pass the data's image shape to draw them)."))
    sections.append(Section("Latent map", figure=latent_map(model, X[: context.n_samples * 4])))
    return sections


def vae_plot(model, X, *, dims=None, feature_names=None, image_shape=None):
    """``lvmkit plot`` for a VAE: the latent map of the data."""
    return latent_map(model, X)


def _register() -> None:
    from lvmkit.plot.figures import register_model_plot
    from lvmkit.plot.report import register_sections

    for name in ("VAE", "Autoencoder"):
        register_sections(name)(vae_report_sections)
        register_model_plot(name)(vae_plot)


_register()
