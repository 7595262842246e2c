"""The VAE on real MNIST (IDX files, dynamic binarization): a short run that must learn."""

from pathlib import Path

import numpy as np
import pytest

from lvmkit import VAE, log_marginal
from lvmkit.data.idx import load_mnist
from tests.conftest import IN_CI

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"

pytestmark = pytest.mark.data

if not MNIST.exists():
    if IN_CI:
        raise RuntimeError(f"CI must have the MNIST data at {MNIST} (see shared/data/README.md)")
    pytest.skip(
        f"MNIST not found at {MNIST} (shared/data is not part of a user's clone)",
        allow_module_level=True,
    )


def test_short_mnist_run_learns_and_importance_sampling_beats_the_elbo():
    train, _ = load_mnist(MNIST, "train")
    test, labels = load_mnist(MNIST, "test")
    X = train[:12_000].astype(np.float32) / 255  # (N, 28, 28) images straight from the IDX file
    X_test = test[:300].astype(np.float32) / 255
    model = VAE(
        latent_dim=20,
        hidden_sizes=(200, 200),
        binarize="dynamic",
        epochs=2,
        batch_size=100,
        validation_fraction=0.1,
        random_state=0,
    ).fit(X)
    assert model.input_shape_ == (28, 28)
    elbo = model.score_samples(X_test)
    assert (
        -200 < elbo.mean() < -120
    )  # two epochs on 10,800 images: about -187 (the prior alone: -543)
    assert model.history_["val_elbo"][1] > model.history_["val_elbo"][0]
    ll = log_marginal(model, X_test, k=200)
    gain = ll.per_sample - elbo  # paired, image by image: a tighter bound than the ELBO
    assert gain.mean() > 3 * gain.std(ddof=1) / np.sqrt(len(gain))
    assert model.sample(4).shape == (4, 28, 28)
    with pytest.raises(ValueError, match="not a valid likelihood"):
        VAE(epochs=1).fit(X[:100])
