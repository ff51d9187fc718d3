"""First and second moments of the ID-train features, a chunk of rows at a time.

A whole float64 copy of the features (50,000 × 512 is 205 MB) would be faulted in page by page, and the fits that
need one (Mahalanobis, Mahalanobis++, RMDS's MD₀, ViM) ran ~2× slower with it; ~16 MB chunks are reused by malloc.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..errors import OODLabError

CHUNK_ELEMENTS = 1 << 21  # float64 entries per chunk of rows: 16 MB


def row_chunks(h: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, a float64 copy of rows start:stop)`` over the rows of ``h``, ~16 MB at a time."""
    rows = max(1, CHUNK_ELEMENTS // max(1, h.shape[1]))
    for start in range(0, len(h), rows):
        stop = min(len(h), start + rows)
        # a copy even of float64 rows: callers centre it in place
        yield start, stop, np.array(h[start:stop], np.float64)


def class_means(h: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Mean feature of each class [K, D] (float64; zeros for a class without samples)."""
    labels = np.asarray(labels)
    if len(labels) != len(h):
        raise OODLabError(
            f"class means need one label per ID train sample: {len(labels)} labels for {len(h)} samples"
        )
    if (labels < 0).any():
        raise OODLabError(
            "class means need class labels (≥ 0) for every ID train sample"
        )
    from scipy.sparse import csr_array

    sums = np.zeros((classes, h.shape[1]))
    for start, stop, x in row_chunks(h):
        one_hot = csr_array(
            (np.ones(stop - start), (labels[start:stop], np.arange(stop - start))),
            shape=(classes, stop - start),
        )
        sums += one_hot @ x
    return sums / np.maximum(np.bincount(labels, minlength=classes), 1)[:, None]


def covariance(h: np.ndarray, centres: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """``Σ = (1/n) Σ_i (h_i − c_i)(h_i − c_i)ᵀ`` [D, D] (float64), ``centres(start, stop)`` the centres of those rows:
    what sklearn's ``empirical_covariance(h − c, assume_centered=True)`` computes, a chunk of rows at a time and
    without the ~1 s of importing sklearn inside a workspace's first fit (the tests keep sklearn as the oracle)."""
    total = np.zeros((h.shape[1], h.shape[1]))
    for start, stop, x in row_chunks(h):
        x -= centres(start, stop)
        total += x.T @ x
    return total / len(h)
