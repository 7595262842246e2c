"""A sample weight of 2 is the same row twice, for every initialisation, in any row order.

Every random choice of the initialisations depends on the rows' values and weights, not on their
positions (:func:`lvmkit.models.kmeans.canonical`, ``_RandomResponsibilities``), so fitting ``X``
with integer weights ``w`` equals fitting ``np.repeat(X, w, axis=0)`` shuffled, with the same
``random_state``: up to the order of floating-point sums (float64, compared at 1e-7 relative).
"""

import numpy as np
import pytest
import torch

from lvmkit import BernoulliMixture, GaussianMixture, PoissonMixture
from lvmkit.data.chunks import DataChunks
from lvmkit.models import kmeans
from lvmkit.models.mixture import _RandomResponsibilities, _value_range
from tests.conftest import blobs, quiet

K = 3
N = 240
INITS = ("kmeans", "kmeans++", "k-means++", "random", "random_from_data", "lecture")


def gaussian_rows():
    X, *_ = blobs(n=N, d=3, k=K, separation=5, seed=2)
    return X + 50.0  # an offset: weighted and repeated data are centred on different shifts


def count_rows():
    rng = np.random.default_rng(3)
    rates = np.array([[1.0, 4.0, 9.0], [8.0, 1.0, 3.0], [3.0, 9.0, 1.0]])
    return rng.poisson(rates[rng.integers(K, size=N)]).astype(np.float64)


def bit_rows():  # 6 binary features: many rows are equal even before the repetition
    rng = np.random.default_rng(4)
    p = np.array(
        [
            [0.9, 0.1, 0.8, 0.2, 0.6, 0.1],
            [0.1, 0.9, 0.2, 0.7, 0.5, 0.9],
            [0.5, 0.5, 0.9, 0.9, 0.1, 0.3],
        ]
    )
    return (rng.random((N, 6)) < p[rng.integers(K, size=N)]).astype(np.float64)


FAMILIES = [
    pytest.param(
        GaussianMixture,
        {"covariance_type": ct},
        gaussian_rows,
        ("means_", "covariances_"),
        id=f"gaussian-{ct}",
    )
    for ct in ("full", "tied", "diag", "spherical")
] + [
    pytest.param(PoissonMixture, {}, count_rows, ("rates_",), id="poisson"),
    pytest.param(BernoulliMixture, {}, bit_rows, ("probs_",), id="bernoulli"),
]


def weights_and_repeats(X, seed=0):
    """Integer weights in {0, 1, 2, 3}, and the rows repeated that often, shuffled."""
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 4, size=len(X))
    repeated = np.repeat(X, w, axis=0)
    return w, repeated[rng.permutation(len(repeated))]


def assert_same_fit(a, b, attrs, rtol=1e-7):
    for name in ("weights_",) + attrs:
        got, want = getattr(a, name), getattr(b, name)
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=name)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=rtol)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("cls, kwargs, data, attrs", FAMILIES)
def test_weight_equals_repetition_for_every_initialisation(cls, kwargs, data, attrs, init):
    X = data()
    w, repeated = weights_and_repeats(X)
    settings = dict(init_params=init, random_state=0, dtype="float64", **kwargs)
    weighted = quiet(cls(K, **settings).fit, X, sample_weight=w)
    repeat = quiet(cls(K, **settings).fit, repeated)
    assert_same_fit(weighted, repeat, attrs)
    # and the weighted rows in another order, in chunks of another size
    order = np.random.default_rng(5).permutation(len(X))
    shuffled = quiet(cls(K, chunk_size=50, **settings).fit, X[order], sample_weight=w[order])
    assert_same_fit(shuffled, repeat, attrs)


@pytest.mark.parametrize("init", ["kmeans", "random", "random_from_data"])
def test_every_restart_equals_its_repeated_twin(init):
    X = gaussian_rows()
    w, repeated = weights_and_repeats(X, seed=1)
    settings = {
        "init_params": init,
        "random_state": 3,
        "n_init": 3,
        "dtype": "float64",
        "max_iter": 20,
    }
    weighted = quiet(GaussianMixture(K, **settings).fit, X, sample_weight=w)
    repeat = quiet(GaussianMixture(K, **settings).fit, repeated)
    np.testing.assert_allclose(weighted.restarts_, repeat.restarts_, rtol=1e-7)
    assert_same_fit(weighted, repeat, ("means_", "covariances_"))


# ----------------------------------------------------------------------------- the pieces
def chunks(X, w=None, chunk_size=64):
    shift = torch.zeros(X.shape[1], dtype=torch.float64)
    return DataChunks(X, shift, torch.float64, "cpu", chunk_size, bytes_per_row=64, weights=w)


def test_canonical_rows_ignore_order_duplication_and_zero_weights():
    X = np.vstack([count_rows(), [[99.0, 99.0, 99.0]]])  # the last row gets weight 0
    w = np.r_[np.random.default_rng(0).integers(1, 4, size=N), 0]
    repeated = np.repeat(X, w, axis=0)
    repeated = repeated[np.random.default_rng(1).permutation(len(repeated))]
    a = kmeans.canonical(chunks(X, w))
    b = kmeans.canonical(chunks(repeated, chunk_size=37))
    assert torch.equal(a.rows, b.rows) and torch.equal(a.weights, b.weights)
    # the distinct rows of positive weight, in lexicographic order, with their total weights
    unique, counts = np.unique(repeated, axis=0, return_counts=True)
    np.testing.assert_array_equal(a.rows.numpy(), unique)
    np.testing.assert_array_equal(a.weights.numpy(), counts)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_lexsort_sorts_rows_with_ties_in_many_columns(d):
    rng = np.random.default_rng(d)
    base = rng.integers(0, 3, size=(60, d)).astype(np.float64)
    X = np.vstack([base, base[:20], rng.normal(size=(10, d))])
    X = torch.as_tensor(X[rng.permutation(len(X))])
    order, first = kmeans._lexsort(X)
    assert torch.equal(X[order][first], torch.unique(X, dim=0))
    gid = torch.cumsum(first, 0) - 1
    for g in range(int(gid[-1]) + 1):  # equal rows stay in their order
        members = order[gid == g]
        assert torch.all(members[1:] > members[:-1])
        assert torch.all(X[members] == X[members[0]])


@pytest.mark.parametrize("seed", range(3))
def test_seeds_of_weighted_rows_are_those_of_repeated_rows(seed):
    X = gaussian_rows()
    w, repeated = weights_and_repeats(X, seed)
    a, b = chunks(X, w), chunks(repeated, chunk_size=41)
    for draw in (
        lambda c, g: kmeans.kmeans_plusplus(c, K, g),
        lambda c, g: kmeans.random_rows(c, K, g),
        lambda c, g: kmeans.kmeans(c, K, g, with_labels=False)[0],
    ):
        seeds_a = draw(a, torch.Generator().manual_seed(seed))
        seeds_b = draw(b, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(seeds_a, seeds_b, rtol=1e-12, atol=1e-12)
    assert not bool(
        (kmeans.random_rows(a, N // 2, torch.Generator().manual_seed(seed)) > 1e3).any()
    )


def test_random_responsibilities_are_a_function_of_the_row():
    X = count_rows()
    c = chunks(X)
    resp_of = _RandomResponsibilities(K, 1234, *_value_range(c))
    whole = resp_of(torch.as_tensor(X), 0)
    assert whole.shape == (N, K)
    torch.testing.assert_close(whole.sum(1), torch.ones(N, dtype=torch.float64))
    # the same rows in another order, one at a time or in chunks starting anywhere
    order = torch.as_tensor(np.random.default_rng(0).permutation(N))
    torch.testing.assert_close(resp_of(torch.as_tensor(X)[order], 17), whole[order], rtol=0, atol=0)
    torch.testing.assert_close(resp_of(torch.as_tensor(X[5:6]), 99), whole[5:6], rtol=0, atol=0)
    # equal rows get equal responsibilities, different rows (almost always) different ones
    _, inverse = np.unique(X, axis=0, return_inverse=True)
    for group in range(3):
        rows = np.flatnonzero(inverse.reshape(-1) == group)
        assert torch.all(whole[rows] == whole[rows[0]])
    assert len(torch.unique(whole, dim=0)) == len(np.unique(X, axis=0))
    # another seed, other responsibilities
    other = _RandomResponsibilities(K, 1235, *_value_range(c))(torch.as_tensor(X), 0)
    assert not torch.allclose(other, whole)


def test_random_responsibilities_do_not_depend_on_the_shift():
    X = gaussian_rows()
    resp = []
    for shift in (X.mean(0), X[:10].mean(0) + 0.123):
        c = DataChunks(X, torch.as_tensor(shift), torch.float64, "cpu", 64, bytes_per_row=64)
        rows = torch.cat(list(c))
        resp.append(_RandomResponsibilities(K, 7, *_value_range(c))(rows, 0))
    torch.testing.assert_close(resp[0], resp[1], rtol=0, atol=0)


def test_random_initialisation_does_not_depend_on_the_chunk_size():
    X = gaussian_rows()
    settings = {
        "init_params": "random",
        "random_state": 1,
        "dtype": "float64",
        "max_iter": 10,
        "tol": 0,
    }
    a = quiet(GaussianMixture(K, chunk_size=17, **settings).fit, X)
    b = quiet(GaussianMixture(K, chunk_size=1000, **settings).fit, X)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-10)
