"""Quantiles exactly as ``np.quantile``/``np.percentile`` (linear interpolation) compute them, without their copies.

numpy takes the order statistics at ``floor(h)`` and ``floor(h) + 1`` with ``h = (n − 1)·q`` and interpolates with
``a + (b − a)·t`` (``t < 0.5``) or ``b − (b − a)·(1 − t)``; these functions find the same order statistics by an
in-place partition or one sort of float32 values, and interpolate with the same formula in float64, so the results
are equal bit for bit (tests compare them with ``np.array_equal``).
"""

from __future__ import annotations

import numpy as np


def percentile_in_place(rows: np.ndarray, p: float) -> np.ndarray:
    """``np.percentile(rows, p, axis=1)`` [n], partitioning ``rows`` in place instead of copying them."""
    virtual, below, above = _positions(rows.shape[1], np.float64(p) / 100)
    rows.partition(sorted({int(below), int(above)}), axis=1)
    return _lerp(rows[:, below], rows[:, above], virtual - below)


def sorted_quantiles(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``np.quantile(values, grid)`` [len(grid)] of ascending ``values`` (any float dtype; float64 results)."""
    virtual, below, above = _positions(len(values), np.asarray(grid, np.float64))
    a = np.asarray(values[below], np.float64)
    b = np.asarray(values[above], np.float64)
    return _lerp(a, b, virtual - below)


def _positions(size: int, q):
    virtual = (size - 1) * q
    below = np.floor(virtual).astype(np.int64)
    return virtual, below, np.minimum(below + 1, size - 1)


def _lerp(a, b, t):
    difference = b - a
    return np.where(t >= 0.5, b - difference * (1 - t), a + difference * t)
