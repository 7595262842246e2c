"""The ``lvmkit`` command: fit, select, score, predict, sample, plot, inspect and report on models
from the shell.

    lvmkit fit gmm data.csv --components 5 --covariance full -o model.lvm
    lvmkit select gmm data.csv --components 1:10 --criterion bic -o best.lvm
    lvmkit score model.lvm data.csv -o scores.csv
    lvmkit predict model.lvm data.csv --proba
    lvmkit sample model.lvm -n 64 -o samples.png
    lvmkit plot model.lvm data.csv -o clusters.png
    lvmkit info model.lvm --json
    lvmkit report model.lvm data.csv -o report.html
    lvmkit fit ppca data.csv --components 3 -o ppca.lvm
    lvmkit transform ppca.lvm data.csv -o latent.csv
    lvmkit impute ppca.lvm gappy.csv -o filled.csv
    lvmkit fit lda articles/ --topics 20 -o lda.lvm
    lvmkit demo

Errors a user can fix (a bad file, column, option value, a file that is not a model, data with the
wrong number of features) print one line, ``error: ...``, and exit with status 2; ``--debug``
(anywhere on the line, or LVMKIT_DEBUG=1) shows the traceback instead. Model kinds for ``fit``
and ``select`` come from :mod:`lvmkit.cli.kinds`; ``fit`` and ``select`` live in
:mod:`lvmkit.cli.fitting`, ``transform`` and ``impute`` in :mod:`lvmkit.cli.latent`, what the
commands share in :mod:`lvmkit.cli.common`, and what each rank does under torchrun in
:mod:`lvmkit.cli.ranks`.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

import click

from lvmkit.cli import ranks
from lvmkit.cli.common import (
    CONTEXT,
    IMAGE_SUFFIXES,
    UserError,
    _check_device,
    _check_features,
    _data_options,
    _device_option,
    _echo_json,
    _encoding_option,
    _fit_summary,
    _image_shape,
    _json_option,
    _lengths_option,
    _load_data,
    _load_documents,
    _load_model,
    _save_figure,
    _seed_everything,
    _seed_option,
    _write_rows,
)
from lvmkit.cli.fitting import fit_group, select_group
from lvmkit.cli.kinds import kind_of
from lvmkit.cli.latent import (
    document_figure,
    document_report,
    impute,
    learned_rows,
    load_pictures,
    rows_for_pictures,
    score_documents,
    topics_json,
    transform,
)
from lvmkit.cli.sequences import _load_sequences


# ====================================================================== the group
@click.group(context_settings=CONTEXT)
@click.version_option(package_name="lvmkit", prog_name="lvmkit")
@click.option(
    "--debug",
    is_flag=True,
    help="On an error, show the full traceback (also accepted anywhere on the line).",
)
def cli(debug):
    """lvmkit: latent variable models (mixtures, linear-Gaussian models, VAEs, HMMs, topic models)
    from the shell.

    Fit a model to a data file and save it, then score, predict, transform, impute, sample, plot,
    inspect and report with the saved model. Data files: CSV, .npy/.npz, Parquet, IDX, .amat, or
    a folder of images; for topic models (lda) text, a folder of .txt files or one document per
    line. Run 'lvmkit COMMAND --help' for a command's options.

    Under torchrun, 'lvmkit fit' of a mixture spreads the rows over the ranks (see the README,
    "More than one machine").
    """
    ranks.refuse_unless_fit(click.get_current_context().invoked_subcommand)


cli.add_command(fit_group)
cli.add_command(select_group)
cli.add_command(transform)
cli.add_command(impute)


# ====================================================================== using a model
def _model_and_data(
    model_path,
    data,
    columns,
    key,
    binarize,
    device,
    lengths_column=None,
    *,
    missing=None,
    check=None,
):
    """(model, saved state, metadata, X, data recipe, Sequences or None): the data as the model
    reads it; for a sequence model (an HMM) also how the rows split into sequences; for a topic
    model (lda) X is the documents' counts (SciPy CSR) and the recipe's ``documents`` and
    ``names`` say how they were read and what they are called. Missing cells are read as NaN when
    ``missing`` (None: when the model's kind takes missing values); ``check(model)`` runs before
    the data are read."""
    _check_device(device)
    model, state = _load_model(model_path, device)
    if check is not None:
        check(model)
    meta = state.get("metadata") or {}
    kind = kind_of(model)
    if missing is None:
        missing = kind is not None and kind.missing_values
    sequences = None
    if kind is not None and kind.sequences:
        X, sequences, recipe = _load_sequences(data, columns, key, binarize, lengths_column, meta)
    elif kind is not None and kind.documents:
        if lengths_column is not None:
            raise UserError(
                f"--lengths-column is for sequence models (hmm); {model_path} is a topic model. "
                "Drop --lengths-column."
            )
        X, names, _, recipe = _load_documents(
            data,
            columns,
            key,
            binarize,
            meta=meta,
            vocabulary=getattr(model, "vocabulary_", None),
            model_path=model_path,
        )
        recipe["names"] = names
    else:
        if lengths_column is not None:
            raise UserError(
                f"--lengths-column is for sequence models (hmm); {model_path} is a "
                f"{type(model).__name__}. Drop --lengths-column."
            )
        X, dataset, recipe = _load_data(
            data, columns, key, binarize, meta, kind.flatten if kind else True, missing
        )
    _check_features(model, X, data, meta)
    return model, state, meta, X, recipe, sequences


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.argument("data")
@click.option("-o", "--output", default=None, help="CSV file for the scores (default: stdout).")
@click.option(
    "--k",
    "k",
    type=click.IntRange(1),
    default=None,
    help="Estimate log p(x) by importance sampling with K samples per point from the "
    "encoder (lvmkit.log_marginal) instead of the ELBO; for a VAE. Try 5000.",
)
@_seed_option
@_data_options
@_encoding_option
@_lengths_option
@_device_option
@_json_option
def score(model, data, output, k, seed, columns, key, binarize, lengths_column, device, as_json):
    """Per-sample log-likelihood (or bound) of DATA under MODEL, as CSV.

    One row per sample, in order. For mixtures the exact log p(x) in nats; a model that can
    only bound it (a VAE) names its column after what it returns, or with --k estimates
    log p(x) by importance sampling (column log_px). For a sequence model (an HMM) one row per
    sequence: its id, length and log-likelihood (the total in --json). For a topic model (lda)
    one line: the documents' bound per word and perplexity (-o: as a one-row CSV).
    """
    import numpy as np

    est, state, meta, X, recipe, sequences = _model_and_data(
        model, data, columns, key, binarize, device, lengths_column
    )
    if recipe.get("documents"):
        if k is not None:
            raise UserError(
                f"--k (importance sampling) is for models with an encoder (a VAE); {model} is a "
                "topic model, scored by its bound per word and perplexity. Drop --k."
            )
        return score_documents(est, X, model, data, output, as_json)
    if sequences is not None and k is None:
        return _score_sequences(est, X, sequences, model, data, output, as_json)
    summary = {}
    if k is None:
        scores = est.score_samples(X)
        kind = kind_of(est)
        name = kind.score_name if kind else "log_likelihood"
        note = f"mean {float(scores.mean()):.4f}"
    else:
        scores, name, summary = _importance_scores(est, X, model, k, seed)
        note = (
            f"mean log p(x) {summary['mean']:.4f} ± {summary['stderr']:.4f} nats, "
            f"{summary['bits_per_dim']:.4f} bits/dim, k={k}, {summary['seconds']:.0f} s"
        )
    if as_json:
        if output:
            _write_rows([name], [scores], output)
        _echo_json(
            {
                "model": model,
                "data": data,
                "n_samples": len(scores),
                "score": name,
                "mean": float(np.mean(scores)),
                **summary,
                "scores": scores,
            }
        )
        return
    _write_rows([name], [scores], output)
    if output:
        click.echo(f"wrote {len(scores)} scores to {output} ({note})")
    elif summary:
        click.echo(note, err=True)


def _score_sequences(est, X, sequences, model, data, output, as_json):
    """``lvmkit score`` of a sequence model: the log-likelihood of every sequence."""
    import numpy as np

    scores = est.score_sequences(X, sequences.lengths)
    total = float(scores.sum())
    header = ["sequence", "length", "log_likelihood"]
    columns_out = [np.array(sequences.ids, dtype=object), sequences.lengths, scores]
    if as_json:
        if output:
            _write_rows(header, columns_out, output)
        _echo_json(
            {
                "model": model,
                "data": data,
                "n_samples": int(X.shape[0]),
                "n_sequences": len(scores),
                "score": "log_likelihood",
                "total": total,
                "per_row": total / max(int(X.shape[0]), 1),
                "sequences": sequences.ids,
                "lengths": sequences.lengths,
                "scores": scores,
            }
        )
        return
    _write_rows(header, columns_out, output)
    if output:
        click.echo(
            f"wrote {len(scores)} sequence scores to {output} (total {total:.4f} nats, "
            f"{total / max(int(X.shape[0]), 1):.4f} per row)"
        )


def _importance_scores(est, X, model_path, k, seed):
    """log p(x) per sample by importance sampling, for ``lvmkit score --k``."""
    from lvmkit.estimators.marginal import log_marginal

    if hasattr(est, "weights_"):
        raise UserError(
            f"{model_path}: a {type(est).__name__}'s score is the exact log p(x) already; "
            "--k (importance sampling) is for models with an encoder (a VAE). Drop --k."
        )
    if not hasattr(est, "encode_distribution"):
        raise UserError(
            f"{model_path}: a {type(est).__name__} has no probabilistic encoder, so it has no "
            "log p(x) to estimate; --k needs a VAE. Drop --k for its reconstruction score."
        )
    result = log_marginal(est, X, k=k, random_state=seed)
    summary = {
        "method": "importance",
        "k": k,
        "stderr": result.stderr,
        "bits_per_dim": result.bits_per_dim,
        "seconds": result.seconds,
    }
    return result.per_sample, "log_px", {"mean": result.mean, **summary}


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.argument("data")
@click.option(
    "--proba", is_flag=True, help="Posterior probability of every component instead of labels."
)
@click.option("-o", "--output", default=None, help="CSV file (default: stdout).")
@_data_options
@_lengths_option
@_device_option
@_json_option
def predict(model, data, proba, output, columns, key, binarize, lengths_column, device, as_json):
    """Most probable component (label) of every sample of DATA, or with --proba the posterior
    probability of each component. For a sequence model (an HMM): every row's state on the
    most probable path (Viterbi; column 'state'), or with --proba p(state | its sequence)."""
    est, state, meta, X, _, sequences = _model_and_data(
        model, data, columns, key, binarize, device, lengths_column
    )
    method = "predict_proba" if proba else "predict"
    if not hasattr(est, method):
        if hasattr(est, "transform") and not hasattr(est, "predict"):
            raise UserError(
                f"{model}: a {type(est).__name__} has no components to predict; 'lvmkit "
                f"transform {model} DATA' gives every row's latent coordinates, 'lvmkit score' "
                "its log-likelihood."
            )
        raise UserError(
            f"{model}: a {type(est).__name__} has no {method}; 'lvmkit score' gives "
            "its per-sample scores."
        )
    args = (X,) if sequences is None else (X, sequences.lengths)
    result = getattr(est, method)(*args)
    kind = kind_of(est)
    label = kind.label_name if kind else "label"
    if proba:
        header = [f"p{k}" for k in range(result.shape[1])]
        columns_out = [result[:, k] for k in range(result.shape[1])]
    else:
        header, columns_out = [label], [result]
    if as_json:
        if output:
            _write_rows(header, columns_out, output)
        _echo_json(
            {
                "model": model,
                "data": data,
                "n_samples": len(result),
                ("probabilities" if proba else f"{label}s"): result,
            }
        )
        return
    _write_rows(header, columns_out, output)
    if output:
        click.echo(f"wrote {len(result)} rows to {output}")


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.option(
    "-n",
    "n_samples",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="How many samples to draw.",
)
@click.option(
    "-o",
    "--output",
    default=None,
    help="out.csv (the samples) or out.png/.pdf/.svg (a picture); default: CSV on stdout.",
)
@_seed_option
@_device_option
@_json_option
def sample(model, n_samples, output, seed, device, as_json):
    """Draw samples from MODEL.

    A picture is an image grid when the model was fitted on images, a scatter for 2-D data,
    otherwise a pairwise plot of the first features.
    """
    import numpy as np

    _check_device(device)
    _seed_everything(seed)
    est, state = _load_model(model, device)
    if not hasattr(est, "sample"):
        raise UserError(
            f"{model}: a {type(est).__name__} does not draw samples; 'lvmkit info {model}' "
            "shows what it learned."
        )
    if "random_state" in est.get_params():
        est.set_params(random_state=seed)
    drawn = est.sample(n_samples)
    samples, labels = drawn if isinstance(drawn, tuple) else (drawn, None)
    samples = np.asarray(samples)
    if labels is not None and (np.ndim(labels) != 1 or np.asarray(labels).dtype.kind not in "iu"):
        labels = None  # the latent coordinates of a linear-Gaussian model's draws, not labels
    meta = state.get("metadata") or {}
    recipe = meta.get("data") or {}
    kind = kind_of(est)
    if kind is not None and kind.sequences:
        return _sample_sequence(est, model, samples, labels, recipe, output, as_json)
    shape = _image_shape(est, recipe)
    if samples.ndim > 2:  # samples in their own shape (images)
        shape = tuple(samples.shape[1:])
        samples = samples.reshape(len(samples), -1)
    names = recipe.get("feature_names") or [f"x{i}" for i in range(samples.shape[1])]
    if as_json and not output:
        _echo_json(
            {
                "model": model,
                "samples": samples,
                **({"labels": labels} if labels is not None else {}),
            }
        )
        return
    if output and Path(output).suffix.lower() in IMAGE_SUFFIXES:
        from lvmkit.plot.figures import plot_samples

        fig = plot_samples(
            samples,
            labels,
            image_shape=shape,
            feature_names=names,
            title=f"{n_samples} samples from {Path(model).name}",
        )
        _save_figure(fig, output)
    else:
        _write_rows(names, [samples[:, j] for j in range(samples.shape[1])], output)
    if as_json:
        _echo_json({"model": model, "output": output, "n_samples": n_samples})
    elif output:
        click.echo(f"wrote {n_samples} samples to {output}")


def _sample_sequence(est, model, samples, states, recipe, output, as_json):
    """``lvmkit sample`` of a sequence model: one sequence of n steps and its states."""
    n = len(samples)
    names = recipe.get("feature_names") or [f"x{i}" for i in range(samples.shape[1])]
    if as_json and not output:
        _echo_json({"model": model, "samples": samples, "states": states})
        return
    if output and Path(output).suffix.lower() in IMAGE_SUFFIXES:
        from lvmkit.plot.hmm import plot_sequence

        fig = plot_sequence(
            est,
            samples,
            states,
            feature_names=names,
            title=f"a sequence of {n} steps drawn from {Path(model).name}, by its states",
        )
        _save_figure(fig, output)
    else:
        columns_out = [samples[:, j] for j in range(samples.shape[1])] + [states]
        _write_rows([*names, "state"], columns_out, output)
    if as_json:
        _echo_json({"model": model, "output": output, "n_samples": n})
    elif output:
        click.echo(f"wrote a sequence of {n} steps to {output}")


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.argument("data")
@click.option("-o", "--output", required=True, help="The picture: .png, .pdf, .svg or .jpg.")
@click.option(
    "--dims",
    default=None,
    metavar="I,J",
    help="Two features (0-based) to draw; default: the first two principal components "
    "(the two features of 2-D data). For an HMM one to three features (default: the first "
    "three); for ppca, fa and mfa two latent coordinates (default: 0,1).",
)
@click.option(
    "--sequence",
    default=None,
    metavar="ID",
    help="Sequence models (hmm): the sequence to draw, an id of the --lengths-column or a 0-based "
    "position (default: the first).",
)
@_data_options
@_encoding_option
@_lengths_option
@_device_option
def plot(model, data, output, dims, sequence, columns, key, binarize, lengths_column, device):
    """Draw MODEL over DATA: clusters with covariance ellipses for Gaussian mixtures, the
    components (as images for image data) for Poisson and Bernoulli mixtures; for an HMM one
    sequence coloured by its Viterbi states with the state posteriors beneath, and the
    transition matrix; for ppca, fa and mfa the latent map of the rows beside the loadings; for
    lda the top words of every topic."""
    from lvmkit.plot.figures import plot_model

    est, state, meta, X, recipe, sequences = _model_and_data(
        model, data, columns, key, binarize, device, lengths_column
    )
    if recipe.get("documents"):
        fig = document_figure(est, X, recipe, dims, sequence)
        click.echo(f"wrote {_save_figure(fig, output)}")
        return
    wanted = (1, 2, 3) if sequences is not None else (2,)
    if dims is not None:
        try:
            dims = tuple(int(t) for t in dims.split(","))
        except ValueError:
            dims = ()
        if len(dims) not in wanted:
            raise click.BadParameter(
                "give two 0-based feature positions, e.g. --dims 0,3"
                + (" (for an HMM one to three)." if sequences is not None else "."),
                param_hint="'--dims'",
            )
    if sequences is not None:
        from lvmkit.plot.hmm import plot_hmm

        which = sequences.find(sequence)
        fig = plot_hmm(
            est,
            X,
            sequences.lengths,
            sequence=which,
            features=dims,
            feature_names=recipe.get("feature_names"),
            sequence_name=sequences.ids[which] if sequences.column is not None else None,
        )
        click.echo(f"wrote {_save_figure(fig, output)}")
        return
    if sequence is not None:
        raise UserError(f"--sequence is for sequence models (hmm); drop it for {model}.")
    load_pictures(est)
    fig = plot_model(
        est,
        rows_for_pictures(est, X.reshape(len(X), -1)),
        dims=dims,
        feature_names=recipe.get("feature_names"),
        image_shape=_image_shape(est, recipe),
    )
    path = _save_figure(fig, output)
    click.echo(f"wrote {path}")


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@_json_option
def info(model, as_json):
    """What MODEL is: class, hyperparameters, fitted summary, file format and lvmkit version."""
    from lvmkit._persist import describe
    from lvmkit.plot.report import model_summary

    described = describe(model)
    est, state = _load_model(model)
    summary = dict(model_summary(est)) | dict(learned_rows(est))
    fitted = _fit_summary(est)
    if as_json:
        _echo_json({**described, "fitted": fitted, "summary": summary, **topics_json(est)})
        return
    recipe = (described.get("metadata") or {}).get("data") or {}
    click.echo(
        f"{model}: {described['class']} (lvmkit model format {described['format_version']}, "
        f"saved by lvmkit {described['lvmkit_version']}, {described['bytes']} bytes)"
    )
    for label, value in summary.items():
        if label != "model":
            click.echo(f"  {label}: {value}")
    if recipe.get("source"):
        click.echo(
            f"  fitted on: {recipe['source']}"
            + (f" (columns {recipe['columns']})" if recipe.get("columns") else "")
            + (f", binarized at {recipe['binarize']}" if recipe.get("binarize") is not None else "")
        )


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.argument("data")
@click.option("-o", "--output", default="report.html", show_default=True, help="The HTML page.")
@click.option(
    "--bic/--no-bic",
    default=True,
    show_default=True,
    help="Refit K near the model's on (a sample of) DATA for a BIC curve.",
)
@click.option("--title", default=None, help="Page title.")
@_data_options
@_encoding_option
@_lengths_option
@_seed_option
@_device_option
@_json_option
def report(
    model, data, output, bic, title, columns, key, binarize, lengths_column, seed, device, as_json
):
    """One self-contained HTML page on MODEL and DATA: summary, training curve, pictures."""
    from lvmkit.plot.report import ReportContext, write_report

    if Path(output).suffix.lower() not in (".html", ".htm"):
        raise UserError(f"-o {output}: the report is an HTML page; give a .html file name.")
    _seed_everything(seed)
    est, state, meta, X, recipe, sequences = _model_and_data(
        model, data, columns, key, binarize, device, lengths_column
    )
    if recipe.get("documents"):
        extra = [("model file", str(model)), ("data file", str(data))]
        path = document_report(est, X, recipe, output, title=title, seed=seed, summary_extra=extra)
        if as_json:
            _echo_json({"report": str(path), "bytes": path.stat().st_size})
        else:
            click.echo(f"wrote {path}")
        return
    if sequences is None:
        X = rows_for_pictures(est, X)
    context = ReportContext(
        feature_names=recipe.get("feature_names"),
        image_shape=_image_shape(est, recipe),
        seed=seed,
        bic=bic,
    )
    if sequences is not None:
        context.lengths = sequences.lengths
        if sequences.column is not None:
            context.extra["sequence_ids"] = sequences.ids
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = write_report(
            est,
            X,
            output,
            title=title,
            context=context,
            summary_extra=[("model file", str(model)), ("data file", str(data))],
        )
    if as_json:
        _echo_json({"report": str(path), "bytes": path.stat().st_size})
    else:
        click.echo(f"wrote {path}")


@cli.command(
    context_settings={
        **CONTEXT,
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],
    }
)
@click.pass_context
def demo(ctx):
    """Run lvmkit's demo (the same as 'make demo'); its options follow, see 'lvmkit demo --help'."""
    import contextlib
    import io

    from lvmkit import demo as demo_module

    # The demo parses its own options (argparse): keep its complaints to one line too. Its
    # stderr is held until it ends.
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            code = demo_module.main(list(ctx.args))
    except SystemExit as exc:
        if exc.code == 2:
            last = [line for line in held.getvalue().splitlines() if line.strip()][-1:] or ["?"]
            message = last[0].split("error: ", 1)[-1]
            raise UserError(f"demo: {message} (see 'lvmkit demo --help')") from None
        sys.stderr.write(held.getvalue())
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    sys.stderr.write(held.getvalue())
    return int(code or 0)


# ====================================================================== entry point
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {_one_line(_in_cli_words(str(message)))}", err=True)


def main(argv=None) -> int:
    """Run the command line; return the exit status (0 ok, 2 user error, 1 internal error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("LVMKIT_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    import matplotlib

    matplotlib.use("Agg")
    shown = warnings.showwarning
    if not debug:
        warnings.showwarning = _show_warning
    try:
        return _run(args, debug)
    finally:
        warnings.showwarning = shown
        from lvmkit import distributed

        distributed.shutdown()


def _run(args: list[str], debug: bool) -> int:
    try:
        result = cli.main(args, prog_name="lvmkit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("error: aborted.", err=True)
        return 130
    except click.ClickException as exc:
        if debug:
            raise
        where = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            where = f" (see '{ctx.command_path} --help')"
        click.echo(f"{_rank()}error: {_one_line(exc.format_message())}{where}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("error: interrupted.", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if debug:
            raise
        from lvmkit._persist import UnsavableError
        from lvmkit.distributed import DistributedError

        if isinstance(
            exc,
            (
                UserError,
                ValueError,
                OSError,
                ImportError,
                UnsavableError,
                FloatingPointError,
                DistributedError,
            ),
        ):
            click.echo(f"{_rank()}error: {_one_line(_message(exc))}", err=True)
            return 2
        click.echo(
            f"{_rank()}error: internal error, {type(exc).__name__}: {_one_line(str(exc))}. Run "
            "again with --debug for the traceback, and please report it.",
            err=True,
        )
        return 1
    return result if isinstance(result, int) else 0


def _rank() -> str:
    from lvmkit.distributed import rank_prefix

    return rank_prefix()


def _message(exc: BaseException) -> str:
    if (
        isinstance(exc, FileNotFoundError)
        and exc.filename
        and not str(exc).startswith(str(exc.filename))
    ):
        return f"{exc.filename}: no such file or folder."
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}."
    return _in_cli_words(str(exc) or type(exc).__name__)


# The estimators' keyword arguments and the options of the command line that set them: the
# library's advice ("pick binarize='dynamic'") read on the command line names the option.
CLI_OPTIONS = {
    "binarize": "--binarization",
    "likelihood": "--likelihood",
    "dtype": "--dtype",
    "reg_covar": "--reg-covar",
    "n_components": "--components",
    "max_iter": "--max-iter",
    "tol": "--tol",
    "n_init": "--n-init",
    "n_iter": "--n-iter",
    "init_params": "--init",
    "covariance_type": "--covariance",
    "chunk_size": "--chunk-size",
    "batch_size": "--batch-size",
    "algorithm": "--algorithm",
    "min_rate": "--min-rate",
    "min_prob": "--min-prob",
    "lr": "--lr",
    "epochs": "--epochs",
    "latent_dim": "--latent-dim",
    "validation_fraction": "--validation-fraction",
    "patience": "--patience",
    "checkpoint": "--checkpoint",
    "beta": "--beta",
    "objective": "--objective",
    "hidden_sizes": "--hidden",
    "rotation": "--rotation",
    "n_factors": "--factors",
    "noise": "--noise",
    "solver": "--solver",
    "init": "--init",
    "learning_method": "--method",
    "doc_topic_prior": "--doc-topic-prior",
    "topic_word_prior": "--topic-word-prior",
    "stop_words": "--stop-words",
    "min_df": "--min-df",
    "max_df": "--max-df",
    "max_features": "--max-features",
    "encoding": "--encoding",
}
_ASSIGNMENT = re.compile(r"\b(" + "|".join(CLI_OPTIONS) + r")=('([^']*)'|\"([^\"]*)\"|[\w.+-]+)")
# bare names only where they cannot be English words (likelihood, epochs): those with an "_";
# not n_components, whose messages compare it with n_samples ("n_samples >= n_components")
_NAME = re.compile(
    r"(?<![\w.'-])("
    + "|".join(n for n in CLI_OPTIONS if "_" in n and n != "n_components")
    + r")(?![\w(=])"
)


def _in_cli_words(text: str) -> str:
    """The message with the estimator's keyword arguments written as the command's options:
    ``binarize='dynamic'`` as ``--binarization dynamic``, ``reg_covar`` as ``--reg-covar``; and
    the scaling advice for 8-bit data as ``--scale 255``."""

    def assignment(m):
        value = (
            m.group(3)
            if m.group(3) is not None
            else m.group(4)
            if m.group(4) is not None
            else m.group(2)
        )
        return f"{CLI_OPTIONS[m.group(1)]} {value}"

    text = _ASSIGNMENT.sub(assignment, text)
    text = _NAME.sub(lambda m: CLI_OPTIONS[m.group(1)], text)
    return text.replace(
        "Scale the data to [0, 1]", "Scale the data to [0, 1] (--scale 255 for 8-bit images)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
