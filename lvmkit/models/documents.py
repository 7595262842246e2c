"""Documents as the LDA E-step reads them: a CSR document-term matrix on a device in batches.

:class:`Documents` is one batch (CSR arrays, the transposed pattern for the statistics, the
batch's own vocabulary, and when it is cheap a padded layout for the batched torch E-step);
:class:`DocumentChunks` is the whole corpus as batches, the ``iter_weighted`` protocol of the EM
loops (:mod:`lvmkit.fit.em`). The model is :mod:`lvmkit.models.lda`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

f64 = torch.float64


@dataclass
class Documents:
    """One batch of documents in CSR form on the device (``crow`` (n + 1,), ``words`` (nnz,),
    ``counts`` (nnz,)), with the transposed pattern (``crow_t`` (V + 1,), ``docs_t`` (nnz,), and
    ``order`` taking the entries from document order to word order) for the statistics."""

    crow: Tensor
    words: Tensor
    counts: Tensor
    crow_t: Tensor
    docs_t: Tensor
    order: Tensor
    n_docs: int
    start: int  # the global number of the first document (of all ranks)

    @property
    def n_words(self) -> float:
        return float(self.counts.sum(dtype=f64))

    @property
    def unique_words(self) -> Tensor:
        """The words that occur in these documents, each once (sorted) (U,)."""
        return self._vocabulary()[0]

    @property
    def local_words(self) -> Tensor:
        """Every entry's word as its place in :attr:`unique_words` (nnz,)."""
        return self._vocabulary()[1]

    def _vocabulary(self) -> tuple[Tensor, Tensor]:
        if self._unique is None:
            self._unique, self._local = torch.unique(self.words, return_inverse=True)
        return self._unique, self._local

    @property
    def lengths(self) -> Tensor:
        """The number of entries of every document (n,)."""
        return self.crow[1:] - self.crow[:-1]

    @property
    def rows(self) -> Tensor:
        """The document of every entry (nnz,)."""
        lengths = self.lengths
        return torch.repeat_interleave(torch.arange(self.n_docs, device=lengths.device), lengths)

    def matrix(self, values: Tensor) -> Tensor:
        """The (n_docs, V) CSR matrix of this pattern with ``values`` (document order)."""
        return csr(self.crow, self.words, values, (self.n_docs, self.n_vocabulary))

    def transposed(self, values: Tensor) -> Tensor:
        """The (V, n_docs) CSR matrix of the transposed pattern with ``values`` (document
        order)."""
        return csr(self.crow_t, self.docs_t, values[self.order], (self.n_vocabulary, self.n_docs))

    n_vocabulary: int = 0
    # the same entries as rows of equal length L (the longest document; padding points at the
    # extra word V, whose topic factors are 0), when that costs at most twice the entries
    padded_words: Tensor | None = None
    padded_valid: Tensor | None = None
    padded_counts: Tensor | None = None
    _unique: Tensor | None = field(default=None, repr=False)
    _local: Tensor | None = field(default=None, repr=False)


def csr(crow, col, values, size) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and tested here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


class DocumentChunks:
    """A CSR document-term matrix in batches of documents (the ``iter_weighted`` protocol of the
    EM loops), resident on the device.

    Parameters
    ----------
    X : scipy.sparse.csr_matrix (n_docs, n_words), checked counts
    dtype, device : compute dtype and device
    batch_size : documents per batch
    offset : the global number of this rank's first document
    """

    def __init__(self, X: sp.csr_matrix, dtype, device, batch_size: int, offset: int = 0):
        self.n_samples, self.n_features = X.shape
        self.dtype, self.device = dtype, torch.device(device)
        self.offset = offset
        self.batches = []
        for start in range(0, self.n_samples, max(int(batch_size), 1)):
            self.batches.append(
                documents(X[start : start + batch_size], dtype, device, offset + start)
            )

    @property
    def streamed(self) -> bool:
        return False

    def iter_weighted(self):
        for docs in self.batches:
            yield docs, None


def documents(part: sp.csr_matrix, dtype, device, start: int = 0) -> Documents:
    """A CSR block of counts as :class:`Documents` on ``device``."""
    device = torch.device(device)
    order = sp.csr_matrix(
        (np.arange(part.nnz, dtype=np.float64), part.indices, part.indptr), shape=part.shape
    ).tocsc()
    long = dict(dtype=torch.int64, device=device)
    lengths = np.diff(part.indptr)
    longest = int(lengths.max()) if lengths.size else 0
    padded = valid = padded_counts = None
    if longest * part.shape[0] <= 2 * part.nnz:
        valid = np.arange(longest)[None, :] < lengths[:, None]
        padded = np.full(valid.shape, part.shape[1], dtype=np.int64)
        padded[valid] = part.indices
        padded_counts = np.zeros(valid.shape)
        padded_counts[valid] = part.data
        padded = torch.as_tensor(padded, **long)
        valid = torch.as_tensor(valid, device=device)
        padded_counts = torch.as_tensor(padded_counts, dtype=dtype, device=device)
    return Documents(
        torch.as_tensor(part.indptr, **long),
        torch.as_tensor(part.indices, **long),
        torch.as_tensor(part.data, dtype=dtype, device=device),
        torch.as_tensor(order.indptr, **long),
        torch.as_tensor(order.indices, **long),
        torch.as_tensor(order.data.astype(np.int64), **long),
        part.shape[0],
        start,
        part.shape[1],
        padded,
        valid,
        padded_counts,
    )
