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
    lvmkit demo

Errors a user can fix (a bad file, column, option value, a file that is not a model, data with the
wrong number of features) print one line, ``error: ...``, and exit with status 2; ``--debug``
(anywhere on the line, or LVMKIT_DEBUG=1) shows the traceback instead. Model kinds for ``fit``
and ``select`` come from :mod:`lvmkit.cli.kinds`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import click

from lvmkit.cli import ranks
from lvmkit.cli.kinds import FitSettings, ModelKind, ensure_kinds, kind_of

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")


class UserError(Exception):
    """A problem the user can fix: reported in one line, exit status 2."""


# ====================================================================== shared options
def _remember_scale(ctx, param, value):
    ctx.meta["lvmkit.scale"] = value
    return value


def _data_options(f):
    f = click.option("--scale", type=click.FloatRange(0, min_open=True), default=None, metavar="S",
                     expose_value=False, callback=_remember_scale,
                     help="Divide the values by S (255 maps 8-bit images to [0, 1], as a VAE's "
                          "binarization expects). Default: the model's, when it was fitted with one.")(f)
    f = click.option("--binarize", type=float, default=None, metavar="T",
                     help="Map values > T to 1 and the rest to 0 (e.g. 0.5; 127 for 8-bit "
                          "images). Default: the model's, when it was fitted with one.")(f)
    f = click.option("--key", default=None, help=".npz files: the array to read.")(f)
    f = click.option("--columns", default=None, metavar="COLS",
                     help="Columns to use, comma-separated header names or 0-based positions "
                          "(default: all; for a fitted model, the columns it was fitted on).")(f)
    return f


def _seed_option(f):
    return click.option("--seed", type=int, default=0, show_default=True,
                        help="Random seed (initialisation, sampling).")(f)


def _device_option(f):
    return click.option("--device", default=None,
                        help="Where to compute: cpu, cuda, cuda:1 (default: cpu).")(f)


def _json_option(f):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print machine-readable JSON on stdout.")(f)


def _progress_option(f):
    return click.option("--progress/--no-progress", default=None,
                        help="Show a progress bar on stderr (default: when stderr is a terminal).")(f)


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
        raise UserError(f"--columns {text!r} names no column; give names or 0-based positions, "
                        "e.g. --columns x,y or --columns 0,1.")
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
            "or a list such as 2,4,8.", param_hint="'--components'"
        ) from None
    if not ks or min(ks) < 1:
        raise click.BadParameter(f"{text!r} must give K >= 1 (e.g. 1:10).", param_hint="'--components'")
    return ks


def _load_data(path: str, columns: str | None, key: str | None, binarize: float | None,
               meta: dict | None = None, flatten: bool = True):
    """(X, Dataset, data recipe) for ``path``; a model's recipe fills gaps. X is
    (n, features), or the samples in their own shape when not ``flatten``."""
    import numpy as np

    from lvmkit.data.readers import read_dataset

    recipe = dict((meta or {}).get("data") or {})
    cols = _parse_columns(columns)
    if cols is None and recipe.get("columns") is not None:
        cols = recipe["columns"]
    if binarize is None:
        binarize = recipe.get("binarize")
    ctx = click.get_current_context(silent=True)
    scale = ctx.meta.get("lvmkit.scale") if ctx is not None else None
    if scale is None:
        scale = recipe.get("scale")
    dataset = read_dataset(path, cols, key=key if key is not None else recipe.get("key"))
    X = dataset.matrix() if flatten else dataset.X
    if binarize is not None:
        X = (np.asarray(X) > binarize).astype(np.float64)
    elif scale is not None:
        X = np.asarray(X, dtype=np.float64) / scale
    new_recipe = {
        "source": str(path),
        "columns": dataset.feature_names if dataset.feature_names is not None else cols,
        "feature_names": dataset.feature_names,
        "image_shape": list(dataset.image_shape) if dataset.image_shape else recipe.get("image_shape"),
        "binarize": binarize,
        "scale": scale,
        "key": key,
    }
    return X, dataset, new_recipe


def _load_model(path: str, device: str | None = None):
    from lvmkit._persist import from_file

    import lvmkit  # noqa: F401  (registers the estimators)

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
        raise UserError(f"--device {device!r}: CUDA is not available on this machine; use --device cpu.")


def _write_rows(header: list[str], columns: list, out: str | None) -> None:
    """CSV with a header row; floats written exactly (shortest round-trip form)."""
    import numpy as np

    lines = [",".join(header)]
    arrays = [np.asarray(c) for c in columns]
    for row in zip(*[a.tolist() for a in arrays]):
        lines.append(",".join(repr(v) if isinstance(v, float) else str(v) for v in row))
    text = "\n".join(lines) + "\n"
    if out is None or out == "-":
        click.echo(text, nl=False)
        return
    path = Path(out)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise UserError(f"-o {out}: write tables to a .csv file (or leave -o out for stdout).")
    from lvmkit._persist import write_atomic

    write_atomic(path, text.encode("utf-8"))


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
    for attr, key in (("n_components", "n_components"), ("n_features_in_", "n_features"),
                      ("n_iter_", "n_iter"), ("converged_", "converged"),
                      ("lower_bound_", "lower_bound")):
        if hasattr(model, attr):
            out[key] = getattr(model, attr)
    return out


def _describe_fit(model, n: int, d: int, seconds: float) -> str:
    parts = [f"{type(model).__name__} fitted on {n} samples x {d} features"]
    if hasattr(model, "n_components"):
        parts.append(f"{model.n_components} components")
    if hasattr(model, "n_iter_"):
        status = ""
        if hasattr(model, "converged_"):
            status = " (converged)" if model.converged_ else " (did not converge)"
        parts.append(f"{model.n_iter_} iterations{status}")
    if hasattr(model, "lower_bound_"):
        parts.append(f"lower bound {model.lower_bound_:.4f} nats/sample")
    parts.append(f"{seconds:.2f} s")
    return ", ".join(parts)


# ====================================================================== the group
@click.group(context_settings=CONTEXT)
@click.version_option(package_name="lvmkit", prog_name="lvmkit")
@click.option("--debug", is_flag=True, help="On an error, show the full traceback (also accepted "
                                           "anywhere on the line).")
def cli(debug):
    """lvmkit: latent variable models (mixtures, VAEs) from the shell.

    Fit a model to a data file and save it, then score, predict, sample, plot, inspect and
    report with the saved model. Data files: CSV, .npy/.npz, Parquet, IDX, .amat, or a folder of
    images. Run 'lvmkit COMMAND --help' for a command's options.

    Under torchrun, 'lvmkit fit' of a mixture spreads the rows over the ranks (see the README,
    "More than one machine").
    """
    ranks.refuse_unless_fit(click.get_current_context().invoked_subcommand)


class _KindGroup(click.Group):
    """``fit`` / ``select``: one subcommand per model kind, built from the kind registry."""

    def __init__(self, *args, make, only_components=False, **kwargs):
        super().__init__(*args, **kwargs)
        self._make = make
        self._only_components = only_components

    def _kinds(self) -> dict[str, ModelKind]:
        kinds = ensure_kinds()
        return {n: k for n, k in kinds.items() if k.has_components or not self._only_components}

    def list_commands(self, ctx):
        return sorted(self._kinds())

    def get_command(self, ctx, name):
        kind = self._kinds().get(name)
        return None if kind is None else self._make(kind)


def _make_fit_command(kind: ModelKind) -> click.Command:
    params = [click.Argument(["data"])]
    if kind.has_components:
        params.append(click.Option(["--components", "-k"], type=click.IntRange(1),
                                   default=kind.default_components, show_default=True,
                                   help="Number of mixture components K."))
    params += list(kind.options)
    params.append(click.Option(["-o", "--output"], default="model.lvm", show_default=True,
                               help="Where to save the fitted model."))
    if kind.has_components:
        params.append(click.Option(
            ["--stream"], is_flag=True,
            help="Read DATA from disk on every EM pass instead of loading it (bounded memory; "
                 "implied when DATA is a glob such as 'shards/*.parquet')."))

    def callback(**kw):
        return _do_fit(kind, kw)

    cmd = click.Command(kind.name, params=params, callback=callback, help=kind.help,
                        short_help=kind.help.split(":")[0].split(" (")[0], context_settings=CONTEXT)
    for deco in (_data_options, _seed_option, _device_option, _json_option, _progress_option):
        deco(cmd)
    return cmd


def _kind_options(kind: ModelKind, kw: dict) -> dict:
    options = {p.name: kw[p.name] for p in kind.options}
    if kind.has_components and "components" in kw:
        options["components"] = kw["components"]
    return options


def _streamed(kind: ModelKind, kw: dict) -> bool:
    """Whether ``fit`` reads the data from disk on every pass instead of loading it: a glob, or
    ``--stream``, for the models that stream (the mixtures)."""
    data = kw["data"]
    wanted = kw.get("stream") or any(ch in data for ch in "*?[")
    if not wanted:
        return False
    if not kind.has_components:
        raise UserError(f"lvmkit fit {kind.name} reads its data into memory; give one file, not "
                        f"a glob or --stream (streamed fitting is for gmm, poisson, bernoulli).")
    ctx = click.get_current_context(silent=True)
    scale = ctx.meta.get("lvmkit.scale") if ctx is not None else None
    for flag, value in (("--columns", kw["columns"]), ("--key", kw["key"]),
                        ("--binarize", kw["binarize"]), ("--scale", scale)):
        if value is not None:
            raise UserError(f"{flag} is not available when the data is streamed from {data!r}; "
                            "prepare the files with the columns and values to fit.")
    return True


def _do_fit(kind: ModelKind, kw: dict):
    _check_device(kw["device"])
    _seed_everything(kw["seed"])
    out = Path(kw["output"])
    if out.parent and not out.parent.is_dir():
        raise UserError(f"-o {out}: the folder {out.parent} does not exist; create it first.")
    comm = ranks.join(kind, kw["device"])
    with ranks.quiet_unless_main(comm, kw):
        if _streamed(kind, kw):
            return _do_fit_streamed(kind, kw, out, comm)
        X, dataset, recipe = _load_data(kw["data"], kw["columns"], kw["key"], kw["binarize"],
                                        flatten=kind.flatten)
        model = kind.build(_kind_options(kind, kw), FitSettings(seed=kw["seed"], device=kw["device"]))
        mine = ranks.my_rows(X, kind, comm)
        start = time.perf_counter()
        if kind.own_progress:
            show = kw["progress"] if kw["progress"] is not None else sys.stderr.isatty()
            model.set_params(verbose=int(bool(show)))
            model.fit(mine)
        else:
            with _progress(kw["progress"], f"fit {kind.name}"):
                model.fit(mine)
        seconds = time.perf_counter() - start
        if not comm.is_main:
            return None
        model.save(out, metadata={"kind": kind.name, "data": recipe})
        n, d = X.shape[0], int(math.prod(X.shape[1:]))
        if kw["as_json"]:
            _echo_json({"model": str(out), "kind": kind.name, **_fit_summary(model), "n_samples": n,
                        "seconds": seconds, "world_size": comm.world})
        else:
            click.echo(_describe_fit(model, n, d, seconds) + ranks.describe(comm))
            click.echo(f"saved {out}")


def _do_fit_streamed(kind: ModelKind, kw: dict, out: Path, comm):
    """``lvmkit fit gmm 'shards/*.parquet'``: one pass over the files per EM iteration (each
    rank reading its shard of the rows under torchrun)."""
    from lvmkit.data.sources import as_source

    source = as_source(kw["data"])
    model = kind.build(_kind_options(kind, kw), FitSettings(seed=kw["seed"], device=kw["device"]))
    start = time.perf_counter()
    with _progress(kw["progress"], f"fit {kind.name} (one pass per iteration)"):
        model.fit(source)
    seconds = time.perf_counter() - start
    if not comm.is_main:
        return None
    recipe = {"source": str(kw["data"]), "columns": source.feature_names,
              "feature_names": source.feature_names, "image_shape": None, "binarize": None,
              "scale": None, "key": None, "streamed": True}
    model.save(out, metadata={"kind": kind.name, "data": recipe})
    n, d = source.n_samples, source.n_features
    if kw["as_json"]:
        _echo_json({"model": str(out), "kind": kind.name, **_fit_summary(model), "n_samples": n,
                    "seconds": seconds, "source": source.describe(), "world_size": comm.world})
    else:
        click.echo(_describe_fit(model, n, d, seconds)
                   + f" (streamed from {source.describe()}){ranks.describe(comm)}")
        click.echo(f"saved {out}")


def _make_select_command(kind: ModelKind) -> click.Command:
    params = [
        click.Argument(["data"]),
        click.Option(["--components", "-k"], default="1:10", show_default=True,
                     help="Candidate K: LOW:HIGH (inclusive), LOW:HIGH:STEP or a list 2,4,8."),
        click.Option(["--criterion"], type=click.Choice(["bic", "aic", "heldout"]), default="bic",
                     show_default=True, help="How to choose K."),
        click.Option(["--validation-fraction"], type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     default=0.2, show_default=True, help="Share of rows held out."),
        *kind.options,
        click.Option(["-o", "--output"], default=None, help="Save the chosen model here."),
        click.Option(["--table"], default=None, help="Write the table (one row per K) to this CSV."),
        click.Option(["--plot"], default=None, help="Draw the criterion against K to this picture."),
    ]

    def callback(**kw):
        return _do_select(kind, kw)

    cmd = click.Command(kind.name, params=params, callback=callback, context_settings=CONTEXT,
                        help=f"Choose the number of components of a {kind.name} model: "
                             + kind.help)
    for deco in (_data_options, _seed_option, _device_option, _json_option, _progress_option):
        deco(cmd)
    return cmd


def _do_select(kind: ModelKind, kw: dict):
    from lvmkit.estimators.selection import select_components

    _check_device(kw["device"])
    _seed_everything(kw["seed"])
    ks = _parse_components(kw["components"])
    X, dataset, recipe = _load_data(kw["data"], kw["columns"], kw["key"], kw["binarize"],
                                    flatten=kind.flatten)
    options = {**_kind_options(kind, kw), "components": ks[0]}
    template = kind.build(options, FitSettings(seed=kw["seed"], device=kw["device"]))
    with warnings.catch_warnings():
        # One line per K would drown the table; the table's 'converged' column says it.
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        with _progress(kw["progress"], f"select {kind.name}"):
            table, best = select_components(template, X, ks, kw["criterion"],
                                            validation_fraction=kw["validation_fraction"],
                                            random_state=kw["seed"])
    best_k = table.attrs["best_n_components"]
    if kw["output"]:
        best.save(kw["output"], metadata={"kind": kind.name, "data": recipe})
    if kw["table"]:
        _write_rows(list(table.columns), [table[c].to_numpy() for c in table.columns], kw["table"])
    if kw["plot"]:
        from matplotlib.figure import Figure

        from lvmkit.plot.selection import plot_selection

        fig = Figure(figsize=(7, 5))
        plot_selection(table, ax=fig.add_subplot())
        _save_figure(fig, kw["plot"])
    if kw["as_json"]:
        _echo_json({"criterion": kw["criterion"], "best_n_components": best_k,
                    "model": kw["output"], "table": table.to_dict(orient="records")})
        return
    shown = table[["n_components", "lower_bound", "heldout_loglik", "bic", "aic", "n_iter",
                   "converged"]]
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    click.echo(f"{kw['criterion']} chooses K = {best_k}"
               + (f"; saved {kw['output']}" if kw["output"] else ""))


cli.add_command(_KindGroup("fit", make=_make_fit_command, context_settings=CONTEXT,
                           help="Fit a model to a data file and save it (-o model.lvm).\n\n"
                                "Example: lvmkit fit gmm data.csv --components 5 -o model.lvm"))
cli.add_command(_KindGroup("select", make=_make_select_command, only_components=True,
                           context_settings=CONTEXT,
                           help="Choose the number of components by BIC, AIC or held-out "
                                "likelihood.\n\nExample: lvmkit select gmm data.csv "
                                "--components 1:10 --criterion bic -o best.lvm"))


# ====================================================================== using a model
def _model_and_data(model_path, data, columns, key, binarize, device):
    _check_device(device)
    model, state = _load_model(model_path, device)
    meta = state.get("metadata") or {}
    kind = kind_of(model)
    X, dataset, recipe = _load_data(data, columns, key, binarize, meta,
                                    flatten=kind.flatten if kind else True)
    _check_features(model, X, data, meta)
    return model, state, meta, X, recipe


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.argument("data")
@click.option("-o", "--output", default=None, help="CSV file for the scores (default: stdout).")
@click.option("--k", "k", type=click.IntRange(1), default=None,
              help="Estimate log p(x) by importance sampling with K samples per point from the "
                   "encoder (lvmkit.log_marginal) instead of the ELBO; for a VAE. Try 5000.")
@_seed_option
@_data_options
@_device_option
@_json_option
def score(model, data, output, k, seed, columns, key, binarize, device, as_json):
    """Per-sample log-likelihood (or bound) of DATA under MODEL, as CSV.

    One row per sample, in order. For mixtures the exact log p(x) in nats; a model that can
    only bound it (a VAE) names its column after what it returns, or with --k estimates
    log p(x) by importance sampling (column log_px).
    """
    import numpy as np

    est, state, meta, X, _ = _model_and_data(model, data, columns, key, binarize, device)
    summary = {}
    if k is None:
        scores = est.score_samples(X)
        kind = kind_of(est)
        name = kind.score_name if kind else "log_likelihood"
        note = f"mean {float(scores.mean()):.4f}"
    else:
        scores, name, summary = _importance_scores(est, X, model, k, seed)
        note = (f"mean log p(x) {summary['mean']:.4f} ± {summary['stderr']:.4f} nats, "
                f"{summary['bits_per_dim']:.4f} bits/dim, k={k}, {summary['seconds']:.0f} s")
    if as_json:
        if output:
            _write_rows([name], [scores], output)
        _echo_json({"model": model, "data": data, "n_samples": len(scores), "score": name,
                    "mean": float(np.mean(scores)), **summary, "scores": scores})
        return
    _write_rows([name], [scores], output)
    if output:
        click.echo(f"wrote {len(scores)} scores to {output} ({note})")
    elif summary:
        click.echo(note, err=True)


def _importance_scores(est, X, model_path, k, seed):
    """log p(x) per sample by importance sampling, for ``lvmkit score --k``."""
    from lvmkit.estimators.marginal import log_marginal

    if hasattr(est, "weights_"):
        raise UserError(f"{model_path}: a {type(est).__name__}'s score is the exact log p(x) already; "
                        "--k (importance sampling) is for models with an encoder (a VAE). Drop --k.")
    if not hasattr(est, "encode_distribution"):
        raise UserError(f"{model_path}: a {type(est).__name__} has no probabilistic encoder, so it has no "
                        "log p(x) to estimate; --k needs a VAE. Drop --k for its reconstruction score.")
    result = log_marginal(est, X, k=k, random_state=seed)
    summary = {"method": "importance", "k": k, "stderr": result.stderr,
               "bits_per_dim": result.bits_per_dim, "seconds": result.seconds}
    return result.per_sample, "log_px", {"mean": result.mean, **summary}


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.argument("data")
@click.option("--proba", is_flag=True, help="Posterior probability of every component instead of labels.")
@click.option("-o", "--output", default=None, help="CSV file (default: stdout).")
@_data_options
@_device_option
@_json_option
def predict(model, data, proba, output, columns, key, binarize, device, as_json):
    """Most probable component (label) of every sample of DATA, or with --proba the posterior
    probability of each component."""
    est, state, meta, X, _ = _model_and_data(model, data, columns, key, binarize, device)
    method = "predict_proba" if proba else "predict"
    if not hasattr(est, method):
        raise UserError(f"{model}: a {type(est).__name__} has no {method}; 'lvmkit score' gives "
                        "its per-sample scores.")
    result = getattr(est, method)(X)
    if proba:
        header = [f"p{k}" for k in range(result.shape[1])]
        columns_out = [result[:, k] for k in range(result.shape[1])]
    else:
        header, columns_out = ["label"], [result]
    if as_json:
        if output:
            _write_rows(header, columns_out, output)
        _echo_json({"model": model, "data": data, "n_samples": len(result),
                    ("probabilities" if proba else "labels"): result})
        return
    _write_rows(header, columns_out, output)
    if output:
        click.echo(f"wrote {len(result)} rows to {output}")


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.option("-n", "n_samples", type=click.IntRange(1), default=64, show_default=True,
              help="How many samples to draw.")
@click.option("-o", "--output", default=None,
              help="out.csv (the samples) or out.png/.pdf/.svg (a picture); default: CSV on stdout.")
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
    if "random_state" in est.get_params():
        est.set_params(random_state=seed)
    drawn = est.sample(n_samples)
    samples, labels = drawn if isinstance(drawn, tuple) else (drawn, None)
    samples = np.asarray(samples)
    meta = state.get("metadata") or {}
    recipe = meta.get("data") or {}
    shape = _image_shape(est, recipe)
    if samples.ndim > 2:  # samples in their own shape (images)
        shape = tuple(samples.shape[1:])
        samples = samples.reshape(len(samples), -1)
    names = recipe.get("feature_names") or [f"x{i}" for i in range(samples.shape[1])]
    if as_json and not output:
        _echo_json({"model": model, "samples": samples,
                    **({"labels": labels} if labels is not None else {})})
        return
    if output and Path(output).suffix.lower() in IMAGE_SUFFIXES:
        from lvmkit.plot.figures import plot_samples

        fig = plot_samples(samples, labels, image_shape=shape, feature_names=names, title=f"{n_samples} samples from {Path(model).name}")
        _save_figure(fig, output)
    else:
        _write_rows(names, [samples[:, j] for j in range(samples.shape[1])], output)
    if as_json:
        _echo_json({"model": model, "output": output, "n_samples": n_samples})
    elif output:
        click.echo(f"wrote {n_samples} samples to {output}")


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.argument("data")
@click.option("-o", "--output", required=True, help="The picture: .png, .pdf, .svg or .jpg.")
@click.option("--dims", default=None, metavar="I,J",
              help="Two features (0-based) to draw; default: the first two principal components "
                   "(the two features of 2-D data).")
@_data_options
@_device_option
def plot(model, data, output, dims, columns, key, binarize, device):
    """Draw MODEL over DATA: clusters with covariance ellipses for Gaussian mixtures, the
    components (as images for image data) for Poisson and Bernoulli mixtures."""
    from lvmkit.plot.figures import plot_model

    est, state, meta, X, recipe = _model_and_data(model, data, columns, key, binarize, device)
    if dims is not None:
        try:
            dims = tuple(int(t) for t in dims.split(","))
        except ValueError:
            dims = ()
        if len(dims) != 2:
            raise click.BadParameter("give two 0-based feature positions, e.g. --dims 0,3.",
                                     param_hint="'--dims'")
    fig = plot_model(est, X.reshape(len(X), -1), dims=dims,
                     feature_names=recipe.get("feature_names"), image_shape=_image_shape(est, recipe))
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
    summary = dict(model_summary(est))
    fitted = _fit_summary(est)
    if as_json:
        _echo_json({**described, "fitted": fitted, "summary": summary})
        return
    recipe = (described.get("metadata") or {}).get("data") or {}
    click.echo(f"{model}: {described['class']} (lvmkit model format {described['format_version']}, "
               f"saved by lvmkit {described['lvmkit_version']}, {described['bytes']} bytes)")
    for label, value in summary.items():
        if label != "model":
            click.echo(f"  {label}: {value}")
    if recipe.get("source"):
        click.echo(f"  fitted on: {recipe['source']}"
                   + (f" (columns {recipe['columns']})" if recipe.get("columns") else "")
                   + (f", binarized at {recipe['binarize']}" if recipe.get("binarize") is not None else ""))


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.argument("data")
@click.option("-o", "--output", default="report.html", show_default=True, help="The HTML page.")
@click.option("--bic/--no-bic", default=True, show_default=True,
              help="Refit K near the model's on (a sample of) DATA for a BIC curve.")
@click.option("--title", default=None, help="Page title.")
@_data_options
@_seed_option
@_device_option
@_json_option
def report(model, data, output, bic, title, columns, key, binarize, seed, device, as_json):
    """One self-contained HTML page on MODEL and DATA: summary, training curve, pictures."""
    from lvmkit.plot.report import ReportContext, write_report

    if Path(output).suffix.lower() not in (".html", ".htm"):
        raise UserError(f"-o {output}: the report is an HTML page; give a .html file name.")
    _seed_everything(seed)
    est, state, meta, X, recipe = _model_and_data(model, data, columns, key, binarize, device)
    context = ReportContext(feature_names=recipe.get("feature_names"),
                            image_shape=_image_shape(est, recipe), seed=seed, bic=bic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = write_report(est, X, output, title=title, context=context,
                            summary_extra=[("model file", str(model)), ("data file", str(data))])
    if as_json:
        _echo_json({"report": str(path), "bytes": path.stat().st_size})
    else:
        click.echo(f"wrote {path}")


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True,
                               "allow_extra_args": True, "help_option_names": []})
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
    click.echo(f"warning: {_one_line(message)}", err=True)


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

        if isinstance(exc, (UserError, ValueError, OSError, ImportError, UnsavableError,
                            FloatingPointError, DistributedError)):
            click.echo(f"{_rank()}error: {_one_line(_message(exc))}", err=True)
            return 2
        click.echo(f"{_rank()}error: internal error, {type(exc).__name__}: {_one_line(str(exc))}. Run "
                   "again with --debug for the traceback, and please report it.", err=True)
        return 1
    return result if isinstance(result, int) else 0


def _rank() -> str:
    from lvmkit.distributed import rank_prefix

    return rank_prefix()


def _message(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename and not str(exc).startswith(str(exc.filename)):
        return f"{exc.filename}: no such file or folder."
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}."
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
