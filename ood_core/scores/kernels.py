"""Compiled row kernels for the scores' hot paths (numba, parallel over rows).

Every kernel reads the cached float32 arrays as they are and accumulates in float64, so its result equals the
straightforward float64 numpy computation up to summation order (≈1e-15 relative; the tests assert rank equality and
closeness against those references). Nothing here allocates per row: work that depends only on the data, not on a
slider, is done once by a ``Prepare`` step (rows sorted in descending order, row sums, base logits), so that a slider
move costs one pass over the entries it actually changes.
"""

from __future__ import annotations

import numpy as np
import torch

from ..jit import njit, prange

# Rows are processed in this many contiguous chunks (scratch allocated once per chunk, not per row).
CHUNKS = 256
# ``prefix_scores`` locates this many rows' positions before walking any of them (see there).
BATCH = 16
# ``class_walk_energy`` works on this many rows at a time (its [K, rows] accumulator stays in cache).
ROW_BLOCK = 1024
# Reassociation lets the compiler vectorise the sums (FMA contraction too); NaN/inf semantics are kept, so a
# non-finite input still gives a non-finite score that the workspace reports.
FAST = {"reassoc", "contract", "nsz"}


def float32_floor(value: float) -> np.float32:
    """The largest float32 ≤ ``value``: ``x > value`` ⟺ ``x > float32_floor(value)`` for every float32 ``x``."""
    below = np.float32(value)
    return below if float(below) <= value else np.nextafter(below, np.float32(-np.inf))


# e^x for x < −700 is below 1e−304: added to a row's sum, which holds e⁰ = 1, it changes no bit of the sum, but numpy's
# vectorised exp takes a ~40× slower path for results in the subnormal range (ASH-S's scaled logits, a small T).
EXP_FLOOR = -700.0


def finish_energy(shifted: np.ndarray, top: np.ndarray) -> None:
    """``top[i] += log Σ_k e^{shifted[i, k]}``: the energies from the kernels' row maxima and shifted logits, which
    they have already raised to ``EXP_FLOOR`` (``exponent``); ``shifted`` is overwritten by its exponentials."""
    totals = np.empty(len(top))
    row_sums(np.exp(shifted, out=shifted), totals)
    top += np.log(totals)


@njit(cache=True, inline="always")
def exponent(value: float) -> float:
    """``max(value, EXP_FLOOR)`` for an exponent whose e^x is only added to a row sum holding e⁰ (NaN stays NaN)."""
    return max(value, EXP_FLOOR)


@njit(cache=True, inline="always", fastmath=FAST)
def _lse(acc: np.ndarray, k: int) -> float:
    m = acc[0]
    for q in range(1, k):
        m = max(m, acc[q])
    s = 0.0
    for q in range(k):
        s += np.exp(acc[q] - m)
    return m + np.log(s)


@njit(parallel=True, cache=True, fastmath=FAST)
def shifted_rows(
    logits: np.ndarray,
    temperature: float,
    floor: float,
    shifted: np.ndarray,
    top: np.ndarray,
) -> None:
    """``top[i] = max_k z_ik`` and ``shifted[i, k] = max((z_ik − top[i]) / T, floor)`` in float64 (≤ 0: its
    exponentials cannot overflow; NaN stays NaN). The exponentials themselves are left to numpy, whose vectorised
    exp is ~3× faster than the scalar one available here; ``floor = EXP_FLOOR`` keeps it off its subnormal path
    when only the exponentials' row sums are wanted."""
    n, k = logits.shape
    for i in prange(n):
        m = np.float64(logits[i, 0])
        for q in range(1, k):
            m = max(m, np.float64(logits[i, q]))
        top[i] = m
        for q in range(k):
            value = (np.float64(logits[i, q]) - m) / temperature
            shifted[i, q] = max(value, floor)


@njit(parallel=True, cache=True, fastmath=FAST)
def lse_rows(logits: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = logsumexp(logits_i)`` (float64 logits)."""
    n, k = logits.shape
    for i in prange(n):
        out[i] = _lse(logits[i], k)


@njit(parallel=True, cache=True, fastmath=FAST)
def entropy_rows(
    shifted: np.ndarray, exponentials: np.ndarray, out: np.ndarray, totals: np.ndarray
) -> None:
    """``out[i] = Σ_k e_ik d_ik / Σ_k e_ik`` and ``totals[i] = Σ_k e_ik`` from ``d = z − max z`` and ``e = e^d``
    (numpy's vectorised exp), both row sums in one pass; ``Σ_k p_ik log p_ik = out[i] − log totals[i]`` (numpy's
    vectorised log: numba's is a scalar call per row)."""
    n, k = shifted.shape
    for i in prange(n):
        total = 0.0
        weighted = 0.0
        for q in range(k):
            total += exponentials[i, q]
            weighted += exponentials[i, q] * shifted[i, q]
        out[i] = weighted / total
        totals[i] = total


@njit(parallel=True, cache=True, fastmath=FAST)
def kl_rows(logits: np.ndarray, log_templates: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = max_c Σ_k p_ik log d_ck − Σ_k p_ik log p_ik = −min_c KL(p_i ‖ d_c)`` with ``p_i = softmax(z_i)``,
    in one pass per row: with e = e^{z − max z} and s = Σ e, ``Σ p log d = (e·log d)/s`` and
    ``Σ p log p = (e·(z − max z))/s − log s``. (numpy's version spent its time in reductions over rows of 10.)"""
    n, k = logits.shape
    size = (n + CHUNKS - 1) // CHUNKS
    for chunk in prange(CHUNKS):
        e = np.empty(k)
        for i in range(chunk * size, min(n, (chunk + 1) * size)):
            m = np.float64(logits[i, 0])
            for q in range(1, k):
                m = max(m, np.float64(logits[i, q]))
            total = 0.0
            weighted = 0.0
            for q in range(k):
                shifted = np.float64(logits[i, q]) - m
                e[q] = np.exp(shifted)
                total += e[q]
                weighted += e[q] * shifted
            best = -np.inf
            for c in range(log_templates.shape[0]):
                cross = 0.0
                for q in range(k):
                    cross += e[q] * log_templates[c, q]
                best = max(best, cross)
            out[i] = (best - weighted) / total + np.log(total)


@njit(parallel=True, cache=True, fastmath=FAST)
def nap_rows(
    channel_max: np.ndarray, channel_mean: np.ndarray, eps: float, out: np.ndarray
) -> None:
    """``out[i] = mean_c (max_ic / (mean_ic + ε))²``."""
    n, c = channel_max.shape
    for i in prange(n):
        s = 0.0
        for j in range(c):
            r = np.float64(channel_max[i, j]) / (np.float64(channel_mean[i, j]) + eps)
            s += r * r
        out[i] = s / c


@njit(parallel=True, cache=True, fastmath=FAST)
def row_sums(values: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = Σ_j values[i, j]``, accumulated in float64 (float32 or float64 values)."""
    n, c = values.shape
    for i in prange(n):
        s = 0.0
        for j in range(c):
            s += np.float64(values[i, j])
        out[i] = s


@njit(parallel=True, cache=True, fastmath=FAST)
def line_energy(
    h: np.ndarray,
    predicted: np.ndarray,
    clip: float,
    starts: np.ndarray,
    pair_class: np.ndarray,
    pair_column: np.ndarray,
    pair_weight: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
) -> None:
    """LINe's score ``logsumexp(b + Σ_pairs W_kj · min(h_j, τ))``: row i uses the kept (k, j) pairs of its predicted
    class ĉ (``starts[ĉ]:starts[ĉ+1]``, grouped by output class k, weights already masked by the activation and
    weight masks); each class's sum is accumulated in a register."""
    n = h.shape[0]
    k = bias.shape[0]
    size = (n + CHUNKS - 1) // CHUNKS
    for chunk in prange(CHUNKS):
        acc = np.empty(k)
        for i in range(chunk * size, min(n, (chunk + 1) * size)):
            for q in range(k):
                acc[q] = bias[q]
            c = predicted[i]
            start, end = starts[c], starts[c + 1]
            if start < end:
                current = pair_class[start]
                total = 0.0
                for p in range(start, end):
                    q = pair_class[p]
                    if q != current:
                        acc[current] += total
                        total = 0.0
                        current = q
                    total += pair_weight[p] * min(
                        np.float64(h[i, pair_column[p]]), clip
                    )
                acc[current] += total
            out[i] = _lse(acc, k)


@njit(parallel=True, cache=True)
def pruned_head(
    weight: np.ndarray,
    importance: np.ndarray,
    threshold: float,
    prune: bool,
    active: np.ndarray,
    out: np.ndarray,
) -> None:
    """LINe's head for one class c: ``out[k, j] = W[k, j]`` where ``|Φ_c[j]|·W[k, j] > threshold`` (every weight
    when not ``prune``) and ``active[j]``, else 0. W is the cached float32 head; the product is taken in float64
    and exact IEEE (no fastmath), so the mask equals ``line.weight_mask``'s."""
    k, d = weight.shape
    for q in prange(k):
        for j in range(d):
            w = weight[q, j]
            keep = active[j] and (
                not prune or importance[j] * np.float64(w) > threshold
            )
            out[q, j] = w if keep else np.float32(0.0)


@njit(cache=True, inline="always")
def _order_key(value: float, buf: np.ndarray, bits: np.ndarray) -> int:
    """An int64 that orders float64 values as numbers (−0 just below +0); ``buf``/``bits`` view one float64."""
    buf[0] = value
    b = bits[0]
    return b if b >= 0 else -(b & 0x7FFFFFFFFFFFFFFF) - 1


@njit(cache=True, inline="always")
def _order_value(key: int, buf: np.ndarray, bits: np.ndarray) -> float:
    bits[0] = key if key >= 0 else (-(key + 1)) | np.int64(-0x8000000000000000)
    return buf[0]


@njit(cache=True, inline="always")
def _first_above(scale: float, sorted_columns: np.ndarray, j: int, value: float) -> int:
    """The first row i of column j with ``scale · W[i, j] > value`` (the column is ascending and scale ≥ 0, so its
    products are too): a binary search."""
    low, high = 0, sorted_columns.shape[0]
    while low < high:
        middle = (low + high) >> 1
        if scale * sorted_columns[middle, j] <= value:
            low = middle + 1
        else:
            high = middle
    return low


@njit(cache=True)
def _products_at_most(
    scale: np.ndarray, sorted_columns: np.ndarray, value: float
) -> int:
    """``#{(i, j): scale_j · W[i, j] ≤ value}`` (float64 products), one binary search per column."""
    total = 0
    for j in range(sorted_columns.shape[1]):
        total += _first_above(scale[j], sorted_columns, j, value)
    return total


@njit(parallel=True, cache=True)
def product_order_statistics(
    scales: np.ndarray, sorted_columns: np.ndarray, rank: int, out: np.ndarray
) -> None:
    """``out[c] = (v_rank, v_rank+1)``: the rank-th and next smallest (0-based) of the products
    ``scales[c, j] · W[i, j]`` over all (i, j), exactly, without forming them (LINe's weight thresholds:
    ``sorted_columns`` is W with each column sorted, scales ≥ 0). A binary search over the float64 values in
    their int64 order finds the smallest value with more than ``rank`` products at or below it (≤ 64 steps, each
    counting column by column); the next one is that value again or the smallest product above it."""
    k, d = sorted_columns.shape
    for c in prange(scales.shape[0]):
        buf = np.empty(1)
        bits = buf.view(np.int64)
        scale = scales[c]
        smallest, largest = np.inf, -np.inf
        for j in range(d):
            smallest = min(smallest, scale[j] * sorted_columns[0, j])
            largest = max(largest, scale[j] * sorted_columns[k - 1, j])
        low = _order_key(smallest, buf, bits)
        high = _order_key(largest, buf, bits)
        while low < high:
            middle = (low >> 1) + (high >> 1) + (low & high & 1)  # ⌊(low + high)/2⌋
            count = _products_at_most(
                scale, sorted_columns, _order_value(middle, buf, bits)
            )
            if count > rank:
                high = middle
            else:
                low = middle + 1
        value = _order_value(low, buf, bits)
        at_most, following = (
            0,
            np.inf,
        )  # products ≤ value, and the smallest one above it
        for j in range(d):
            row = _first_above(scale[j], sorted_columns, j, value)
            at_most += row
            if row < k:
                following = min(following, scale[j] * sorted_columns[row, j])
        out[c, 0] = value
        out[c, 1] = following if at_most == rank + 1 and rank + 1 < k * d else value


def sorted_rows(h: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's values in descending order (float32) and their columns (ties: lower column first), sorted
    ``rows`` rows at a time by torch's stable sort (on all cores; numpy's argsort is single-threaded and ~3× slower
    here)."""
    n, d = h.shape
    values = np.empty((n, d), np.float32)
    columns = np.empty((n, d), np.int16 if d < 2**15 else np.int32)
    for start in range(0, n, rows):
        negated = torch.from_numpy(-np.asarray(h[start : start + rows], np.float32))
        negated, order = torch.sort(negated, dim=1, stable=True)
        values[start : start + rows] = -negated.numpy()
        columns[start : start + rows] = order.numpy()
    return values, columns


@njit(parallel=True, cache=True, fastmath=FAST)
def prefix_checkpoints(
    values: np.ndarray,
    columns: np.ndarray,
    weight_t: np.ndarray,
    stride: int,
    sums: np.ndarray,
) -> None:
    """Checkpoints of each row's running sums over its descending order, every ``stride`` positions, slot-major
    ``[slot, row, 2K + 1]`` (a move reads neighbouring rows at nearby slots, so the reads stream):
    ``sums[s, i, :K] = Σ_{r < s·stride} W_{j_r} v_r``, ``sums[s, i, K:2K] = Σ_{r < s·stride} W_{j_r}`` and
    ``sums[s, i, 2K] = Σ_{r < s·stride} v_r``."""
    n, d = values.shape
    k = weight_t.shape[1]
    for i in prange(n):
        for q in range(2 * k + 1):
            sums[0, i, q] = 0.0
        for s in range(1, sums.shape[0]):
            for q in range(2 * k + 1):
                sums[s, i, q] = sums[s - 1, i, q]
            for r in range((s - 1) * stride, min(d, s * stride)):
                v = np.float64(values[i, r])
                j = columns[i, r]
                sums[s, i, 2 * k] += v
                for q in range(k):
                    sums[s, i, q] += weight_t[j, q] * v
                    sums[s, i, k + q] += weight_t[j, q]


# What ``prefix_scores`` returns per row.
REACT_ENERGY, CLIPPED_ARGMAX, ASH_P, ASH_B, ASH_S, SCALE = range(6)


@njit(parallel=True, cache=True, fastmath=FAST)
def prefix_scores(
    values: np.ndarray,
    columns: np.ndarray,
    marks: np.ndarray,
    weight_t: np.ndarray,
    stride: int,
    sums: np.ndarray,
    base: np.ndarray,
    bias: np.ndarray,
    row_sums: np.ndarray,
    mode: int,
    clip: float,
    clip32: np.float32,
    keep: int,
    out: np.ndarray,
    shifted: np.ndarray,
) -> None:
    """One pass over the rows for the running-sum methods (rows in descending order, checkpoints ``sums`` every
    ``stride`` positions, see ``prefix_checkpoints``):

    - ``REACT_ENERGY``: ``logsumexp(W·min(h, c) + b)`` with ``W·min(h, c) = W·h − Σ_{v>c} W_j v_j + c·Σ_{v>c} W_j``;
    - ``CLIPPED_ARGMAX``: ``argmax_k (W·min(h, c) + b)_k`` (LINe's predicted class);
    - ``ASH_P`` / ``ASH_B`` / ``ASH_S`` / ``SCALE``: energy of the kept top-``keep`` activations, kept as they are,
      set to s1/k, scaled by exp(s1/s2), or the whole row scaled by exp(s1/s2) (SCALE).

    Each row's position (the number of entries above c, or ``keep``) is found from its checkpoint ``marks`` (the
    values at every ``stride``-th position); the walk from the nearer checkpoint, below or above, visits at most
    ``stride / 2`` entries.

    For the energies the kernel stops short of the exponentials: ``out[i] = max_k z_ik`` and ``shifted[i] = z_i −
    max_k z_ik`` (raised to ``EXP_FLOOR``), finished by ``finish_energy`` after numpy's vectorised exp (~25 % of the
    pass was the scalar exp available here). For ``CLIPPED_ARGMAX`` ``out[i]`` is the class and ``shifted`` is not
    touched.
    """
    n, d = values.shape
    k = weight_t.shape[1]
    slots = sums.shape[0]
    size = (n + CHUNKS - 1) // CHUNKS
    for chunk in prange(CHUNKS):
        w_acc = np.empty(k)
        c_acc = np.empty(k)
        below = np.empty(BATCH, np.int64)
        for first in range(chunk * size, min(n, (chunk + 1) * size), BATCH):
            last = min(n, first + BATCH, (chunk + 1) * size)
            # Each row's checkpoint below its position; then one read of each row's entries there, so that the
            # batch's cache misses overlap instead of stalling row by row (~3× faster than the plain loop).
            touched = 0.0
            for i in range(first, last):
                s = keep // stride
                if mode <= CLIPPED_ARGMAX:
                    s = 0
                    while s + 1 < marks.shape[1] and marks[i, s + 1] > clip32:
                        s += 1
                below[i - first] = s
                touched += (
                    values[i, min(d - 1, s * stride)]
                    + columns[i, min(d - 1, s * stride)]
                )
            out[first] = (
                touched  # kept, so that the compiler keeps the reads; row ``first`` is written below
            )
            for i in range(first, last):
                s = below[i - first]
                m = keep
                if mode <= CLIPPED_ARGMAX:
                    m = s * stride
                    while m < d and values[i, m] > clip32:
                        m += 1
                # Walk from the nearer checkpoint: forward from slot s, or backward (subtracting) from s + 1.
                start, end, sign = s * stride, m, 1.0
                if s + 1 < slots and min(d, (s + 1) * stride) - m < m - start:
                    s, start, end, sign = s + 1, m, min(d, (s + 1) * stride), -1.0
                for q in range(k):
                    w_acc[q] = sums[s, i, q]
                    c_acc[q] = sums[s, i, k + q]
                kept_sum = sums[s, i, 2 * k]
                for r in range(start, end):
                    v = np.float64(values[i, r])
                    j = columns[i, r]
                    kept_sum += sign * v
                    for q in range(k):
                        w_acc[q] += sign * (weight_t[j, q] * v)
                        c_acc[q] += sign * weight_t[j, q]
                _row_logits(
                    w_acc, c_acc, kept_sum, base[i], bias, row_sums[i], mode, clip, keep
                )
                best = 0
                for q in range(1, k):
                    if w_acc[q] > w_acc[best]:
                        best = q
                if mode == CLIPPED_ARGMAX:
                    out[i] = best
                else:
                    out[i] = w_acc[best]
                    for q in range(k):
                        shifted[i, q] = exponent(w_acc[q] - w_acc[best])


@njit(cache=True, inline="always", fastmath=FAST)
def _row_logits(w_acc, c_acc, kept_sum, base, bias, row_sum, mode, clip, keep):
    """One row's logits (into ``w_acc``) for ``prefix_scores`` from its running sums at the row's position."""
    k = len(bias)
    scale = 1.0
    if mode >= ASH_S:
        scale = np.exp(row_sum / kept_sum) if kept_sum > 0 else 1.0
    for q in range(k):
        if mode <= CLIPPED_ARGMAX:
            w_acc[q] = base[q] - w_acc[q] + clip * c_acc[q]
        elif mode == ASH_P:
            w_acc[q] = w_acc[q] + bias[q]
        elif mode == ASH_B:
            w_acc[q] = row_sum / keep * c_acc[q] + bias[q]
        elif mode == ASH_S:
            w_acc[q] = scale * w_acc[q] + bias[q]
        else:
            w_acc[q] = scale * (base[q] - bias[q]) + bias[q]


@njit(parallel=True, cache=True, fastmath=FAST)
def class_checkpoints(
    h: np.ndarray,
    order_columns: np.ndarray,
    order_weights: np.ndarray,
    stride: int,
    out: np.ndarray,
) -> None:
    """``out[k, s, i] = Σ_{r < s·stride} w_kr · h_i[j_kr]``: each row's running logit of class k over class k's
    weights in their own order (DICE: decreasing contribution), every ``stride`` weights; rows last, so that a
    move reads each class's slot as one contiguous run."""
    n = h.shape[0]
    k, d = order_columns.shape
    for i in prange(n):
        for q in range(k):
            total = 0.0
            out[q, 0, i] = 0.0
            for s in range(1, out.shape[1]):
                for r in range((s - 1) * stride, min(d, s * stride)):
                    total += order_weights[q, r] * np.float64(h[i, order_columns[q, r]])
                out[q, s, i] = total


@njit(parallel=True, cache=True, fastmath=FAST)
def class_walk_energy(
    checkpoints: np.ndarray,
    slot: np.ndarray,
    columns_t: np.ndarray,
    walk_class: np.ndarray,
    walk_column: np.ndarray,
    walk_weight: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
    shifted: np.ndarray,
) -> None:
    """The logits ``z_ik = b_k + checkpoints[k, slot[k], i] + Σ_{e: class e = k} w_e · h_i[column e]`` as
    ``out[i] = max_k z_ik`` and ``shifted[i] = z_i − max_k z_ik`` (``finish_energy`` makes the energy of them): every
    class starts from one checkpoint and walks the same few columns in every row, so the rows are read in blocks as
    contiguous runs of the checkpoints and of the transposed activations ``columns_t`` [D, N]."""
    k = bias.shape[0]
    n = out.shape[0]
    for block in prange((n + ROW_BLOCK - 1) // ROW_BLOCK):
        first = block * ROW_BLOCK
        rows = min(n, first + ROW_BLOCK) - first
        acc = np.empty((k, rows))
        for q in range(k):
            for i in range(rows):
                acc[q, i] = checkpoints[q, slot[q], first + i] + bias[q]
        for e in range(walk_class.size):
            q, column, weight = walk_class[e], walk_column[e], walk_weight[e]
            for i in range(rows):
                acc[q, i] += weight * np.float64(columns_t[column, first + i])
        for i in range(rows):
            best = 0
            for q in range(1, k):
                if acc[q, i] > acc[best, i]:
                    best = q
            top = acc[best, i]
            out[first + i] = top
            for q in range(k):
                shifted[first + i, q] = exponent(acc[q, i] - top)
