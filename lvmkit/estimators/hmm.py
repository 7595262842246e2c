"""Hidden Markov models with hmmlearn's names: GaussianHMM, PoissonHMM, BernoulliHMM,
CategoricalHMM and GMMHMM.

Switch from hmmlearn by changing the import: the parameters (``n_components, n_iter, tol,
params, init_params, startprob_prior, transmat_prior, random_state``, the emission's own), the
learned attributes (``startprob_, transmat_, means_, covars_, lambdas_, emissionprob_,
weights_``), ``fit(X, lengths)``, ``score``, ``score_samples``, ``decode``, ``predict``,
``predict_proba``, ``sample``, ``bic`` and ``aic`` mean what they mean there, and from the same
parameters every Baum-Welch iteration gives the same log-likelihood (GaussianHMM with its priors,
PoissonHMM without rate priors, CategoricalHMM; hmmlearn 0.3.3's Poisson rate prior divides by the
posterior mass of all states, lvmkit's by each state's, and GMMHMM's M-step is lvmkit's own, with
``min_covar`` on every covariance). lvmkit adds ``n_init``
restarts, ``sample_weight`` per sequence, ``partial_fit`` (stepwise EM), ``device``, ``dtype``,
fits across processes, and the E-step of all sequences at once (see
:mod:`lvmkit.posteriors.chain`).
"""

from __future__ import annotations

import numpy as np
import torch

from lvmkit import _validation as v
from lvmkit._persist import register
from lvmkit.estimators._hmm import BaseHMM, broadcast_param, hmm_constraints, rows_for_init
from lvmkit.estimators._mixture import as_float64
from lvmkit.estimators.discrete_mixtures import (
    _as_numpy,
    _first_bad,
    _where,
    check_binary,
    check_counts,
)
from lvmkit.families.bernoulli import Bernoulli
from lvmkit.families.categorical import Categorical
from lvmkit.families.gaussian import COVARIANCE_TYPES, Gaussian, GaussianParams
from lvmkit.families.poisson import Poisson
from lvmkit.models.emissions import (
    GaussianEmission,
    IndependentEmission,
    MixtureEmission,
    MixtureEmissionParams,
)
from lvmkit.models.mixture import Mixture

f64 = torch.float64


def _keep(estimator, arguments: dict) -> None:
    """Store every ``__init__`` argument as the attribute of its name (scikit-learn's contract:
    the signature lists the parameters; ``__init__`` only stores them)."""
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def _kmeans_components(family, k, rows, weights, shift, device, dtype, generator, comm):
    """A k-means initialisation of a K-component mixture of ``family`` over the rows."""
    chunks = rows_for_init(rows, weights, shift, device, dtype)
    return Mixture(family, k, dtype).initialize(chunks, "kmeans", generator, None, comm)


# ====================================================================== Gaussian
@register
class GaussianHMM(BaseHMM):
    """Hidden Markov model with multivariate Gaussian emissions (hmmlearn's GaussianHMM).

    Besides the parameters below, it takes those every HMM shares (see
    :class:`lvmkit.estimators._hmm.BaseHMM`): ``n_components, startprob_prior,
    transmat_prior, algorithm, random_state, n_iter, tol, verbose, params, init_params,
    n_init, device, dtype, chunk_size, learning_decay, learning_offset``.

    Parameters
    ----------
    covariance_type : {'diag', 'full', 'spherical', 'tied'}, default='diag'
    min_covar : float, default=1e-3
        Added to the diagonal of the initial covariances.
    means_prior, means_weight, covars_prior, covars_weight : float or array
        hmmlearn's priors of the means (normal) and covariances (inverse gamma / Wishart); the
        defaults (0, 0, 1e-2, 1) make every covariance (0.01 + scatter) / N_k, as hmmlearn's.


    Attributes
    ----------
    startprob_ (K,), transmat_ (K, K), means_ (K, D), covars_ (K, D, D) full matrices whatever
    the type (hmmlearn's convention; set it in the type's own shape), lower_bound_,
    lower_bounds_ (the total log-likelihood entering every iteration), monitor_, converged_,
    n_iter_, restarts_, n_features_in_.
    """

    _letters = "stmc"
    _shifts_data = True

    def __init__(
        self,
        n_components=1,
        covariance_type="diag",
        min_covar=1e-3,
        startprob_prior=1.0,
        transmat_prior=1.0,
        means_prior=0,
        means_weight=0,
        covars_prior=1e-2,
        covars_weight=1,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="stmc",
        init_params="stmc",
        n_init=1,
        device=None,
        dtype="float32",
        chunk_size=None,
        learning_decay=0.6,
        learning_offset=1.0,
    ):
        _keep(self, locals())

    _constraints = {
        **hmm_constraints("stmc"),
        "covariance_type": v.Options(COVARIANCE_TYPES),
        "min_covar": v.Interval(0, None),
    }

    # covars_: hmmlearn's property (full matrices out, the type's own shape in)
    @property
    def covars_(self):
        cov = np.asarray(self._covars_)
        k, ct = self.n_components, self.covariance_type
        if ct == "full":
            return cov
        if ct == "tied":
            return np.broadcast_to(cov, (k, *cov.shape)).copy()
        d = self._n_features_from_attributes()
        diag = cov if ct == "diag" else np.repeat(cov.reshape(-1, 1), d, 1)
        return np.stack([np.diag(row) for row in diag])

    @covars_.setter
    def covars_(self, value):
        self._covars_ = np.asarray(value, dtype=np.float64)

    def _emission_is_set(self) -> bool:
        return hasattr(self, "means_") and hasattr(self, "_covars_")

    def _n_features_from_attributes(self) -> int:
        return int(np.asarray(self.means_).shape[-1])

    def _make_emission(self, d, shift, device):
        k, ct = self.n_components, self.covariance_type
        mp = broadcast_param(self.means_prior, (k, d), "means_prior", device)
        mw = as_float64(self.means_weight, "means_weight")
        mw = broadcast_param(mw.reshape(-1, 1) if mw.ndim else mw, (k, 1), "means_weight", device)
        cp_shape = {"diag": (k, d), "spherical": (k, d), "full": (k, d, d), "tied": (d, d)}[ct]
        cp = broadcast_param(self.covars_prior, cp_shape, "covars_prior", device)
        cw_shape = {"diag": (k, 1), "spherical": (k, 1), "full": (k, 1, 1), "tied": ()}[ct]
        cw = as_float64(self.covars_weight, "covars_weight")
        if cw.ndim == 1 and ct in ("diag", "spherical", "full"):
            cw = cw.reshape(cw_shape)
        cw = broadcast_param(cw, cw_shape, "covars_weight", device)
        return GaussianEmission(ct, mp - shift.to(mp), mw, cp, cw)

    def _user_means(self, shift, device) -> torch.Tensor:
        """The means you set (``means_``), checked, in model coordinates."""
        k = self.n_components
        if not hasattr(self, "means_"):
            raise ValueError(
                f"init_params={self.init_params!r} leaves out 'm', so means_ must be set before "
                "fit (shape (n_components, n_features)); set it, or add 'm' to init_params."
            )
        means = as_float64(self.means_, "means_")
        if means.ndim != 2 or means.shape[0] != k:
            raise ValueError(
                f"means_ must have shape (n_components, n_features) = ({k}, D); got {means.shape}."
            )
        return torch.as_tensor(means, dtype=f64, device=device) - shift

    def _user_covariances(self, d: int, device) -> torch.Tensor:
        """The covariances you set (``covars_``, in the type's own shape), checked."""
        k, ct = self.n_components, self.covariance_type
        if not hasattr(self, "_covars_"):
            raise ValueError(
                f"init_params={self.init_params!r} leaves out 'c', so covars_ must be set before "
                "fit; set it, or add 'c' to init_params."
            )
        expected = {"full": (k, d, d), "diag": (k, d), "spherical": (k,), "tied": (d, d)}[ct]
        cov = as_float64(self._covars_, "covars_")
        if cov.shape != expected:
            raise ValueError(
                f"covars_ for covariance_type={ct!r} must be set with shape {expected}; got "
                f"{cov.shape}. (hmmlearn's: spherical (K,), diag (K, D), full (K, D, D), "
                "tied (D, D).)"
            )
        c = torch.as_tensor(cov, dtype=f64, device=device)
        if ct in ("diag", "spherical"):
            if not bool((c > 0).all()):
                raise ValueError("covars_ must be positive; got a non-positive variance.")
            return c
        if not torch.allclose(c, c.mT, rtol=1e-10, atol=0):
            raise ValueError("covars_ must be symmetric; got a matrix that is not.")
        if bool((torch.linalg.cholesky_ex(c).info > 0).any()):
            raise ValueError(
                "covars_ must be positive-definite; a matrix you set is not (its Cholesky "
                "factorisation failed). Set covariance matrices, e.g. A @ A.T + eps * I."
            )
        return c

    def _emission_from_attributes(self, shift, device):
        means = self._user_means(shift, device)
        c = self._user_covariances(means.shape[1], device)
        P, c = Gaussian(self.covariance_type, 0.0).precisions_cholesky(c)
        return GaussianParams(means, P, covariances=c)

    def _emission_to_attributes(self, params: GaussianParams, shift) -> None:
        self.means_ = v.to_numpy(params.means + shift)
        self._covars_ = v.to_numpy(params.covariances)

    def _init_emission(self, emission, rows, weights, shift, device, dtype, generator, comm):
        """'m': k-means centres (and, with 'c', the clusters' covariances); 'c' alone: the data's
        covariance for every state, as hmmlearn; a letter left out: the attribute you set."""
        init = self.init_params
        k, ct = self.n_components, self.covariance_type
        family = Gaussian(ct, reg_covar=self.min_covar)
        if "m" in init:
            mixture = _kmeans_components(
                family, k, rows, weights, shift, device, dtype, generator, comm
            )
            means, cov = mixture.components.means, mixture.components.covariances
        else:
            means, cov = self._user_means(shift, device), None
        if "c" not in init:
            cov = self._user_covariances(means.shape[1], device)
        elif cov is None:
            single = _kmeans_components(
                Gaussian("full", self.min_covar), 1, rows, weights, shift, device, dtype,
                generator, comm,
            )  # fmt: skip
            full = single.components.covariances[0]
            cov = {
                "full": full.expand(k, -1, -1).clone(),
                "tied": full,
                "diag": torch.diagonal(full).expand(k, -1).clone(),
                "spherical": torch.diagonal(full).mean().expand(k).clone(),
            }[ct]
        P, cov = family.precisions_cholesky(cov)
        return GaussianParams(means.to(f64), P, covariances=cov)

    def _n_emission_parameters(self, d: int) -> int:
        return Gaussian(self.covariance_type).n_parameters(self.n_components, d)

    def _sample_emission(self, states, rng):
        generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        family = Gaussian(self.covariance_type)
        x = family.sample(
            torch.as_tensor(states),
            torch.as_tensor(self.means_, dtype=f64),
            torch.as_tensor(self._covars_, dtype=f64),
            generator,
        )
        return v.to_numpy(x)

    def _get_state(self):
        tensors, extra = super()._get_state()
        tensors["covars_compact_"] = np.asarray(self._covars_)
        return tensors, extra

    def _set_state(self, tensors, extra):
        tensors = dict(tensors)
        self._covars_ = np.asarray(tensors.pop("covars_compact_"))
        super()._set_state(tensors, extra)


# ====================================================================== counts and binary data
class _IndependentHMM(BaseHMM):
    """Emissions of independent features (a family with one parameter per state and feature)."""

    _attribute = ""  # the public name of the emission parameters
    _family_name = ""

    def _emission_is_set(self) -> bool:
        return hasattr(self, self._attribute)

    def _n_features_from_attributes(self) -> int:
        return int(np.asarray(getattr(self, self._attribute)).shape[-1])

    _support = (0.0, 1.0)  # where the values you set must lie (rates: (0, inf))

    def _values_from_attributes(self, device):
        k = self.n_components
        values = as_float64(getattr(self, self._attribute), self._attribute)
        if values.ndim != 2 or values.shape[0] != k:
            raise ValueError(
                f"{self._attribute} must have shape (n_components, n_features) = ({k}, D); got "
                f"{values.shape}."
            )
        self._check_set_values(values)
        return torch.as_tensor(values, dtype=f64, device=device)

    def _check_set_values(self, values: np.ndarray) -> None:
        low, high = self._support
        if (values < low).any() or (values > high).any():
            raise ValueError(
                f"{self._attribute} must lie in [{low:g}, {high:g}]; got values from "
                f"{values.min():.3g} to {values.max():.3g}."
            )

    def _emission_from_attributes(self, shift, device):
        family = self._family()
        return family.params_class(family._clip(self._values_from_attributes(device)))

    def _emission_to_attributes(self, params, shift) -> None:
        setattr(self, self._attribute, v.to_numpy(self._values(params)))

    def _n_emission_parameters(self, d: int) -> int:
        return self.n_components * d


@register
class PoissonHMM(_IndependentHMM):
    """Hidden Markov model with independent Poisson counts per feature (hmmlearn's
    PoissonHMM).

    Besides the parameters below, it takes those every HMM shares (see
    :class:`lvmkit.estimators._hmm.BaseHMM`): ``n_components, startprob_prior,
    transmat_prior, algorithm, random_state, n_iter, tol, verbose, params, init_params,
    n_init, device, dtype, chunk_size, learning_decay, learning_offset``.

    Parameters
    ----------
    lambdas_prior, lambdas_weight : float or array, default=0
        Gamma prior of the rates: λ = (lambdas_prior + Σ γ x) / (lambdas_weight + Σ γ) per state
        (maximum likelihood by default).
    min_rate : float, default=1e-6
        Lower bound of every rate (a rate of 0 would make a count of 1 impossible).


    Attributes
    ----------
    startprob_, transmat_, lambdas_ (K, D), and the fit's record as GaussianHMM's.
    """

    _letters = "stl"
    _attribute = "lambdas_"

    def __init__(
        self,
        n_components=1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        lambdas_prior=0.0,
        lambdas_weight=0.0,
        min_rate=1e-6,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="stl",
        init_params="stl",
        n_init=1,
        device=None,
        dtype="float32",
        chunk_size=None,
        learning_decay=0.6,
        learning_offset=1.0,
    ):
        _keep(self, locals())

    _constraints = {**hmm_constraints("stl"), "min_rate": v.Interval(0, None, open_low=True)}

    def _family(self):
        return Poisson(self.min_rate)

    @staticmethod
    def _values(params):
        return params.rates

    _support = (0.0, np.inf)

    def _make_emission(self, d, shift, device):
        k = self.n_components
        priors = []
        for name in ("lambdas_prior", "lambdas_weight"):
            value = as_float64(getattr(self, name), name)
            if value.ndim == 1 and value.shape[0] == k:  # hmmlearn's (n_components,): per state
                value = value[:, None]
            priors.append(broadcast_param(value, (k, d), name, device))
        return IndependentEmission(self._family(), "l", *priors)

    def _check_values(self, X) -> None:
        check_counts(X, "PoissonHMM", self.dtype, "GaussianHMM")

    def _init_emission(self, emission, rows, weights, shift, device, dtype, generator, comm):
        mixture = _kmeans_components(
            self._family(), self.n_components, rows, weights, shift, device, dtype, generator, comm
        )
        return mixture.components

    def _sample_emission(self, states, rng):
        return rng.poisson(np.asarray(self.lambdas_)[states]).astype(np.float64)


@register
class BernoulliHMM(_IndependentHMM):
    """Hidden Markov model with independent binary features (a multivariate Bernoulli
    per state; not in hmmlearn 0.3).

    Besides the parameters below, it takes those every HMM shares (see
    :class:`lvmkit.estimators._hmm.BaseHMM`): ``n_components, startprob_prior,
    transmat_prior, algorithm, random_state, n_iter, tol, verbose, params, init_params,
    n_init, device, dtype, chunk_size, learning_decay, learning_offset``.

    Parameters
    ----------
    min_prob : float, default=1e-6
        Every fitted probability lies in [min_prob, 1 − min_prob].


    Attributes
    ----------
    startprob_, transmat_, emissionprob_ (K, D): p(x_d = 1 | state), and the fit's record.
    """

    _letters = "ste"
    _attribute = "emissionprob_"

    def __init__(
        self,
        n_components=1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        min_prob=1e-6,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="ste",
        init_params="ste",
        n_init=1,
        device=None,
        dtype="float32",
        chunk_size=None,
        learning_decay=0.6,
        learning_offset=1.0,
    ):
        _keep(self, locals())

    _constraints = {**hmm_constraints("ste"), "min_prob": v.Interval(0, 0.5, open_low=True)}

    def _family(self):
        return Bernoulli(self.min_prob)

    @staticmethod
    def _values(params):
        return params.probs

    def _make_emission(self, d, shift, device):
        return IndependentEmission(self._family(), "e")

    def _check_values(self, X) -> None:
        check_binary(X, "BernoulliHMM")

    def _init_emission(self, emission, rows, weights, shift, device, dtype, generator, comm):
        mixture = _kmeans_components(
            self._family(), self.n_components, rows, weights, shift, device, dtype, generator, comm
        )
        return mixture.components

    def _sample_emission(self, states, rng):
        p = np.asarray(self.emissionprob_)[states]
        return (rng.random_sample(p.shape) < p).astype(np.float64)


@register
class CategoricalHMM(_IndependentHMM):
    """Hidden Markov model of one column of symbols 0 … M−1 (hmmlearn's CategoricalHMM).

    Besides the parameters below, it takes those every HMM shares (see
    :class:`lvmkit.estimators._hmm.BaseHMM`): ``n_components, startprob_prior,
    transmat_prior, algorithm, random_state, n_iter, tol, verbose, params, init_params,
    n_init, device, dtype, chunk_size, learning_decay, learning_offset``.

    Parameters
    ----------
    n_features : int, optional
        The number of symbols M (None: the largest symbol seen in ``fit`` plus one).
    emissionprob_prior : float or array, default=1.0
        Dirichlet parameter of each state's symbol probabilities (1.0: maximum likelihood).
    min_prob : float, default=1e-10
        Every fitted probability is at least this (a symbol no state has emitted keeps a finite
        log-probability instead of −inf), exactly: the M-step maximises over the clipped simplex.


    Attributes
    ----------
    startprob_, transmat_, emissionprob_ (K, M), n_features_ (M), and the fit's record.
    """

    _letters = "ste"
    _attribute = "emissionprob_"

    def __init__(
        self,
        n_components=1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        emissionprob_prior=1.0,
        n_features=None,
        min_prob=1e-10,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="ste",
        init_params="ste",
        n_init=1,
        device=None,
        dtype="float32",
        chunk_size=None,
        learning_decay=0.6,
        learning_offset=1.0,
    ):
        _keep(self, locals())

    _constraints = {
        **hmm_constraints("ste"),
        "n_features": v.any_of(
            v.NONE, v.Interval(1, None, integer=True), description="None or an int >= 1"
        ),
        "min_prob": v.Interval(0, 1, open_low=True),
    }

    def _n_symbols(self) -> int:
        if self.n_features is not None:
            return int(self.n_features)
        if hasattr(self, "n_features_"):
            return int(self.n_features_)
        if hasattr(self, "emissionprob_"):
            return int(np.asarray(self.emissionprob_).shape[1])
        raise ValueError(
            "CategoricalHMM needs n_features (the number of symbols) or data to infer it from."
        )

    def _family(self):
        m = self._n_symbols()
        return Categorical(m, min(self.min_prob, 0.5 / m))

    def _n_features(self) -> int:
        return 1

    def _n_features_from_attributes(self) -> int:
        return 1

    @staticmethod
    def _values(params):
        return params.probs

    def _make_emission(self, d, shift, device):
        prior = (
            None if np.all(np.asarray(self.emissionprob_prior) == 1.0) else self.emissionprob_prior
        )
        return IndependentEmission(self._family(), "e", prior)

    def _values_from_attributes(self, device):
        k, m = self.n_components, self._n_symbols()
        values = as_float64(self.emissionprob_, "emissionprob_")
        if values.shape != (k, m):
            raise ValueError(
                f"emissionprob_ must have shape (n_components, n_features) = ({k}, {m}); got "
                f"{values.shape}."
            )
        self._check_set_values(values)
        sums = values.sum(1)
        if not np.allclose(sums, 1.0, rtol=0, atol=1e-6):
            raise ValueError(
                f"each row of emissionprob_ must sum to 1 (a distribution over the {m} symbols); "
                f"got row sums {sums.min():.6g} to {sums.max():.6g}. Normalise the rows."
            )
        return torch.as_tensor(values, dtype=f64, device=device)

    def _check_values(self, X) -> None:
        A = _as_numpy(X)
        if A.ndim != 2 or A.shape[1] != 1:
            raise ValueError(
                f"CategoricalHMM reads one column of integer symbols, shape (n_samples, 1); got "
                f"shape {A.shape}. Encode several categorical features as one symbol each row."
            )
        bad = (A < 0) | (A != np.floor(A))
        if bad.any():
            row, col = _first_bad(bad)
            raise ValueError(
                f"CategoricalHMM needs non-negative integer symbols; X has {A[row, col]:g} at "
                f"{_where(row, col, None, 0)}. Map the categories to 0 … M−1 first (e.g. "
                "sklearn.preprocessing.OrdinalEncoder)."
            )

    def _check_fitted_values(self, X) -> None:
        if np.size(X):
            _check_alphabet(int(np.max(_as_numpy(X))) + 1, self._n_symbols())

    def _prepare(self, X, lengths, sample_weight, comm, reset, least):
        rows, rest = super()._prepare(X, lengths, sample_weight, comm, reset, least)
        top = int(np.max(_as_numpy(rows), initial=-1)) + 1
        inferred = self.n_features is None and not (
            "e" not in self.init_params and hasattr(self, "emissionprob_")
        )
        if reset and inferred:  # across ranks: the largest symbol over every rank
            self.n_features_ = int(comm.max(float(top))) if comm.active else top
            return rows, rest
        m = self.n_features if self.n_features is not None else self._n_symbols()
        _check_alphabet(top, m)
        if reset:
            self.n_features_ = int(m)
        return rows, rest

    def _init_emission(self, emission, rows, weights, shift, device, dtype, generator, comm):
        k, m = self.n_components, self._n_symbols()
        u = torch.rand(k, m, generator=generator, device=device, dtype=f64)
        u = comm.broadcast(u)
        family = self._family()
        return family.params_class(family._clip(u / u.sum(1, keepdim=True)))

    def _n_emission_parameters(self, d: int) -> int:
        return self.n_components * (self._n_symbols() - 1)

    def _sample_emission(self, states, rng):
        p = np.asarray(self.emissionprob_)[states]
        cum = np.cumsum(p, 1)
        u = rng.random_sample((len(states), 1))
        return np.minimum((u > cum).sum(1), p.shape[1] - 1).reshape(-1, 1).astype(np.int64)


# ====================================================================== mixtures per state
@register
class GMMHMM(BaseHMM):
    """Hidden Markov model whose states each emit from a Gaussian mixture (hmmlearn's
    GMMHMM).

    Besides the parameters below, it takes those every HMM shares (see
    :class:`lvmkit.estimators._hmm.BaseHMM`): ``n_components, startprob_prior,
    transmat_prior, algorithm, random_state, n_iter, tol, verbose, params, init_params,
    n_init, device, dtype, chunk_size, learning_decay, learning_offset``.

    Parameters
    ----------
    n_mix : int, default=1
        Gaussian components per state.
    covariance_type : {'diag', 'full', 'spherical', 'tied'}, default='diag'
        'tied': the components of a state share one covariance.
    min_covar : float, default=1e-3
        Added to the diagonal of every covariance estimate.


    Attributes
    ----------
    startprob_, transmat_, weights_ (K, M), means_ (K, M, D), covars_ (diag (K, M, D), full
    (K, M, D, D), spherical (K, M), tied (K, D, D)), and the fit's record.
    """

    _letters = "stmcw"
    _shifts_data = True

    def __init__(
        self,
        n_components=1,
        n_mix=1,
        covariance_type="diag",
        min_covar=1e-3,
        startprob_prior=1.0,
        transmat_prior=1.0,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="stmcw",
        init_params="stmcw",
        n_init=1,
        device=None,
        dtype="float32",
        chunk_size=None,
        learning_decay=0.6,
        learning_offset=1.0,
    ):
        _keep(self, locals())

    _constraints = {
        **hmm_constraints("stmcw"),
        "n_mix": v.Interval(1, None, integer=True),
        "covariance_type": v.Options(COVARIANCE_TYPES),
        "min_covar": v.Interval(0, None),
    }

    def _emission_is_set(self) -> bool:
        return all(hasattr(self, n) for n in ("weights_", "means_", "covars_"))

    def _n_features_from_attributes(self) -> int:
        return int(np.asarray(self.means_).shape[-1])

    def _make_emission(self, d, shift, device):
        return MixtureEmission(self.n_components, self.n_mix, self.covariance_type, self.min_covar)

    def _set_parts(self, letters: str, d: int, shift, device) -> dict:
        """The parts you set (``weights_``, ``means_``, ``covars_``) for ``letters`` of 'w', 'm',
        'c', checked, in the model's layout (K·M rows, model coordinates)."""
        k, m, ct = self.n_components, self.n_mix, self.covariance_type
        names = {"w": "weights_", "m": "means_", "c": "covars_"}
        out = {}
        for letter in letters:
            if not hasattr(self, names[letter]):
                raise ValueError(
                    f"init_params={self.init_params!r} leaves out {letter!r}, so "
                    f"{names[letter]} must be set before fit; set it, or add the letter to "
                    "init_params."
                )
        if "w" in letters:
            w = as_float64(self.weights_, "weights_")
            if w.shape != (k, m) or (w < 0).any() or not np.allclose(w.sum(1), 1.0, atol=1e-6):
                raise ValueError(
                    f"weights_ must be ({k}, {m}) non-negative rows summing to 1 (each state's "
                    f"mixture weights); got shape {w.shape}, row sums "
                    f"{np.round(w.sum(-1), 6).tolist() if w.ndim == 2 else '?'}."
                )
            out["w"] = torch.as_tensor(w, dtype=f64, device=device)
        if "m" in letters:
            mu = as_float64(self.means_, "means_")
            if mu.shape != (k, m, d):
                raise ValueError(f"means_ must have shape ({k}, {m}, {d}); got {mu.shape}.")
            out["m"] = torch.as_tensor(mu.reshape(k * m, d), dtype=f64, device=device) - shift
        if "c" in letters:
            cov = as_float64(self.covars_, "covars_")
            expected = {
                "full": (k, m, d, d), "diag": (k, m, d), "spherical": (k, m), "tied": (k, d, d),
            }[ct]  # fmt: skip
            if cov.shape != expected:
                raise ValueError(
                    f"covars_ for covariance_type={ct!r} must have shape {expected}; got "
                    f"{cov.shape}."
                )
            cov = np.repeat(cov, m, axis=0) if ct == "tied" else cov.reshape(k * m, *cov.shape[2:])
            c = torch.as_tensor(cov, dtype=f64, device=device)
            if ct in ("diag", "spherical"):
                bad = not bool((c > 0).all())
            else:
                bad = bool((torch.linalg.cholesky_ex(0.5 * (c + c.mT)).info > 0).any())
            if bad:
                raise ValueError(
                    "covars_ must hold positive variances / positive-definite matrices; got one "
                    "that is not."
                )
            out["c"] = c
        return out

    def _emission_from_attributes(self, shift, device):
        parts = self._set_parts("wmc", self._n_features_from_attributes(), shift, device)
        emission = self._make_emission(parts["m"].shape[1], shift, device)
        P, c = emission.family.precisions_cholesky(parts["c"])
        return MixtureEmissionParams(parts["w"], GaussianParams(parts["m"], P, covariances=c))

    def _emission_to_attributes(self, params: MixtureEmissionParams, shift) -> None:
        k, m, ct = self.n_components, self.n_mix, self.covariance_type
        g = params.gaussians
        d = g.means.shape[1]
        self.weights_ = v.to_numpy(params.weights)
        self.means_ = v.to_numpy(g.means + shift).reshape(k, m, d)
        cov = v.to_numpy(g.covariances)
        if ct == "tied":
            self.covars_ = cov.reshape(k, m, d, d)[:, 0]
        else:
            self.covars_ = cov.reshape(k, m, *cov.shape[1:])

    def _prediction_shift(self, device):
        d = self._n_features_from_attributes()
        means = np.asarray(self.means_, dtype=np.float64).reshape(-1, d)
        return torch.as_tensor(means.mean(0), dtype=f64, device=device)

    def _init_emission(self, emission, rows, weights, shift, device, dtype, generator, comm):
        k, m, ct = self.n_components, self.n_mix, self.covariance_type
        inner = "full" if ct == "tied" else ct
        states = _kmeans_components(
            Gaussian(inner, self.min_covar), k, rows, weights, shift, device, dtype, generator, comm
        ).components
        d = states.means.shape[1]
        cov = states.covariances.repeat_interleave(m, 0)
        # the M components of a state spread around its mean, half a standard deviation apart
        spread = torch.randn(k, m, d, generator=generator, device=device, dtype=f64)
        spread = comm.broadcast(spread)
        if inner == "full":
            sd = torch.sqrt(torch.diagonal(states.covariances, dim1=-2, dim2=-1))
        elif inner == "diag":
            sd = torch.sqrt(states.covariances)
        else:
            sd = torch.sqrt(states.covariances)[:, None].expand(k, d)
        means = (states.means[:, None, :] + 0.5 * sd[:, None, :] * spread).reshape(k * m, d)
        weights_km = torch.full((k, m), 1.0 / m, dtype=f64, device=device)
        given = self._set_parts("".join(c for c in "wmc" if c not in self.init_params), d,
                                shift, device)  # fmt: skip
        weights_km = given.get("w", weights_km)
        means, cov = given.get("m", means), given.get("c", cov)
        P, cov = emission.family.precisions_cholesky(cov)
        return MixtureEmissionParams(weights_km, GaussianParams(means, P, covariances=cov))

    def _n_emission_parameters(self, d: int) -> int:
        return self._make_emission(d, None, None).n_parameters(self.n_components, d)

    def _sample_emission(self, states, rng):
        k, m, ct = self.n_components, self.n_mix, self.covariance_type
        w = np.asarray(self.weights_)[states]
        comp = np.minimum((rng.random_sample((len(states), 1)) > np.cumsum(w, 1)).sum(1), m - 1)
        labels = torch.as_tensor(states * m + comp)
        d = self._n_features_from_attributes()
        means = torch.as_tensor(np.asarray(self.means_).reshape(k * m, d), dtype=f64)
        cov = np.asarray(self.covars_)
        cov = np.repeat(cov, m, 0) if ct == "tied" else cov.reshape(k * m, *cov.shape[2:])
        inner = "full" if ct == "tied" else ct
        generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        x = Gaussian(inner).sample(labels, means, torch.as_tensor(cov, dtype=f64), generator)
        return v.to_numpy(x)


def _check_alphabet(n_seen: int, m: int) -> None:
    """Symbols 0 … n_seen − 1 were seen; the alphabet has ``m``."""
    if n_seen > m:
        raise ValueError(
            f"Symbol {n_seen - 1} is outside the alphabet 0 … {m - 1} (n_features={m}). Set "
            f"n_features to at least {n_seen}, or check the data."
        )
