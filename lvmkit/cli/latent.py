"""``lvmkit transform`` and ``lvmkit impute``: the latent coordinates of every row, and the data
with its missing cells filled, for the models that have them (registered on the ``lvmkit`` group
by :mod:`lvmkit.cli.main`); and what the other commands need for models that read missing
values."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from lvmkit.cli.common import (
    CONTEXT,
    UserError,
    _data_options,
    _device_option,
    _echo_json,
    _json_option,
    _write_rows,
)

# (kind, class) of the models with latent coordinates, and of those that impute
LATENT_MODELS = (
    ("ppca", "ProbabilisticPCA"),
    ("fa", "FactorAnalysis"),
    ("mfa", "MixtureOfFactorAnalyzers"),
    ("vae", "VAE"),
)
IMPUTING_MODELS = (
    ("ppca", "ProbabilisticPCA"),
    ("fa", "FactorAnalysis"),
    ("mfa", "MixtureOfFactorAnalyzers"),
    ("gmm", "GaussianMixture"),
)


def _models_with(method: str, candidates) -> str:
    """'ProbabilisticPCA (ppca), ... and VAE (vae)': the candidates this lvmkit has with
    ``method``."""
    import lvmkit

    found = [
        f"{name} ({kind})"
        for kind, name in candidates
        if hasattr(getattr(lvmkit, name, None), method)
    ]
    if not found:
        return "no model of this lvmkit version"
    return found[0] if len(found) == 1 else ", ".join(found[:-1]) + " and " + found[-1]


def _needs(method: str, model_path: str):
    """The check ``_model_and_data`` runs on the loaded model before reading the data."""

    def check(est):
        if hasattr(est, method):
            return
        name = type(est).__name__
        if method == "transform":
            raise UserError(
                f"{model_path}: a {name} has no latent coordinates; 'lvmkit transform' is for "
                f"{_models_with('transform', LATENT_MODELS)} models. For a mixture's or an "
                f"HMM's soft assignment of every row try 'lvmkit predict {model_path} DATA "
                "--proba'."
            )
        raise UserError(
            f"{model_path}: a {name} cannot impute missing values; 'lvmkit impute' needs a model "
            f"that does: {_models_with('impute', IMPUTING_MODELS)}. Fit one on the data, e.g. "
            "'lvmkit fit ppca DATA --components 2 -o filler.lvm', and impute with it."
        )

    return check


def _in_file_units(values, recipe: dict):
    """Values read divided by the recipe's ``--scale``, back in the units of the file."""
    scale = recipe.get("scale")
    return values * scale if scale is not None and recipe.get("binarize") is None else values


@click.command(
    context_settings=CONTEXT,
    short_help="Latent coordinates of every row (ppca, fa, mfa, vae).",
)
@click.argument("model")
@click.argument("data")
@click.option(
    "-o", "--output", default=None, help="CSV file for the coordinates (default: stdout)."
)
@_data_options
@_device_option
@_json_option
def transform(model, data, output, columns, key, binarize, device, as_json):
    """Latent coordinates of every row of DATA under MODEL, as CSV with columns z1 .. zq.

    The posterior mean E[z | x] of probabilistic PCA, factor analysis and a mixture of factor
    analyzers (under each row's most probable component: 'lvmkit predict' gives it), and a VAE's
    encoder mean. Missing cells are handed to a model that takes missing values.
    """
    import numpy as np

    from lvmkit.cli.main import _model_and_data

    est, _, _, X, _, _ = _model_and_data(
        model, data, columns, key, binarize, device, check=_needs("transform", model)
    )
    Z = np.asarray(est.transform(X), dtype=np.float64)
    Z = Z.reshape(len(Z), -1)
    header = [f"z{j + 1}" for j in range(Z.shape[1])]
    columns_out = [Z[:, j] for j in range(Z.shape[1])]
    if as_json:
        if output:
            _write_rows(header, columns_out, output)
        _echo_json(
            {
                "model": model,
                "data": data,
                "output": output,
                "n_samples": len(Z),
                "n_latent": Z.shape[1],
                "columns": header,
                **({} if output else {"latent": Z}),
            }
        )
        return
    _write_rows(header, columns_out, output)
    if output:
        click.echo(
            f"wrote {len(Z)} rows of latent coordinates ({header[0]}"
            + (f" .. {header[-1]}" if len(header) > 1 else "")
            + f") to {output}"
        )


@click.command(
    context_settings=CONTEXT,
    short_help="Fill the missing cells of DATA (ppca, fa, mfa, gmm).",
)
@click.argument("model")
@click.argument("data")
@click.option(
    "-o",
    "--output",
    default=None,
    help="The filled data: a .csv file (default: CSV on stdout) or .npy.",
)
@_data_options
@_device_option
@_json_option
def impute(model, data, output, columns, key, binarize, device, as_json):
    """DATA with its missing cells filled by MODEL: E[x_missing | x_observed] of every row.

    Missing cells are empty CSV fields, NA, NaN, n/a, null, none or ?, nulls of a Parquet file,
    NaN in a NumPy file. The output has the model's columns, names kept, in the file's units;
    a summary of what was filled goes to stderr when the table goes to stdout.
    """
    import numpy as np

    from lvmkit.cli.main import _model_and_data

    est, _, meta, X, recipe, _ = _model_and_data(
        model, data, columns, key, binarize, device, missing=True, check=_needs("impute", model)
    )
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    gaps = np.isnan(X)
    filled = np.asarray(est.impute(X), dtype=np.float64).reshape(X.shape)
    left = int(np.isnan(filled).sum())
    if left:
        raise UserError(
            f"{model}: a {type(est).__name__} left {left} value(s) of {data} missing; check the "
            "rows with no observed value, or impute with another model."
        )
    filled = _in_file_units(filled, recipe)
    names = recipe.get("feature_names") or [f"x{j}" for j in range(X.shape[1])]
    n_filled, rows = int(gaps.sum()), int(gaps.any(1).sum())
    note = (
        f"filled {n_filled} missing value(s) in {rows} of {len(X)} rows"
        if n_filled
        else f"no missing values in the {len(X)} rows: the data are written unchanged"
    )
    if output and Path(output).suffix.lower() == ".npy":
        _write_npy(filled, output)
    elif output or not as_json:
        _write_rows(list(names), [filled[:, j] for j in range(filled.shape[1])], output)
    if as_json:
        per_column = {str(n): int(c) for n, c in zip(names, gaps.sum(0), strict=True)}
        _echo_json(
            {
                "model": model,
                "data": data,
                "output": output,
                "n_samples": len(X),
                "n_features": X.shape[1],
                "n_filled": n_filled,
                "rows_filled": rows,
                "filled_per_column": per_column,
                **({} if output else {"columns": list(names), "values": filled}),
            }
        )
    elif output:
        click.echo(f"{note}; wrote {output}")
    else:
        click.echo(note, err=True)


def _write_npy(values, output: str) -> None:
    import io

    import numpy as np

    from lvmkit._persist import write_atomic

    path = Path(output)
    if not path.parent.is_dir():
        raise UserError(f"-o {output}: the folder {path.parent} does not exist; create it first.")
    buffer = io.BytesIO()
    np.save(buffer, values)
    write_atomic(path, buffer.getvalue())


# ====================================================================== for the other commands
def learned_rows(est) -> list[tuple[str, str]]:
    """What ``lvmkit info`` adds for a linear-Gaussian model (latent dimension, explained
    variance, noise, log-likelihood); nothing for the others."""
    if not hasattr(est, "loadings_"):
        return []
    from lvmkit.plot.linear import learned_summary

    return learned_summary(est)


def load_pictures(est) -> None:
    """Import the figures of ``est``'s class (``lvmkit.plot.<its module>``), so that ``lvmkit
    plot`` draws what the report draws."""
    import importlib

    module = type(est).__module__
    if module.startswith("lvmkit."):
        try:
            importlib.import_module(f"lvmkit.plot.{module.rsplit('.', 1)[-1]}")
        except ImportError:
            pass


def rows_for_pictures(est, X):
    """``X`` for the pictures: whole for a model that draws missing values (its latent map and
    imputations read them), else its complete rows, with a warning when some are left out."""
    import numpy as np

    X = np.asarray(X)
    if X.dtype.kind != "f" or hasattr(est, "loadings_"):
        return X
    missing = np.isnan(X.reshape(len(X), -1)).any(1)
    if not missing.any():
        return X
    if missing.all():
        raise UserError(
            f"every row of the data has a missing value; a {type(est).__name__}'s pictures need "
            "complete rows. Fill them first with 'lvmkit impute MODEL DATA -o filled.csv'."
        )
    warnings.warn(
        f"{int(missing.sum())} of {len(X)} rows have missing values and are left out of the "
        f"pictures (a {type(est).__name__}'s need complete rows).",
        UserWarning,
        stacklevel=2,
    )
    return X[~missing]
