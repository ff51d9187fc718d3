"""Compiled pieces of ``metrics``: a radix sort of float64 scores and one merge pass that counts everything the
five metrics need; ``set_counts`` runs both for every OOD set of one ID set in one parallel call.

Exactness: the sort orders the IEEE-754 bit patterns (negative values bit-inverted, positive ones with the sign
bit set), which is the numeric order except that ``-0.0`` sorts before ``0.0``; the merge compares with ``==`` and
``<``, so the two zeros still form one value. Counts are integers; only the final ratios are floating point.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_BITS = 11  # digit width: 6 passes over 64-bit keys, 2,048 counters each
_DIGITS = 6
_MASK = np.uint64((1 << _BITS) - 1)
_SIGN = np.uint64(1 << 63)


@njit(nogil=True, cache=True)
def radix_sort(x: np.ndarray) -> np.ndarray:
    """``np.sort(x)`` for finite float64 ``x`` (LSD radix sort, ~2.5× faster than numpy's sort at 10k here)."""
    n = x.size
    keys = np.empty(n, np.uint64)
    bits = x.view(np.uint64)
    for i in range(n):
        k = bits[i]
        keys[i] = ~k if k & _SIGN else k | _SIGN
    counts = np.zeros((_DIGITS, 1 << _BITS), np.int64)
    for i in range(n):
        k = keys[i]
        for p in range(_DIGITS):
            counts[p, (k >> np.uint64(_BITS * p)) & _MASK] += 1
    source, target = keys, np.empty(n, np.uint64)
    for p in range(_DIGITS):
        shift = np.uint64(_BITS * p)
        if counts[p, (source[0] >> shift) & _MASK] == n:
            continue  # every key has the same digit here
        offset = 0
        for b in range(1 << _BITS):
            c = counts[p, b]
            counts[p, b] = offset
            offset += c
        for i in range(n):
            k = source[i]
            b = (k >> shift) & _MASK
            target[counts[p, b]] = k
            counts[p, b] += 1
        source, target = target, source
    for i in range(n):
        k = source[i]
        source[i] = k & ~_SIGN if k & _SIGN else ~k
    return source.view(np.float64)


@njit(nogil=True, cache=True, inline="always")
def _run_end(x: np.ndarray, start: int) -> int:
    """The end of the run of values equal to ``x[start]`` in sorted ``x``."""
    end = start + 1
    while end < x.size and x[end] == x[start]:
        end += 1
    return end


@njit(nogil=True, cache=True)
def merge_counts(a: np.ndarray, b: np.ndarray, k_id: int, k_ood: int) -> tuple:
    """From ID scores ``a`` and OOD scores ``b``, both sorted ascending:

    - ``2·U``: twice the Mann-Whitney count, ``Σ_ID (2·#OOD < a + #OOD == a)``;
    - AUPR-In's sum ``Σ_{distinct ID v} #ID==v · TP/(TP + FP)``, TP = #ID ≥ v, FP = #OOD ≥ v;
    - AUPR-Out's sum ``Σ_{distinct OOD w} #OOD==w · TP/(TP + FP)``, TP = #OOD ≤ w, FP = #ID ≤ w;
    - ``#OOD ≥ a[p − k_id]`` (FPR95, ID positive) and ``#ID ≤ b[k_ood − 1]`` (FPR95, OOD positive).
    """
    p, n = a.size, b.size
    twice_u, aupr_in, fp_id = 0, 0.0, 0
    j = 0
    s = 0
    while s < p:  # each run a[s:e] of one ID value v
        v = a[s]
        e = _run_end(a, s)
        while j < n and b[j] < v:
            j += 1
        lt = j
        while j < n and b[j] == v:
            j += 1
        twice_u += (e - s) * (2 * lt + (j - lt))
        tp = p - s
        aupr_in += (e - s) * tp / (tp + (n - lt))
        if s <= p - k_id < e:
            fp_id = n - lt
        s = e
    aupr_out, fp_ood = 0.0, 0
    i = 0
    h = 0
    while h < n:  # each run b[h:e] of one OOD value w
        w = b[h]
        e = _run_end(b, h)
        while i < p and a[i] <= w:
            i += 1
        aupr_out += (e - h) * e / (e + i)
        if h <= k_ood - 1 < e:
            fp_ood = i
        h = e
    return twice_u, aupr_in, aupr_out, fp_id, fp_ood


@njit(parallel=True, cache=True)
def set_counts(
    id_sorted: np.ndarray,
    ood: np.ndarray,
    starts: np.ndarray,
    k_id: int,
    k_ood: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray,
) -> None:
    """``merge_counts`` of the sorted ID scores against each OOD set ``ood[starts[s]:starts[s + 1]]`` (sorted here),
    the sets in parallel: ``counts[s] = (2·U, #OOD ≥ …, #ID ≤ …)`` and ``sums[s] = (AUPR-In's, AUPR-Out's sum)``.
    One call for all sets instead of a Python thread pool mapping ``merge_counts`` over them (side by side, after an
    idle pause: 1.59–1.63 against 1.59–1.76 ms for 6 CIFAR-size sets, and no pool to keep)."""
    for s in prange(starts.size - 1):
        b = radix_sort(ood[starts[s] : starts[s + 1]])
        twice_u, aupr_in, aupr_out, fp_id, fp_ood = merge_counts(
            id_sorted, b, k_id, k_ood[s]
        )
        counts[s, 0] = twice_u
        counts[s, 1] = fp_id
        counts[s, 2] = fp_ood
        sums[s, 0] = aupr_in
        sums[s, 1] = aupr_out
