"""VAE figures: each draws what it says, for flat and image-shaped models."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from lvmkit import VAE  # noqa: E402
from lvmkit.plot.vae import (  # noqa: E402
    interpolation_strip,
    latent_map,
    manifold_grid,
    reconstruction_grid,
    sample_grid,
    training_curves,
)


@pytest.fixture(scope="module")
def data():
    d = load_digits()
    return d.data[:400] / 16.0, d.target[:400]


@pytest.fixture(scope="module")
def flat(data):
    return VAE(latent_dim=2, hidden_sizes=(32,), binarize="dynamic", epochs=3, random_state=0).fit(
        data[0]
    )


def _images(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def test_grids_show_images_of_the_model_shape(flat, data):
    X, y = data
    fig = sample_grid(flat, 16, image_shape=(8, 8))
    ims = _images(fig)
    assert len(ims) == 16 and ims[0].get_array().shape == (8, 8)
    assert len(_images(reconstruction_grid(flat, X, 5, image_shape=(8, 8)))) == 10
    assert len(_images(interpolation_strip(flat, X[0], X[1], 7, image_shape=(8, 8)))) == 7
    assert len(_images(manifold_grid(flat, 6, image_shape=(8, 8)))) == 36
    plt.close("all")


def test_flat_models_need_a_square_or_a_shape(data):
    X, _ = data
    m = VAE(latent_dim=3, hidden_sizes=(8,), binarize="dynamic", epochs=1, random_state=0).fit(
        X[:, :60]
    )
    with pytest.raises(ValueError, match="pass image_shape"):
        sample_grid(m, 4)
    with pytest.raises(ValueError, match="needs latent_dim=2"):
        manifold_grid(m)


def test_latent_map_and_curves(flat, data):
    X, y = data
    fig = latent_map(flat, X, y)
    ax = fig.axes[0]
    assert len(ax.collections) == len(np.unique(y))  # one scatter per label
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(X)
    fig = training_curves(flat)
    assert (
        len(fig.axes) == 2 and len(fig.axes[0].lines) == 3
    )  # training, validation, reconstruction
    plt.close("all")


def test_image_models_and_high_dimensional_latents(data):
    X, y = data
    m = VAE(
        latent_dim=4,
        encoder="conv",
        decoder="conv",
        hidden_sizes=(16,),
        binarize="dynamic",
        epochs=1,
        random_state=0,
    ).fit(X.reshape(-1, 1, 8, 8))
    assert _images(sample_grid(m, 4))[0].get_array().shape == (8, 8)
    assert "principal axes" in latent_map(m, X.reshape(-1, 1, 8, 8), y).axes[0].get_title()
    plt.close("all")
