"""The exact posterior of a Markov chain of states: forward-backward and Viterbi, many sequences
at once.

A hidden Markov model's latent variable is a chain z_1 … z_T with p(z_1) = π and
p(z_t | z_{t−1}) = A; its E-step is the posterior over the chain given the observations, whose
marginals (γ, one per step) and pairwise marginals (ξ, summed over steps) are the additive
statistics.

Layout: sequences are *packed* time-major, longest first (as ``torch.nn.utils.rnn``'s
PackedSequence): the rows of step 0 of every sequence, then step 1 of every sequence still
running, and so on. The sequences running at step t are always the first ``sizes[t]`` of the batch,
so each step of a recursion is one matrix product over a contiguous slice: no Python loop over
sequences, no padding, no masks. A :class:`Packing` is made once per batch of sequences (the data
are permuted into its order once per fit), so an EM iteration does no gathering at all.

Numerics: forward-backward runs in probability space with per-step scaling (Rabiner 1989), in
the compute dtype. The emission probabilities are exp(log p(x_t | k) − m_t) with m_t the row's
maximum, so a frame's emissions never underflow as a whole; α̂_t is normalised at every step and
log p(x) = Σ_t log c_t + Σ_t m_t. Should a scale c_t still fall below :data:`UNDERFLOW` (a state
reachable only through a transition of ~1e-30 that then explains x_t better by a factor 1e20, say),
that sequence is recomputed in float64 log space (:func:`log_space`), which cannot underflow.
Viterbi runs in log space.

Long sequences (one sequence of 10⁵ steps would be 10⁵ sequential steps) are cut into blocks of
L ≈ √T steps that run as a batch: a first pass forms every block's scaled transfer matrix
R_b = diag(e_s) A diag(e_{s+1}) ⋯ A diag(e_last) at once (L steps), a second carries the forward
and backward messages across block boundaries (T/L steps), and the blocks' own forward-backward
then runs from those messages (L steps): about 3√T sequential steps instead of T, the same result
up to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lvmkit.families._base import buffer

# A per-step scale below this (float32's tiny · 2²⁴) sends the sequence to the log-space path.
UNDERFLOW = {torch.float32: 2.0e-31, torch.float64: 1.0e-290}
# Sequences longer than this are cut into blocks of ⌈√T_max⌉ steps (see :func:`pack`) ...
BLOCK_FROM = 1024
# ... and so are sequences from this long when few sequences run side by side (fewer than
# NARROW on average): then a step's work is tiny and its fixed cost (a few kernel launches,
# ~50 µs) is the whole cost, so 3√T steps beat T. A wide batch keeps its steps.
BLOCK_NARROW_FROM = 64
NARROW = 32


@dataclass
class Blocks:
    """Long sequences cut into consecutive blocks (sub-sequences of the packing).

    ``chains`` (S, J): for each long sequence, its blocks' positions in the packing, in time order
    (−1 past a shorter chain's end); ``counts`` (S,) how many blocks each has.
    """

    chains: Tensor
    counts: Tensor
    plan: dict | None = None  # index work cached by _block_plan


@dataclass
class Packing:
    """Where each row of the concatenated sequences sits in the packed, time-major order.

    ``order`` (n,): the row (of the concatenation) at every packed position (packed = rows[order]);
    ``sizes[t]``: how many (sub)sequences run at step t; ``offsets[t]``: where step t's rows begin;
    ``lengths`` (B,) and ``seq`` (B,): each (sub)sequence's length and original sequence, longest
    first; ``row_seq`` (n,): each packed row's original sequence; ``last`` (B,): each
    (sub)sequence's last packed row; ``prev`` (n − sizes[0],): the packed row of the step before,
    for every row after a first step.
    """

    order: Tensor
    sizes: list[int]
    offsets: list[int]
    lengths: Tensor
    seq: Tensor
    row_seq: Tensor
    last: Tensor
    prev: Tensor
    n_sequences: int
    blocks: Blocks | None = None

    @property
    def n_rows(self) -> int:
        return int(self.order.numel())

    @property
    def width(self) -> int:
        return int(self.lengths.numel())

    def to(self, device) -> Packing:
        move = lambda t: t.to(device)  # noqa: E731
        blocks = (
            None if self.blocks is None else Blocks(move(self.blocks.chains), self.blocks.counts)
        )
        return Packing(
            move(self.order),
            self.sizes,
            self.offsets,
            move(self.lengths),
            move(self.seq),
            move(self.row_seq),
            move(self.last),
            move(self.prev),
            self.n_sequences,
            blocks,
        )

    def unpack(self, packed: Tensor) -> Tensor:
        """Packed rows back in the concatenation's order."""
        out = torch.empty_like(packed)
        out[self.order] = packed
        return out


def pack(lengths, device="cpu", block: int | None = None) -> Packing:
    """The packed layout of sequences of ``lengths``, given in that order in the rows.

    ``block`` cuts every sequence longer than it into blocks of that many steps (the last
    shorter); ``None`` chooses: no blocks unless the longest sequence has more than
    :data:`BLOCK_FROM` steps (or :data:`BLOCK_NARROW_FROM` when fewer than :data:`NARROW`
    sequences run side by side on average), then blocks of ⌈√T_max⌉ steps; 0 never cuts.
    """
    lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu().reshape(-1)
    n_sequences = int(lengths.numel())
    starts = torch.cumsum(lengths, 0) - lengths
    longest = int(lengths.max()) if n_sequences else 0
    if block is None:
        narrow = n_sequences and int(lengths.sum()) < NARROW * longest
        cut = longest > BLOCK_FROM or (narrow and longest >= BLOCK_NARROW_FROM)
        block = math.ceil(math.sqrt(longest)) if cut else 0
    seq = torch.arange(n_sequences)
    chains = None
    if block and longest > block:
        cut_len = torch.div(
            lengths + block - 1, block, rounding_mode="floor"
        )  # pieces per sequence
        pieces = torch.where(lengths > block, cut_len, torch.ones_like(lengths))
        seq = torch.repeat_interleave(torch.arange(n_sequences), pieces)
        within = torch.arange(int(pieces.sum())) - torch.repeat_interleave(
            torch.cumsum(pieces, 0) - pieces, pieces
        )
        starts = starts[seq] + within * block
        lengths = torch.clamp(lengths[seq] - within * block, max=block)
        long_ids = torch.nonzero(pieces > 1).reshape(-1)
        chains = (long_ids, pieces, within)
    order_b = torch.argsort(lengths, descending=True, stable=True)
    lengths, starts, seq = lengths[order_b], starts[order_b], seq[order_b]
    B = int(lengths.numel())
    T = int(lengths[0]) if B else 0
    counts = torch.bincount(lengths, minlength=T + 1)
    sizes_t = B - torch.cumsum(counts, 0)[:T]  # (sub)sequences with length > t
    offsets_t = torch.cumsum(sizes_t, 0) - sizes_t
    # packed position of (t, b) is offsets[t] + b, for b < sizes[t]
    t_of = torch.repeat_interleave(torch.arange(T), sizes_t)
    b_of = torch.arange(int(sizes_t.sum())) - torch.repeat_interleave(offsets_t, sizes_t)
    order = starts[b_of] + t_of
    row_seq = seq[b_of]
    last = offsets_t[lengths - 1] + torch.arange(B) if B else torch.zeros(0, dtype=torch.int64)
    n0 = int(sizes_t[0]) if T else 0
    later = torch.arange(n0, int(sizes_t.sum()))
    prev = offsets_t[t_of[later] - 1] + b_of[later]
    blocks = None
    if chains is not None:
        long_ids, pieces, within = chains
        where = torch.empty(B, dtype=torch.int64)
        where[order_b] = torch.arange(
            B
        )  # position of each piece (in piece numbering) after sorting
        first_piece = torch.cumsum(pieces, 0) - pieces
        J = int(pieces.max())
        grid = torch.full((long_ids.numel(), J), -1, dtype=torch.int64)
        for i, s in enumerate(long_ids.tolist()):  # a loop over long sequences only
            grid[i, : int(pieces[s])] = where[first_piece[s] : first_piece[s] + pieces[s]]
        blocks = Blocks(grid, pieces[long_ids])
    return Packing(
        order,
        sizes_t.tolist(),
        offsets_t.tolist(),
        lengths,
        seq,
        row_seq,
        last,
        prev,
        n_sequences,
        blocks,
    ).to(device)


# ====================================================================== forward-backward
@dataclass
class Posterior:
    """What forward-backward returns for a packed batch of sequences (weighted by ``weights``).

    ``gamma`` (n, K) packed state marginals, times the row's sequence weight; ``xi`` (K, K)
    Σ_seq w Σ_t p(z_{t−1} = i, z_t = j | x); ``first`` (K,) Σ_seq w p(z_1 | x); ``log_likelihood``
    (n_sequences,) log p(x) of every sequence (float64, unweighted).
    """

    gamma: Tensor
    xi: Tensor
    first: Tensor
    log_likelihood: Tensor


def forward_backward(
    log_emission: Tensor,
    startprob: Tensor,
    transmat: Tensor,
    packing: Packing,
    row_weights: Tensor | None = None,
    workspace: dict | None = None,
) -> Posterior:
    """State posteriors of every packed row, and the summed pairwise posteriors.

    ``log_emission`` (n, K) log p(x_t | z_t = k) of the packed rows; ``startprob`` (K,) and
    ``transmat`` (K, K) in the same (compute) dtype; ``row_weights`` (n,) the weight of each packed
    row's sequence. ``workspace``: a dict the caller keeps across calls, whose buffers the messages
    reuse (fresh multi-MiB allocations cost page faults every iteration); the returned ``gamma``
    then lives in it and is overwritten by the next call.
    """
    dtype, device = log_emission.dtype, log_emission.device
    n, K = log_emission.shape
    n_seq = packing.n_sequences
    if n == 0:
        zero = torch.zeros(K, K, dtype=dtype, device=device)
        return Posterior(
            log_emission.new_zeros(0, K),
            zero,
            zero[0],
            torch.zeros(n_seq, dtype=torch.float64, device=device),
        )
    top = log_emission.amax(1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    E = torch.sub(log_emission, top, out=buffer(workspace, "E", (n, K), log_emission)).exp_()
    B = packing.width
    start = startprob.expand(B, K)
    end = None
    bridge = None
    if packing.blocks is not None:
        start, end, bridge = _across_blocks(E, transmat, startprob, packing)
    w = None if row_weights is None else row_weights.to(dtype)
    alpha, scale = _forward(E, transmat, start, packing, workspace)
    beta, pairs = _backward(E, transmat, scale, end, packing, alpha, w, workspace)
    bad_steps = (scale < UNDERFLOW[dtype]) | ~torch.isfinite(scale)
    bad_seq = None
    if bool(bad_steps.any()):  # left out here, recomputed in log space below
        bad_seq = torch.zeros(n_seq, dtype=torch.bool, device=device)
        bad_seq[packing.row_seq[bad_steps]] = True
        rows = bad_seq[packing.row_seq]
        alpha[rows] = 0.0
        beta[rows] = 0.0
        scale[rows] = 1.0
        pairs = _pairs(E, alpha, beta, scale, packing, w)
    xi = pairs * transmat
    if bridge is not None:
        xi = xi + bridge(alpha, beta, scale, row_weights)
    gamma = alpha.mul_(beta)
    if w is not None:
        gamma.mul_(w[:, None])
    first = first_rows(gamma, packing).sum(0)
    ll_rows = torch.log(scale.to(torch.float64)).add_(top.squeeze(1).to(torch.float64))
    ll = torch.zeros(n_seq, dtype=torch.float64, device=device).index_add_(
        0, packing.row_seq, ll_rows
    )
    if bad_seq is not None:
        gamma, xi, first, ll = _repair(
            bad_seq, log_emission, startprob, transmat, packing, row_weights, gamma, xi, first, ll
        )
    return Posterior(gamma, xi, first, ll)


def _forward(E: Tensor, A: Tensor, start: Tensor, packing: Packing, workspace=None):
    """Scaled forward pass over packed rows: α̂ (n, K) and the scales c (n,)."""
    sizes, offsets = packing.sizes, packing.offsets
    n_rows, K = E.shape
    alpha = buffer(workspace, "alpha", (n_rows, K), E)
    alpha = torch.empty_like(E) if alpha is None else alpha
    scale = buffer(workspace, "scale", (n_rows,), E)
    scale = torch.empty(n_rows, dtype=E.dtype, device=E.device) if scale is None else scale
    n0 = sizes[0]
    a = alpha[:n0]
    torch.mul(start, E[:n0], out=a)
    torch.sum(a, 1, out=scale[:n0])
    a.div_(scale[:n0, None])
    for t in range(1, len(sizes)):
        n, o, p = sizes[t], offsets[t], offsets[t - 1]
        a = alpha[o : o + n]
        torch.mm(alpha[p : p + n], A, out=a)
        a.mul_(E[o : o + n])
        c = scale[o : o + n]
        torch.sum(a, 1, out=c)
        a.div_(c[:, None])
    return alpha, scale


def _backward(E, A, scale, end, packing: Packing, alpha, w, workspace=None):
    """Scaled backward pass: β̂ (n, K), and Σ_t α̂_{t−1}ᵀ (w ∘ u_t) (K, K) with
    u_t = e_t ∘ β̂_t / c_t, which times A (elementwise) is the summed pairwise posterior."""
    sizes, offsets = packing.sizes, packing.offsets
    n_rows, K = E.shape
    beta = buffer(workspace, "beta", (n_rows, K), E)
    beta = torch.empty_like(E) if beta is None else beta
    width = sizes[1] if len(sizes) > 1 else 0
    ubuf = torch.empty(width, K, dtype=E.dtype, device=E.device)
    wbuf = torch.empty(width, K, dtype=E.dtype, device=E.device) if w is not None else None
    pairs = torch.zeros(K, K, dtype=E.dtype, device=E.device)
    beta[packing.last] = 1.0 if end is None else end
    At = A.T.contiguous()
    for t in range(len(sizes) - 2, -1, -1):
        n, o, q = sizes[t + 1], offsets[t], offsets[t + 1]
        u = ubuf[:n]
        torch.mul(E[q : q + n], beta[q : q + n], out=u)
        u.div_(scale[q : q + n, None])
        torch.mm(u, At, out=beta[o : o + n])
        if w is not None:
            u = torch.mul(u, w[q : q + n, None], out=wbuf[:n])
        pairs.addmm_(alpha[o : o + n].T, u)
    return beta, pairs


def _pairs(E, alpha, beta, scale, packing: Packing, w) -> Tensor:
    """Σ_t α̂_{t−1}ᵀ (w ∘ e_t ∘ β̂_t / c_t) from the stored messages (one gather and one product)."""
    n0 = packing.sizes[0]
    U = E[n0:] * beta[n0:] / scale[n0:, None]
    if w is not None:
        U = U * w[n0:, None]
    return alpha.index_select(0, packing.prev).T @ U


def first_rows(values: Tensor, packing: Packing) -> Tensor:
    """The packed rows of ``values`` at the first step of an original sequence (the blocks after
    a long sequence's first are not)."""
    head = values[: packing.sizes[0]]
    if packing.blocks is None:
        return head
    return head[_block_plan(packing, values.device)["true_first"]]


def boundary_pairs(packing: Packing) -> tuple[Tensor, Tensor]:
    """The packed rows of the pairs of consecutive steps that straddle a block boundary: the
    left block's last row and the right block's first (empty without blocks)."""
    if packing.blocks is None:
        empty = packing.prev.new_zeros(0)
        return empty, empty
    plan = _block_plan(packing, packing.prev.device)
    return plan["left_last"], plan["right"]


# ---------------------------------------------------------------------- long sequences in blocks
def _block_plan(packing: Packing, device) -> dict:
    """The index work of :func:`_across_blocks` and :func:`_viterbi_blocks`, done once per packing
    (it depends on the lengths only): the blocks by length, which blocks run at each step of the
    first pass, and which chains are still running at each block index."""
    blocks = packing.blocks
    if blocks.plan is not None:
        return blocks.plan
    chains, counts = blocks.chains.to(device), blocks.counts.to(device)
    members = chains[chains >= 0]
    lengths = packing.lengths.to(device)[members]
    order = torch.argsort(lengths, descending=True, stable=True)
    members, lengths = members[order], lengths[order]
    running = torch.bincount(lengths.cpu(), minlength=int(lengths[0]) + 1)
    running = (members.numel() - torch.cumsum(running, 0)).tolist()  # blocks longer than t
    steps = [
        (running[t], packing.offsets[t] + members[: running[t]]) for t in range(1, int(lengths[0]))
    ]
    S, J = chains.shape
    live = [torch.nonzero(counts > j).reshape(-1) for j in range(J)]
    blk = [chains[live[j], j] for j in range(J)]
    ends_here = [(counts[live[j]] == j + 1)[:, None] for j in range(J)]
    left = [chains[counts > j + 1, j] for j in range(J - 1)]
    right = [chains[counts > j + 1, j + 1] for j in range(J - 1)]
    left = torch.cat(left) if left else chains.new_zeros(0)
    right = torch.cat(right) if right else chains.new_zeros(0)
    true_first = torch.ones(packing.sizes[0], dtype=torch.bool, device=device)
    later = chains[:, 1:]
    true_first[later[later >= 0]] = False
    blocks.plan = {
        "true_first": true_first,
        "members": members,
        "steps": steps,
        "live": live,
        "blk": blk,
        "ends_here": ends_here,
        "left_last": packing.last.to(device)[left],
        "right": right,
        "chains": chains,
        "counts": counts,
    }
    return blocks.plan


def _across_blocks(E: Tensor, A: Tensor, startprob: Tensor, packing: Packing):
    """Messages across the boundaries of the blocks of long sequences.

    Returns every (sub)sequence's ``start`` vector (for a block after the first, the predictive
    distribution of its first state given everything before: α̂ at the previous block's end times
    A), ``end`` vector (β̂ at its last step: 1 where a sequence ends), and a function adding the
    pairwise posteriors of the pairs that straddle a boundary.
    """
    dev, K = E.device, E.shape[1]
    B = packing.width
    plan = _block_plan(packing, dev)
    members = plan["members"]
    # R_b for every block at once, rescaled by its largest entry at every step
    R = torch.diag_embed(E[members])  # step 0 rows are positions 0..B-1: E[b] for block b
    work = torch.empty_like(R)
    top = torch.empty(R.shape[0], dtype=E.dtype, device=dev)
    for m, rows in plan["steps"]:  # in place: no allocation per step
        Rt = torch.matmul(R[:m], A, out=work[:m])
        Rt.mul_(E[rows][:, None, :])
        torch.amax(Rt, dim=(1, 2), out=top[:m])
        torch.div(Rt, top[:m, None, None], out=R[:m])
    transfer = torch.empty(B, K, K, dtype=E.dtype, device=dev)
    transfer[members] = R
    start = startprob.expand(B, K).clone()
    end = torch.ones(B, K, dtype=E.dtype, device=dev)
    S, J = plan["chains"].shape
    prior = startprob.expand(S, K).clone()
    alpha_end = torch.zeros(S, J, K, dtype=E.dtype, device=dev)
    for j in range(J):  # forward across blocks
        live, blk = plan["live"][j], plan["blk"][j]
        start[blk] = prior[live]
        a = torch.bmm(prior[live, None, :], transfer[blk]).squeeze(1)
        a = a / a.sum(1, keepdim=True)
        alpha_end[live, j] = a
        prior[live] = a @ A
    v = torch.ones(S, K, dtype=E.dtype, device=dev)
    for j in range(J - 1, -1, -1):  # backward: v_j = A R_{j+1} v_{j+1}; end_j ∝ v_j, α̂·end = 1
        live, blk = plan["live"][j], plan["blk"][j]
        vv = torch.where(plan["ends_here"][j], 1.0, v[live])
        end[blk] = vv / (alpha_end[live, j] * vv).sum(1, keepdim=True)
        nxt = torch.bmm(transfer[blk], vv[:, :, None]).squeeze(-1) @ A.T
        v[live] = nxt / nxt.amax(1, keepdim=True)
    left_last, right = plan["left_last"], plan["right"]

    def bridge(alpha, beta, scale, row_weights):
        a_last = alpha[left_last]  # α̂ at the left block's last step
        u = E[right] * beta[right] / scale[right][:, None]  # right block's first step: row b
        if row_weights is not None:
            u = u * row_weights[right].to(u.dtype)[:, None]
        return (a_last.T @ u) * A

    return start, end, bridge


# ---------------------------------------------------------------------- log space (fallback)
def log_space(log_emission: Tensor, startprob: Tensor, transmat: Tensor, lengths) -> tuple:
    """Forward-backward in float64 log space for sequences given in their rows' order.

    Returns ``(log γ (n, K) in the rows' order, log Σ_t ξ_t (S, K, K), log γ_1 (S, K),
    log p(x) (S,))``. Slower (a (B, K, K) log-sum-exp per step) but it cannot underflow.
    """
    f64 = torch.float64
    packing = pack(lengths, log_emission.device, block=0)
    le = log_emission.to(f64)[packing.order]
    log_a, log_pi = torch.log(transmat.to(f64)), torch.log(startprob.to(f64))
    sizes, offsets = packing.sizes, packing.offsets
    la = torch.empty_like(le)
    la[: sizes[0]] = log_pi + le[: sizes[0]]
    for t in range(1, len(sizes)):
        n, o, p = sizes[t], offsets[t], offsets[t - 1]
        la[o : o + n] = torch.logsumexp(la[p : p + n, :, None] + log_a, dim=1) + le[o : o + n]
    lb = torch.empty_like(le)
    lb[packing.last] = 0.0
    lxi = torch.full((packing.width, *log_a.shape), -math.inf, dtype=f64, device=le.device)
    ll = torch.logsumexp(la[packing.last], dim=1)  # (B,) in packed order
    for t in range(len(sizes) - 2, -1, -1):
        n, o, q = sizes[t + 1], offsets[t], offsets[t + 1]
        nxt = (le[q : q + n] + lb[q : q + n])[:, None, :]
        lb[o : o + n] = torch.logsumexp(log_a + nxt, dim=2)
        term = la[o : o + n, :, None] + log_a + nxt - ll[:n, None, None]
        lxi[:n] = torch.logaddexp(lxi[:n], term)
    b_of_row = torch.zeros(packing.n_rows, dtype=torch.int64, device=le.device)
    for n, o in zip(sizes, offsets, strict=True):
        b_of_row[o : o + n] = torch.arange(n, device=le.device)
    log_gamma = la + lb - ll[b_of_row][:, None]
    inverse = torch.empty_like(packing.seq)
    inverse[packing.seq] = torch.arange(packing.width, device=le.device)
    return packing.unpack(log_gamma), lxi[inverse], log_gamma[: sizes[0]][inverse], ll[inverse]


def _repair(bad_seq, log_emission, startprob, transmat, packing, row_weights, gamma, xi, first, ll):
    """Add the posteriors of the sequences whose scaled pass underflowed (zeroed out of
    ``gamma``, ``xi``, ``first`` and ``ll`` by the caller), recomputed in float64 log space."""
    dtype, device = gamma.dtype, gamma.device
    bad = torch.nonzero(bad_seq).reshape(-1)
    rows = torch.nonzero(bad_seq[packing.row_seq]).reshape(-1)
    # those rows in the concatenation's order, sequence by sequence
    original = packing.order[rows]
    sort = torch.argsort(original)
    rows, original = rows[sort], original[sort]
    lengths = torch.bincount(packing.row_seq[rows], minlength=packing.n_sequences)[bad]
    lg, lxi, lfirst, lll = log_space(log_emission[rows], startprob, transmat, lengths.cpu())
    g, seq_xi, seq_first = lg.exp(), lxi.exp(), lfirst.exp()
    if row_weights is not None:
        w_rows = row_weights[rows].to(torch.float64)
        w_seq = torch.zeros(packing.n_sequences, dtype=torch.float64, device=device)
        w_seq[packing.row_seq[rows]] = w_rows
        w = w_seq[bad]
        g = g * w_rows[:, None]
        seq_xi = seq_xi * w[:, None, None]
        seq_first = seq_first * w[:, None]
    gamma = gamma.clone()
    gamma[rows] = g.to(dtype)
    ll = ll.clone()
    ll[bad] = lll
    return gamma, xi + seq_xi.sum(0).to(dtype), first + seq_first.sum(0).to(dtype), ll


# ====================================================================== Viterbi
def viterbi(
    log_emission: Tensor, log_startprob: Tensor, log_transmat: Tensor, packing: Packing
) -> tuple[Tensor, Tensor]:
    """The most probable state path of every sequence and its log-probability log p(x, path):
    ``(states (n,) int64 packed, log_prob (n_sequences,) float64)``. Log space; every step's δ is
    shifted by its maximum (the shifts summed in float64), so a long sequence in float32 still
    tells paths apart by 1e-7 of one step's values, not of the whole sequence's.

    Long sequences cut into blocks (``packing.blocks``) are decoded as the blocks of
    forward-backward are: each block's max-product transfer matrix for all blocks at once, the
    messages across boundaries, the blocks' own recursion from those messages with their paths
    back from every possible end state, then the end states chosen from the last block backwards.
    """
    if packing.blocks is None:
        start = log_startprob.expand(packing.width, -1)
        delta, back, shift = _max_product(log_emission, start, log_transmat, packing)
        score, final = delta[packing.last].max(dim=1)
        states = torch.empty(packing.n_rows, dtype=torch.int64, device=log_emission.device)
        states[packing.last] = final
        for t in range(len(packing.sizes) - 1, 0, -1):
            n, o, p = packing.sizes[t], packing.offsets[t], packing.offsets[t - 1]
            states[p : p + n] = back[o : o + n].gather(1, states[o : o + n, None]).squeeze(1)
        total = torch.zeros(packing.n_sequences, dtype=torch.float64, device=shift.device)
        total.index_add_(0, packing.row_seq, shift)
        total[packing.seq] += score.to(torch.float64)
        return states, total
    return _viterbi_blocks(log_emission, log_startprob, log_transmat, packing)


def _max_product(LE: Tensor, start: Tensor, log_a: Tensor, packing: Packing):
    """δ (n, K), the back pointers (n, K) and the shifts (n,) float64 of the max-product recursion
    from ``start`` (B, K); each step's δ is shifted to a maximum of 0."""
    sizes, offsets = packing.sizes, packing.offsets
    delta = torch.empty_like(LE)
    shift = torch.empty(LE.shape[0], dtype=LE.dtype, device=LE.device)
    back = torch.empty(LE.shape, dtype=torch.int64, device=LE.device)
    n0 = sizes[0]
    torch.add(start, LE[:n0], out=delta[:n0])
    torch.amax(delta[:n0], 1, out=shift[:n0])
    delta[:n0] -= shift[:n0, None]
    for t in range(1, len(sizes)):
        n, o, p = sizes[t], offsets[t], offsets[t - 1]
        best, arg = (delta[p : p + n, :, None] + log_a).max(dim=1)
        d = torch.add(best, LE[o : o + n], out=delta[o : o + n])
        torch.amax(d, 1, out=shift[o : o + n])
        d -= shift[o : o + n, None]
        back[o : o + n] = arg
    bad = ~torch.isfinite(shift)
    if bool(bad.any()):  # a step no state can explain: -inf for its sequence, as without shifts
        shift = torch.where(bad, torch.full_like(shift, -math.inf), shift)
    return delta, back, shift.to(torch.float64)


def _viterbi_blocks(LE: Tensor, log_pi: Tensor, log_a: Tensor, packing: Packing):
    dev, K = LE.device, LE.shape[1]
    f64 = torch.float64
    B = packing.width
    plan = _block_plan(packing, dev)
    chains, counts, members = plan["chains"], plan["counts"], plan["members"]
    # W_b[i, j]: the best log-probability of block b's steps from state i at its first step to
    # state j at its last (emissions included), for every block at once; shifted by its maximum
    W = torch.full((members.numel(), K, K), -math.inf, dtype=LE.dtype, device=dev)
    W.diagonal(dim1=1, dim2=2).copy_(LE[members])
    w_shift = W.amax((1, 2)).to(f64)
    W -= w_shift.to(W.dtype)[:, None, None]
    for m, rows in plan["steps"]:
        step = LE[rows][:, None, :]
        W[:m] = (W[:m, :, :, None] + log_a).amax(2) + step
        top = W[:m].amax((1, 2))
        W[:m] -= top[:, None, None]
        w_shift[:m] += top.to(f64)
    transfer = torch.empty(B, K, K, dtype=LE.dtype, device=dev)
    transfer[members] = W
    offset = torch.zeros(B, dtype=f64, device=dev)
    offset[members] = w_shift
    # across blocks: each block's start vector and, per state, the best state before it
    start = log_pi.expand(B, K).clone()
    S, J = chains.shape
    ends = torch.empty(S, J, K, dtype=LE.dtype, device=dev)
    came_from = torch.zeros(S, J, K, dtype=torch.int64, device=dev)
    chain_shift = torch.zeros(S, J, dtype=f64, device=dev)  # Σ of the shifts up to block j
    prior = log_pi.expand(S, K).clone()
    for j in range(J):
        live, blk = plan["live"][j], plan["blk"][j]
        before = (
            chain_shift[live, j - 1] if j > 0 else torch.zeros(live.numel(), dtype=f64, device=dev)
        )
        if j > 0:
            best, arg = (ends[live, j - 1, :, None] + log_a).max(dim=1)
            prior[live], came_from[live, j] = best, arg
        start[blk] = prior[live]
        e = (prior[live, :, None] + transfer[blk]).amax(1)
        top = e.amax(1, keepdim=True)
        ends[live, j] = e - top
        chain_shift[live, j] = before + offset[blk] + top.squeeze(1).to(f64)
    delta, back, shift = _max_product(LE, start, log_a, packing)
    # every (sub)sequence's path back from each of the K end states
    sizes, offsets = packing.sizes, packing.offsets
    paths = torch.empty(packing.n_rows, K, dtype=torch.int64, device=dev)
    paths[packing.last] = torch.arange(K, device=dev)
    for t in range(len(sizes) - 1, 0, -1):
        n, o, p = sizes[t], offsets[t], offsets[t - 1]
        paths[p : p + n] = back[o : o + n].gather(1, paths[o : o + n])
    # end states: a plain sequence's best; a chain's from its last block backwards
    score, end_state = delta[packing.last].max(dim=1)
    seq_score = torch.zeros(packing.n_sequences, dtype=f64, device=dev)
    seq_score.index_add_(0, packing.row_seq, shift)  # the chains' entries are replaced below
    seq_score[packing.seq] += score.to(f64)
    rows = torch.arange(S, device=dev)
    state = ends[rows, counts - 1].argmax(1)
    last_blk = chains[rows, counts - 1]
    seq_score[packing.seq[last_blk]] = chain_shift[rows, counts - 1]  # the final max is 0
    for j in range(J - 1, -1, -1):
        live, blk = plan["live"][j], plan["blk"][j]
        mine = torch.where(counts[live] - 1 == j, ends[live, j].argmax(1), state[live])
        end_state[blk] = mine
        first_state = paths[blk, mine]  # the block's first row is its position b
        state[live] = came_from[live, j].gather(1, first_state[:, None]).squeeze(1)
    states = paths.gather(1, end_state[_position_of_rows(packing, dev)][:, None]).squeeze(1)
    return states, seq_score


def _position_of_rows(packing: Packing, device) -> Tensor:
    """The (sub)sequence position b of every packed row (n,)."""
    out = torch.empty(packing.n_rows, dtype=torch.int64, device=device)
    for n, o in zip(packing.sizes, packing.offsets, strict=True):
        out[o : o + n] = torch.arange(n, device=device)
    return out
