"""Generate the cache entries of a synthetic workspace (``ood_core.inputs.synthetic``) from its seed.

The arrays mimic a trained classifier well enough for every method to have something to find: ID penultimate
features are ``relu(μ_y + noise)`` around class centres, with a head that classifies them; near-OOD sets mix two
class centres, far-OOD sets are shifted or shrunk versions of the feature distribution; each block's per-channel
``max/mean`` ratio is more peaked for ID than for OOD (NAP's prior), more so in deeper blocks, and ID feature norms
are larger (FeatureNorm). Rows are generated and written in chunks, so the peak memory stays small whatever the
size. Deterministic for (size, seed, role, split).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..inputs.synthetic import SyntheticSize
from .cache import EntryWriter

CHUNK = 5_000
Progress = Callable[[int, int], None]
# (kind, strength) per OOD set, cycled: near-OOD mixes classes, far-OOD shifts the distribution.
OOD_KINDS = (
    ("mix", 0.5),
    ("mix", 0.7),
    ("shrink", 0.55),
    ("noise", 1.0),
    ("shrink", 0.8),
    ("noise", 0.6),
)


def _head(size: SyntheticSize, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class centres [K, D] and the linear head (W [K, D], b [K]) shared by every set of the workspace."""
    rng = np.random.default_rng([seed, 0])
    centres = np.abs(rng.normal(0.0, 1.0, (size.classes, size.dim))).astype(np.float32)
    weight = centres - centres.mean(0, keepdims=True)
    weight /= np.linalg.norm(weight, axis=1, keepdims=True) / 4
    bias = rng.normal(0, 0.05, size.classes).astype(np.float32)
    return centres, weight.astype(np.float32), bias


def _rows(role: str, split: str, size: SyntheticSize) -> int:
    if role == "id":
        return size.train if split == "train" else size.test
    return size.ood[int(role[3:]) - 1]


def write(
    writer: EntryWriter,
    size: SyntheticSize,
    seed: int,
    role: str,
    split: str,
    progress: Progress | None = None,
) -> dict:
    """Write one synthetic set (``role`` = ``id`` or ``ood<i>``) into ``writer``; return its meta report."""
    centres, weight, bias = _head(size, seed)
    total = _rows(role, split, size)
    role_index = 0 if role == "id" else int(role[3:])
    rng = np.random.default_rng([seed, 1 + role_index, 0 if split == "train" else 1])
    kind, strength = (
        ("id", 1.0) if role == "id" else OOD_KINDS[(role_index - 1) % len(OOD_KINDS)]
    )
    for start in range(0, total, CHUNK):
        n = min(CHUNK, total - start)
        labels = rng.integers(0, size.classes, n)
        h = _penultimate(rng, centres, labels, kind, strength)
        writer.write("penultimate", start, h, total)
        writer.write("logits", start, h @ weight.T + bias, total)
        writer.write(
            "labels", start, labels if role == "id" else np.full(n, -1, np.int64), total
        )
        writer.write("index", start, np.arange(start, start + n), total)
        # OOD channels are less peaked than ID ones, by a set-dependent amount (hard to easy).
        peak = 1.0 if role == "id" else 0.8 + 0.15 * (role_index % 3) / 2
        for depth, (block, channels) in enumerate(size.blocks, start=1):
            mean, maximum, l2 = _block_stats(
                rng, n, channels, depth / len(size.blocks), peak, strength
            )
            writer.write(f"blocks/{block}/mean", start, mean, total)
            writer.write(f"blocks/{block}/max", start, maximum, total)
            writer.write(f"blocks/{block}/l2", start, l2, total)
        if progress:
            progress(start + n, total)
    writer.put("head/weight", weight)
    writer.put("head/bias", bias)
    return {
        "probes": [name for name, _ in size.blocks],
        "probe_kind": "synthetic",
        "synthetic": True,
        "device": "none (generated)",
        "skipped": 0,
        "skipped_names": [],
    }


def _penultimate(
    rng: np.random.Generator,
    centres: np.ndarray,
    labels: np.ndarray,
    kind: str,
    strength: float,
) -> np.ndarray:
    n, dim = len(labels), centres.shape[1]
    noise = rng.normal(0.0, 1.0, (n, dim)).astype(np.float32)
    if kind == "id":
        mean = centres[labels]
    elif kind == "mix":
        other = rng.integers(0, len(centres), n)
        mean = strength * centres[labels] + (1 - strength) * centres[other]
    elif kind == "shrink":
        mean = strength * centres[labels]
    else:  # noise: no class structure, similar overall level
        mean = np.full((n, dim), float(centres.mean()) * strength, np.float32)
    return np.maximum(mean + noise, 0).astype(np.float32)


def _block_stats(
    rng: np.random.Generator,
    n: int,
    channels: int,
    depth: float,
    peak: float,
    strength: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel mean, max and L2 norm of a block's post-ReLU map (positions: 8×8)."""
    mean = rng.gamma(2.0, 0.25 * (0.8 + 0.2 * strength), (n, channels)).astype(
        np.float32
    )
    ratio = 1.0 + rng.exponential(1.0 + 4.0 * depth * peak, (n, channels)).astype(
        np.float32
    )
    maximum = mean * ratio
    l2 = mean * np.sqrt(64.0) * (1.0 + 0.3 * ratio / ratio.mean(1, keepdims=True))
    return mean, maximum.astype(np.float32), l2.astype(np.float32)
