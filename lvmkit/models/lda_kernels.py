"""The LDA E-step on the CPU, one compiled loop per document (numba).

The torch E-step of :mod:`lvmkit.models.lda` moves every document of a batch in lock step, one
batched product per inner iteration; on a GPU that is the right shape, on a CPU it is memory- and
overhead-bound (each inner iteration streams every document's gathered topic factors, and runs a
dozen tensor operations even when a handful of documents are still moving). Here each document
runs its own coordinate ascent to its own stopping point, its topic factors in the first-level
cache, documents in parallel (``prange``): the same updates, the same stopping rule, the same
numbers (to rounding), without the lock step.

The products over a document's words run in the compute dtype (float32 by default: the topic
factors, the normalizers, exp(E[log θ])); γ is iterated in float64 (and returned in the compute
dtype), ψ and the bound are float64. ψ and exp(ψ) are
computed here (:func:`digamma`, :func:`exp_digamma`; numba has no SciPy special functions), to
2e-13 of SciPy's.
"""

from __future__ import annotations

import contextlib
import math

import numba as nb
import numpy as np

# error_model="numpy": a division by zero gives inf, not an exception (which would keep the
# loops from vectorizing); nothing here divides by zero (γ > 0, normalizers guarded by eps)
_JIT = dict(cache=True, nogil=True, error_model="numpy")
# the sums over topics may be reordered (SIMD); nothing else is relaxed
_SUMS = dict(_JIT, fastmath={"reassoc", "contract"})

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 in two parts (Cody & Waite): n · _LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10
#: 1/12!, 1/11!, …, 1/0!: exp's Taylor coefficients, highest first (Horner)
_EXP_TAYLOR = np.array([1.0 / math.factorial(i) for i in range(12, -1, -1)])


@nb.njit(inline="always", **_JIT)
def _digamma_parts(x: float):
    """(y, r) with ψ(x) = log(y) + r, for x > 0: below 6, the recurrence
    ψ(x) = ψ(x + 6) − Σ_{i<6} 1/(x + i) (the sum as one fraction), then at y = x (+ 6) the
    asymptotic series to y⁻¹⁴ (absolute error below 2e-13; checked against SciPy). One division
    in all, and branch-free (selects), so that loops over it vectorize."""
    num, den = 1.0, x
    for i in range(1, 6):
        num = num * (x + i) + den
        den *= x + i
    small = x < 6.0
    y = x + 6.0 if small else x
    # one division for both 1/den and 1/y
    q = 1.0 / (den * y if small else y)
    inv = den * q if small else q
    shift = -num * y * q if small else 0.0
    f = inv * inv
    series = f * (
        -1.0 / 12
        + f
        * (
            1.0 / 120
            + f * (-1.0 / 252 + f * (1.0 / 240 + f * (-1.0 / 132 + f * (691.0 / 32760 - f / 12))))
        )
    )
    return y, shift - 0.5 * inv + series


@nb.njit(**_JIT)
def digamma(x: float) -> float:
    """ψ(x) for x > 0."""
    y, r = _digamma_parts(x)
    return math.log(y) + r


@nb.njit(**_JIT)
def exp_digamma(x: float) -> float:
    """exp(ψ(x)) for x > 0, with one exponential and no logarithm."""
    y, r = _digamma_parts(x)
    return y * math.exp(r)


@nb.njit(**_JIT)
def exp_digamma_into(xs, out, bits):
    """out[i] ← exp(ψ(xs[i])) for every i (``bits``: int64 scratch of the same length).

    The same arithmetic as :func:`exp_digamma` with the exponential written out, so that the
    loop vectorizes (no calls): exp(r) = 2ⁿ exp(g), n = round(r / ln 2), g = r − n ln 2 in two
    parts, exp(g) by its Taylor polynomial to g¹² (|g| ≤ ln 2 / 2: relative error below 2e-16),
    2ⁿ written as the bits of a float64. Below r = −708 (x below about 1/708) the result is 0
    where the exponential's is subnormal (below 3e-308) or 0."""
    scale = bits.view(np.float64)
    for i in range(xs.shape[0]):
        y, exponent = _digamma_parts(xs[i])
        r = max(exponent, -708.0)
        n = math.floor(r * _LOG2E + 0.5)
        g = (r - n * _LN2_HI) - n * _LN2_LO
        p = _EXP_TAYLOR[0]
        for j in range(1, _EXP_TAYLOR.shape[0]):
            p = p * g + _EXP_TAYLOR[j]
        bits[i] = (np.int64(n) + 1023) << 52
        out[i] = y * p if exponent >= -708.0 else 0.0
    for i in range(xs.shape[0]):
        out[i] *= scale[i]


@nb.njit(**_JIT)
def _exp_elog(gamma, out, work, bits):
    """out ← exp(E[log θ]) = exp(ψ(γ_k)) / exp(ψ(Σ γ)) under Dir(gamma) (1-D; ``work``
    float64 and ``bits`` int64 scratch of its length)."""
    total = 0.0
    for k in range(gamma.shape[0]):
        total += gamma[k]
    exp_digamma_into(gamma, work, bits)
    scale = 1.0 / exp_digamma(total)
    for k in range(gamma.shape[0]):
        out[k] = work[k] * scale


@nb.njit(parallel=True, **_JIT)
def exp_dirichlet_expectation_at(lam, words, out):
    """exp(E[log β_kw]) = exp(ψ(λ_kw)) / exp(ψ(Σ_w λ_kw)) of ``lam`` (K, V) float64 at the
    columns ``words`` (U,) (all of them: ``arange(V)``), into ``out`` (U, K) in its own dtype
    (the E-step's layout). Parallel over blocks of words (no two threads write one cache
    line)."""
    n_topics = lam.shape[0]
    scales = np.empty(n_topics)
    for k in range(n_topics):
        scales[k] = 1.0 / exp_digamma(lam[k].sum())
    block = 512
    n_words = words.shape[0]
    for first in nb.prange((n_words + block - 1) // block):
        a = first * block
        b = min(a + block, n_words)
        values = np.empty(b - a)
        work = np.empty(b - a)
        bits = np.empty(b - a, dtype=np.int64)
        for k in range(n_topics):
            for u in range(a, b):
                values[u - a] = lam[k, words[u]]
            exp_digamma_into(values, work, bits)
            for u in range(a, b):
                out[u, k] = work[u - a] * scales[k]
    return out


@nb.njit(parallel=True, **_JIT)
def topic_word_counts(crow, local_words, unique_words, ratios, exp_theta, factors, n_vocabulary):
    """The expected topic-word counts Σ_d c_dw φ_dwk (K, V) float64: exp(E[log β_kw]) times
    Σ_d exp(E[log θ_dk]) c_dw / n_dw, over the batch's own words (``unique_words`` (U,), the
    entries' words as places in it, ``factors`` (U, K) their exp(E[log β])); zero elsewhere.
    Topics in parallel, each over every entry (no two threads write one row)."""
    n_topics = factors.shape[1]
    out = np.zeros((n_topics, n_vocabulary), dtype=np.float64)
    for k in nb.prange(n_topics):
        local = np.zeros(unique_words.shape[0])
        for d in range(crow.shape[0] - 1):
            e = float(exp_theta[d, k])
            for j in range(crow[d], crow[d + 1]):
                local[local_words[j]] += e * ratios[j]
        row = out[k]
        for u in range(unique_words.shape[0]):
            row[unique_words[u]] = local[u] * factors[u, k]
    return out


@nb.njit(**_SUMS)
def _normalize(factors, et, norm):
    """norm ← the normalizers Σ_k exp(E[log θ_k]) exp(E[log β_kw]) of the document's words
    (``factors`` (K, L): its words' topic factors, words along the fast axis)."""
    for j in range(norm.shape[0]):
        norm[j] = et[0] * factors[0, j]
    for k in range(1, factors.shape[0]):
        e = et[k]
        for j in range(norm.shape[0]):
            norm[j] += e * factors[k, j]


@nb.njit(**_SUMS)
def _ascend(factors, counts, gamma, et, norm, work, bits, alpha, max_iter, tol, eps):
    """One document's coordinate ascent in place: ``gamma`` (K,) float64 from its start to
    where its mean absolute change falls below ``tol`` (or ``max_iter`` steps); ``et`` ends as
    exp(E[log θ]) of the final γ. Returns the number of steps."""
    n_topics, length = factors.shape
    for step in range(max_iter):
        _normalize(factors, et, norm)
        for j in range(length):
            norm[j] = counts[j] / (norm[j] + eps)
        change = 0.0
        for k in range(n_topics):
            acc = factors[k, 0] * norm[0]
            for j in range(1, length):
                acc += factors[k, j] * norm[j]
            new = alpha + et[k] * acc
            change += abs(new - gamma[k])
            gamma[k] = new
        _exp_elog(gamma, et, work, bits)
        if change / n_topics < tol:
            return step + 1
    return max_iter


@nb.njit(**_SUMS)
def _document_bound(factors, counts, gamma, et, norm, ratios, alpha, lgamma_prior, eps):
    """The document's part of the bound, Σ_w c_w log n_w + E[log p(θ) − log q(θ)] (n_w the
    normalizer at exp(E[log θ]) = ``et``), writing c_w / (n_w + eps) into ``ratios``."""
    n_topics = gamma.shape[0]
    _normalize(factors, et, norm)
    words_term = 0.0
    for j in range(norm.shape[0]):
        ratios[j] = counts[j] / (norm[j] + eps)
        words_term += counts[j] * math.log(max(norm[j], 1e-300))
    total = 0.0
    for k in range(n_topics):
        total += gamma[k]
    shift = digamma(total)
    theta = math.lgamma(alpha * n_topics) - math.lgamma(total)
    for k in range(n_topics):
        g = gamma[k]
        theta += (alpha - g) * (digamma(g) - shift) + math.lgamma(g) - lgamma_prior
    return words_term + theta


@nb.njit(parallel=True, **_JIT)
def infer(crow, words, counts, beta_t, start, alpha, max_iter, tol, eps):
    """Every document's E-step, documents in parallel.

    Parameters
    ----------
    crow, words, counts : the batch in CSR form (n + 1,), (nnz,), (nnz,) (counts in the compute
        dtype), every entry's word as a row of ``beta_t``
    beta_t : exp(E[log β])ᵀ at the batch's words (U, K) (or at every word (V, K)), compute dtype
    start : (n, K) starting γ
    alpha, max_iter, tol, eps : the prior, the stopping rule (``max_iter`` 0: evaluate ``start``),
        the normalizer's guard

    Returns
    -------
    gamma, exp_theta : (n, K) compute dtype
    ratios : (nnz,) c_dw / (n_dw + eps) at the final γ (the statistics' weights)
    bounds : (n,) float64 each document's part of the bound
    steps : (n,) int64 the number of steps taken
    """
    n_docs, n_topics = start.shape
    dtype = beta_t.dtype
    gamma = np.empty((n_docs, n_topics), dtype=dtype)
    exp_theta = np.empty((n_docs, n_topics), dtype=dtype)
    ratios = np.empty(words.shape[0], dtype=dtype)
    bounds = np.empty(n_docs, dtype=np.float64)
    steps = np.empty(n_docs, dtype=np.int64)
    lgamma_prior = math.lgamma(alpha)
    for d in nb.prange(n_docs):
        a, b = crow[d], crow[d + 1]
        length = b - a
        factors = np.empty((n_topics, length), dtype=dtype)  # this document's, in cache
        for j in range(length):
            row = beta_t[words[a + j]]
            for k in range(n_topics):
                factors[k, j] = row[k]
        c = counts[a:b]
        norm = np.empty(length, dtype=dtype)
        g = start[d].astype(np.float64)
        et = np.empty(n_topics, dtype=dtype)
        work = np.empty(n_topics)
        bits = np.empty(n_topics, dtype=np.int64)
        _exp_elog(g, et, work, bits)
        steps[d] = _ascend(factors, c, g, et, norm, work, bits, alpha, max_iter, tol, eps)
        bounds[d] = _document_bound(factors, c, g, et, norm, ratios[a:b], alpha, lgamma_prior, eps)
        for k in range(n_topics):
            gamma[d, k] = g[k]
            exp_theta[d, k] = et[k]
    return gamma, exp_theta, ratios, bounds, steps


@contextlib.contextmanager
def threads(n: int):
    """numba's threads set to ``n`` (at most its pool's size) for the block: the E-step follows
    torch's thread setting."""
    before = nb.get_num_threads()
    wanted = max(1, min(int(n), nb.config.NUMBA_NUM_THREADS))
    if wanted == before:
        yield
        return
    nb.set_num_threads(wanted)
    try:
        yield
    finally:
        nb.set_num_threads(before)
