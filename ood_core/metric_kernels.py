"""Compiled pieces of ``metrics``: one merge pass over sorted scores that counts everything the five metrics need;
``set_counts`` runs it for every OOD set of one ID set in one parallel call. The sorts are numpy's: its SIMD sorts
beat the compiled radix sort this module had, 0.03–0.05 against 0.12–0.24 ms for the 10,000 ID scores of Energy,
MSP, ReAct and KNN on the CIFAR-size workspace (AVX-512, numpy 2.4).

Exactness: the merge compares with ``==`` and ``<``, so ``-0.0`` and ``0.0`` form one value in whatever order the
sort left them. Counts are integers; only the final ratios are floating point.
"""

from __future__ import annotations

import numpy as np

from .jit import njit, prange


@njit(nogil=True, cache=True, inline="always")
def _run_end(x: np.ndarray, start: int) -> int:
    """The end of the run of values equal to ``x[start]`` in sorted ``x``."""
    end = start + 1
    while end < x.size and x[end] == x[start]:
        end += 1
    return end


@njit(nogil=True, cache=True, inline="always")
def _weight(w: np.ndarray, start: int, end: int) -> int:
    """The total weight ``w[start:end]`` of one run of equal values (a bootstrap resample's multiplicities)."""
    total = 0
    for t in range(start, end):
        total += w[t]
    return total


@njit(nogil=True, cache=True)
def merge_counts(
    a: np.ndarray, b: np.ndarray, k_id: int, k_ood: int, v10_out: np.ndarray
) -> tuple:
    """From ID scores ``a`` and OOD scores ``b``, both sorted ascending:

    - ``2·U``: twice the Mann-Whitney count, ``Σ_ID (2·#OOD < a + #OOD == a)``;
    - AUPR-In's sum ``Σ_{distinct ID v} #ID==v · TP/(TP + FP)``, TP = #ID ≥ v, FP = #OOD ≥ v;
    - AUPR-Out's sum ``Σ_{distinct OOD w} #OOD==w · TP/(TP + FP)``, TP = #OOD ≤ w, FP = #ID ≤ w;
    - ``#OOD ≥ a[p − k_id]`` (FPR95, ID positive) and ``#ID ≤ b[k_ood − 1]`` (FPR95, OOD positive);
    - DeLong's structural components, summed squared: ``Σ_ID V10²`` with ``V10 = (#OOD < a + ½#OOD == a)/n``
      and ``Σ_OOD V01²`` with ``V01 = (#ID > b + ½#ID == b)/p`` (their plain sums are ``U/n`` and ``U/p``);
      ``v10_out[i]`` receives ``V10`` of the ``i``-th smallest ID score.
    """
    p, n = a.size, b.size
    twice_u, aupr_in, fp_id, v10_squares = 0, 0.0, 0, 0.0
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
        v10 = (lt + 0.5 * (j - lt)) / n
        v10_squares += (e - s) * v10 * v10
        v10_out[s:e] = v10
        tp = p - s
        aupr_in += (e - s) * tp / (tp + (n - lt))
        if s <= p - k_id < e:
            fp_id = n - lt
        s = e
    aupr_out, fp_ood, v01_squares = 0.0, 0, 0.0
    i = 0
    below = 0
    h = 0
    while h < n:  # each run b[h:e] of one OOD value w
        w = b[h]
        e = _run_end(b, h)
        while below < p and a[below] < w:
            below += 1
        while i < p and a[i] <= w:
            i += 1
        v01 = (p - i + 0.5 * (i - below)) / p
        v01_squares += (e - h) * v01 * v01
        aupr_out += (e - h) * e / (e + i)
        if h <= k_ood - 1 < e:
            fp_ood = i
        h = e
    return twice_u, aupr_in, aupr_out, fp_id, fp_ood, v10_squares, v01_squares


@njit(parallel=True, cache=True)
def set_counts(
    id_sorted: np.ndarray,
    ood: np.ndarray,
    starts: np.ndarray,
    k_id: int,
    k_ood: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray,
    v10: np.ndarray,
) -> None:
    """``merge_counts`` of the sorted ID scores against each sorted OOD set ``ood[starts[s]:starts[s + 1]]``,
    the sets in parallel: ``counts[s] = (2·U, #OOD ≥ …, #ID ≤ …)`` and ``sums[s] = (AUPR-In's, AUPR-Out's sum,
    Σ V10², Σ V01²)`` and ``v10[s]`` each sorted ID score's DeLong component. One call for all sets instead of a Python thread pool mapping ``merge_counts`` over them
    (side by side, after an idle pause: 1.59–1.63 against 1.59–1.76 ms for 6 CIFAR-size sets, and no pool)."""
    for s in prange(starts.size - 1):
        b = ood[starts[s] : starts[s + 1]]
        twice_u, aupr_in, aupr_out, fp_id, fp_ood, v10_sq, v01_sq = merge_counts(
            id_sorted, b, k_id, k_ood[s], v10[s]
        )
        counts[s, 0] = twice_u
        counts[s, 1] = fp_id
        counts[s, 2] = fp_ood
        sums[s, 0] = aupr_in
        sums[s, 1] = aupr_out
        sums[s, 2] = v10_sq
        sums[s, 3] = v01_sq


@njit(nogil=True, cache=True, inline="always")
def _copies_precision(
    w: np.ndarray, start: int, end: int, run: int, before: int, fp: int
) -> float:
    """One run ``start:end`` of equal positive scores (total weight ``run``) in an AUPR sum ``Σ TP/(TP + fp)`` over
    the positives, ``before`` positives already counted. A tie in the resample (several samples drawn) counts every
    copy at once, as
    ``merge_counts`` groups it; the copies of a single drawn sample are ranked one after another,
    ``TP = before + 1, before + 2, …``, as an infinitesimal jitter would rank them: resampling makes copies, not
    ties."""
    drawn, only = 0, start
    for t in range(start, end):
        if w[t] > 0:
            drawn += 1
            only = t
    if drawn > 1:
        return run * (before + run) / (before + run + fp)
    total, tp = 0.0, before
    for _ in range(w[only]):
        tp += 1
        total += tp / (tp + fp)
    return total


@njit(nogil=True, cache=True)
def weighted_metrics(
    a: np.ndarray, wa: np.ndarray, b: np.ndarray, wb: np.ndarray, tpr: float
) -> tuple:
    """The five metrics (fractions) of ID ``a`` and OOD ``b`` (each sorted ascending) where sample ``i`` counts
    ``wa[i]`` / ``wb[i]`` times (a bootstrap resample): AUROC, FPR95 (ID+), FPR95 (OOD+), AUPR-In, AUPR-Out, with
    the definitions and tie handling of ``merge_counts``. A sample of weight 0 is simply absent.

    A resample's ties are between the samples it drew: in the AUPRs the copies of a sample that no other drawn
    sample ties with are ranked one after another (``_copies_precision``), while a tie between drawn samples stays
    one group. Grouping every sample's copies lifts each resample's AUPR above the point estimate where precision
    changes steeply (a perfectly reversed set: the demo's textures under MSP had the interval [28.77, 28.78] around
    28.73). Where the scores themselves tie, resampling still varies the tied groups' sizes, and on such a reversed
    set the interval can still sit just above its point (400 against 600 scores rounded to 2 decimals: 23.63 against
    23.65–23.70)."""
    p, n = a.size, b.size
    total_a, total_b = 0, 0
    for i in range(p):
        total_a += wa[i]
    for i in range(n):
        total_b += wb[i]
    k_id = _min_count(tpr, total_a)
    k_ood = _min_count(tpr, total_b)
    twice_u, aupr_in, fp_id = 0, 0.0, -1
    j, lt_w, eq_w = 0, 0, 0
    above_a = total_a  # weight of ID samples >= current value
    s = 0
    while s < p:
        v = a[s]
        e = _run_end(a, s)
        run = _weight(wa, s, e)
        while j < n and b[j] < v:
            lt_w += wb[j]
            j += 1
        eq_w = 0
        k = j
        while k < n and b[k] == v:
            eq_w += wb[k]
            k += 1
        if run > 0:
            twice_u += run * (2 * lt_w + eq_w)
            aupr_in += _copies_precision(wa, s, e, run, above_a - run, total_b - lt_w)
            if fp_id < 0 and above_a - run < k_id <= above_a:
                fp_id = total_b - lt_w
        above_a -= run
        s = e
    aupr_out, fp_ood = 0.0, -1
    i, le_w = 0, 0
    cum_b = 0
    h = 0
    while h < n:
        w = b[h]
        e = _run_end(b, h)
        run = _weight(wb, h, e)
        while i < p and a[i] <= w:
            le_w += wa[i]
            i += 1
        if run > 0:
            aupr_out += _copies_precision(wb, h, e, run, cum_b, le_w)
            cum_b += run
            if fp_ood < 0 and cum_b >= k_ood:
                fp_ood = le_w
        h = e
    if k_id == 0:
        fp_id = 0
    if k_ood == 0:
        fp_ood = 0
    return (
        twice_u / (2.0 * total_a * total_b),
        fp_id / total_b,
        fp_ood / total_a,
        aupr_in / total_a,
        aupr_out / total_b,
    )


@njit(nogil=True, cache=True)
def _min_count(rate: float, total: int) -> int:
    """Smallest ``k`` in ``0..total`` with ``k / total >= rate`` (as ``metrics._min_count``)."""
    k = min(max(int(np.ceil(rate * total)), 0), total)
    while k > 0 and (k - 1) / total >= rate:
        k -= 1
    while k < total and k / total < rate:
        k += 1
    return k


@njit(nogil=True, cache=True)
def _resample(order: np.ndarray, seed: int) -> np.ndarray:
    """Bootstrap weights in sorted order: draw ``len(order)`` samples (by their original index) with replacement
    from a generator seeded with ``seed``, and read each sorted position's count. Two score vectors of the same
    samples, resampled with the same seed, get the same samples: a paired bootstrap."""
    size = order.size
    counts = np.zeros(size, np.int64)
    np.random.seed(seed)
    for _ in range(size):
        counts[np.random.randint(0, size)] += 1
    return counts[order]


@njit(parallel=True, cache=True)
def bootstrap(
    a: np.ndarray,
    a_order: np.ndarray,
    b: np.ndarray,
    b_order: np.ndarray,
    id_seed: int,
    ood_seed: int,
    out: np.ndarray,
) -> None:
    """``out[r]`` = ``weighted_metrics`` of resample ``r`` (ID and OOD resampled separately, stratified), for
    ``r`` in ``range(len(out))``. ``a``/``b`` are sorted scores, ``*_order`` the original index of each sorted
    position (an argsort); resample ``r`` draws ID from seed ``id_seed + r`` and OOD from ``ood_seed + r``, so the
    results do not depend on the threads, and sets sharing the ID samples can share their ID resamples."""
    for r in prange(out.shape[0]):
        wa = _resample(a_order, id_seed + r)
        wb = _resample(b_order, ood_seed + r)
        values = weighted_metrics(a, wa, b, wb, 0.95)
        for k in range(5):
            out[r, k] = values[k]


@njit(nogil=True, cache=True)
def components(
    a: np.ndarray,
    a_index: np.ndarray,
    b: np.ndarray,
    b_index: np.ndarray,
    v10: np.ndarray,
    v01: np.ndarray,
) -> None:
    """DeLong's per-sample components in the samples' own order, from sorted ID ``a`` and OOD ``b`` and their
    original indices: ``v10[i] = (#OOD < a_i + ½#OOD == a_i)/n``, ``v01[j] = (#ID > b_j + ½#ID == b_j)/p``."""
    p, n = a.size, b.size
    j = 0
    s = 0
    while s < p:
        v = a[s]
        e = _run_end(a, s)
        while j < n and b[j] < v:
            j += 1
        lt = j
        eq = j
        while eq < n and b[eq] == v:
            eq += 1
        value = (lt + 0.5 * (eq - lt)) / n
        for t in range(s, e):
            v10[a_index[t]] = value
        s = e
    i = 0
    below = 0
    h = 0
    while h < n:
        w = b[h]
        e = _run_end(b, h)
        while below < p and a[below] < w:
            below += 1
        while i < p and a[i] <= w:
            i += 1
        value = (p - i + 0.5 * (i - below)) / p
        for t in range(h, e):
            v01[b_index[t]] = value
        h = e
