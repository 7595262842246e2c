"""k-means++ seeding and Lloyd's k-means, on the device in torch: how mixtures are initialised.

All functions take the data as :class:`lvmkit.data.chunks.DataChunks` (shifted, compute dtype) and
a ``torch.Generator``. They read rows at random, so for streamed data they run on the bounded
sample of :meth:`DataChunks.seeding_view`; labels of all rows then come from :func:`nearest` chunk
by chunk.

Every random choice depends on the rows' *values* and weights, never on their positions: the
rows are first reduced to their :func:`canonical` form, the distinct rows of positive weight in
lexicographic order, each with its total weight. A row of weight 2 and the same row twice, in any
order, have the same canonical form, so they give the same seeds for the same generator (up to
the rounding of sums). Seeds are then drawn by inverse CDF on the cumulative weights (k-means++:
weight times squared distance) of that order, and distances are computed in blocks of canonical
rows whose size does not depend on the number of rows, never as an N x K matrix.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from lvmkit.data.chunks import CPU_CHUNK_BYTES, GPU_CHUNK_BYTES, DataChunks


class Canonical(NamedTuple):
    """The distinct rows of positive weight, in lexicographic order, and their total weights."""

    rows: Tensor  # (M, D), the compute dtype
    weights: Tensor  # (M,) float64, all positive


def _sq_distances(X: Tensor, centers: Tensor) -> Tensor:
    """Squared Euclidean distances (n, m), clamped at zero."""
    d = torch.addmm(
        X.square().sum(1, keepdim=True) + centers.square().sum(1), X, centers.T, alpha=-2.0
    )
    return d.clamp_(min=0.0)


def _lexsort(X: Tensor) -> tuple[Tensor, Tensor]:
    """``(order, first)``: ``X[order]`` is in lexicographic order (equal rows in their order in
    ``X``), and ``first[i]`` is True where the sorted row ``i`` differs from the one before.

    One stable sort on the first column; each further column then re-sorts, within their groups,
    only the rows still tied with a neighbour on the columns before (for continuous data, none
    after a column or two). A group whose rows all have the same projection on a fixed direction,
    and prove equal in every remaining column, is a group of equal rows: it is left as it is.
    """
    n, d = X.shape
    dev = X.device
    first = torch.ones(n, dtype=torch.bool, device=dev)
    if n == 0 or d == 0:
        return torch.arange(n, device=dev), first
    order = torch.sort(X[:, 0], stable=True).indices
    col = X[order, 0]
    first[1:] = col[1:] != col[:-1]
    if d == 1:
        return order, first
    direction = (torch.arange(d, dtype=torch.float64, device=dev) * 0.6180339887498949) % 1.0 + 0.5
    probe = X @ direction.to(X.dtype)  # equal rows, equal probes (a cheap first test)
    active = torch.arange(n, device=dev)  # sorted positions whose group may still split
    for j in range(1, d):
        leads = first[active]
        gid = torch.cumsum(leads, 0) - 1
        leader = active[torch.nonzero(leads).reshape(-1)][gid]
        keep = torch.bincount(gid)[gid] > 1
        groups = int(gid[-1]) + 1
        unequal = torch.zeros(groups, dtype=torch.int64, device=dev)
        unequal.index_add_(0, gid, (probe[order[active]] != probe[order[leader]]).to(torch.int64))
        maybe = keep & (unequal[gid] == 0)
        if bool(maybe.any()):  # verify: every remaining column equal to the group's first row
            same = (X[order[active[maybe]], j:] == X[order[leader[maybe]], j:]).all(1)
            unequal.index_add_(0, gid[maybe], (~same).to(torch.int64))
            keep &= ~(maybe & (unequal[gid] == 0))
        active, gid = active[keep], gid[keep]
        if active.numel() == 0:
            break
        sub = order[active]
        values = X[sub, j]
        o = torch.sort(values, stable=True).indices
        o = o[torch.sort(gid[o], stable=True).indices]  # by group, then by value
        order[active] = sub[o]  # each group keeps the positions it had
        values = values[o]
        change = torch.zeros(active.numel(), dtype=torch.bool, device=dev)
        change[1:] = values[1:] != values[:-1]
        first[active] = first[active] | change
    return order, first


def canonical(chunks: DataChunks) -> Canonical:
    """The rows of ``chunks`` reduced to what seeding may depend on: the distinct rows of positive
    weight, sorted lexicographically, with their summed weights (counts when unweighted).

    It does not depend on the order of the rows, nor on whether a row appears twice or once with
    weight 2; rows of weight zero are left out (they are never seeds).
    """
    X, w = chunks.all_rows()
    if w is None:
        w64 = torch.ones(X.shape[0], dtype=torch.float64, device=X.device)
    else:
        keep = w > 0
        X, w64 = X[keep], w[keep].to(torch.float64)
    order, first = _lexsort(X)
    gid = torch.cumsum(first, 0) - 1
    rows = X[order[first]]
    weights = torch.zeros(rows.shape[0], dtype=torch.float64, device=X.device)
    weights.index_add_(0, gid, w64[order])
    return Canonical(rows, weights)


def _block(rows: Tensor, width: int) -> int:
    """Rows per block of distance computations against ``width`` centers: from the features and
    the width only, so the same canonical rows are always cut at the same places."""
    budget = GPU_CHUNK_BYTES if rows.device.type == "cuda" else CPU_CHUNK_BYTES
    return max(256, budget // (8 * (2 * rows.shape[1] + 2 * width + 4)))


def _distances(rows: Tensor, centers: Tensor) -> Tensor:
    """Squared distances (M, m) of canonical rows to ``centers``, computed in blocks."""
    step = _block(rows, centers.shape[0])
    return torch.cat(
        [_sq_distances(rows[a : a + step], centers) for a in range(0, max(rows.shape[0], 1), step)]
    )


def _inverse_cdf(mass: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` indices drawn with replacement in proportion to ``mass`` (M,) float64, by inverse
    CDF on its cumulative sum: u ~ U(0, total), the first index whose cumulative mass exceeds u.
    An index of zero mass is never drawn."""
    cum = torch.cumsum(mass, 0)
    total = cum[-1]
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=generator.device)
    u = u.to(cum.device) * total
    idx = torch.searchsorted(cum, u, right=True)
    # u may round up to the total: the last index of positive mass is where cum reaches it
    last = torch.searchsorted(cum, total.reshape(1), right=False)
    return torch.minimum(idx, last)


def random_rows(chunks: DataChunks, n: int, generator: torch.Generator) -> Tensor:
    """``n`` distinct rows drawn in proportion to the sample weights (uniformly when unweighted),
    without replacement among distinct values.

    Efraimidis-Spirakis sampling on the canonical rows: one uniform u_i per distinct row, in
    canonical order, and the ``n`` largest keys log(u_i) / w_i. When there are fewer distinct rows
    than ``n``, they are all taken and taken again in the same order.
    """
    if chunks.weights is not None:
        positive = int((chunks.weights > 0).sum())
        if positive < n:
            raise ValueError(
                f"Only {positive} samples have a positive sample_weight, fewer than "
                f"n_components={n}. Give more samples positive weight or use fewer components."
            )
    canon = canonical(chunks)
    return _random_rows(canon, n, generator)


def _random_rows(canon: Canonical, n: int, generator: torch.Generator) -> Tensor:
    m = canon.rows.shape[0]
    u = torch.rand(m, generator=generator, dtype=torch.float64, device=generator.device)
    keys = torch.log(u.to(canon.weights.device)) / canon.weights
    ranked = torch.sort(keys, descending=True, stable=True).indices
    pick = ranked[torch.arange(n, device=ranked.device) % m]
    return canon.rows[pick]


def kmeans_plusplus(chunks: DataChunks, n_clusters: int, generator: torch.Generator) -> Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with 2 + log k local trials).

    Each new center is the best of several candidates drawn with probability proportional to the
    (weighted) squared distance to the nearest center chosen so far. Returns (n_clusters, D).
    """
    return _plusplus(canonical(chunks), n_clusters, generator)


def _plusplus(canon: Canonical, n_clusters: int, generator: torch.Generator) -> Tensor:
    rows, w = canon.rows, canon.weights
    trials = 2 + int(math.log(n_clusters))
    # the first center in proportion to the weights: a zero-weight row is never a seed
    centers = [rows[_inverse_cdf(w, 1, generator)[0]]]
    closest = _distances(rows, centers[0][None]).reshape(-1)
    for _ in range(1, n_clusters):
        # A row of weight w counts w times: its potential is w · d².
        potential = closest.to(torch.float64) * w
        if float(potential.sum()) <= 0:  # fewer distinct points than clusters
            potential = w
        candidates = rows[_inverse_cdf(potential, trials, generator)]
        # Potential of each candidate: Σ_n w_n min(closest_n, d(x_n, candidate)).
        new_closest = torch.minimum(_distances(rows, candidates), closest[:, None])
        best = int(torch.argmin((new_closest.to(torch.float64) * w[:, None]).sum(0)))
        centers.append(candidates[best])
        closest = new_closest[:, best].contiguous()
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
    (``labels`` of every row of ``chunks``, None unless ``with_labels``).

    Runs on the canonical rows (each distinct row once, with its total weight). Stops when the
    squared movement of all centers falls below ``tol`` times the mean feature variance
    (scikit-learn's rule). Emptied clusters are moved to the rows farthest from their centers
    (ties: the first in canonical order).
    """
    canon = canonical(chunks)
    rows, w = canon.rows, canon.weights
    centers = _plusplus(canon, n_clusters, generator).to(torch.float64)
    m, d = rows.shape
    step = _block(rows, n_clusters)
    total = w.sum()
    mean = sum(w[a : a + step] @ rows[a : a + step].to(torch.float64) for a in range(0, m, step))
    second = sum(
        w[a : a + step] @ rows[a : a + step].to(torch.float64).square() for a in range(0, m, step)
    )
    mean = mean / total
    variance = (second / total - mean.square()).clamp(min=0)
    threshold = tol * float(variance.mean())
    for _ in range(max_iter):
        sums = torch.zeros(n_clusters, d, dtype=torch.float64, device=rows.device)
        counts = torch.zeros(n_clusters, dtype=torch.float64, device=rows.device)
        best_d = torch.empty(m, dtype=rows.dtype, device=rows.device)
        c_compute = centers.to(rows.dtype)
        for a in range(0, m, step):
            X, wb = rows[a : a + step], w[a : a + step]
            dist, labels = _sq_distances(X, c_compute).min(1)
            sums.index_add_(0, labels, X.to(torch.float64) * wb[:, None])
            counts.index_add_(0, labels, wb)
            best_d[a : a + step] = dist
        empty = counts == 0
        new = sums / torch.where(empty, 1.0, counts)[:, None]
        if bool(empty.any()):
            lost = torch.nonzero(empty).reshape(-1)
            farthest = torch.sort(best_d, descending=True, stable=True).indices
            farthest = farthest[torch.arange(lost.numel(), device=rows.device) % m]
            new[lost] = rows[farthest].to(torch.float64)
        shift = float((new - centers).square().sum())
        centers = new
        if shift <= threshold:
            break
    c_compute = centers.to(chunks.dtype)
    return c_compute, assign(chunks, c_compute) if with_labels else None
