"""Seeded row subsets, shared by pseudo-OOD variants, held-out splits and training samples."""

from __future__ import annotations

import numpy as np


def sample_rows(n: int, limit: int, seed: int = 0) -> np.ndarray:
    """All ``n`` rows, or a sorted seeded subset of ``limit`` of them."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def stratified_rows(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A sorted seeded subset holding ``fraction`` of each class's rows (at least one per class present)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        take = max(1, round(len(rows) * fraction))
        chosen.append(rng.choice(rows, min(take, len(rows)), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
