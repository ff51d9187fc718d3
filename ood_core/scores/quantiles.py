"""Quantiles exactly as ``np.quantile``/``np.percentile`` (linear interpolation) compute them, without their copies.

numpy takes the order statistics at ``floor(h)`` and ``floor(h) + 1`` with ``h = (n − 1)·q`` and interpolates with
``a + (b − a)·t`` (``t < 0.5``) or ``b − (b − a)·(1 − t)``. Callers find the same order statistics their own way
(one sort of float32 values here; a search over sorted columns for LINe, ``kernels.product_order_statistics``) and
interpolate with the same formula in float64, so the results are equal bit for bit (tests compare them with
``np.array_equal``).
"""

from __future__ import annotations

import numpy as np


def sorted_quantiles(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``np.quantile(values, grid)`` [len(grid)] of ascending ``values`` (any float dtype; float64 results)."""
    virtual, below, above = positions(len(values), np.asarray(grid, np.float64))
    a = np.asarray(values[below], np.float64)
    b = np.asarray(values[above], np.float64)
    return lerp(a, b, virtual - below)


def positions(size: int, q):
    """numpy's virtual index ``h = (size − 1)·q`` and the order statistics below and above it."""
    virtual = (size - 1) * q
    below = np.floor(virtual).astype(np.int64)
    return virtual, below, np.minimum(below + 1, size - 1)


def lerp(a, b, t):
    """numpy's interpolation between order statistics ``a ≤ b`` at fraction ``t``."""
    difference = b - a
    return np.where(t >= 0.5, b - difference * (1 - t), a + difference * t)
