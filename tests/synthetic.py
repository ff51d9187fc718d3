"""Small synthetic FeatureSets for method tests (independent of any model)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from ood_core.engine.cache import FeatureSet


def synthetic_features(
    rng: np.random.Generator,
    n: int,
    d: int = 16,
    k: int = 4,
    shift: float = 0.0,
    labels: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    blocks: tuple[str, ...] = ("b1", "b2"),
    norms: bool = False,
) -> FeatureSet:
    """ReLU-like penultimate features (optionally shifted), logits from a shared head, random block stats (per-channel
    max and mean, and with ``norms`` the L2 norms)."""
    h = np.maximum(rng.normal(1.0 + shift, 1.0, (n, d)), 0).astype(np.float32)
    weight = rng.normal(0, 0.5, (k, d)).astype(np.float32) if weight is None else weight
    bias = np.linspace(-0.1, 0.1, k).astype(np.float32)
    arrays = {
        "penultimate": h,
        "logits": (h @ weight.T + bias).astype(np.float32),
        "labels": rng.integers(0, k, n) if labels is None else labels,
        "head/weight": weight,
        "head/bias": bias,
    }
    for b in blocks:
        mean = rng.uniform(0.1, 1.0, (n, 8)).astype(np.float32)
        arrays[f"blocks/{b}/mean"] = mean
        arrays[f"blocks/{b}/max"] = (mean * rng.uniform(1, 4 + shift, (n, 8))).astype(
            np.float32
        )
    if norms:
        for b in blocks:
            arrays[f"blocks/{b}/l2"] = arrays[f"blocks/{b}/mean"] * rng.uniform(
                2, 3 + shift, (n, 8)
            ).astype(np.float32)
    meta = {"probes": list(blocks), "rows": n, "created": uuid.uuid4().hex}
    return FeatureSet(Path(f"/synthetic/{uuid.uuid4().hex}"), meta, arrays)
