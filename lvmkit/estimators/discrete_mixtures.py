"""``lvmkit.PoissonMixture`` and ``lvmkit.BernoulliMixture``: mixtures
of independent counts or bits.

Both have GaussianMixture's contract (``weights_``, ``lower_bound_``, ``lower_bounds_``,
``restarts_``, ``predict_proba``, ``score_samples``, ``sample``,
``bic``, ``aic``, ``sample_weight``,
``algorithm``), with one (K, D) parameter array: ``rates_`` or ``probs_``.
"""

from __future__ import annotations

import numpy as np
import torch

from lvmkit import _validation as v
from lvmkit._persist import register
from lvmkit.estimators import _ranks as ranks
from lvmkit.estimators._mixture import (
    RESP_INITS,
    BaseMixture,
    as_float64,
    check_representable,
    common_constraints,
    expect_shape,
)
from lvmkit.families.bernoulli import Bernoulli, BernoulliParams
from lvmkit.families.poisson import Poisson, PoissonParams
from lvmkit.models.mixture import MixtureParams

INIT_PARAMS = RESP_INITS + ("lecture",)

_SHARED_DOC = """
    n_components : int, default=1
    tol : float, default=1e-3
        Fitting stops when the lower bound (mean log-likelihood per sample) changes by less.
    max_iter : int, default=100
    n_init : int, default=1
        Restarts; the best is kept and every restart's final bound is in ``restarts_``.
    init_params : str, default='kmeans'
        'kmeans', 'kmeans++', 'random', 'random_from_data' or 'lecture'. The first four as
        GaussianMixture's; 'lecture' puts every component halfway between a random data
        point and the data's mean, with uniform weights.
    weights_init : array-like (K,), optional
    random_state, warm_start, verbose, verbose_interval
        As GaussianMixture's.
    algorithm : {{'em', 'gem', 'gradient', 'stepwise'}}, default='em'
        As GaussianMixture's; the gradient algorithms move {name} through {unconstrained}.
    gem_steps, learning_rate, device, dtype, chunk_size, batch_size, learning_decay, learning_offset
        As GaussianMixture's.

    Attributes
    ----------
    weights_ : ndarray (K,)
    {name}_ : ndarray (K, D)
    converged_, n_iter_, lower_bound_, lower_bounds_,
    lower_bound_seconds_, restarts_, n_features_in_
        As GaussianMixture's.
"""


class _IndependentFeaturesMixture(BaseMixture):
    """A mixture whose components are products over features of one-parameter families."""

    _name = ""  # the fitted attribute without its trailing underscore: 'rates' or 'probs'
    _checks_values = True
    _params_class = None

    def _values_bounds(self) -> tuple[float, float]:
        raise NotImplementedError

    def _check_values(self, X, origin=None, start=0) -> None:
        raise NotImplementedError

    def _check_user_init(self, family, n_features: int, device) -> dict:
        given = getattr(self, f"{self._name}_init")
        if given is None:
            return {}
        arr = as_float64(given, f"{self._name}_init")
        expect_shape(
            arr, (self.n_components, n_features), f"{self._name}_init", "(n_components, n_features)"
        )
        low, high = self._values_bounds()
        if (arr < low).any() or (arr > high).any():
            raise ValueError(
                f"{self._name}_init must lie in [{low:g}, {high:g}]; got values from "
                f"{arr.min():.3g} to {arr.max():.3g}. Clip them, e.g. np.clip({self._name}_init, "
                f"{low:g}, {high:g})."
            )
        return {"values": torch.as_tensor(arr, dtype=torch.float64, device=device)}

    def _store(self, params: MixtureParams, shift) -> None:
        self.weights_ = v.to_numpy(params.weights)
        setattr(self, f"{self._name}_", v.to_numpy(getattr(params.components, self._name)))

    def _fitted_parameters(self, shift, device) -> MixtureParams:
        weights = torch.as_tensor(self.weights_, dtype=torch.float64, device=device)
        values = torch.as_tensor(
            getattr(self, f"{self._name}_"), dtype=torch.float64, device=device
        )
        return MixtureParams(weights, self._params_class(values))

    def _n_family_parameters(self, n_features: int) -> int:
        return self.n_components * n_features

    def _sample_family(self, labels, generator):
        values = torch.as_tensor(getattr(self, f"{self._name}_"), dtype=torch.float64)
        return self._make_family().sample(labels, values, generator)


def _first_bad(mask: np.ndarray) -> tuple[int, int]:
    row, col = np.argwhere(mask)[0]
    return int(row), int(col)


def _where(row: int, col: int, origin: str | None, start: int) -> str:
    """'row R, column C' of in-memory data, or 'row R, column C of FILE' of streamed rows."""
    place = f"row {start + row}, column {col}"
    return place if origin is None else f"{place} of {origin}"


def _as_numpy(X) -> np.ndarray:
    return X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)


@register
class PoissonMixture(_IndependentFeaturesMixture):
    __doc__ = """Mixture of independent Poisson counts, fitted by EM (or its gradient views).

    p(x) = Σ_k π_k Π_d Poisson(x_d; λ_kd), for non-negative integer count vectors.

    Parameters
    ----------
    min_rate : float, default=1e-6
        Lower bound on every rate, so a count never seen in a component keeps a finite
        log-probability.
    rates_init : array-like (K, D), optional
        Initial rates (each >= min_rate).""" + _SHARED_DOC.format(
        name="rates", unconstrained="their logarithms"
    )

    _name = "rates"
    _params_class = PoissonParams
    _constraints = {
        **common_constraints(INIT_PARAMS),
        "min_rate": v.Interval(0, None, open_low=True),
        "rates_init": v.any_of(v.NONE, v.ARRAY_LIKE, description="None or an array-like"),
    }

    def __init__(
        self,
        n_components=1,
        *,
        tol=1e-3,
        min_rate=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        rates_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        algorithm="em",
        gem_steps=10,
        learning_rate=1.0,
        device=None,
        dtype="float32",
        chunk_size=None,
        batch_size=10_000,
        learning_decay=0.6,
        learning_offset=2.0,
    ):
        self.n_components = n_components
        self.tol = tol
        self.min_rate = min_rate
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.rates_init = rates_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.algorithm = algorithm
        self.gem_steps = gem_steps
        self.learning_rate = learning_rate
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.batch_size = batch_size
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    def _make_family(self) -> Poisson:
        return Poisson(self.min_rate)

    def _values_bounds(self):
        return self.min_rate, float("inf")

    def _check_values(self, X, origin=None, start=0) -> None:
        check_counts(X, "PoissonMixture", self.dtype, "GaussianMixture", origin, start)


@register
class BernoulliMixture(_IndependentFeaturesMixture):
    __doc__ = """Mixture of independent Bernoulli features, fitted by EM (or its gradient views).

    p(x) = Σ_k π_k Π_d p_kd^x_d (1 − p_kd)^(1 − x_d), for binary vectors such as binarized
    images. Values other than 0 and 1 are an error: binarize first.

    Parameters
    ----------
    min_prob : float, default=1e-6
        Probabilities are kept in [min_prob, 1 − min_prob], so a pixel never seen on (or off) in
        a component keeps a finite log-probability.
    probs_init : array-like (K, D), optional
        Initial probabilities (each in [min_prob, 1 − min_prob]).""" + _SHARED_DOC.format(
        name="probs", unconstrained="their logits"
    )

    _name = "probs"
    _params_class = BernoulliParams
    _constraints = {
        **common_constraints(INIT_PARAMS),
        "min_prob": v.Interval(0, 0.5, open_low=True),
        "probs_init": v.any_of(v.NONE, v.ARRAY_LIKE, description="None or an array-like"),
    }

    def __init__(
        self,
        n_components=1,
        *,
        tol=1e-3,
        min_prob=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        probs_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        algorithm="em",
        gem_steps=10,
        learning_rate=1.0,
        device=None,
        dtype="float32",
        chunk_size=None,
        batch_size=10_000,
        learning_decay=0.6,
        learning_offset=2.0,
    ):
        self.n_components = n_components
        self.tol = tol
        self.min_prob = min_prob
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.probs_init = probs_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.algorithm = algorithm
        self.gem_steps = gem_steps
        self.learning_rate = learning_rate
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.batch_size = batch_size
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    def _make_family(self) -> Bernoulli:
        flip = getattr(self, "flipped_", None)
        return Bernoulli(
            self.min_prob, None if flip is None else torch.as_tensor(flip, dtype=torch.float64)
        )

    def _choose_reference(self, data, comm) -> None:
        """Flip the features that are 1 in most rows (see :class:`Bernoulli`): their means over
        every rank's rows, one pass over streamed data."""
        self.flipped_ = ranks.moments(data, comm)[0] > 0.5

    def _check_user_init(self, family, n_features: int, device) -> dict:
        user = super()._check_user_init(family, n_features, device)
        if "values" in user:
            user["values"] = family.flipped(user["values"])
        return user

    def _store(self, params: MixtureParams, shift) -> None:
        self.weights_ = v.to_numpy(params.weights)
        self.probs_ = v.to_numpy(self._make_family().flipped(params.components.probs))

    def _fitted_parameters(self, shift, device) -> MixtureParams:
        params = super()._fitted_parameters(shift, device)
        return MixtureParams(
            params.weights, BernoulliParams(self._make_family().flipped(params.components.probs))
        )

    def _values_bounds(self):
        return self.min_prob, 1.0 - self.min_prob

    def _check_values(self, X, origin=None, start=0) -> None:
        check_binary(X, "BernoulliMixture", origin, start)


def check_counts(X, owner: str, dtype, alternative: str, origin=None, start: int = 0) -> None:
    """Raise a ValueError naming ``owner`` unless ``X`` holds non-negative integer counts whose
    size the compute ``dtype`` can square (rows numbered from ``start`` within ``origin``)."""
    A = _as_numpy(X)
    negative = A < 0
    if negative.any():
        row, col = _first_bad(negative)
        raise ValueError(
            f"{owner} needs non-negative counts; X has {int(negative.sum())} negative "
            f"value(s), the first {A[row, col]:g} at {_where(row, col, origin, start)}. Check "
            f"the data, or use {alternative} for real-valued features."
        )
    fractional = A != np.floor(A)
    if fractional.any():
        row, col = _first_bad(fractional)
        raise ValueError(
            f"{owner} needs integer counts; X has {int(fractional.sum())} non-integer "
            f"value(s), the first {A[row, col]:g} at {_where(row, col, origin, start)}. Round "
            f"them (np.rint) if they are counts, or use {alternative} for real-valued features."
        )
    if A.size:
        check_representable(
            float(A.max()), A.shape[1], dtype, "largest count", "Check that these are counts"
        )


def check_binary(X, owner: str, origin=None, start: int = 0) -> None:
    """Raise a ValueError naming ``owner`` unless every value of ``X`` is 0 or 1."""
    A = _as_numpy(X)
    bad = (A != 0) & (A != 1)
    if bad.any():
        row, col = _first_bad(bad)
        raise ValueError(
            f"{owner} needs binary data (0 or 1); X has {int(bad.sum())} other "
            f"value(s), the first {A[row, col]:g} at {_where(row, col, origin, start)}. "
            f"Binarize first, e.g. (X > threshold).astype(float) or "
            f"sklearn.preprocessing.Binarizer; for grey levels in [0, 1] a random draw "
            f"np.random.rand(*X.shape) < X is the standard 'dynamic' binarization."
        )
