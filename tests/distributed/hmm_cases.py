"""The hidden Markov model fits the multi-process tests compare: sequences of different lengths,
float64, split between two ranks by whole sequences."""

from __future__ import annotations

import numpy as np

from lvmkit import CategoricalHMM, GaussianHMM, PoissonHMM

HMM_CASES = {
    "gaussian-full": (GaussianHMM, {"covariance_type": "full"}),
    "gaussian-diag": (GaussianHMM, {"covariance_type": "diag"}),
    "poisson": (PoissonHMM, {}),
    "categorical": (CategoricalHMM, {}),
}
LENGTHS = [40, 1, 75, 3, 60, 90, 25, 50]
# Rank 0's sequences: the first three (uneven), or none at all.
HMM_SPLITS = {"uneven": 3, "empty": 0}


def hmm_estimator(case: str, **overrides):
    cls, kwargs = HMM_CASES[case]
    settings = dict(n_components=3, dtype="float64", random_state=0, n_iter=12, tol=0.0)
    return cls(**{**settings, **kwargs, **overrides})


def hmm_rows(case: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the sequences, drawn from a 3-state chain, and their lengths."""
    rng = np.random.default_rng(seed)
    A = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    states = []
    for n in LENGTHS:
        z = [rng.integers(3)]
        for _ in range(n - 1):
            z.append(rng.choice(3, p=A[z[-1]]))
        states.extend(z)
    z = np.array(states)
    if case == "poisson":
        return rng.poisson(np.array([[1.0, 6.0], [5.0, 1.0], [9.0, 9.0]])[z]).astype(float), LENGTHS
    if case == "categorical":
        p = np.array([[0.7, 0.2, 0.05, 0.05], [0.1, 0.1, 0.7, 0.1], [0.25, 0.25, 0.25, 0.25]])
        return np.array([rng.choice(4, p=p[s]) for s in z])[:, None], LENGTHS
    means = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]])
    return means[z] + rng.normal(size=(len(z), 2)), LENGTHS


def hmm_share(X, lengths, first: int, rank: int):
    """Rank 0 gets the first ``first`` sequences, rank 1 the rest."""
    cut = int(np.sum(lengths[:first]))
    if rank == 0:
        return X[:cut], list(lengths[:first])
    return X[cut:], list(lengths[first:])


def hmm_fitted(est) -> dict[str, np.ndarray]:
    tensors, _ = est._get_state()
    out = {name: np.asarray(value) for name, value in tensors.items()}
    out["lower_bounds_"] = np.asarray(est.lower_bounds_)
    return out


class gappy_linear_models:  # noqa: N801 (a namespace for the worker and the test)
    """Probabilistic PCA, factor analysis and a mixture of factor analyzers fitted by EM on rows
    with 20% of their values missing."""

    @staticmethod
    def rows() -> np.ndarray:
        from tests.distributed.cases import rows

        X = rows("full").copy()
        X[np.random.default_rng(5).random(X.shape) < 0.2] = np.nan
        return X

    @staticmethod
    def estimators() -> dict:
        from lvmkit import FactorAnalysis, MixtureOfFactorAnalyzers, ProbabilisticPCA

        return {
            "ppca-gaps": ProbabilisticPCA(1, max_iter=15, tol=0),
            "fa-gaps": FactorAnalysis(1, max_iter=15, tol=0),
            "mfa-gaps": MixtureOfFactorAnalyzers(3, 1, max_iter=15, tol=0, random_state=0),
        }

    @staticmethod
    def fitted(est) -> dict[str, np.ndarray]:
        names = ("loadings_", "noise_variance_", "lower_bounds_")
        out = {name: np.asarray(getattr(est, name)) for name in names}
        out["means"] = np.asarray(getattr(est, "means_", getattr(est, "mean_", None)))
        return out


class lda_case:  # noqa: N801 (a namespace for the worker and the test)
    """Batch LDA on a small synthetic corpus (float64, 6 iterations)."""

    @staticmethod
    def documents() -> np.ndarray:
        rng = np.random.default_rng(11)
        topics = rng.dirichlet(np.full(40, 0.1), size=3)
        mix = rng.dirichlet(np.full(3, 0.3), size=90)
        return np.stack([rng.multinomial(30, m @ topics) for m in mix]).astype(np.float64)

    @staticmethod
    def estimator():
        from lvmkit import LatentDirichletAllocation

        return LatentDirichletAllocation(3, max_iter=6, random_state=0, dtype="float64")

    @staticmethod
    def fitted(est) -> dict[str, np.ndarray]:
        return {
            "components_": np.asarray(est.components_),
            "lower_bounds_": np.asarray(est.lower_bounds_),
            "bound_": np.asarray(est.bound_),
        }
