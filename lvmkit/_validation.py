"""Input checks shared by the estimators: arrays in, one message format for bad parameters.

Accepted inputs are NumPy arrays (memory-mapped included), torch tensors (kept on their device)
and pandas DataFrames. Every error names what was wrong, what was expected, what was received and
what to try.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "Interval",
    "Options",
    "any_of",
    "validate_params",
    "check_X",
    "check_fitted",
    "resolve_dtype",
    "resolve_device",
    "as_tensor",
    "to_numpy",
    "warn",
]


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Interval:
    """A number in [low, high] (``None`` = unbounded); ``integer`` demands an int."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    open_low: bool = False

    def accepts(self, value) -> bool:
        if isinstance(value, bool):
            return False
        kind = numbers.Integral if self.integer else numbers.Real
        if not isinstance(value, kind):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        kind = "an int" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            lo = "(" if self.open_low else "["
            return f"{kind} in {lo}{self.low}, {self.high}]"
        if self.low is not None:
            return f"{kind} {'>' if self.open_low else '>='} {self.low}"
        return kind


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    values: tuple

    def accepts(self, value) -> bool:
        return any(value is v or (type(value) is type(v) and value == v) for v in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class _AnyOf:
    def __init__(self, *constraints, description: str):
        self.constraints = constraints
        self.description = description

    def accepts(self, value) -> bool:
        return any(c.accepts(value) for c in self.constraints)

    def describe(self) -> str:
        return self.description


class _Predicate:
    def __init__(self, test, description: str):
        self.test, self.description = test, description

    def accepts(self, value) -> bool:
        return bool(self.test(value))

    def describe(self) -> str:
        return self.description


def any_of(*constraints, description: str):
    return _AnyOf(*constraints, description=description)


NONE = Options((None,))
BOOL = _Predicate(lambda v: isinstance(v, (bool, np.bool_)), "True or False")
ARRAY_LIKE = _Predicate(
    lambda v: hasattr(v, "__array__") or isinstance(v, (list, tuple, torch.Tensor)),
    "an array-like",
)
RANDOM_STATE = _Predicate(
    lambda v: (
        v is None
        or (isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v < 2**32)
        or isinstance(v, np.random.RandomState)
    ),
    "None, an int in [0, 2**32) or a numpy RandomState",
)
DTYPE = Options(("float32", "float64", torch.float32, torch.float64))
DEVICE = _Predicate(
    lambda v: v is None or isinstance(v, (str, torch.device)),
    "None, 'cpu', 'cuda' or a torch.device",
)


def validate_params(estimator, constraints: dict, hints: dict | None = None) -> None:
    """Check every hyperparameter of ``estimator`` against ``constraints``."""
    hints = hints or {}
    for name, constraint in constraints.items():
        value = getattr(estimator, name)
        if not constraint.accepts(value):
            hint = hints.get(name)
            raise ValueError(
                f"{type(estimator).__name__}: parameter {name!r} must be {constraint.describe()}; "
                f"got {value!r} ({type(value).__name__})." + (f" {hint}" if hint else "")
            )


def resolve_dtype(dtype) -> torch.dtype:
    table = {"float32": torch.float32, "float64": torch.float64}
    if isinstance(dtype, torch.dtype) and dtype in table.values():
        return dtype
    if isinstance(dtype, str) and dtype in table:
        return table[dtype]
    if dtype in (np.float32, np.float64):
        return table[np.dtype(dtype).name]
    raise ValueError(
        f"dtype must be 'float32' or 'float64'; got {dtype!r}. Use 'float64' for exact "
        "comparisons and 'float32' for speed."
    )


def resolve_device(device, X=None) -> torch.device:
    """The compute device: the one asked for, else a tensor input's own device, else the CPU."""
    if device is None:
        return X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this machine; "
            "use device='cpu' (or None)."
        )
    return dev


# --------------------------------------------------------------------------- data
def _describe_nonfinite(mask_nan, mask_inf, what: str) -> str | None:
    for mask, name in ((mask_nan, "NaN"), (mask_inf, "inf")):
        count = int(mask.sum())
        if count:
            row, col = (int(i) for i in np.argwhere(np.asarray(mask))[0])
            return (
                f"{what} contains {count} {name} value(s) (the first at row {row}, column {col}); "
                f"a {'missing' if name == 'NaN' else 'infinite'} value has no likelihood. "
                "Drop those rows, impute them (sklearn.impute.SimpleImputer), or use a model that "
                "marginalizes missing values (GaussianMixture full or diag, ProbabilisticPCA, "
                "FactorAnalysis, MixtureOfFactorAnalyzers)."
            )
    return None


def check_X(
    estimator, X, *, reset: bool, min_samples: int = 1, what: str = "X", allow_nan: bool = False
):
    """Validate a 2-D data set; return a float tensor (kept on its device) or a NumPy array.

    ``reset=True`` (fit) records ``n_features_in_`` (and ``feature_names_in_`` for frames);
    ``reset=False`` (predict, score) checks the feature count against them. ``allow_nan``: NaN
    marks a missing value (models that marginalize them); infinities are still refused.
    """
    name = type(estimator).__name__
    if isinstance(X, torch.Tensor):
        if X.ndim != 2:
            raise ValueError(
                f"Expected 2D array, got a {X.ndim}D tensor of shape {tuple(X.shape)} instead. "
                "Reshape your data either using X.reshape(-1, 1) if your data has a single "
                "feature or X.reshape(1, -1) if it contains a single sample."
            )
        if not (X.is_floating_point() or X.dtype in (torch.int32, torch.int64, torch.uint8)):
            raise ValueError(f"{what} must hold real numbers; got a tensor of dtype {X.dtype}.")
        X = X if X.is_floating_point() else X.to(torch.float64)
        if X.shape[0] < min_samples:
            raise ValueError(
                f"Found array with {X.shape[0]} sample(s) (shape={tuple(X.shape)}) while a "
                f"minimum of {min_samples} is required by {name}."
            )
        if X.shape[1] == 0:
            raise ValueError(f"{what} has 0 features (shape={tuple(X.shape)}); give at least 1.")
        if not bool(torch.isfinite(X).all()):
            inf = torch.isinf(X).cpu()
            if not allow_nan or bool(inf.any()):
                nan = torch.zeros_like(inf) if allow_nan else torch.isnan(X).cpu()
                raise ValueError(_describe_nonfinite(nan, inf, what))
        _check_n_features(estimator, X.shape[1], reset)
        return X
    memmap = isinstance(X, np.memmap)
    X = validate_data(
        estimator,
        X,
        reset=reset,
        dtype=[np.float64, np.float32],
        ensure_min_samples=min_samples,
        ensure_all_finite=False,
        copy=False,
    )
    if memmap:
        # Check a file larger than memory a block at a time.
        step = max(1, 2**24 // max(X.shape[1], 1))
        for start in range(0, X.shape[0], step):
            _raise_if_nonfinite(X[start : start + step], what, offset=start, allow_nan=allow_nan)
    else:
        _raise_if_nonfinite(X, what, allow_nan=allow_nan)
    return X


def _raise_if_nonfinite(block: np.ndarray, what: str, offset: int = 0, allow_nan=False) -> None:
    if np.isfinite(block).all():
        return
    inf = np.isinf(block)
    if allow_nan and not inf.any():
        return
    nan = np.zeros(block.shape, dtype=bool) if allow_nan else np.isnan(block)
    message = _describe_nonfinite(nan, inf, what)
    if offset:
        message = message.replace("row ", f"row {offset} + ", 1)
    raise ValueError(message)


def _check_n_features(estimator, n_features: int, reset: bool) -> None:
    if reset:
        estimator.n_features_in_ = n_features
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
        return
    expected = getattr(estimator, "n_features_in_", None)
    if expected is not None and n_features != expected:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{expected} features as input (the number it was fitted with)."
        )


def check_fitted(estimator) -> None:
    check_is_fitted(estimator, attributes=["weights_"])


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def as_tensor(array, device=None, dtype=torch.float64) -> torch.Tensor:
    """A tensor of ``array`` on ``device`` in ``dtype``, never writing to the source.

    Read-only NumPy arrays (memory-mapped files, broadcast views) are only read here, so torch's
    warning about non-writable arrays does not apply and is silenced.
    """
    if isinstance(array, torch.Tensor):
        return array.to(device=device, dtype=dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(np.asarray(array)).to(device=device, dtype=dtype)


def square_limit(dtype, n_features: int) -> float:
    """The largest value whose square, summed over ``n_features`` with room to spare (10x),
    stays finite in ``dtype``: what the E-steps, statistics and networks may be given."""
    return math.sqrt(torch.finfo(dtype).max / (10.0 * max(int(n_features), 1)))


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first caller outside lvmkit (the user's line; the
    frames of ``contextlib``, through which lvmkit's context managers warn, are skipped too)."""
    import sys

    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(
        ("lvmkit", "contextlib")
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
