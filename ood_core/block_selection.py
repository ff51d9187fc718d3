"""Block selection for FeatureNorm (seed 001: Yu et al., "Block Selection Method for Using Feature Norm in
Out-of-Distribution Detection", CVPR 2023, arXiv 2212.02295).

- Jigsaw pseudo-OOD ``J(x)``: cut the image into an n×n grid (default n = 3) and shuffle the tiles with a seeded RNG
  (one permutation per image, from ``(seed, row)``). When a side is not divisible by n, the tiles cover the largest
  multiple of n from the top-left and the remaining border rows/columns stay in place.
- FeatureNorm of block b: ``FN_b(x) = mean_c ‖ReLU(A_c)‖₂`` = the mean over channels of the cached ``l2`` statistic.
- NormRatio: ``NR(b) = mean_i FN_b(x_i) / FN_b(J(x_i))`` over ID training samples; the selected block is
  ``argmax_b NR(b)``, and the detector is FN of that block (higher = more ID).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from .cache import FeatureSet
from .data import DatasetSpec, ImageSet

JIGSAW_DEFAULT_N = 3
JIGSAW_MAX_SAMPLES = 2000
JIGSAW_SEED = 0


def jigsaw(image: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Shuffle the n×n tiles of ``image`` [H,W] or [H,W,C]; pixels outside the tiled area are left as they are."""
    if n < 1:
        raise ValueError("the jigsaw grid size n must be ≥ 1")
    out = np.array(image, copy=True)
    th, tw = image.shape[0] // n, image.shape[1] // n
    if th == 0 or tw == 0:
        return out
    area = image[: th * n, : tw * n]
    tiles = (
        area.reshape(n, th, n, tw, *area.shape[2:])
        .swapaxes(1, 2)
        .reshape(n * n, th, tw, *area.shape[2:])
    )
    shuffled = tiles[rng.permutation(n * n)]
    grid = (
        shuffled.reshape(n, n, th, tw, *area.shape[2:])
        .swapaxes(1, 2)
        .reshape(area.shape)
    )
    out[: th * n, : tw * n] = grid
    return out


def jigsaw_image(image: Image.Image, n: int, seed: int, row: int) -> Image.Image:
    """The jigsaw version of one PIL image, deterministic for (seed, row)."""
    return Image.fromarray(
        jigsaw(np.asarray(image), n, np.random.default_rng([seed, row]))
    )


def jigsaw_name(dataset: str, n: int) -> str:
    """Registry name of the jigsaw variant of ``dataset`` (its train split)."""
    return f"{dataset}@jigsaw{n}"


def jigsaw_variant(base: DatasetSpec, n: int) -> DatasetSpec:
    """``<base>@jigsaw<n>``: the jigsaw versions of a seeded subset of ``base``'s train images (≤ 2,000)."""

    def build(split: str):
        images, identity = base.load(split)
        rows = jigsaw_rows(len(images))
        jigsawed = ImageSet(
            lambda r: jigsaw_image(
                images.image(int(rows[r])), n, JIGSAW_SEED, int(rows[r])
            ),
            images.labels[rows],
            [f"{images.names[int(row)]} (jigsaw {n}×{n})" for row in rows],
        )
        return jigsawed, {
            "base": identity,
            "jigsaw": n,
            "seed": JIGSAW_SEED,
            "rows": len(rows),
            "variant": f"jigsaw{n}",
        }

    return DatasetSpec(
        jigsaw_name(base.name, n),
        f"Pseudo-OOD: {base.name} training images cut into a {n}×{n} grid with shuffled tiles.",
        f"derived from {base.name} ({base.provenance})",
        ("train",),
        build,
    )


def jigsaw_rows(
    total: int, max_samples: int = JIGSAW_MAX_SAMPLES, seed: int = JIGSAW_SEED
) -> np.ndarray:
    """The (sorted, seeded) subset of ID train rows that gets a jigsaw version."""
    if total <= max_samples:
        return np.arange(total)
    return np.sort(
        np.random.default_rng(seed).choice(total, max_samples, replace=False)
    )


def jigsaw_base_rows(jigsaw: FeatureSet) -> np.ndarray:
    """The ID train dataset rows that a cached jigsaw set was made from (row r of the set ↔ element r)."""
    return jigsaw_rows(int(jigsaw.meta["dataset"]["base"]["n"]))


def feature_norm(features: FeatureSet, block: str) -> np.ndarray:
    """``FN_b(x) = mean_c ‖ReLU(A_c)‖₂`` [N] from the cached per-channel L2 norms."""
    return np.asarray(features.stat(block, "l2"), np.float64).mean(axis=1)


def norm_ratio(
    train: FeatureSet, jigsawed: FeatureSet, base_rows: np.ndarray
) -> pd.Series:
    """``NR(b) = mean_i FN_b(x_i) / FN_b(J(x_i))`` for every probed block (index: block, in probe order).

    ``jigsawed`` row r is the jigsaw version of ID train dataset row ``base_rows[r]`` (its cached ``index`` picks
    the rows that were readable); ``train`` rows are matched to them through train's cached ``index``.
    """
    train_index = np.asarray(train["index"])
    order = np.argsort(train_index)
    originals = np.asarray(base_rows)[np.asarray(jigsawed["index"])]
    slot = np.minimum(
        np.searchsorted(train_index, originals, sorter=order), len(order) - 1
    )
    keep = train_index[order[slot]] == originals  # the original was readable too
    train_rows = order[slot[keep]]
    ratios = {}
    for block in train.blocks:
        ratios[block] = float(
            np.mean(
                feature_norm(train, block)[train_rows]
                / feature_norm(jigsawed, block)[keep]
            )
        )
    return pd.Series(ratios, name="NormRatio")


def select_block(ratios: pd.Series) -> str:
    """``argmax_b NR(b)``."""
    return str(ratios.idxmax())
