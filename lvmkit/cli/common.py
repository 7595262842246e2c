"""What the commands of ``lvmkit`` share: the common options, reading data and models, writing
tables and pictures, the progress bar and the one-line summary of a fit."""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")


class UserError(Exception):
    """A problem the user can fix: reported in one line, exit status 2."""


# ====================================================================== shared options
def _remember_scale(ctx, param, value):
    ctx.meta["lvmkit.scale"] = value
    return value


def _remember_keep_index(ctx, param, value):
    ctx.meta["lvmkit.keep_index"] = value
    return value


def _keep_index() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get("lvmkit.keep_index"))


def _data_options(f):
    f = click.option(
        "--scale",
        type=click.FloatRange(0, min_open=True),
        default=None,
        metavar="S",
        expose_value=False,
        callback=_remember_scale,
        help="Divide the values by S (255 maps 8-bit images to [0, 1], as a VAE's "
        "binarization expects). Default: the model's, when it was fitted with one.",
    )(f)
    f = click.option(
        "--binarize",
        type=float,
        default=None,
        metavar="T",
        help="Map values > T to 1 and the rest to 0 (e.g. 0.5; 127 for 8-bit "
        "images). Default: the model's, when it was fitted with one.",
    )(f)
    f = click.option("--key", default=None, help=".npz files: the array to read.")(f)
    f = click.option(
        "--columns",
        default=None,
        metavar="COLS",
        help="Columns to use, comma-separated header names or 0-based positions "
        "(default: all; for a fitted model, the columns it was fitted on).",
    )(f)
    f = click.option(
        "--keep-index-column",
        is_flag=True,
        expose_value=False,
        callback=_remember_keep_index,
        help="CSV: keep a first column of row numbers (written by pandas' to_csv or "
        "R's write.csv, header empty, 'index' or 'rownames') as a feature; by "
        "default it is left out, with a warning.",
    )(f)
    return f


def _seed_option(f):
    return click.option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help="Random seed (initialisation, sampling).",
    )(f)


def _device_option(f):
    return click.option(
        "--device", default=None, help="Where to compute: cpu, cuda, cuda:1 (default: cpu)."
    )(f)


def _json_option(f):
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout."
    )(f)


def _progress_option(f):
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar on stderr (default: when stderr is a terminal).",
    )(f)


def _remember_encoding(ctx, param, value):
    ctx.meta["lvmkit.encoding"] = value
    return value


def _encoding_option(f):
    return click.option(
        "--encoding",
        default=None,
        expose_value=False,
        callback=_remember_encoding,
        help="Topic models (lda): the encoding of the text files, e.g. latin-1 (default: the "
        "one the model was fitted with).",
    )(f)


def _lengths_option(f):
    return click.option(
        "--lengths-column",
        default=None,
        metavar="NAME",
        help="Sequence models (hmm): the column naming each row's sequence (a header name or "
        "0-based position; not a feature). The rows of a sequence are together, in time order. "
        "Default: the model's (as fitted), else the whole file is one sequence; '-' reads the "
        "whole file as one sequence.",
    )(f)


# ====================================================================== helpers
def _echo_json(obj) -> None:
    click.echo(json.dumps(_jsonable(obj), indent=2, allow_nan=False))


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _parse_columns(text: str | None):
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(
            f"--columns {text!r} names no column; give names or 0-based positions, "
            "e.g. --columns x,y or --columns 0,1."
        )
    return [int(t) if t.lstrip("-").isdigit() else t for t in items]


def _parse_components(text: str) -> list[int]:
    """'1:10' (inclusive), '2,4,8' or '5' -> a list of K."""
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (2, 3):
                raise ValueError
            low, high = int(parts[0]), int(parts[1])
            step = int(parts[2]) if len(parts) == 3 else 1
            if step < 1:
                raise ValueError
            ks = list(range(low, high + 1, step))
        else:
            ks = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a range of K: use LOW:HIGH (inclusive, e.g. 1:10), LOW:HIGH:STEP, "
            "or a list such as 2,4,8.",
            param_hint="'--components'",
        ) from None
    if not ks or min(ks) < 1:
        raise click.BadParameter(
            f"{text!r} must give K >= 1 (e.g. 1:10).", param_hint="'--components'"
        )
    return ks


def _load_data(
    path: str,
    columns: str | None,
    key: str | None,
    binarize: float | None,
    meta: dict | None = None,
    flatten: bool = True,
    missing: bool = False,
):
    """(X, Dataset, data recipe) for ``path``; a model's recipe fills gaps. X is
    (n, features), or the samples in their own shape when not ``flatten``. ``missing``: missing
    cells are read as NaN (for a model that takes missing values) instead of refused."""
    import numpy as np

    from lvmkit.data.readers import read_dataset

    recipe = dict((meta or {}).get("data") or {})
    cols = _parse_columns(columns) if columns is None or isinstance(columns, str) else columns
    if cols is None and recipe.get("columns") is not None:
        cols = recipe["columns"]
    if binarize is None:
        binarize = recipe.get("binarize")
    ctx = click.get_current_context(silent=True)
    scale = ctx.meta.get("lvmkit.scale") if ctx is not None else None
    if scale is None:
        scale = recipe.get("scale")
    dataset = read_dataset(
        path,
        cols,
        key=key if key is not None else recipe.get("key"),
        keep_index=_keep_index(),
        allow_missing=missing,
    )
    X = dataset.matrix() if flatten else dataset.X
    if isinstance(X, np.ndarray) and not X.flags.writeable:
        X = X.copy()  # a read-only view (one CSV column through pandas): torch warns on those
    if binarize is not None:
        X = np.asarray(X)
        X = np.where(np.isnan(X), np.nan, X > binarize) if missing else (X > binarize) * 1.0
    elif scale is not None:
        X = np.asarray(X, dtype=np.float64) / scale
    new_recipe = {
        "source": str(path),
        "columns": dataset.feature_names if dataset.feature_names is not None else cols,
        "feature_names": dataset.feature_names,
        "image_shape": list(dataset.image_shape)
        if dataset.image_shape
        else recipe.get("image_shape"),
        "binarize": binarize,
        "scale": scale,
        "key": key,
    }
    return X, dataset, new_recipe


# ====================================================================== documents (topic models)
#: the files a topic model reads as a table of counts; any other file is text, one document per
#: line (a .txt file too), and a folder holds one document per .txt file
COUNT_TABLE_SUFFIXES = (".csv", ".tsv", ".npy", ".npz", ".parquet", ".pq")


def _documents_format(path) -> str:
    """How a topic model reads ``path``: 'folder' (of .txt files), 'table' (of counts) or
    'lines' (a text file, one document per line)."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    return "table" if suffixes[-1:] and suffixes[-1] in COUNT_TABLE_SUFFIXES else "lines"


def _document_names(fmt: str, names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most]) + (", ..." if len(names) > most else "")
    if fmt == "lines":
        return f"line{'s' if len(names) > 1 else ''} {shown}"
    if fmt == "table":
        return f"row{'s' if len(names) > 1 else ''} {shown} (0-based)"
    return shown


def _load_documents(
    path: str,
    columns,
    key: str | None,
    binarize: float | None,
    *,
    options: dict | None = None,
    meta: dict | None = None,
    vocabulary=None,
    model_path: str | None = None,
):
    """``(X, names, vocabulary, recipe)`` for a topic model: the documents of ``path`` as a CSR
    matrix of counts, their names and the words of the columns. Text (a folder of .txt files, or
    a file of one document per line) is counted with the kind's ``options`` (``fit``), or on the
    model's ``vocabulary`` (the commands that use a model, with ``meta``'s recipe); a table of
    counts is read like any data file. Documents with no word are left out, with a warning."""
    import warnings

    import numpy as np
    import scipy.sparse as sp

    from lvmkit.data.text import read_documents

    recipe = dict((meta or {}).get("data") or {})
    fmt = _documents_format(path)
    if fmt == "table":
        X, dataset, new_recipe = _load_data(path, columns, key, binarize, meta)
        X = sp.csr_matrix(np.asarray(X, dtype=np.float64).reshape(len(X), -1))
        names = [str(i) for i in range(X.shape[0])]
        words = list(dataset.feature_names or [f"x{j}" for j in range(X.shape[1])])
        new_recipe["documents"] = "table"
        why = "(every count is 0)"
    else:
        ctx = click.get_current_context(silent=True)
        scale = ctx.meta.get("lvmkit.scale") if ctx is not None else None
        read_as = "a folder of .txt files" if fmt == "folder" else "one document per line"
        for flag, value in (
            ("--columns", columns),
            ("--key", key),
            ("--binarize", binarize),
            ("--scale", scale),
        ):
            if value is not None:
                raise UserError(
                    f"{flag} applies to a table of counts (.csv, .npy, .parquet); {path} is read "
                    f"as text ({read_as}). Drop {flag}."
                )
        if options is not None:  # fit: the vocabulary is the corpus's
            settings = {
                "stop_words": None if options["stop_words"].lower() == "none" else "english",
                "min_df": options["min_df"],
                "max_df": options["max_df"],
                "max_features": options["max_features"],
                "lowercase": True,
                "encoding": options["encoding"],
            }
            corpus = read_documents(path, **settings)
            why = "left after --stop-words, --min-df and --max-df"
        else:
            if vocabulary is None:
                raise UserError(
                    f"{model_path}: the model has no vocabulary (vocabulary_), so the words of "
                    f"{path} cannot be counted for it. Give a table of counts with its columns "
                    "(.csv, .npy), or refit with 'lvmkit fit lda', which stores the vocabulary "
                    "(in Python: model.vocabulary_ = corpus.vocabulary before model.save)."
                )
            encoding = ctx.meta.get("lvmkit.encoding") if ctx is not None else None
            settings = {
                "lowercase": recipe.get("lowercase", True),
                "encoding": encoding or recipe.get("encoding") or "utf-8",
            }
            corpus = read_documents(path, vocabulary=vocabulary, **settings)
            why = "of the model's vocabulary"
        X, names, words = corpus.counts, corpus.names, corpus.vocabulary
        new_recipe = {
            "source": str(path),
            "documents": fmt,
            "columns": None,
            "feature_names": None,
            "image_shape": None,
            "binarize": None,
            "scale": None,
            "key": None,
            **settings,
        }
    X.eliminate_zeros()
    empty = np.flatnonzero(np.diff(X.indptr) == 0)
    if len(empty) == X.shape[0]:
        raise UserError(
            f"{path}: none of its {X.shape[0]} document(s) has a word {why}, so there are no "
            "topics to find. "
            + (
                "Check that the text is in the model's language and lower-cased as it was."
                if options is None and fmt != "table"
                else "Check the path, or keep more words (--stop-words none, --min-df 1)."
            )
        )
    if len(empty):
        dropped = [names[i] for i in empty]
        warnings.warn(
            f"{len(empty)} of the {X.shape[0]} documents of {path} have no word {why} and are "
            f"left out ({_document_names(fmt, dropped)}): an empty document has no topics.",
            UserWarning,
            stacklevel=2,
        )
        keep = np.flatnonzero(np.diff(X.indptr) > 0)
        X = X[keep]
        names = [names[i] for i in keep]
    return X, names, words, new_recipe


def _is_topic_model(model) -> bool:
    """Whether ``model`` is a topic model (latent Dirichlet allocation)."""
    return hasattr(model, "topic_word_distribution")


def _data_source(data: str):
    """The :class:`~lvmkit.data.sources.Source` streaming ``data`` (a path or glob), keeping a
    CSV file's row-number column when --keep-index-column was given."""
    from lvmkit.data.sources import CsvSource, _expand, _kind, as_source

    if _keep_index():
        paths = _expand(data)
        if all(_kind(p) == "csv" for p in paths):
            return CsvSource(paths, keep_index=True)
    return as_source(data)


def _load_model(path: str, device: str | None = None):
    import lvmkit  # noqa: F401  (registers the estimators)
    from lvmkit._persist import from_file

    return from_file(Path(path), device=device, with_state=True)


def _check_features(model, X, data: str, meta: dict) -> None:
    import numpy as np

    expected = getattr(model, "n_features_in_", None)
    given = int(np.prod(X.shape[1:]))
    if isinstance(expected, int) and given != expected:
        used = (meta.get("data") or {}).get("columns")
        hint = f" It was fitted on columns {used}." if used else ""
        raise UserError(
            f"{data}: has {given} feature(s) per sample but the model was fitted on "
            f"{expected}.{hint} Choose matching columns with --columns."
        )


def _image_shape(model, recipe: dict):
    """The shape of one sample when the samples are images (from the data, else the model)."""
    shape = recipe.get("image_shape") or getattr(model, "input_shape_", None)
    return tuple(int(s) for s in shape) if shape and len(shape) >= 2 else None


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _check_device(device: str | None) -> None:
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"--device {device!r}: CUDA is not available on this machine; use --device cpu."
        )


def _write_rows(header: list[str], columns: list, out: str | None) -> None:
    """CSV with a header row; floats written exactly (shortest round-trip form)."""
    import numpy as np

    lines = [",".join(header)]
    arrays = [np.asarray(c) for c in columns]
    for row in zip(*[a.tolist() for a in arrays], strict=False):
        lines.append(",".join(_csv_field(v) for v in row))
    text = "\n".join(lines) + "\n"
    if out is None or out == "-":
        click.echo(text, nl=False)
        return
    path = Path(out)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise UserError(f"-o {out}: write tables to a .csv file (or leave -o out for stdout).")
    from lvmkit._persist import write_atomic

    write_atomic(path, text.encode("utf-8"))


def _csv_field(value) -> str:
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _save_figure(fig, out: str) -> Path:
    path = Path(out)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(
            f"-o {out}: pictures are written as {', '.join(IMAGE_SUFFIXES)}; give one of these "
            "suffixes."
        )
    if not path.parent.is_dir():
        raise UserError(f"-o {out}: the folder {path.parent} does not exist; create it first.")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


@contextmanager
def _progress(enabled: bool | None, label: str):
    """A tqdm bar on stderr fed by the fitting loops' iteration events."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield
        return
    from tqdm import tqdm

    from lvmkit.fit.callbacks import observe

    bar = tqdm(total=None, desc=label, unit="it", file=sys.stderr, leave=False, dynamic_ncols=True)
    current = [None]

    def update(event):
        if current[0] is not event.estimator:
            current[0] = event.estimator
            k = getattr(event.estimator, "n_components", None)
            bar.reset(total=event.n_restarts * max(event.max_iter, 1))
            bar.set_description(f"{label} K={k}" if k is not None else label)
        bar.n = event.restart * max(event.max_iter, 1) + event.iteration
        bar.set_postfix_str(
            f"restart {event.restart + 1}/{event.n_restarts}, bound {event.lower_bound:.4f}",
            refresh=False,
        )
        bar.refresh()

    try:
        with observe(update):
            yield
    finally:
        bar.close()


def _fit_summary(model) -> dict:
    out = {"class": type(model).__name__}
    for attr, key in (
        ("n_components", "n_components"),
        ("n_components_", "n_components"),  # as fitted (probabilistic PCA's 'mle' chooses it)
        ("n_factors", "n_factors"),
        ("n_features_in_", "n_features"),
        ("n_iter_", "n_iter"),
        ("converged_", "converged"),
        ("lower_bound_", "lower_bound"),
    ):
        if hasattr(model, attr):
            out[key] = getattr(model, attr)
    if _is_topic_model(model) and getattr(model, "bound_", None) is not None:
        # bound_ is the training perplexity (scikit-learn's name); the bound per word its log
        out["perplexity"] = float(model.bound_)
        out["bound_per_word"] = -math.log(model.bound_)
        return out
    loglike = _log_likelihood(model)
    if loglike is not None and "lower_bound" not in out:
        out["log_likelihood"] = loglike
    return out


def _log_likelihood(model) -> float | None:
    """The training log-likelihood per sample of a model that reports it without a
    ``lower_bound_`` (probabilistic PCA's ``loglike_``, factor analysis' last bound)."""
    if _is_topic_model(model):  # its bounds are per word, not per sample
        return None
    loglike = getattr(model, "loglike_", None)
    if isinstance(loglike, (int, float)) and not isinstance(loglike, bool):
        return float(loglike)
    bounds = getattr(model, "lower_bounds_", None)
    if bounds is not None and len(bounds) and not hasattr(model, "lower_bound_"):
        return float(bounds[-1])
    return None


def _describe_fit(model, n: int, d: int, seconds: float, n_sequences: int | None = None) -> str:
    if n_sequences is not None:  # a sequence model: its bound is the total log-likelihood
        return (
            f"{type(model).__name__} fitted on {n} rows x {d} features in {n_sequences} "
            f"sequence(s), {model.n_components} states, {model.n_iter_} iterations "
            f"({'converged' if model.converged_ else 'did not converge'}), log-likelihood "
            f"{model.lower_bound_:.4f} nats ({model.lower_bound_ / max(n, 1):.4f} per row), "
            f"{seconds:.2f} s"
        )
    if _is_topic_model(model):
        return (
            f"{type(model).__name__} fitted on {n} documents, a vocabulary of {d} words, "
            f"{model.n_components} topics, {model.n_iter_} iterations "
            f"({model.learning_method}), training perplexity {model.bound_:.2f} (bound "
            f"{-math.log(model.bound_):.4f} nats per word), {seconds:.2f} s"
        )
    parts = [f"{type(model).__name__} fitted on {n} samples x {d} features"]
    if hasattr(model, "n_components"):
        k = getattr(model, "n_components_", model.n_components)
        chosen = " (chosen by 'mle')" if model.n_components == "mle" else ""
        parts.append(f"{k} components{chosen}")
    if hasattr(model, "n_factors"):
        parts.append(f"{model.n_factors} factors each")
    if hasattr(model, "n_iter_"):
        status = ""
        if hasattr(model, "converged_"):
            status = " (converged)" if model.converged_ else " (did not converge)"
        parts.append(f"{model.n_iter_} iterations{status}")
    if hasattr(model, "lower_bound_"):
        parts.append(f"lower bound {model.lower_bound_:.4f} nats/sample")
    elif _log_likelihood(model) is not None:
        parts.append(f"log-likelihood {_log_likelihood(model):.4f} nats/sample")
    parts.append(f"{seconds:.2f} s")
    return ", ".join(parts)
