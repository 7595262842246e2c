"""Choosing the number of mixture components, and seeing the local optima of the restarts.

``select_components`` fits one clone of a mixture estimator per candidate K on a training part
of the data and tabulates, for every K, the bound reached, the held-out log-likelihood, BIC, AIC,
iterations, time and the spread of the restarts; the best K by a criterion is then refitted on all
the data. ``restart_report`` lists the final bound of every restart of one fitted estimator.

Both work with any estimator that follows scikit-learn's ``GaussianMixture`` API (``fit``,
``score``, ``bic``, ``aic``, an ``n_components`` parameter, ``lower_bound_``, ``n_iter_``);
``restarts_`` (lvmkit's record of every restart) is used when present.
"""

from __future__ import annotations

import math
import numbers
import time

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from sklearn.utils import check_random_state

__all__ = ["CRITERIA", "restart_report", "select_components"]

# criterion name -> (table column, +1 when lower is better / -1 when higher is better)
CRITERIA = {
    "bic": ("bic", 1.0),
    "aic": ("aic", 1.0),
    "heldout": ("heldout_loglik", -1.0),
}

COLUMNS = (
    "n_components",
    "lower_bound",
    "heldout_loglik",
    "bic",
    "aic",
    "n_iter",
    "converged",
    "fit_seconds",
    "restarts_min",
    "restarts_max",
)


def select_components(
    estimator,
    X,
    n_components=range(1, 11),
    criterion: str = "bic",
    *,
    validation_fraction: float = 0.2,
    random_state=None,
    refit: bool = True,
    verbose: bool = False,
    sample_weight=None,
):
    """Fit ``estimator`` for every number of components in ``n_components``; pick the best.

    The rows of ``X`` are split once, at random: permuted by
    ``check_random_state(random_state).permutation(n_samples)``, the first
    ``ceil(validation_fraction * n_samples)`` are held out and the rest are the training part.
    For every K a clone of ``estimator`` with ``n_components=K`` is fitted on the training part.

    Parameters
    ----------
    estimator : mixture estimator, or a linear latent model
        Unfitted template, e.g. ``lvmkit.GaussianMixture(covariance_type='diag', n_init=4)``;
        ``ProbabilisticPCA()`` or ``FactorAnalysis()`` choose their latent dimension the same way
        (rows with missing values included), ``MixtureOfFactorAnalyzers`` its K.
        Any estimator with scikit-learn's ``GaussianMixture`` API works (scikit-learn's own
        included); its other parameters, ``random_state`` among them, are kept for every K.
    X : array-like (n_samples, n_features)
        NumPy array, torch tensor (kept on its device) or pandas DataFrame.
    n_components : iterable of int, default=range(1, 11)
        Candidate numbers of components; each at most the number of training rows.
    criterion : {'bic', 'aic', 'heldout'}, default='bic'
        'bic' and 'aic': the lowest information criterion wins. 'heldout': the highest mean
        held-out log-likelihood per sample wins. Ties go to the smallest K.
    validation_fraction : float in (0, 1), default=0.2
        Share of the rows held out (never fitted on) to measure ``heldout_loglik``.
    random_state : int, RandomState or None
        Seeds the split only (the estimator's own ``random_state`` seeds its fits).
    refit : bool, default=True
        Refit the best K on all of ``X`` and return that estimator. With ``refit=False`` the
        estimator returned is the one fitted on the training part.
    verbose : bool, default=False
        Print one line per K as it is fitted.
    sample_weight : array-like (n_samples,), optional
        Non-negative weights, split with the rows and passed to every ``fit``. A weight counts
        as that many copies of the row everywhere: ``heldout_loglik`` is the weighted mean over
        the held-out rows, and BIC and AIC use Σ w log p(x) with n = Σ w training weight.

    Returns
    -------
    table : pandas.DataFrame, one row per K (sorted by K)
        ``n_components``; ``lower_bound`` (the estimator's ``lower_bound_``: for EM, the mean
        log-likelihood per sample of the training rows, in nats); ``heldout_loglik`` (mean
        log-likelihood per held-out sample, ``estimator.score`` on the held-out rows); ``bic``
        and ``aic`` (computed on the **training** rows the model was fitted on, so they compare
        K with each other, not with values computed on all of ``X``); ``n_iter``;
        ``converged``; ``fit_seconds`` (wall time of ``fit``); ``restarts_min`` and
        ``restarts_max`` (the worst and best final bound of the restarts, NaN when the estimator
        does not record ``restarts_``).

        ``table.attrs`` holds ``criterion``, ``best_n_components``, ``n_train``, ``n_heldout``
        and ``restarts`` (a dict K -> list of every restart's final bound, for
        :func:`lvmkit.plot.selection.plot_restarts`).
    best_estimator : fitted estimator
        The best K by ``criterion``; fitted on all of ``X`` when ``refit=True``.

    Examples
    --------
    >>> table, best = select_components(GaussianMixture(n_init=3), X, range(1, 9), "bic",
    ...                                 random_state=0)                    # doctest: +SKIP
    >>> table[["n_components", "bic", "heldout_loglik"]]                   # doctest: +SKIP
    """
    if not isinstance(criterion, str) or criterion not in CRITERIA:
        raise ValueError(
            f"select_components: parameter 'criterion' must be one of "
            f"{', '.join(map(repr, CRITERIA))}; got {criterion!r}. Use 'bic' (the usual choice) "
            "or 'heldout' to compare held-out log-likelihoods."
        )
    _check_fraction(validation_fraction)
    _check_estimator(estimator)
    ks = _check_candidates(n_components)
    X = _as_rows(X)
    n_samples = _n_rows(X)
    n_heldout = math.ceil(validation_fraction * n_samples)
    n_train = n_samples - n_heldout
    if n_train < max(ks):
        raise ValueError(
            f"select_components: every value of 'n_components' must be at most the number of "
            f"training rows, {n_train} ({n_samples} rows minus {n_heldout} held out by "
            f"validation_fraction={validation_fraction}); got max(n_components) = {max(ks)}. "
            "Try fewer components, more data or a smaller validation_fraction."
        )
    order = check_random_state(random_state).permutation(n_samples)
    X_train = _take(X, np.sort(order[n_heldout:]))
    X_heldout = _take(X, np.sort(order[:n_heldout]))
    weights = _check_weights(sample_weight, n_samples)
    fit_kwargs, criteria = {}, _criteria
    if weights is not None:
        w_train, w_heldout = (
            weights[np.sort(order[n_heldout:])],
            weights[np.sort(order[:n_heldout])],
        )
        fit_kwargs = {"sample_weight": w_train}

        def weighted(model, X_tr, X_ho):
            return _weighted_criteria(model, X_tr, X_ho, w_train, w_heldout)

        criteria = weighted

    column, sign = CRITERIA[criterion]
    rows, restarts = [], {}
    best_value, best_fit = math.inf, None
    for k in ks:
        model = clone(estimator).set_params(n_components=k)
        start = time.perf_counter()
        model.fit(X_train, **fit_kwargs)
        seconds = time.perf_counter() - start
        bounds = np.asarray(getattr(model, "restarts_", [np.nan]), dtype=np.float64)
        heldout, bic, aic = criteria(model, X_train, X_heldout)
        row = {
            "n_components": k,
            "lower_bound": float(model.lower_bound_),
            "heldout_loglik": heldout,
            "bic": bic,
            "aic": aic,
            "n_iter": int(getattr(model, "n_iter_", 0)),  # 0: a closed form (PPCA)
            "converged": bool(getattr(model, "converged_", True)),
            "fit_seconds": seconds,
            "restarts_min": float(bounds.min()),
            "restarts_max": float(bounds.max()),
        }
        rows.append(row)
        restarts[k] = bounds.tolist()
        value = sign * row[column]
        if value < best_value:  # strict: ties keep the smaller K; NaN never wins
            best_value, best_fit = value, model
        if verbose:
            print(
                f"K={k:<3d} lower bound {row['lower_bound']:.4f}"
                f"  held-out {row['heldout_loglik']:.4f}"
                f"  BIC {row['bic']:.1f}  AIC {row['aic']:.1f}  {row['n_iter']} iterations"
                f"  {seconds:.2f}s"
            )
    if best_fit is None:
        raise ValueError(
            f"select_components: criterion {criterion!r} is NaN for every K in {ks}, so none can "
            "be chosen. Check the data for degenerate features, or try another criterion."
        )

    table = pd.DataFrame(rows, columns=list(COLUMNS))
    best_k = int(best_fit.n_components)
    table.attrs.update(
        criterion=criterion,
        best_n_components=best_k,
        n_train=n_train,
        n_heldout=n_heldout,
        restarts=restarts,
    )
    if refit:
        best_fit = (
            clone(estimator)
            .set_params(n_components=best_k)
            .fit(X, **({} if weights is None else {"sample_weight": weights}))
        )
    return table, best_fit


def _criteria(model, X_train, X_heldout) -> tuple[float, float, float]:
    """(held-out mean log-likelihood, BIC, AIC on the training rows) of a fitted model."""
    return float(model.score(X_heldout)), float(model.bic(X_train)), float(model.aic(X_train))


def _weighted_criteria(model, X_train, X_heldout, w_train, w_heldout) -> tuple[float, float, float]:
    """The same with sample weights: a row of weight w counts w times."""
    n_parameters = model._n_parameters()
    total = float(np.dot(w_train, model.score_samples(X_train)))
    n = float(w_train.sum())
    held = float(w_heldout.sum())
    heldout = (
        float(np.dot(w_heldout, model.score_samples(X_heldout)) / held) if held > 0 else math.nan
    )
    return heldout, -2 * total + n_parameters * math.log(n), -2 * total + 2 * n_parameters


def _check_weights(sample_weight, n_samples: int):
    if sample_weight is None:
        return None
    if isinstance(sample_weight, torch.Tensor):
        sample_weight = sample_weight.detach().cpu().numpy()
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            "select_components: sample_weight must be numbers, one per row of X."
        ) from None
    if w.shape != (n_samples,) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(
            f"select_components: sample_weight must be {n_samples} finite, non-negative numbers "
            f"(one per row of X); got shape {w.shape}. Use 0 to leave a row out."
        )
    return w


def restart_report(estimator) -> pd.DataFrame:
    """The final lower bound of every restart of a fitted estimator, best first.

    Restarts that end below the best found a different (worse) local optimum; a large gap, or
    many restarts far from the best, says more restarts (``n_init``) are worth their time.

    ``estimator`` is a fitted estimator with ``restarts_`` (lvmkit's mixtures), or the array of
    final bounds itself (e.g. ``table.attrs['restarts'][k]`` from :func:`select_components`).

    Returns a DataFrame with columns ``restart`` (its number, in the order they ran),
    ``lower_bound`` (final bound, mean log-likelihood per sample in nats), ``gap_to_best``
    (best minus this bound, >= 0) and ``is_best``; sorted by ``lower_bound``, highest first.
    """
    if isinstance(estimator, (list, tuple, np.ndarray)):
        bounds = estimator
    else:
        bounds = getattr(estimator, "restarts_", None)
    if bounds is None:
        raise ValueError(
            f"restart_report: the estimator must be fitted and record 'restarts_' (the final "
            f"bound of every restart); got a {type(estimator).__name__} without it. Fit it first; "
            "scikit-learn's GaussianMixture does not record restarts, lvmkit.GaussianMixture does."
        )
    bounds = np.asarray(bounds, dtype=np.float64).ravel()
    best = np.max(bounds, initial=-np.inf, where=~np.isnan(bounds))
    frame = pd.DataFrame(
        {
            "restart": np.arange(len(bounds)),
            "lower_bound": bounds,
            "gap_to_best": best - bounds,
            "is_best": bounds == best,
        }
    )
    return frame.sort_values("lower_bound", ascending=False, kind="stable").reset_index(drop=True)


# ====================================================================== checks and rows
def _check_fraction(fraction) -> None:
    ok = isinstance(fraction, numbers.Real) and not isinstance(fraction, bool)
    if not ok or not 0 < fraction < 1:
        raise ValueError(
            "select_components: parameter 'validation_fraction' must be a number in (0, 1), the "
            f"share of rows held out; got {fraction!r}. Try 0.2."
        )


def _check_estimator(estimator) -> None:
    missing = [m for m in ("fit", "score", "bic", "aic", "get_params") if not hasattr(estimator, m)]
    if missing or "n_components" not in estimator.get_params():
        lacks = ", ".join(missing) if missing else "an 'n_components' parameter"
        raise ValueError(
            "select_components: parameter 'estimator' must follow scikit-learn's GaussianMixture "
            f"API (fit, score, bic, aic and an n_components parameter); got a "
            f"{type(estimator).__name__}, which lacks {lacks}. Pass e.g. lvmkit.GaussianMixture()."
        )


def _check_candidates(n_components) -> list[int]:
    if isinstance(n_components, numbers.Integral):
        raise ValueError(
            "select_components: parameter 'n_components' must be an iterable of ints (the "
            f"candidate K); got the single int {n_components!r}. Pass range(1, "
            f"{int(n_components) + 1}) to try 1..{n_components}, or [{n_components}] for one K."
        )
    try:
        values = list(n_components)
    except TypeError:
        values = None
    if not values:
        raise ValueError(
            "select_components: parameter 'n_components' must be a non-empty iterable of ints "
            f">= 1; got {n_components!r}. Try range(1, 11)."
        )
    bad = [k for k in values if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1]
    if bad:
        raise ValueError(
            "select_components: every value of 'n_components' must be an int >= 1; got "
            f"{bad[:5]!r} among {values!r}. Try range(1, 11)."
        )
    return sorted({int(k) for k in values})


def _as_rows(X):
    """X unchanged when it can be indexed by rows as is (array, tensor, frame); else an array."""
    if isinstance(X, (np.ndarray, torch.Tensor)) or hasattr(X, "iloc"):
        return X
    return np.asarray(X)


def _n_rows(X) -> int:
    if X.ndim != 2:
        raise ValueError(
            f"select_components: X must be 2-D (n_samples, n_features); got shape "
            f"{tuple(X.shape)}. Use X.reshape(-1, 1) for a single feature."
        )
    return int(X.shape[0])


def _take(X, index: np.ndarray):
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(index, device=X.device)]
    if hasattr(X, "iloc"):
        return X.iloc[index]
    return X[index]
