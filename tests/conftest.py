"""Shared fixtures: seeded data sets small enough for the fast suite."""

import os
import warnings

import numpy as np
import pytest
import torch

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def blobs(n=600, d=3, k=3, separation=6.0, seed=0):
    """Well-separated Gaussian clusters with known parameters."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * separation
    A = rng.normal(size=(k, d, d)) * 0.5
    covs = A @ np.swapaxes(A, 1, 2) + 0.3 * np.eye(d)
    weights = rng.dirichlet(np.full(k, 5.0))
    labels = rng.choice(k, size=n, p=weights)
    L = np.linalg.cholesky(covs)
    X = means[labels] + np.einsum("nij,nj->ni", L[labels], rng.normal(size=(n, d)))
    return X, labels, weights, means, covs


@pytest.fixture
def blob_data():
    return blobs()


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)
