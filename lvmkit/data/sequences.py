"""Sequences as a hidden Markov model's E-step reads them: whole sequences, packed, in chunks.

hmmlearn's convention is kept: the rows of all sequences concatenated (N, D), and ``lengths``
giving each sequence's number of rows (a list of arrays is accepted too, see
:func:`concatenate`). :class:`SequenceChunks` cuts the sequences into chunks of whole sequences
(a sequence is never split across chunks: the forward-backward recursion runs along it), centres
and casts them once, and permutes each chunk's rows into the packed time-major order of
:func:`lvmkit.posteriors.chain.pack`, so that an EM iteration gathers nothing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lvmkit._validation import as_tensor
from lvmkit.posteriors import chain

# Working memory of one chunk (forward and backward messages, emissions, posteriors: about
# 6·K values per row): the recursion's Python loop runs once per step *per chunk*, so chunks are
# larger than the mixtures' (a 10⁶-row, 20-state fit is two chunks on a CPU).
CPU_CHUNK_BYTES = 256 * 2**20
GPU_CHUNK_BYTES = 2 * 2**30


def concatenate(X, lengths=None):
    """``(rows, lengths)`` from hmmlearn's ``X, lengths`` or from a list of arrays.

    ``X`` is an array-like (N, D) (or (N,) for one feature) with ``lengths`` summing to N, or,
    when ``lengths`` is None, either one sequence or a list/tuple of 2-D arrays (one per sequence).
    Returns the rows as given (not converted) and ``lengths`` as an int64 array, checked.
    """
    if (
        isinstance(X, (list, tuple))
        and X
        and all(hasattr(s, "shape") or isinstance(s, (list, tuple)) for s in X)
        and _looks_like_sequences(X)
    ):
        if lengths is not None:
            raise ValueError(
                "X is a list of sequences, so lengths must be None (each array is one sequence); "
                "or pass the concatenated rows with lengths."
            )
        parts = [np.asarray(s.detach().cpu() if isinstance(s, Tensor) else s) for s in X]
        parts = [p.reshape(-1, 1) if p.ndim == 1 else p for p in parts]
        widths = {p.shape[1] for p in parts if p.ndim == 2}
        if any(p.ndim != 2 for p in parts) or len(widths) > 1:
            raise ValueError(
                "Every sequence in the list must be a 2-D array (n_steps, n_features) with the "
                f"same number of features; got shapes {sorted({p.shape for p in parts})[:4]}."
            )
        lengths = np.array([p.shape[0] for p in parts], dtype=np.int64)
        if (lengths == 0).any():
            raise ValueError(
                f"Sequence {int(np.argmin(lengths))} of the list is empty; every sequence needs at "
                "least one step. Drop the empty ones."
            )
        return np.concatenate(parts, 0), lengths
    n = _n_rows(X)
    return X, check_lengths(lengths, n)


def _looks_like_sequences(X) -> bool:
    first = X[0]
    shape = getattr(first, "shape", None)
    if shape is not None:
        return len(shape) >= 1 and not np.isscalar(first)
    return (
        isinstance(first, (list, tuple))
        and first
        and isinstance(first[0], (list, tuple, np.ndarray))
    )


def _n_rows(X) -> int:
    if hasattr(X, "shape"):
        return int(X.shape[0]) if len(X.shape) else 0
    return len(X)


def check_lengths(lengths, n_rows: int) -> np.ndarray:
    """``lengths`` as int64, checked: positive integers summing to ``n_rows`` (None: one
    sequence)."""
    if lengths is None:
        return np.array([n_rows], dtype=np.int64)
    if isinstance(lengths, Tensor):
        lengths = lengths.detach().cpu().numpy()
    try:
        arr = np.asarray(lengths, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(
            f"lengths must be a list of positive integers (one per sequence); got {lengths!r:.80}."
        ) from None
    if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
        raise ValueError("lengths must hold whole numbers (the number of rows of each sequence).")
    arr = arr.astype(np.int64)
    if (arr <= 0).any():
        i = int(np.argmax(arr <= 0))
        raise ValueError(
            f"lengths[{i}] = {arr[i]}: every sequence needs at least one row. Drop empty "
            "sequences from lengths."
        )
    if int(arr.sum()) != n_rows:
        raise ValueError(
            f"lengths sum to {int(arr.sum())} but X has {n_rows} rows. lengths must give the "
            "number of rows of each sequence, in order, and cover every row of X."
        )
    return arr


class SequenceBatch:
    """One chunk of whole sequences: packed features (n, F) in the compute dtype, the packing,
    and each packed row's sequence weight (None: all 1)."""

    def __init__(
        self,
        features: Tensor,
        packing: chain.Packing,
        row_weights: Tensor | None,
        seq_weights: Tensor | None,
        first_sequence: int,
    ):
        self.features, self.packing = features, packing
        self.row_weights, self.seq_weights = row_weights, seq_weights
        self.first_sequence = first_sequence  # number of its first sequence in the data

    @property
    def shape(self):
        return self.features.shape


class SequenceChunks:
    """Sequences centred on ``shift``, cast to ``dtype`` on ``device``, transformed by
    ``transform`` (a family's features), in chunks of whole sequences, each packed.

    ``rows`` (N, D) float64 array or tensor; ``lengths`` (S,) int64; ``weights`` (S,) optional
    per-sequence weights; ``chunk_rows`` bounds a chunk's rows (a longer sequence is a chunk of
    its own); None sizes chunks from ``bytes_per_row``.
    """

    streamed = False

    def __init__(
        self,
        rows,
        lengths,
        shift: Tensor,
        dtype,
        device,
        transform=None,
        weights=None,
        chunk_rows=None,
        bytes_per_row: int = 256,
        block=None,
    ):
        self.dtype, self.device = dtype, torch.device(device)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.shift = shift
        self.n_features = int(rows.shape[1])
        self.n_sequences = int(self.lengths.size)
        self.n_rows = int(self.lengths.sum())
        if chunk_rows is None:
            budget = GPU_CHUNK_BYTES if self.device.type == "cuda" else CPU_CHUNK_BYTES
            chunk_rows = max(1, budget // max(int(bytes_per_row), 1))
        self.batches: list[SequenceBatch] = []
        starts = np.concatenate([[0], np.cumsum(self.lengths)])
        base = rows if isinstance(rows, Tensor) else as_tensor(rows)  # read-only arrays too
        w_all = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        for a, b in _groups(self.lengths, int(chunk_rows)):
            X = base[starts[a] : starts[b]].to(device=self.device, dtype=torch.float64)
            X = (X - shift.to(X.device)).to(dtype)
            F = transform(X) if transform is not None else X
            packing = chain.pack(self.lengths[a:b], self.device, block=block)
            F = F[packing.order].contiguous()
            seq_w = row_w = None
            if w_all is not None:
                seq_w = w_all[a:b].to(self.device)
                row_w = seq_w[packing.row_seq].to(dtype)
            self.batches.append(SequenceBatch(F, packing, row_w, seq_w, a))

    def iter_weighted(self):
        for batch in self.batches:
            yield batch, batch.row_weights

    def __iter__(self):
        return iter(self.batches)


def _groups(lengths: np.ndarray, chunk_rows: int):
    """Consecutive ranges [a, b) of sequences with at most ``chunk_rows`` rows each (a longer
    sequence alone)."""
    out, a, total = [], 0, 0
    for i, n in enumerate(lengths.tolist()):
        if total and total + n > chunk_rows:
            out.append((a, i))
            a, total = i, 0
        total += n
    if len(lengths):
        out.append((a, len(lengths)))
    return out


def rows_bytes(n_states: int, n_features: int, dtype) -> int:
    """Working memory per row of the E-step (messages, emissions, posteriors, features)."""
    item = torch.finfo(dtype).bits // 8
    return item * (7 * n_states + 2 * n_features) + 16
