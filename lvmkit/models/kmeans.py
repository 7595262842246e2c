"""k-means++ seeding and Lloyd's k-means, on the device in torch: how mixtures are initialised.

All functions take the data as :class:`lvmkit.data.chunks.DataChunks` (shifted, compute dtype) and
a ``torch.Generator`` and never materialise an N x K matrix: distances are computed chunk by chunk.
They read rows at random, so for streamed data they run on the bounded sample of
:meth:`DataChunks.seeding_view`; labels of all rows then come from :func:`nearest` chunk by chunk.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lvmkit.data.chunks import DataChunks


def _sq_distances(X: Tensor, centers: Tensor) -> Tensor:
    """Squared Euclidean distances (n, m), clamped at zero."""
    d = torch.addmm(
        X.square().sum(1, keepdim=True) + centers.square().sum(1), X, centers.T, alpha=-2.0
    )
    return d.clamp_(min=0.0)


def random_rows(chunks: DataChunks, n: int, generator: torch.Generator) -> Tensor:
    """``n`` distinct rows drawn uniformly, or in proportion to the sample weights."""
    if chunks.weights is None:
        idx = torch.randperm(chunks.n_samples, generator=generator, device=generator.device)[:n]
    else:
        w = chunks.weights.to(torch.float64)
        if int((w > 0).sum()) < n:
            raise ValueError(
                f"Only {int((w > 0).sum())} samples have a positive sample_weight, fewer than "
                f"n_components={n}. Give more samples positive weight or use fewer components."
            )
        idx = torch.multinomial(w, n, replacement=False, generator=generator)
    return chunks.rows(idx)


def kmeans_plusplus(chunks: DataChunks, n_clusters: int, generator: torch.Generator) -> Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with 2 + log k local trials).

    Each new center is the best of several candidates drawn with probability proportional to the
    squared distance to the nearest center chosen so far. Returns (n_clusters, D).
    """
    n = chunks.n_samples
    trials = 2 + int(math.log(n_clusters))
    dev = generator.device
    if chunks.weights is None:
        first = torch.randint(n, (1,), generator=generator, device=dev)
    else:  # in proportion to the weights: a zero-weight row is never a seed
        first = torch.multinomial(chunks.weights.to(torch.float64), 1, generator=generator)
    centers = [chunks.rows(first)[0]]
    closest = torch.cat([_sq_distances(X, centers[0][None]).reshape(-1) for X in chunks])
    # A sample of weight w counts w times: its potential is w · d² (a column, to weight the
    # candidates' distance columns too).
    w64 = torch.ones(n, 1, dtype=torch.float64, device=closest.device)
    if chunks.weights is not None:
        w64 = chunks.weights.to(torch.float64)[:, None]
    closest64 = closest.to(torch.float64) * w64[:, 0]
    for _ in range(1, n_clusters):
        total = closest64.sum()
        if total <= 0:  # fewer distinct points than clusters: draw uniformly
            cand_idx = torch.randint(n, (trials,), generator=generator, device=dev)
        else:
            cand_idx = torch.multinomial(
                closest64 / total, trials, replacement=True, generator=generator
            )
        candidates = chunks.rows(cand_idx)
        # Potential of each candidate: Σ_n min(closest_n, d(x_n, candidate)).
        new_closest = torch.cat(
            [
                torch.minimum(_sq_distances(X, candidates), closest[i : i + X.shape[0], None])
                for i, X in zip(range(0, n, chunks.chunk_size), chunks)
            ]
        )
        best = int(torch.argmin((new_closest.to(torch.float64) * w64).sum(0)))
        centers.append(candidates[best])
        closest = new_closest[:, best].contiguous()
        closest64 = closest.to(torch.float64) * w64[:, 0]
    return torch.stack(centers)


def nearest(X: Tensor, centers: Tensor) -> Tensor:
    """Index of the nearest center for every row of one chunk (n,)."""
    return torch.argmin(_sq_distances(X, centers), dim=1)


def assign(chunks: DataChunks, centers: Tensor) -> Tensor:
    """Index of the nearest center for every row (N,)."""
    return torch.cat([nearest(X, centers) for X in chunks])


def kmeans(
    chunks: DataChunks,
    n_clusters: int,
    generator: torch.Generator,
    max_iter: int = 300,
    tol: float = 1e-4,
    with_labels: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Lloyd's k-means (sample-weighted) from a k-means++ seeding. Returns ``(centers, labels)``
    (``labels`` None unless ``with_labels``).

    Stops when the squared movement of all centers falls below ``tol`` times the mean feature
    variance (scikit-learn's rule). An emptied cluster is moved to the point farthest from its
    center.
    """
    centers = kmeans_plusplus(chunks, n_clusters, generator).to(torch.float64)
    d = chunks.n_features
    sums = torch.zeros(n_clusters, d, dtype=torch.float64, device=centers.device)
    _, variance, _ = chunks.moments()
    threshold = tol * float(variance.mean())
    for _ in range(max_iter):
        sums.zero_()
        counts = torch.zeros(n_clusters, dtype=torch.float64, device=centers.device)
        worst_d, worst_x = -1.0, None
        c_compute = centers.to(chunks.dtype)
        for X, w in chunks.iter_weighted():
            dist = _sq_distances(X, c_compute)
            best_d, labels = dist.min(1)
            X64 = X.to(torch.float64)
            if w is None:
                sums.index_add_(0, labels, X64)
                counts += torch.bincount(labels, minlength=n_clusters).to(torch.float64)
            else:
                w64 = w.to(torch.float64)
                sums.index_add_(0, labels, X64 * w64[:, None])
                counts.index_add_(0, labels, w64)
                best_d = torch.where(w > 0, best_d, 0.0)
            i = int(torch.argmax(best_d))
            if float(best_d[i]) > worst_d:
                worst_d, worst_x = float(best_d[i]), X[i].to(torch.float64)
        new = sums / counts.clamp(min=1)[:, None]
        empty = counts == 0
        if bool(empty.any()):
            new[torch.nonzero(empty)[0, 0]] = worst_x
        shift = float((new - centers).square().sum())
        centers = new
        if shift <= threshold:
            break
    c_compute = centers.to(chunks.dtype)
    return c_compute, assign(chunks, c_compute) if with_labels else None
