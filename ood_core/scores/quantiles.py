"""Quantiles exactly as ``np.quantile``/``np.percentile`` (linear interpolation) compute them, without their copies.

numpy takes the order statistics at ``floor(h)`` and ``floor(h) + 1`` with ``h = (n − 1)·q`` and interpolates with
``a + (b − a)·t`` (``t < 0.5``) or ``b − (b − a)·(1 − t)``. Callers find the same order statistics their own way
(two sorted halves of the float32 values here; a search over sorted columns for LINe,
``kernels.product_order_statistics``) and interpolate with the same formula in float64, so the results are equal bit
for bit (tests compare them with ``np.array_equal``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np


def quantiles(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``np.quantile(values, grid)`` [len(grid)] of all entries of ``values`` (float64 results): its two halves are
    sorted on two threads (numpy's sort releases the GIL; ~2× faster than one sort on this project's 2 cores) and
    each order statistic is found in the two sorted halves by a merge-path search (``merged_order_statistics``)."""
    flat = np.asarray(values).reshape(-1)
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(
            np.sort, (flat[: len(flat) // 2], flat[len(flat) // 2 :])
        )
    # NaN sorts last; with one, np.quantile gives NaN everywhere
    if np.isnan(first[-1:]).any() or np.isnan(second[-1:]).any():
        return np.full(len(grid), np.nan)
    virtual, below, above = positions(len(flat), np.asarray(grid, np.float64))
    a = merged_order_statistics(first, second, below)
    b = merged_order_statistics(first, second, above)
    return lerp(a, b, virtual - below)


def merged_order_statistics(
    first: np.ndarray, second: np.ndarray, ranks: np.ndarray
) -> np.ndarray:
    """The ``ranks``-th smallest entries (0-based) of two ascending arrays taken together, without merging them.

    For rank r the r + 1 smallest entries are the first ``i`` of ``first`` and the first ``r + 1 − i`` of
    ``second``, ``i`` the smallest count at which taking one more from ``first`` would pass over a smaller entry of
    ``second``; a binary search over ``i`` for all ranks at once."""
    ranks = np.asarray(ranks, np.int64)
    count = ranks + 1
    low = np.maximum(0, count - len(second))
    high = np.minimum(count, len(first))
    while (active := low < high).any():
        middle = (low + high) // 2
        # too few from ``first`` while its next entry lies below the last one taken from ``second``
        too_few = active & (
            first[np.minimum(middle, len(first) - 1)]
            < second[np.clip(count - middle - 1, 0, len(second) - 1)]
        )
        low, high = (
            np.where(too_few, middle + 1, low),
            np.where(active & ~too_few, middle, high),
        )
    return np.maximum(last_taken(first, low), last_taken(second, count - low))


def last_taken(values: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """The last of the first ``taken`` entries of ``values`` (float64; −∞ where none is taken)."""
    out = np.full(len(taken), -np.inf)
    some = taken > 0
    out[some] = values[taken[some] - 1]
    return out


def positions(size: int, q):
    """numpy's virtual index ``h = (size − 1)·q`` and the order statistics below and above it."""
    virtual = (size - 1) * q
    below = np.floor(virtual).astype(np.int64)
    return virtual, below, np.minimum(below + 1, size - 1)


def lerp(a, b, t):
    """numpy's interpolation between order statistics ``a ≤ b`` at fraction ``t``."""
    difference = b - a
    return np.where(t >= 0.5, b - difference * (1 - t), a + difference * t)
