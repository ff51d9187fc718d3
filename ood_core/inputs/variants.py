"""Dataset references and pseudo-OOD variants made from ID training images only.

A reference names a dataset, optionally a variant and a split: ``textures``, ``digits:train``, ``digits@jigsaw3``.
``parse_ref`` is the one parser for them. Variants are datasets derived from another dataset's train split:

- ``@jigsaw<n>`` (seed 001, Block Selection): cut the image into an n×n grid (default n = 3) and shuffle the tiles
  with a seeded RNG (one permutation per image, from ``(seed, row)``). When a side is not divisible by n, the tiles
  cover the largest multiple of n from the top-left and the remaining border rows/columns stay in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import OODLabError
from ..rows import sample_rows
from .datasets import DatasetSpec, ImageSet

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


def jigsaw_rows(total: int) -> np.ndarray:
    """The (sorted, seeded) subset of ID train rows that gets a jigsaw version (at most 2,000)."""
    return sample_rows(total, JIGSAW_MAX_SAMPLES, JIGSAW_SEED)


def jigsaw_base_rows(identity: dict) -> np.ndarray:
    """The base train rows a jigsaw set was made from (row r of the set ↔ element r), from its cache identity."""
    return jigsaw_rows(int(identity["base"]["n"]))


REF = re.compile(r"(?P<base>[^@:]+)(?:@(?P<variant>[^:]+))?(?::(?P<split>[^:]+))?")
VARIANT = re.compile(r"jigsaw(?P<n>\d+)")


@dataclass(frozen=True)
class DatasetRef:
    """``<base>[@<variant>][:<split>]``."""

    base: str
    variant: str | None = None
    split: str | None = None

    @property
    def dataset(self) -> str:
        """The dataset name without the split (what the catalog resolves)."""
        return f"{self.base}@{self.variant}" if self.variant else self.base

    def __str__(self) -> str:
        return self.dataset + (f":{self.split}" if self.split else "")


def parse_ref(text: str) -> DatasetRef:
    """``'digits@jigsaw3:train'`` → ``DatasetRef('digits', 'jigsaw3', 'train')``; one-line error if malformed."""
    match = REF.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise OODLabError(
            f"'{text}' is not a dataset reference (name[@variant][:split], e.g. digits@jigsaw3)"
        )
    return DatasetRef(match["base"], match["variant"], match["split"])


def variant_spec(base: DatasetSpec, variant: str) -> DatasetSpec:
    """The variant ``variant`` of ``base`` (e.g. ``jigsaw3``)."""
    match = VARIANT.fullmatch(variant)
    if not match:
        raise OODLabError(
            f"unknown dataset variant '@{variant}' (known: @jigsaw<n>, n = 2…16)"
        )
    n = int(match["n"])
    if not 2 <= n <= 16:
        raise OODLabError(
            f"'{base.name}@{variant}': the jigsaw grid size must be an integer from 2 to 16"
        )
    if not base.has_images:
        raise OODLabError(
            f"'{base.name}@{variant}': {base.name} has no images to make pseudo-OOD from"
        )
    if "train" not in base.splits:
        raise OODLabError(
            f"'{base.name}@{variant}': {base.name} has no train split to make pseudo-OOD from"
        )
    return jigsaw_variant(base, n)
