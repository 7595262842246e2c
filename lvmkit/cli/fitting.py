"""``lvmkit fit KIND`` and ``lvmkit select KIND``: one subcommand per model kind (built from
:mod:`lvmkit.cli.kinds`), in one process or under torchrun (:mod:`lvmkit.cli.ranks`)."""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

import click

from lvmkit.cli import ranks
from lvmkit.cli.common import (
    CONTEXT,
    UserError,
    _check_device,
    _data_options,
    _data_source,
    _describe_fit,
    _device_option,
    _echo_json,
    _fit_summary,
    _json_option,
    _lengths_option,
    _load_data,
    _load_documents,
    _parse_components,
    _progress,
    _progress_option,
    _save_figure,
    _seed_everything,
    _seed_option,
    _write_rows,
)
from lvmkit.cli.kinds import FitSettings, ModelKind, ensure_kinds
from lvmkit.cli.sequences import _load_sequences


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
        params.append(
            click.Option(
                ["--components", "-k"],
                type=click.IntRange(1),
                default=kind.default_components,
                show_default=True,
                help="Number of mixture components K.",
            )
        )
    params += list(kind.options)
    params.append(
        click.Option(
            ["-o", "--output"],
            default="model.lvm",
            show_default=True,
            help="Where to save the fitted model.",
        )
    )
    if kind.has_components:
        params.append(
            click.Option(
                ["--stream"],
                is_flag=True,
                help="Read DATA from disk on every EM pass instead of loading it (bounded memory; "
                "implied when DATA is a glob such as 'shards/*.parquet').",
            )
        )

    def callback(**kw):
        return _do_fit(kind, kw)

    cmd = click.Command(
        kind.name,
        params=params,
        callback=callback,
        help=kind.help,
        short_help=kind.help.split(":")[0].split(" (")[0],
        context_settings=CONTEXT,
    )
    for deco in (_data_options, _seed_option, _device_option, _json_option, _progress_option):
        deco(cmd)
    if kind.sequences:
        _lengths_option(cmd)
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
        raise UserError(
            f"lvmkit fit {kind.name} reads its data into memory; give one file, not "
            f"a glob or --stream (streamed fitting is for gmm, poisson, bernoulli)."
        )
    ctx = click.get_current_context(silent=True)
    scale = ctx.meta.get("lvmkit.scale") if ctx is not None else None
    for flag, value in (
        ("--columns", kw["columns"]),
        ("--key", kw["key"]),
        ("--binarize", kw["binarize"]),
        ("--scale", scale),
    ):
        if value is not None:
            raise UserError(
                f"{flag} is not available when the data is streamed from {data!r}; "
                "prepare the files with the columns and values to fit."
            )
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
        sequences = vocabulary = None
        if kind.sequences:
            X, sequences, recipe = _load_sequences(
                kw["data"], kw["columns"], kw["key"], kw["binarize"], kw["lengths_column"]
            )
        elif kind.documents:
            X, _, vocabulary, recipe = _load_documents(
                kw["data"], kw["columns"], kw["key"], kw["binarize"], options=kw
            )
        else:
            X, dataset, recipe = _load_data(
                kw["data"],
                kw["columns"],
                kw["key"],
                kw["binarize"],
                flatten=kind.flatten,
                missing=kind.missing_values,
            )
        model = kind.build(
            _kind_options(kind, kw), FitSettings(seed=kw["seed"], device=kw["device"])
        )
        start = time.perf_counter()
        if sequences is not None:
            rows, lengths = ranks.my_sequences(X, sequences.lengths, comm)
            with _progress(kw["progress"], f"fit {kind.name}"):
                model.fit(rows, lengths)
        elif kind.own_progress:
            show = kw["progress"] if kw["progress"] is not None else sys.stderr.isatty()
            model.set_params(verbose=int(bool(show)))
            model.fit(ranks.my_rows(X, kind, comm))
        else:
            with _progress(kw["progress"], f"fit {kind.name}"):
                model.fit(_my_rows(X, kind, comm))
        seconds = time.perf_counter() - start
        if not comm.is_main:
            return None
        extra = {}
        if vocabulary is not None:
            model.vocabulary_ = list(vocabulary)  # the words of the columns, saved with the model
            extra = {"n_words": int(X.sum())}
        model.save(out, metadata={"kind": kind.name, "data": recipe})
        n, d = X.shape[0], int(math.prod(X.shape[1:]))
        n_sequences = None if sequences is None else len(sequences.lengths)
        if kw["as_json"]:
            if sequences is not None:
                extra = {
                    "n_sequences": n_sequences,
                    "lengths_column": sequences.column,
                    "log_likelihood": model.lower_bound_,
                }
            _echo_json(
                {
                    "model": str(out),
                    "kind": kind.name,
                    **_fit_summary(model),
                    "n_samples": n,
                    **extra,
                    "seconds": seconds,
                    "world_size": comm.world,
                }
            )
        else:
            click.echo(_describe_fit(model, n, d, seconds, n_sequences) + ranks.describe(comm))
            click.echo(f"saved {out}")


def _my_rows(X, kind: ModelKind, comm):
    """This rank's rows: its share for a kind whose estimator adds the ranks' statistics."""
    if comm.active and kind.split_rows:
        from lvmkit import distributed

        lo, hi = distributed.split(X.shape[0], comm.rank, comm.world)
        return X[lo:hi]
    return ranks.my_rows(X, kind, comm)


def _do_fit_streamed(kind: ModelKind, kw: dict, out: Path, comm):
    """``lvmkit fit gmm 'shards/*.parquet'``: one pass over the files per EM iteration (each
    rank reading its shard of the rows under torchrun)."""
    source = _data_source(kw["data"])
    model = kind.build(_kind_options(kind, kw), FitSettings(seed=kw["seed"], device=kw["device"]))
    start = time.perf_counter()
    with _progress(kw["progress"], f"fit {kind.name} (one pass per iteration)"):
        model.fit(source)
    seconds = time.perf_counter() - start
    if not comm.is_main:
        return None
    recipe = {
        "source": str(kw["data"]),
        "columns": source.feature_names,
        "feature_names": source.feature_names,
        "image_shape": None,
        "binarize": None,
        "scale": None,
        "key": None,
        "streamed": True,
    }
    model.save(out, metadata={"kind": kind.name, "data": recipe})
    n, d = source.n_samples, source.n_features
    if kw["as_json"]:
        _echo_json(
            {
                "model": str(out),
                "kind": kind.name,
                **_fit_summary(model),
                "n_samples": n,
                "seconds": seconds,
                "source": source.describe(),
                "world_size": comm.world,
            }
        )
    else:
        click.echo(
            _describe_fit(model, n, d, seconds)
            + f" (streamed from {source.describe()}){ranks.describe(comm)}"
        )
        click.echo(f"saved {out}")


def _make_select_command(kind: ModelKind) -> click.Command:
    params = [
        click.Argument(["data"]),
        click.Option(
            ["--components", "-k"],
            default="1:10",
            show_default=True,
            help="Candidate K: LOW:HIGH (inclusive), LOW:HIGH:STEP or a list 2,4,8.",
        ),
        click.Option(
            ["--criterion"],
            type=click.Choice(["bic", "aic", "heldout"]),
            default="bic",
            show_default=True,
            help="How to choose K.",
        ),
        click.Option(
            ["--validation-fraction"],
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            default=0.2,
            show_default=True,
            help="Share of rows held out.",
        ),
        *kind.options,
        click.Option(["-o", "--output"], default=None, help="Save the chosen model here."),
        click.Option(
            ["--table"], default=None, help="Write the table (one row per K) to this CSV."
        ),
        click.Option(
            ["--plot"], default=None, help="Draw the criterion against K to this picture."
        ),
    ]

    def callback(**kw):
        return _do_select(kind, kw)

    cmd = click.Command(
        kind.name,
        params=params,
        callback=callback,
        context_settings=CONTEXT,
        help=f"Choose the number of components of a {kind.name} model: " + kind.help,
    )
    for deco in (_data_options, _seed_option, _device_option, _json_option, _progress_option):
        deco(cmd)
    return cmd


def _do_select(kind: ModelKind, kw: dict):
    from lvmkit.estimators.selection import select_components

    _check_device(kw["device"])
    _seed_everything(kw["seed"])
    ks = _parse_components(kw["components"])
    X, dataset, recipe = _load_data(
        kw["data"],
        kw["columns"],
        kw["key"],
        kw["binarize"],
        flatten=kind.flatten,
        missing=kind.missing_values,
    )
    options = {**_kind_options(kind, kw), "components": ks[0]}
    template = kind.build(options, FitSettings(seed=kw["seed"], device=kw["device"]))
    with warnings.catch_warnings():
        # One line per K would drown the table; the table's 'converged' column says it.
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        with _progress(kw["progress"], f"select {kind.name}"):
            table, best = select_components(
                template,
                X,
                ks,
                kw["criterion"],
                validation_fraction=kw["validation_fraction"],
                random_state=kw["seed"],
            )
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
        _echo_json(
            {
                "criterion": kw["criterion"],
                "best_n_components": best_k,
                "model": kw["output"],
                "table": table.to_dict(orient="records"),
            }
        )
        return
    shown = table[
        ["n_components", "lower_bound", "heldout_loglik", "bic", "aic", "n_iter", "converged"]
    ]
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    click.echo(
        f"{kw['criterion']} chooses K = {best_k}"
        + (f"; saved {kw['output']}" if kw["output"] else "")
    )


fit_group = _KindGroup(
    "fit",
    make=_make_fit_command,
    context_settings=CONTEXT,
    help="Fit a model to a data file and save it (-o model.lvm).\n\n"
    "Example: lvmkit fit gmm data.csv --components 5 -o model.lvm",
)
select_group = _KindGroup(
    "select",
    make=_make_select_command,
    only_components=True,
    context_settings=CONTEXT,
    help="Choose the number of components by BIC, AIC or held-out "
    "likelihood.\n\nExample: lvmkit select gmm data.csv "
    "--components 1:10 --criterion bic -o best.lvm",
)
