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

# A per-step scale below this (float32's tiny · 2²⁴) sends the sequence to the log-space path.
UNDERFLOW = {torch.float32: 2.0e-31, torch.float64: 1.0e-290}
# Sequences longer than this are cut into blocks of ⌈√T_max⌉ steps (see :func:`pack`).
BLOCK_FROM = 1024


@dataclass
class Blocks:
    """Long sequences cut into consecutive blocks (sub-sequences of the packing).

    ``chains`` (S, J): for each long sequence, its blocks' positions in the packing, in time order
    (−1 past a shorter chain's end); ``counts`` (S,) how many blocks each has.
    """

    chains: Tensor
    counts: Tensor


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
    :data:`BLOCK_FROM` steps, then blocks of ⌈√T_max⌉ steps; 0 never cuts.
    """
    lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu().reshape(-1)
    n_sequences = int(lengths.numel())
    starts = torch.cumsum(lengths, 0) - lengths
    longest = int(lengths.max()) if n_sequences else 0
    if block is None:
        block = math.ceil(math.sqrt(longest)) if longest > BLOCK_FROM else 0
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
) -> Posterior:
    """State posteriors of every packed row, and the summed pairwise posteriors.

    ``log_emission`` (n, K) log p(x_t | z_t = k) of the packed rows; ``startprob`` (K,) and
    ``transmat`` (K, K) in the same (compute) dtype; ``row_weights`` (n,) the weight of each packed
    row's sequence.
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
    E = torch.sub(log_emission, top).exp_()
    B = packing.width
    start = startprob.expand(B, K)
    end = None
    bridge = None
    if packing.blocks is not None:
        start, end, bridge = _across_blocks(E, transmat, startprob, packing)
    alpha, scale = _forward(E, transmat, start, packing)
    beta, U = _backward(E, transmat, scale, end, packing)
    bad_steps = (scale < UNDERFLOW[dtype]) | ~torch.isfinite(scale)
    bad_seq = None
    if bool(bad_steps.any()):  # left out here, recomputed in log space below
        bad_seq = torch.zeros(n_seq, dtype=torch.bool, device=device)
        bad_seq[packing.row_seq[bad_steps]] = True
        rows = bad_seq[packing.row_seq]
        alpha[rows] = 0.0
        beta[rows] = 0.0
        U[rows] = 0.0
        scale[rows] = 1.0
    gamma = alpha * beta
    n0 = packing.sizes[0]
    if row_weights is not None:
        w = row_weights.to(dtype)
        gamma.mul_(w[:, None])
        U[n0:] *= w[n0:, None]
    xi = (alpha.index_select(0, packing.prev).T @ U[n0:]) * transmat
    if bridge is not None:
        xi = xi + bridge(alpha, beta, scale, row_weights)
    first = _first_rows(gamma, packing).sum(0)
    ll_rows = torch.log(scale.to(torch.float64)).add_(top.squeeze(1).to(torch.float64))
    ll = torch.zeros(n_seq, dtype=torch.float64, device=device).index_add_(
        0, packing.row_seq, ll_rows
    )
    if bad_seq is not None:
        gamma, xi, first, ll = _repair(
            bad_seq, log_emission, startprob, transmat, packing, row_weights, gamma, xi, first, ll
        )
    return Posterior(gamma, xi, first, ll)


def _forward(E: Tensor, A: Tensor, start: Tensor, packing: Packing) -> tuple[Tensor, Tensor]:
    """Scaled forward pass over packed rows: α̂ (n, K) and the scales c (n,)."""
    sizes, offsets = packing.sizes, packing.offsets
    alpha = torch.empty_like(E)
    scale = torch.empty(E.shape[0], dtype=E.dtype, device=E.device)
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


def _backward(E: Tensor, A: Tensor, scale: Tensor, end: Tensor | None, packing: Packing):
    """Scaled backward pass: β̂ (n, K), and U (n, K) = e_t ∘ β̂_t / c_t (the rows of a first step
    are left undefined), whose products with α̂_{t−1} are the pairwise posteriors."""
    sizes, offsets = packing.sizes, packing.offsets
    beta = torch.empty_like(E)
    U = torch.empty_like(E)
    beta[packing.last] = 1.0 if end is None else end
    At = A.T.contiguous()
    for t in range(len(sizes) - 2, -1, -1):
        n, o, q = sizes[t + 1], offsets[t], offsets[t + 1]
        u = U[q : q + n]
        torch.mul(E[q : q + n], beta[q : q + n], out=u)
        u.div_(scale[q : q + n, None])
        torch.mm(u, At, out=beta[o : o + n])
    return beta, U


def _first_rows(gamma: Tensor, packing: Packing) -> Tensor:
    """The rows of γ at the first step of an original sequence (the blocks after a long
    sequence's first are not)."""
    head = gamma[: packing.sizes[0]]
    if packing.blocks is None:
        return head
    keep = torch.ones(packing.sizes[0], dtype=torch.bool, device=gamma.device)
    later = packing.blocks.chains[:, 1:]
    keep[later[later >= 0]] = False
    return head[keep]


# ---------------------------------------------------------------------- long sequences in blocks
def _across_blocks(E: Tensor, A: Tensor, startprob: Tensor, packing: Packing):
    """Messages across the boundaries of the blocks of long sequences.

    Returns every (sub)sequence's ``start`` vector (for a block after the first, the predictive
    distribution of its first state given everything before: α̂ at the previous block's end times
    A), ``end`` vector (β̂ at its last step: 1 where a sequence ends), and a function adding the
    pairwise posteriors of the pairs that straddle a boundary.
    """
    dev, K = E.device, E.shape[1]
    B = packing.width
    chains, counts = packing.blocks.chains, packing.blocks.counts.to(dev)
    members = chains[chains >= 0]
    lengths = packing.lengths[members]
    order = torch.argsort(lengths, descending=True, stable=True)
    members, lengths = members[order], lengths[order]
    # R_b for every block at once, rescaled by its largest entry at every step
    R = torch.diag_embed(E[members])  # step 0 rows are positions 0..B-1: E[b] for block b
    for t in range(1, int(lengths[0])):
        m = int((lengths > t).sum())
        Rt = torch.matmul(R[:m], A).mul_(E[packing.offsets[t] + members[:m]][:, None, :])
        R[:m] = Rt / Rt.amax(dim=(1, 2), keepdim=True)
    transfer = torch.empty(B, K, K, dtype=E.dtype, device=dev)
    transfer[members] = R
    start = startprob.expand(B, K).clone()
    end = torch.ones(B, K, dtype=E.dtype, device=dev)
    S, J = chains.shape
    prior = startprob.expand(S, K).clone()
    alpha_end = torch.zeros(S, J, K, dtype=E.dtype, device=dev)
    for j in range(J):  # forward across blocks
        live = torch.nonzero(counts > j).reshape(-1)
        blk = chains[live, j]
        start[blk] = prior[live]
        a = torch.bmm(prior[live, None, :], transfer[blk]).squeeze(1)
        a = a / a.sum(1, keepdim=True)
        alpha_end[live, j] = a
        prior[live] = a @ A
    v = torch.ones(S, K, dtype=E.dtype, device=dev)
    for j in range(J - 1, -1, -1):  # backward: v_j = A R_{j+1} v_{j+1}; end_j ∝ v_j, α̂·end = 1
        live = torch.nonzero(counts > j).reshape(-1)
        blk = chains[live, j]
        vv = torch.where((counts[live] == j + 1)[:, None], torch.ones_like(v[live]), v[live])
        end[blk] = vv / (alpha_end[live, j] * vv).sum(1, keepdim=True)
        nxt = torch.bmm(transfer[blk], vv[:, :, None]).squeeze(-1) @ A.T
        v[live] = nxt / nxt.amax(1, keepdim=True)
    left = [chains[counts > j + 1, j] for j in range(J - 1)]
    right = [chains[counts > j + 1, j + 1] for j in range(J - 1)]
    left = torch.cat(left) if left else chains.new_zeros(0)
    right = torch.cat(right) if right else chains.new_zeros(0)

    def bridge(alpha, beta, scale, row_weights):
        a_last = alpha[packing.last[left]]  # α̂ at the left block's last step
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
    """The most probable state path of every sequence (packed, no blocks) and its
    log-probability: ``(states (n,) int64 packed, log_prob (n_sequences,) float64)``."""
    sizes, offsets = packing.sizes, packing.offsets
    delta = torch.empty_like(log_emission)
    back = torch.empty(log_emission.shape, dtype=torch.int64, device=log_emission.device)
    n0 = sizes[0]
    torch.add(log_startprob, log_emission[:n0], out=delta[:n0])
    for t in range(1, len(sizes)):
        n, o, p = sizes[t], offsets[t], offsets[t - 1]
        best, arg = (delta[p : p + n, :, None] + log_transmat).max(dim=1)
        torch.add(best, log_emission[o : o + n], out=delta[o : o + n])
        back[o : o + n] = arg
    score, final = delta[packing.last].max(dim=1)
    states = torch.empty(packing.n_rows, dtype=torch.int64, device=log_emission.device)
    states[packing.last] = final
    for t in range(len(sizes) - 1, 0, -1):
        n, o, p = sizes[t], offsets[t], offsets[t - 1]
        states[p : p + n] = back[o : o + n].gather(1, states[o : o + n, None]).squeeze(1)
    inverse = torch.empty_like(packing.seq)
    inverse[packing.seq] = torch.arange(packing.width, device=log_emission.device)
    return states, score.to(torch.float64)[inverse]
