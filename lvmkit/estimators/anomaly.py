"""``MixtureAnomalyDetector``: flag the samples a fitted density finds improbable.

A mixture (or any density estimator with ``score_samples``) is fitted to data assumed normal;
a sample whose log-density falls below a threshold is an outlier. The detector follows
scikit-learn's outlier-detector contract (``IsolationForest``, ``LocalOutlierFactor``):
``predict`` returns +1 for inliers and -1 for outliers, and
``decision_function(X) = score_samples(X) - offset_`` is positive for inliers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, MetaEstimatorMixin, OutlierMixin, clone
from sklearn.utils.validation import check_is_fitted

from lvmkit import _validation as v
from lvmkit._persist import Persistent, get_nested, register, set_nested

__all__ = ["MixtureAnomalyDetector"]

DEFAULT_CONTAMINATION = 0.01


@register
class MixtureAnomalyDetector(Persistent, OutlierMixin, MetaEstimatorMixin, BaseEstimator):
    """Outlier detection by the log-density of a fitted mixture.

    ``fit(X)`` fits a clone of ``estimator`` to ``X`` (taken to be normal data) and sets the
    log-density threshold ``threshold_`` by exactly one rule:

    - ``contamination=c`` (the default rule, c = 0.01 when neither parameter is given): the
      c-quantile of the training log-densities, so a share c of the training rows falls below
      it and is flagged. Use it when you know (or will accept) an expected outlier rate.
    - ``threshold=t``: the log-density t itself (nats), whatever the training data. Use it
      for a fixed, interpretable cut, e.g. one chosen on validation data.

    Giving both is an error.

    Parameters
    ----------
    estimator : density estimator
        Unfitted template with ``fit`` and ``score_samples`` (log-density per sample), e.g.
        ``lvmkit.GaussianMixture(n_components=5)``; cloned in ``fit``.
    contamination : float in (0, 0.5] or None, default=None
        Expected share of outliers in the training data. None means 0.01 unless ``threshold``
        is given.
    threshold : float or None, default=None
        Log-density below which a sample is an outlier.

    Attributes
    ----------
    estimator_ : fitted estimator
    threshold_ : float
        The log-density threshold in effect (nats).
    offset_ : float
        Equal to ``threshold_``: ``decision_function(X) = score_samples(X) - offset_``, as in
        scikit-learn's detectors.
    n_features_in_ : int
    feature_names_in_ : ndarray, only when fitted on a DataFrame with string column names.

    Examples
    --------
    >>> detector = MixtureAnomalyDetector(GaussianMixture(4), contamination=0.02).fit(X_normal)
    >>> detector.predict(X_new)          # +1 inlier, -1 outlier           # doctest: +SKIP
    """

    _constraints = {
        "contamination": v.any_of(
            v.NONE, v.Interval(0, 0.5, open_low=True), description="None or a number in (0, 0.5]"
        ),
        "threshold": v.any_of(v.NONE, v.Interval(), description="None or a number (a log-density)"),
    }
    _hints = {
        "contamination": "It is the expected share of outliers among the training rows, e.g. 0.01.",
        "threshold": "It is a log-density in nats, e.g. a low quantile of score_samples(X).",
    }

    def __init__(self, estimator, contamination=None, threshold=None):
        self.estimator = estimator
        self.contamination = contamination
        self.threshold = threshold

    def fit(self, X, y=None):
        """Fit the density to ``X`` and set the threshold. ``y`` is ignored. Returns ``self``."""
        self._check_params()
        _refuse_gaps(X)
        estimator = clone(self.estimator).fit(X)
        if self.threshold is None:
            share = DEFAULT_CONTAMINATION if self.contamination is None else self.contamination
            threshold = float(np.quantile(estimator.score_samples(X), share))
        else:
            threshold = float(self.threshold)
        self.estimator_ = estimator
        self.threshold_ = threshold
        self.offset_ = threshold
        return self

    def score_samples(self, X) -> np.ndarray:
        """Log-density of every sample under the fitted estimator (higher = more normal)."""
        check_is_fitted(self, "estimator_")
        _refuse_gaps(X)
        return np.asarray(self.estimator_.score_samples(X), dtype=np.float64)

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_``: positive for inliers, negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """+1 for inliers (log-density >= ``threshold_``), -1 for outliers."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    # fit_predict comes from OutlierMixin: fit(X).predict(X).

    @property
    def n_features_in_(self) -> int:
        check_is_fitted(self, "estimator_")
        return self.estimator_.n_features_in_

    @property
    def feature_names_in_(self) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.feature_names_in_

    # ================================================================== persistence
    def _get_state(self) -> tuple[dict, dict]:
        check_is_fitted(self, "estimator_")
        nested = get_nested(self.estimator_, type(self).__name__)
        return {}, {"estimator_": nested, "threshold_": self.threshold_, "offset_": self.offset_}

    def _set_state(self, tensors: dict, extra: dict) -> None:
        self.estimator_ = set_nested(extra["estimator_"])
        self.threshold_ = extra["threshold_"]
        self.offset_ = extra["offset_"]

    def _check_params(self) -> None:
        v.validate_params(self, self._constraints, self._hints)
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError(
                f"MixtureAnomalyDetector: parameter 'threshold' must be a finite log-density; got "
                f"{self.threshold!r}. {self._hints['threshold']}"
            )
        if self.contamination is not None and self.threshold is not None:
            raise ValueError(
                "MixtureAnomalyDetector: give 'contamination' or 'threshold', not both (exactly "
                f"one rule sets the threshold); got contamination={self.contamination!r} and "
                f"threshold={self.threshold!r}. Leave one of them None."
            )
        missing = [m for m in ("fit", "score_samples") if not hasattr(self.estimator, m)]
        if missing:
            raise ValueError(
                "MixtureAnomalyDetector: parameter 'estimator' must be a density estimator with "
                f"fit and score_samples; got a {type(self.estimator).__name__} without "
                f"{' and '.join(missing)}. Pass e.g. lvmkit.GaussianMixture(n_components=3)."
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _refuse_gaps(X) -> None:
    """Rows with missing values have log-densities over fewer coordinates, which one threshold
    cannot compare with complete rows' (the density estimators themselves take NaN)."""
    if isinstance(X, torch.Tensor):
        values = X.detach().cpu().numpy()
    elif isinstance(X, (np.ndarray, list, tuple)) or hasattr(X, "to_numpy"):
        values = X.to_numpy() if hasattr(X, "to_numpy") else X
    else:
        return  # another array-like: the estimator checks it
    if np.iscomplexobj(values) or getattr(values, "dtype", None) is object:
        return  # the estimator names what is wrong
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return
    if np.isnan(array).any():
        row, col = (int(i) for i in np.argwhere(np.isnan(array))[0])
        raise ValueError(
            f"X contains NaN (the first at row {row}, column {col}); MixtureAnomalyDetector "
            "needs complete rows, because a row's log-density over fewer observed values is not "
            "comparable with one threshold. Impute them first (GaussianMixture(...).impute(X))."
        )
