"""Figures of what a VAE learned: samples, reconstructions,
interpolations, the latent space, curves.

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
        raise ValueError(
            f"the model's samples have {shape[0]} features; pass image_shape=(H, W) to show them."
        )
    return (side, side)


# Layout of the image grids, in inches: tiles of _CELL, _GAP of a tile between them, _PAD around,
# the title (_TITLE_PT points) in a band of its own above the tiles: no text ever lies on a tile.
_CELL, _GAP, _PAD, _TITLE_PT, _LABEL_PT = 0.9, 0.06, 0.08, 10, 8


def _text_inches(text, size):
    """Width and height of one line of text at ``size`` points, in inches (no renderer needed)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    width, height, _ = text_to_path.get_text_width_height_descent(
        text, FontProperties(size=size), ismath=False
    )
    return width / 72, max(height, size) / 72


def _tile(img):
    """One image as imshow takes it: (H, W) grey or (H, W, C) colour; (C, H, W) is moved."""
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)
    return img


def _grid(images, ncols, title=None, row_labels=None, fig=None):
    """Tiles in a grid of ``ncols`` columns under a title, on a new Figure or on ``fig`` (a
    Figure or SubFigure, whose size is then kept: the tiles shrink to fit it)."""
    images = [_tile(img) for img in images]
    n = len(images)
    nrows = math.ceil(n / ncols)
    ratio = images[0].shape[0] / images[0].shape[1]  # a tile's height / width
    label_w = (
        (max(_text_inches(str(t), _LABEL_PT)[0] for t in row_labels) + 0.1) if row_labels else 0.0
    )
    title_pt = _TITLE_PT
    title_w = _text_inches(title, title_pt)[0] if title else 0.0
    band = (
        1.6 * _TITLE_PT / 72 + 0.06 if title else 0.0
    )  # the title's line and its gap to the tiles
    units_w, units_h = ncols + (ncols - 1) * _GAP, (nrows + (nrows - 1) * _GAP) * ratio
    if fig is None:
        width = max(units_w * _CELL + label_w, title_w, 3.0 - 2 * _PAD) + 2 * _PAD
        fig = _figure(width, units_h * _CELL + band + 2 * _PAD)
    width, height = fig.bbox.width / fig.dpi, fig.bbox.height / fig.dpi
    if (
        title and title_w > width - 2 * _PAD
    ):  # a given figure narrower than the title: a smaller font
        title_pt = _TITLE_PT * (width - 2 * _PAD) / title_w
    avail_w, avail_h = width - 2 * _PAD - label_w, height - 2 * _PAD - band
    cell = min(avail_w / units_w, avail_h / units_h)
    if cell <= 0:
        raise ValueError(
            f"a figure of {width:.2f} x {height:.2f} inches has no room for a grid of {nrows} x "
            f"{ncols} images."
        )
    grid_w, grid_h = cell * units_w, cell * units_h
    left = _PAD + label_w + (avail_w - grid_w) / 2
    bottom = _PAD + (avail_h - grid_h) / 2
    axes = fig.subplots(
        nrows,
        ncols,
        squeeze=False,
        gridspec_kw={
            "left": left / width,
            "right": (left + grid_w) / width,
            "bottom": bottom / height,
            "top": (bottom + grid_h) / height,
            "wspace": _GAP,
            "hspace": _GAP,
        },
    )
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            img = images[i]
            ax.imshow(
                np.clip(img, 0, 1) if img.ndim == 3 else img,
                cmap="gray" if img.ndim == 2 else None,
                vmin=0,
                vmax=1,
            )
    if row_labels:
        for r, label in enumerate(row_labels):
            axes[r, 0].annotate(
                label,
                xy=(0, 0.5),
                xycoords="axes fraction",
                xytext=(-4, 0),
                textcoords="offset points",
                ha="right",
                va="center",
                fontsize=_LABEL_PT,
            )
    if title:
        half = (
            min(title_w * title_pt / _TITLE_PT, width - 2 * _PAD) / 2
        )  # centred on the tiles, inside the figure
        centre = min(max(left + grid_w / 2, _PAD + half), width - _PAD - half)
        fig.suptitle(
            title,
            fontsize=title_pt,
            x=centre / width,
            y=(bottom + grid_h + 0.06) / height,
            ha="center",
            va="bottom",
        )
    return fig


def sample_grid(
    model, n: int = 64, *, mean: bool = True, image_shape=None, random_state=0, fig=None
):
    """Decoded samples z ~ N(0, I): the means of p(x | z) (``mean=True``) or draws from it.

    ``fig``: a Figure or SubFigure to draw in (the grids' default: a new Figure sized to them)."""
    shape = _model_images(model, image_shape)
    X = model.sample(n, mean=mean, random_state=random_state)
    return _grid(
        _as_images(X.reshape(n, -1), shape),
        int(math.ceil(math.sqrt(n))),
        title=f"samples from the model ({'means of p(x | z)' if mean else 'x ~ p(x | z)'})",
        fig=fig,
    )


def reconstruction_grid(model, X, n: int = 10, *, image_shape=None, fig=None):
    """Inputs (top row) above their reconstructions decode(encode(x)) (bottom row)."""
    shape = _model_images(model, image_shape)
    X = np.asarray(X)[:n]
    top = _as_images(X.reshape(len(X), -1), shape)
    bottom = _as_images(model.reconstruct(X).reshape(len(X), -1), shape)
    return _grid(
        np.concatenate([top, bottom]),
        len(X),
        title="input (top) and reconstruction (bottom)",
        fig=fig,
    )


def interpolation_strip(model, x1, x2, steps: int = 10, *, image_shape=None, fig=None):
    """Decoded points on the line between the latent codes of x1 and x2."""
    shape = _model_images(model, image_shape)
    path = model.interpolate(x1, x2, steps)
    return _grid(
        _as_images(path.reshape(steps, -1), shape), steps, title="latent interpolation", fig=fig
    )


def latent_map(model, X, labels=None, *, ax=None):
    """Posterior means of z, coloured by label; the first two principal axes when latent_dim > 2."""
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    Z = model.transform(X)
    how, names = "z", ("z1", "z2")
    if Z.shape[1] > 2:
        from sklearn.decomposition import PCA

        Z = PCA(n_components=2).fit_transform(Z)
        how, names = "first two principal axes of z", ("principal axis 1", "principal axis 2")
    elif Z.shape[1] == 1:
        Z = np.column_stack([Z[:, 0], np.zeros(len(Z))])
    fig = None
    if ax is None:
        fig = _figure(5.5, 4.8)
        fig.set_layout_engine("constrained")  # room for the labels, however long the tick labels
        ax = fig.add_subplot()
    if labels is None:
        ax.scatter(Z[:, 0], Z[:, 1], s=4, alpha=0.6)
    else:
        labels = np.asarray(labels)
        for i, lab in enumerate(np.unique(labels)):
            sel = labels == lab
            ax.scatter(
                Z[sel, 0],
                Z[sel, 1],
                s=4,
                alpha=0.7,
                color=colormaps["tab10"](i % 10),
                label=str(lab),
            )
        ax.legend(markerscale=3, fontsize=7, loc="best", ncols=2)
    ax.set_title(f"latent map: encoder means ({how})", fontsize=10)
    ax.set_xlabel(names[0]), ax.set_ylabel(names[1])
    for axis in (
        ax.xaxis,
        ax.yaxis,
    ):  # at most 7 ticks: labels such as "-0.008" side by side stay apart
        axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    return fig or ax.figure


def manifold_grid(model, n: int = 15, *, image_shape=None, fig=None):
    """For a 2-D latent space: decode a grid of z at Gaussian quantiles (the learned manifold)."""
    from scipy.stats import norm

    if model.latent_dim != 2:
        raise ValueError(
            f"manifold_grid needs latent_dim=2; this model has latent_dim={model.latent_dim}."
        )
    shape = _model_images(model, image_shape)
    q = norm.ppf(np.linspace(0.05, 0.95, n))
    Z = np.array([[a, b] for b in q[::-1] for a in q])
    return _grid(
        _as_images(model.decode(Z).reshape(len(Z), -1), shape),
        n,
        title="decoded latent grid (Gaussian quantiles)",
        fig=fig,
    )


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
        axes[0].plot(
            ep, [np.nan if v is None else v for v in h["val_elbo"]], label="validation ELBO"
        )
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

    sections = [
        Section(
            "Training curves",
            figure=training_curves(model),
            note="ELBO per sample in nats (a lower bound on log p(x)); the model kept is "
            f"the best validation epoch ({getattr(model, 'best_epoch_', None)}).",
        )
    ]
    shape = _image_shape_or_none(model, context.image_shape)
    X = np.asarray(X)
    if shape is not None:
        if hasattr(model, "sample"):
            sections.append(
                Section(
                    "Samples",
                    figure=sample_grid(model, 64, image_shape=shape, random_state=context.seed),
                    note="Means of p(x | z) for z drawn from the prior.",
                )
            )
        sections.append(
            Section("Reconstructions", figure=reconstruction_grid(model, X, 10, image_shape=shape))
        )
        if len(X) >= 2:
            sections.append(
                Section(
                    "Latent interpolation",
                    figure=interpolation_strip(model, X[0], X[1], 10, image_shape=shape),
                )
            )
        if model.latent_dim == 2 and hasattr(model, "sample"):
            sections.append(
                Section("Decoded latent grid", figure=manifold_grid(model, 12, image_shape=shape))
            )
    else:
        sections.append(
            Section(
                "Samples",
                note="The samples are not images (pass the data's image shape to draw them).",
            )
        )
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
