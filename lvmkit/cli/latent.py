"""``lvmkit transform`` and ``lvmkit impute``: the latent coordinates of every row (a topic model's
topic proportions of every document), and the data with its missing cells filled, for the models
that have them (registered on the ``lvmkit`` group by :mod:`lvmkit.cli.main`); and what the other
commands need for models that read missing values and for topic models (``info``'s topics,
``score``'s perplexity, ``plot`` and ``report``)."""

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
    _encoding_option,
    _is_topic_model,
    _json_option,
    _write_rows,
)

# (kind, class) of the models with latent coordinates, and of those that impute
LATENT_MODELS = (
    ("ppca", "ProbabilisticPCA"),
    ("fa", "FactorAnalysis"),
    ("mfa", "MixtureOfFactorAnalyzers"),
    ("vae", "VAE"),
    ("lda", "LatentDirichletAllocation"),
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
    short_help="Latent coordinates of every row (ppca, fa, mfa, vae; lda: topic proportions).",
)
@click.argument("model")
@click.argument("data")
@click.option(
    "-o", "--output", default=None, help="CSV file for the coordinates (default: stdout)."
)
@_data_options
@_encoding_option
@_device_option
@_json_option
def transform(model, data, output, columns, key, binarize, device, as_json):
    """Latent coordinates of every row of DATA under MODEL, as CSV with columns z1 .. zq.

    The posterior mean E[z | x] of probabilistic PCA, factor analysis and a mixture of factor
    analyzers (under each row's most probable component: 'lvmkit predict' gives it), and a VAE's
    encoder mean. Missing cells are handed to a model that takes missing values. For a topic model
    (lda) every document's topic proportions E[θ], columns document, topic1 .. topicK: DATA is
    text (a folder of .txt files or one document per line, counted on the model's vocabulary)
    or a table of counts.
    """
    import numpy as np

    from lvmkit.cli.main import _model_and_data

    est, _, _, X, recipe, _ = _model_and_data(
        model, data, columns, key, binarize, device, check=_needs("transform", model)
    )
    if recipe.get("documents"):
        return _transform_documents(est, X, recipe, model, data, output, as_json)
    Z = np.asarray(est.transform(X), dtype=np.float64)
    Z = Z.reshape(len(Z), -1)
    header = [f"z{j + 1}" for j in range(Z.shape[1])]
    counts = {"n_samples": len(Z), "n_latent": Z.shape[1]}
    span = header[0] + (f" .. {header[-1]}" if len(header) > 1 else "")
    _emit_table(
        header,
        [Z[:, j] for j in range(Z.shape[1])],
        model,
        data,
        output,
        as_json,
        counts,
        {"latent": Z},
        f"wrote {len(Z)} rows of latent coordinates ({span}) to {output}",
    )


def _emit_table(header, columns, model, data, output, as_json, counts, inline, done):
    """``transform``'s output: the table to ``output`` (or stdout), or with ``--json`` a summary
    holding ``counts`` (and the values ``inline`` when there is no ``output``)."""
    if as_json:
        if output:
            _write_rows(header, columns, output)
        summary = {"model": model, "data": data, "output": output, **counts, "columns": header}
        _echo_json({**summary, **({} if output else inline)})
        return
    _write_rows(header, columns, output)
    if output:
        click.echo(done)


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


def _transform_documents(est, X, recipe, model, data, output, as_json):
    """``lvmkit transform`` of a topic model: every document's topic proportions."""
    import numpy as np

    names = recipe["names"]
    theta = np.asarray(est.transform(X), dtype=np.float64)
    header = ["document"] + [f"topic{k + 1}" for k in range(theta.shape[1])]
    columns_out = [np.array(names, dtype=object)] + [theta[:, k] for k in range(theta.shape[1])]
    _emit_table(
        header,
        columns_out,
        model,
        data,
        output,
        as_json,
        {"n_documents": len(theta), "n_topics": theta.shape[1]},
        {"documents": names, "proportions": theta},
        f"wrote the topic proportions of {len(theta)} documents ({header[1]} .. {header[-1]}) "
        f"to {output}",
    )


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
    variance, noise, log-likelihood) and for a topic model (vocabulary, training perplexity,
    every topic's top words); nothing for the others."""
    if _is_topic_model(est):
        return topic_rows(est)
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


# ====================================================================== topic models
def topic_rows(est, n_words: int = 10) -> list[tuple[str, str]]:
    """``lvmkit info`` of a topic model: vocabulary, training perplexity and every topic's top
    words (``topic 1``, ...)."""
    import math

    from lvmkit.plot.lda import top_words

    vocabulary = getattr(est, "vocabulary_", None)
    rows = [
        (
            "vocabulary",
            f"{len(est.components_[0])} words"
            + ("" if vocabulary is not None else " (no vocabulary_ saved: words shown as x0, ...)"),
        ),
        ("learning", f"{est.learning_method}, {est.n_iter_} iteration(s)"),
    ]
    if getattr(est, "bound_", None) is not None:
        rows.append(("training perplexity", f"{est.bound_:.6g}"))
        rows.append(("training bound per word (nats)", f"{-math.log(est.bound_):.6g}"))
    for k, pairs in enumerate(top_words(est, n_words)):
        rows.append((f"topic {k + 1}", " ".join(word for word, _ in pairs)))
    return rows


def topics_json(est, n_words: int = 10) -> dict:
    """``lvmkit info --json``'s topics: every topic's top words and their probabilities."""
    if not _is_topic_model(est):
        return {}
    from lvmkit.plot.lda import top_words

    return {
        "topics": [
            {
                "topic": k + 1,
                "words": [word for word, _ in pairs],
                "probabilities": [p for _, p in pairs],
            }
            for k, pairs in enumerate(top_words(est, n_words))
        ]
    }


def score_documents(est, X, model, data, output, as_json) -> None:
    """``lvmkit score`` of a topic model: the documents' bound per word given the topics and its
    perplexity, beside scikit-learn's perplexity (one line; ``-o`` writes them as a one-row
    CSV). See :func:`lvmkit.plot.lda.corpus_fit`."""
    from lvmkit.plot.lda import corpus_fit

    fit = corpus_fit(est, X)
    header = ["documents", "words", "bound_per_word", "perplexity", "perplexity_with_topics"]
    if output:
        _write_rows(header, [[fit[name]] for name in _FIT_KEYS], output)
    if as_json:
        _echo_json({"model": model, "data": data, "output": output, **fit})
        return
    click.echo(
        f"{data}: {fit['n_documents']} documents, {fit['n_words']} words: perplexity "
        f"{fit['perplexity']:.2f}, bound {fit['bound_per_word']:.4f} nats per word given the "
        f"topics (scikit-learn's perplexity, with the topics' own term: "
        f"{fit['perplexity_with_topics']:.2f})" + (f"; wrote {output}" if output else "")
    )


_FIT_KEYS = ("n_documents", "n_words", "bound_per_word", "perplexity", "perplexity_with_topics")


def document_figure(est, X, recipe, dims, sequence):
    """``lvmkit plot`` of a topic model: the top words of every topic."""
    from lvmkit.plot.lda import plot_top_words, shown_topics

    for flag, value in (("--dims", dims), ("--sequence", sequence)):
        if value is not None:
            raise UserError(
                f"{flag} does not apply to a topic model (its picture is every topic's top "
                f"words); drop {flag}."
            )
    return plot_top_words(est, topics=shown_topics(est))


def document_report(est, X, recipe, output, *, title, seed, summary_extra):
    """``lvmkit report`` of a topic model: the page of :func:`lvmkit.plot.report.write_report`
    on the documents (kept sparse)."""
    from lvmkit._persist import write_atomic
    from lvmkit.plot.lda import lda_sections
    from lvmkit.plot.report import ReportContext, model_summary, render_html

    context = ReportContext(seed=seed, bic=False)
    context.extra["document_names"] = recipe.get("names")
    summary = model_summary(est) + list(summary_extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sections = lda_sections(est, X, context)
    page = render_html(title or f"lvmkit report: {type(est).__name__}", summary, sections)
    return write_atomic(Path(output), page.encode("utf-8"))
