"""The command line under ``torchrun``: which rank does what.

``torchrun --standalone --nproc-per-node=2 -m lvmkit fit gmm 'shards/*.parquet' -o model.lvm``
starts the same command on every rank. For a mixture each rank fits its share of the rows (a glob
or ``--stream`` source is sharded by the estimator; a file loaded into memory is read whole by
every rank and split here by row ranges), for an HMM its share of whole sequences; a VAE gets all
the rows on every rank and trains on its share of every batch (DistributedDataParallel). Every
rank ends with the same model; rank 0 alone shows progress, prints and writes the model file (and
the checkpoints). Only ``lvmkit fit`` runs under a launcher; the other commands are quick and run
in one process.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

from lvmkit import distributed


class LaunchError(ValueError):
    """A command that does not run under a launcher of several ranks."""


def join(kind, device):
    """The communicator of ``lvmkit fit KIND`` (initializing the process group from torchrun's
    environment when needed)."""
    if not distributed.launched():
        return distributed.LOCAL
    return distributed.current(device)


def refuse_unless_fit(command: str | None) -> None:
    """Commands other than ``fit`` would repeat the same work (and writes) on every rank."""
    if command not in (None, "fit") and distributed.launched():
        raise LaunchError(
            f"lvmkit {command} runs in one process: run it without torchrun (only 'lvmkit fit' "
            "is spread across ranks)."
        )


def my_rows(X, kind, comm):
    """This rank's rows of data loaded whole on every rank: ``[r N / W, (r + 1) N / W)`` for a
    mixture (EM adds the ranks' statistics); all of them for the other kinds (a VAE's sampler
    splits every batch)."""
    if not comm.active or not kind.has_components:
        return X
    lo, hi = distributed.split(X.shape[0], comm.rank, comm.world)
    return X[lo:hi]


def my_sequences(X, lengths, comm):
    """This rank's share of whole sequences ``[r S / W, (r + 1) S / W)`` (all of them in one
    process): ``(rows, lengths)``. EM adds the ranks' statistics, so every rank ends with the
    model of all the sequences."""
    if not comm.active:
        return X, list(lengths)
    lo, hi = distributed.split(len(lengths), comm.rank, comm.world)
    start = int(sum(lengths[:lo]))
    stop = start + int(sum(lengths[lo:hi]))
    return X[start:stop], list(lengths[lo:hi])


def describe(comm) -> str:
    return f" on {comm.describe()}" if comm.active else ""


@contextlib.contextmanager
def quiet_unless_main(comm, kw: dict):
    """On ranks other than 0: no progress bar, no warnings, nothing on stdout."""
    if comm.is_main:
        yield
        return
    kw["progress"] = False
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    sys.stdout.flush()
