"""Compiled row kernels for the scores' hot paths (numba, parallel over rows).

Every kernel reads the cached float32 arrays as they are and accumulates in float64, so its result equals the
straightforward float64 numpy computation up to summation order (≈1e-15 relative; the tests assert rank equality and
closeness against those references). Nothing here allocates per row: work that depends only on the data, not on a
slider, is done once by a ``Prepare`` step (rows sorted in descending order, row sums, base logits), so that a slider
move costs one pass over the entries it actually changes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Rows are processed in this many contiguous chunks (scratch allocated once per chunk, not per row).
CHUNKS = 256
# Reassociation lets the compiler vectorise the sums (FMA contraction too); NaN/inf semantics are kept, so a
# non-finite input still gives a non-finite score that the workspace reports.
FAST = {"reassoc", "contract", "nsz"}


def float32_floor(value: float) -> np.float32:
    """The largest float32 ≤ ``value``: ``x > value`` ⟺ ``x > float32_floor(value)`` for every float32 ``x``."""
    below = np.float32(value)
    return below if float(below) <= value else np.nextafter(below, np.float32(-np.inf))


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
    logits: np.ndarray, temperature: float, shifted: np.ndarray, top: np.ndarray
) -> None:
    """``top[i] = max_k z_ik`` and ``shifted[i, k] = (z_ik − top[i]) / T`` in float64 (≤ 0: its exponentials cannot
    overflow). The exponentials themselves are left to numpy, whose vectorised exp is ~3× faster than the scalar
    one available here."""
    n, k = logits.shape
    for i in prange(n):
        m = np.float64(logits[i, 0])
        for q in range(1, k):
            m = max(m, np.float64(logits[i, q]))
        top[i] = m
        for q in range(k):
            shifted[i, q] = (np.float64(logits[i, q]) - m) / temperature


@njit(parallel=True, cache=True, fastmath=FAST)
def lse_rows(logits: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = logsumexp(logits_i)`` (float64 logits)."""
    n, k = logits.shape
    for i in prange(n):
        out[i] = _lse(logits[i], k)


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
def row_means(values: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = mean_j values[i, j]`` in float64."""
    n, c = values.shape
    for i in prange(n):
        s = 0.0
        for j in range(c):
            s += np.float64(values[i, j])
        out[i] = s / c


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


def sorted_rows(h: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's values in descending order (float32) and their columns (ties: lower column first), sorted
    ``rows`` rows at a time (the int64 argsort of all rows at once would be 8 bytes per entry)."""
    n, d = h.shape
    values = np.empty((n, d), np.float32)
    columns = np.empty((n, d), np.int16 if d < 2**15 else np.int32)
    for start in range(0, n, rows):
        chunk = np.asarray(h[start : start + rows], np.float32)
        order = np.argsort(-chunk, axis=1, kind="stable")
        values[start : start + rows] = np.take_along_axis(chunk, order, axis=1)
        columns[start : start + rows] = order
    return values, columns


@njit(parallel=True, cache=True, fastmath=FAST)
def prefix_checkpoints(
    values: np.ndarray,
    columns: np.ndarray,
    weight_t: np.ndarray,
    stride: int,
    weighted: np.ndarray,
    counted: np.ndarray,
    summed: np.ndarray,
) -> None:
    """Checkpoints of each row's running sums over its descending order, every ``stride`` positions:
    ``weighted[i, s] = Σ_{r < s·stride} W_{j_r} v_r`` [K], ``counted[i, s] = Σ_{r < s·stride} W_{j_r}`` [K] and
    ``summed[i, s] = Σ_{r < s·stride} v_r``."""
    n, d = values.shape
    k = weight_t.shape[1]
    for i in prange(n):
        for q in range(k):
            weighted[i, 0, q] = 0.0
            counted[i, 0, q] = 0.0
        summed[i, 0] = 0.0
        for s in range(1, weighted.shape[1]):
            for q in range(k):
                weighted[i, s, q] = weighted[i, s - 1, q]
                counted[i, s, q] = counted[i, s - 1, q]
            total = summed[i, s - 1]
            for r in range((s - 1) * stride, min(d, s * stride)):
                v = np.float64(values[i, r])
                j = columns[i, r]
                total += v
                for q in range(k):
                    weighted[i, s, q] += weight_t[j, q] * v
                    counted[i, s, q] += weight_t[j, q]
            summed[i, s] = total


# What ``prefix_scores`` returns per row.
REACT_ENERGY, CLIPPED_ARGMAX, ASH_P, ASH_B, ASH_S, SCALE = range(6)


@njit(parallel=True, cache=True, fastmath=FAST)
def prefix_scores(
    values: np.ndarray,
    columns: np.ndarray,
    marks: np.ndarray,
    weight_t: np.ndarray,
    stride: int,
    weighted: np.ndarray,
    counted: np.ndarray,
    summed: np.ndarray,
    base: np.ndarray,
    bias: np.ndarray,
    row_sums: np.ndarray,
    mode: int,
    clip: float,
    clip32: np.float32,
    keep: int,
    out: np.ndarray,
) -> None:
    """One pass over the rows for the running-sum methods (rows in descending order, checkpoints every ``stride``):

    - ``REACT_ENERGY``: ``logsumexp(W·min(h, c) + b)`` with ``W·min(h, c) = W·h − Σ_{v>c} W_j v_j + c·Σ_{v>c} W_j``;
    - ``CLIPPED_ARGMAX``: ``argmax_k (W·min(h, c) + b)_k`` (LINe's predicted class);
    - ``ASH_P`` / ``ASH_B`` / ``ASH_S`` / ``SCALE``: energy of the kept top-``keep`` activations, kept as they are,
      set to s1/k, scaled by exp(s1/s2), or the whole row scaled by exp(s1/s2) (SCALE).

    Each row's position (the number of entries above c, or ``keep``) is found from its checkpoint ``marks`` (the
    values at every ``stride``-th position) and the walk from the checkpoint below visits at most ``stride − 1``
    entries. A single all-zero checkpoint row (``weighted.shape[0] == 1``) means: walk from the start.
    """
    n, d = values.shape
    k = weight_t.shape[1]
    last = weighted.shape[0] - 1
    size = (n + CHUNKS - 1) // CHUNKS
    for chunk in prange(CHUNKS):
        w_acc = np.empty(k)
        c_acc = np.empty(k)
        for i in range(chunk * size, min(n, (chunk + 1) * size)):
            if mode <= CLIPPED_ARGMAX:
                s = 0
                if last > 0:
                    while s + 1 < marks.shape[1] and marks[i, s + 1] > clip32:
                        s += 1
                m = s * stride
                while m < d and values[i, m] > clip32:
                    m += 1
            else:
                m = keep
                s = m // stride if last > 0 else 0
            row = np.int64(i) if last > 0 else np.int64(0)
            for q in range(k):
                w_acc[q] = weighted[row, s, q]
                c_acc[q] = counted[row, s, q]
            kept_sum = summed[row, s]
            for r in range(s * stride, m):
                v = np.float64(values[i, r])
                j = columns[i, r]
                kept_sum += v
                for q in range(k):
                    w_acc[q] += weight_t[j, q] * v
                    c_acc[q] += weight_t[j, q]
            scale = 1.0
            if mode >= ASH_S:
                scale = np.exp(row_sums[i] / kept_sum) if kept_sum > 0 else 1.0
            for q in range(k):
                if mode <= CLIPPED_ARGMAX:
                    w_acc[q] = base[i, q] - w_acc[q] + clip * c_acc[q]
                elif mode == ASH_P:
                    w_acc[q] = w_acc[q] + bias[q]
                elif mode == ASH_B:
                    w_acc[q] = row_sums[i] / keep * c_acc[q] + bias[q]
                elif mode == ASH_S:
                    w_acc[q] = scale * w_acc[q] + bias[q]
                else:
                    w_acc[q] = scale * (base[i, q] - bias[q]) + bias[q]
            if mode == CLIPPED_ARGMAX:
                best = 0
                for q in range(1, k):
                    if w_acc[q] > w_acc[best]:
                        best = q
                out[i] = best
            else:
                out[i] = _lse(w_acc, k)


@njit(parallel=True, cache=True, fastmath=FAST)
def class_checkpoints(
    h: np.ndarray,
    order_columns: np.ndarray,
    order_weights: np.ndarray,
    stride: int,
    out: np.ndarray,
) -> None:
    """``out[i, k, s] = Σ_{r < s·stride} w_kr · h_i[j_kr]``: each row's running logit of class k over class k's
    weights in their own order (DICE: decreasing contribution), every ``stride`` weights."""
    n = h.shape[0]
    k, d = order_columns.shape
    for i in prange(n):
        for q in range(k):
            total = 0.0
            out[i, q, 0] = 0.0
            for s in range(1, out.shape[2]):
                for r in range((s - 1) * stride, min(d, s * stride)):
                    total += order_weights[q, r] * np.float64(h[i, order_columns[q, r]])
                out[i, q, s] = total


@njit(parallel=True, cache=True, fastmath=FAST)
def class_prefix_energy(
    h: np.ndarray,
    order_columns: np.ndarray,
    order_weights: np.ndarray,
    stride: int,
    checkpoints: np.ndarray,
    counts: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out_i = logsumexp_k(b_k + Σ_{r < counts[k]} w_kr · h_i[j_kr])``: each class keeps its first ``counts[k]``
    weights (from the checkpoint below plus at most ``stride − 1`` more)."""
    n = h.shape[0]
    k = order_columns.shape[0]
    size = (n + CHUNKS - 1) // CHUNKS
    for chunk in prange(CHUNKS):
        acc = np.empty(k)
        for i in range(chunk * size, min(n, (chunk + 1) * size)):
            for q in range(k):
                s = counts[q] // stride
                total = checkpoints[i, q, s]
                for r in range(s * stride, counts[q]):
                    total += order_weights[q, r] * np.float64(h[i, order_columns[q, r]])
                acc[q] = total + bias[q]
            out[i] = _lse(acc, k)
