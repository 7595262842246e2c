"""Three ways to fit the same mixture agree; sample weights equal duplication; Fisher's identity."""

import warnings

import numpy as np
import pytest
import torch

from lvmkit import BernoulliMixture, GaussianMixture, PoissonMixture
from lvmkit.families.gaussian import Gaussian
from lvmkit.fit.gradient import _gradient
from lvmkit.models.mixture import Mixture
from tests.conftest import blobs, quiet
from tests.estimators.test_discrete_mixtures import bernoulli_data, poisson_data


def gaussian_start(ct, X, k=3):
    start = quiet(
        GaussianMixture(k, covariance_type=ct, max_iter=0, random_state=0, dtype="float64").fit, X
    )
    return dict(
        covariance_type=ct,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    )


def discrete_start(cls, X, k=3):
    start = quiet(cls(k, max_iter=0, random_state=0, dtype="float64").fit, X)
    name = "rates" if cls is PoissonMixture else "probs"
    return dict(weights_init=start.weights_, **{f"{name}_init": getattr(start, f"{name}_")})


def all_cases():
    X, *_ = blobs(n=400, d=2, k=3, separation=5)
    for ct in ("full", "tied", "diag", "spherical"):
        yield pytest.param(GaussianMixture, X, gaussian_start(ct, X), "means_", id=f"gaussian-{ct}")
    P, *_ = poisson_data(n=400)
    yield pytest.param(PoissonMixture, P, discrete_start(PoissonMixture, P), "rates_", id="poisson")
    B, *_ = bernoulli_data(n=400)
    yield pytest.param(
        BernoulliMixture, B, discrete_start(BernoulliMixture, B), "probs_", id="bernoulli"
    )


def fit_three(cls, X, start, tol, max_iter=3000):
    return {
        alg: quiet(
            cls(3, algorithm=alg, tol=tol, max_iter=max_iter, dtype="float64", **start).fit, X
        )
        for alg in ("em", "gem", "gradient")
    }


@pytest.mark.parametrize("cls, X, start, attr", list(all_cases()))
def test_em_gem_and_gradient_reach_the_same_optimum(cls, X, start, attr):
    fits = fit_three(cls, X, start, tol=1e-10)
    em = fits["em"]
    # GEM moves like EM; plain gradient ascent creeps along ill-conditioned directions, so it
    # stops (change < tol) a little short, where depending on rounding: within 3e-6 relative
    # here (1.4e-6 for Bernoulli since its features whose mode is 1 are flipped), and within
    # 1e-8 with a tighter tol (the slow test below).
    for alg, rel, atol in (("gem", 1e-7, 5e-3), ("gradient", 3e-6, 2e-2)):
        assert fits[alg].lower_bound_ == pytest.approx(em.lower_bound_, rel=rel), alg
        np.testing.assert_allclose(fits[alg].weights_, em.weights_, atol=atol)
        np.testing.assert_allclose(getattr(fits[alg], attr), getattr(em, attr), atol=atol)
        # The gradient algorithms never lower their objective either.
        lb = np.asarray(fits[alg].lower_bounds_)
        assert np.all(np.diff(lb) >= -1e-9 * np.abs(lb[1:]))


@pytest.mark.slow
@pytest.mark.parametrize("cls, X, start, attr", list(all_cases()))
def test_gradient_ascent_converges_to_the_em_optimum(cls, X, start, attr):
    em = quiet(cls(3, tol=1e-12, max_iter=5000, dtype="float64", **start).fit, X)
    gd = quiet(
        cls(3, algorithm="gradient", tol=1e-13, max_iter=20_000, dtype="float64", **start).fit, X
    )
    assert gd.lower_bound_ == pytest.approx(em.lower_bound_, rel=1e-8)
    np.testing.assert_allclose(getattr(gd, attr), getattr(em, attr), atol=2e-3)


def test_gradient_of_q_is_the_gradient_of_the_log_likelihood():
    """Fisher's identity: ∇ log p(x) at θ equals ∇Q(θ) with the responsibilities of θ."""
    X, *_ = blobs(n=50, d=2, k=2)
    gm = quiet(GaussianMixture(2, max_iter=3, random_state=0, dtype="float64").fit, X)
    family = Gaussian("full", gm.reg_covar * 0)
    shift = torch.zeros(2, dtype=torch.float64)
    fitted = gm._fitted_parameters(shift, "cpu")
    weights, params = fitted.weights, fitted.components
    model = Mixture(family, 2, torch.float64)
    F = family.features(torch.as_tensor(X))
    stats = model.e_step(F, None, fitted)
    u = {"logits": torch.log(weights), **family.unconstrained(params)}
    _, grads = _gradient(
        model, family.summarize(stats, params), stats["nk"], stats.scalar("n_samples"), u
    )

    # Direct autograd through log p(x) = logsumexp_k [log π_k + log N(x | μ_k, Σ_k)].
    leaves = {k: t.clone().requires_grad_(True) for k, t in u.items()}
    p = family.constrained(leaves)
    L = torch.linalg.inv(p.precisions_cholesky).mT  # cov = L Lᵀ
    dist = torch.distributions.MultivariateNormal(p.means, scale_tril=L)
    log_joint = dist.log_prob(torch.as_tensor(X)[:, None, :]) + torch.log_softmax(
        leaves["logits"], 0
    )
    torch.logsumexp(log_joint, 1).mean().backward()
    for name, g in grads.items():
        np.testing.assert_allclose(g.numpy(), leaves[name].grad.numpy(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cls, X, start, attr", list(all_cases()))
def test_weight_two_equals_a_duplicated_row(cls, X, start, attr):
    rng = np.random.default_rng(0)
    w = rng.integers(0, 3, size=len(X)).astype(float)
    duplicated = np.repeat(X, w.astype(int), axis=0)
    kw = dict(tol=0, max_iter=15, dtype="float64", **start)
    weighted = quiet(cls(3, **kw).fit, X, sample_weight=w)
    repeated = quiet(cls(3, **kw).fit, duplicated)
    np.testing.assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(
        getattr(weighted, attr), getattr(repeated, attr), rtol=1e-8, atol=1e-10
    )


def test_weighted_initialisation_uses_weights():
    # Rows with zero weight must not influence k-means or become seeds.
    X, *_ = blobs(n=300, d=2, k=2, separation=10)
    outliers = np.full((50, 2), 1e3)
    w = np.r_[np.ones(300), np.zeros(50)]
    gm = GaussianMixture(2, random_state=0, n_init=3).fit(np.vstack([X, outliers]), sample_weight=w)
    assert np.abs(gm.means_).max() < 50


@pytest.mark.parametrize(
    "w, match",
    [
        (np.ones(5), r"shape \(n_samples,\)"),
        (-np.ones(20), "non-negative"),
        (np.zeros(20), "zero for every row"),
        (np.r_[1.0, np.zeros(19)], "fewer than n_components=2"),
    ],
)
def test_bad_sample_weight(w, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2).fit(np.random.rand(20, 2), sample_weight=w)


@pytest.mark.parametrize("algorithm", ["gem", "gradient"])
def test_gradient_algorithms_reseed_a_component_that_loses_its_points(algorithm):
    from lvmkit.estimators._mixture import ComponentReseedWarning

    X, *_ = blobs(n=400, d=2, k=2, separation=10)
    means = np.vstack([X[:2], [[1e3, 1e3]]])  # one component far from every point
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = GaussianMixture(
            3, means_init=means, random_state=0, max_iter=50, dtype="float64", algorithm=algorithm
        ).fit(X)
    assert any(issubclass(w.category, ComponentReseedWarning) for w in caught)
    assert np.abs(gm.means_).max() < 100  # the far component came back to the data
    assert np.isfinite(gm.covariances_).all() and gm.weights_.min() > 1e-3
