"""The fits the multi-process tests compare: every mixture family and covariance type, small data,
float64, and how rows are split between two ranks."""

from __future__ import annotations

import numpy as np

from lvmkit import BernoulliMixture, GaussianMixture, PoissonMixture
from tests.conftest import blobs

N = 600

CASES = {
    "full": (GaussianMixture, {"covariance_type": "full"}),
    "diag": (GaussianMixture, {"covariance_type": "diag"}),
    "spherical": (GaussianMixture, {"covariance_type": "spherical"}),
    "tied": (GaussianMixture, {"covariance_type": "tied"}),
    "poisson": (PoissonMixture, {}),
    "bernoulli": (BernoulliMixture, {}),
}
# Rank 0's share of the rows: uneven, and none at all (rank 1 holds every row).
SPLITS = {"uneven": 0.37, "empty": 0.0}


def estimator(case: str, **overrides):
    cls, kwargs = CASES[case]
    settings = dict(n_components=3, dtype="float64", random_state=0, max_iter=40, tol=1e-9)
    return cls(**{**settings, **kwargs, **overrides})


def rows(case: str, n: int = N, seed: int = 0) -> np.ndarray:
    X, labels, *_ = blobs(n=n, d=3, k=3, seed=seed)
    if case == "poisson":
        rng = np.random.default_rng(seed)
        return rng.poisson(np.array([[1.0, 4.0, 9.0], [8.0, 1.0, 3.0], [3.0, 9.0, 1.0]])[labels])
    if case == "bernoulli":
        rng = np.random.default_rng(seed)
        p = np.array([[0.9, 0.1, 0.8, 0.2], [0.1, 0.9, 0.2, 0.7], [0.5, 0.5, 0.9, 0.9]])[labels]
        return (rng.random(p.shape) < p).astype(np.float64)
    return X


def share(X: np.ndarray, fraction: float, rank: int) -> np.ndarray:
    """Rank 0 gets the first ``fraction`` of the rows, rank 1 the rest."""
    cut = int(fraction * len(X))
    return X[:cut] if rank == 0 else X[cut:]


def fitted(est) -> dict[str, np.ndarray]:
    """Every fitted array and the bound of every iteration."""
    tensors, _ = est._get_state()
    out = {name: np.asarray(value) for name, value in tensors.items() if "seconds" not in name}
    out["lower_bounds_"] = np.asarray(est.lower_bounds_)
    return out


def vae(**overrides):
    """A small VAE in float64: grey values in [0, 1] under a Bernoulli likelihood with dynamic
    binarization, so both kinds of per-row noise (the binarization, the reparameterization) are
    drawn."""
    from lvmkit import VAE

    settings = dict(
        latent_dim=2,
        hidden_sizes=(16,),
        binarize="dynamic",
        epochs=2,
        batch_size=100,
        lr=3e-3,
        dtype="float64",
        random_state=0,
        validation_fraction=0.1,
    )
    return VAE(**{**settings, **overrides})


def vae_rows(n: int = 1000, d: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    W = rng.normal(size=(2, d))
    return 1.0 / (1.0 + np.exp(-(z @ W)))


def vae_state(est) -> dict[str, np.ndarray]:
    out = {f"param/{k}": v.detach().cpu().numpy() for k, v in est.module_.state_dict().items()}
    out["lower_bounds_"] = np.asarray(est.lower_bounds_, dtype=np.float64)
    out["elbo"] = np.asarray(est.history_["elbo"], dtype=np.float64)
    return out
