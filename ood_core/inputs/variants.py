"""Dataset references and pseudo-OOD variants made from ID training images only.

A reference names a dataset, optionally a variant and a split: ``textures``, ``digits:train``, ``digits@jigsaw3``.
``parse_ref`` is the one parser for them. Variants are datasets derived from another dataset's train split:

- ``@jigsaw<n>`` (seed 001, Block Selection): cut the image into an n×n grid (default n = 3) and shuffle the tiles
  with a seeded RNG (one permutation per image, from ``(seed, row)``). When a side is not divisible by n, the tiles
  cover the largest multiple of n from the top-left and the remaining border rows/columns stay in place.
- Corruptions for honest tuning (validation OOD made from ID training images only, never from a test OOD set):
  ``@blur`` (Gaussian blur, radius 1/8 of the shorter side), ``@permute<n>`` (pixels shuffled inside each n×n
  patch), ``@noise`` (every pixel ± N(0, 64) grey levels), ``@invert`` (255 − x) and ``@mix`` (two ID images of
  different classes blended 50/50).

Every variant is made from the same seeded subset of at most 2,000 train images, deterministic for (seed, row), and
cached like any dataset split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

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


def _blur(images: ImageSet, row: int, rng: np.random.Generator) -> Image.Image:
    image = images.image(row)
    return image.filter(ImageFilter.GaussianBlur(radius=max(1.0, min(image.size) / 8)))


def _permute(n: int):
    def corrupt(images: ImageSet, row: int, rng: np.random.Generator) -> Image.Image:
        array = np.array(images.image(row))
        h, w = array.shape[0] // n * n, array.shape[1] // n * n
        area = array[:h, :w]
        patches = area.reshape(h // n, n, w // n, n, *area.shape[2:]).swapaxes(1, 2)
        flat = patches.reshape(h // n, w // n, n * n, *area.shape[2:])
        order = rng.permuted(np.tile(np.arange(n * n), (h // n, w // n, 1)), axis=2)
        shuffled = np.take_along_axis(
            flat, order.reshape(*order.shape, *([1] * (flat.ndim - 3))), axis=2
        )
        array[:h, :w] = (
            shuffled.reshape(patches.shape).swapaxes(1, 2).reshape(area.shape)
        )
        return Image.fromarray(array)

    return corrupt


def _noise(images: ImageSet, row: int, rng: np.random.Generator) -> Image.Image:
    array = np.asarray(images.image(row), np.float64)
    return Image.fromarray(
        np.clip(array + rng.normal(0, 64, array.shape), 0, 255).astype(np.uint8)
    )


def _invert(images: ImageSet, row: int, rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(255 - np.asarray(images.image(row), np.uint8))


def _mix(images: ImageSet, row: int, rng: np.random.Generator) -> Image.Image:
    others = np.flatnonzero(images.labels != images.labels[row])
    partner = int(others[rng.integers(len(others))]) if len(others) else row
    first, second = (
        images.image(row),
        images.image(partner).resize(images.image(row).size),
    )
    return Image.blend(first, second.convert(first.mode), 0.5)


def _jigsaw(n: int):
    return lambda images, row, rng: Image.fromarray(
        jigsaw(np.asarray(images.image(row)), n, rng)
    )


# name → (what it does, the corruption for a grid size n or None, allowed n)
VARIANTS = {
    "jigsaw": ("cut into an {n}×{n} grid with shuffled tiles", _jigsaw, (2, 16)),
    "permute": ("pixels shuffled inside each {n}×{n} patch", _permute, (2, 16)),
    "blur": (
        "strongly blurred (Gaussian, radius 1/8 of the shorter side)",
        lambda n: _blur,
        None,
    ),
    "noise": (
        "with high-frequency noise (± N(0, 64) grey levels per pixel)",
        lambda n: _noise,
        None,
    ),
    "invert": ("inverted (255 − x)", lambda n: _invert, None),
    "mix": (
        "blended 50/50 with a training image of another class",
        lambda n: _mix,
        None,
    ),
}
PSEUDO_OOD = ("jigsaw3", "blur", "permute4", "noise", "invert", "mix")


def pseudo_ood_variant(base: DatasetSpec, variant: str) -> DatasetSpec:
    """``<base>@<variant>``: a corrupted version of a seeded subset (≤ 2,000) of ``base``'s train images."""
    match = VARIANT.fullmatch(variant)
    if not match or match["kind"] not in VARIANTS:
        known = ", ".join(f"@{k}<n>" if VARIANTS[k][2] else f"@{k}" for k in VARIANTS)
        raise OODLabError(f"unknown dataset variant '@{variant}' (known: {known})")
    kind, digits = match["kind"], match["n"]
    description, make, bounds = VARIANTS[kind]
    if bounds is not None:
        if not digits or not bounds[0] <= int(digits) <= bounds[1]:
            raise OODLabError(
                f"'{base.name}@{variant}': the {kind} size must be an integer from {bounds[0]} to {bounds[1]}"
            )
    elif digits:
        raise OODLabError(f"'{base.name}@{variant}': @{kind} takes no size")
    n = int(digits) if digits else None
    if not base.has_images:
        raise OODLabError(
            f"'{base.name}@{variant}': {base.name} has no images to make pseudo-OOD from"
        )
    if "train" not in base.splits:
        raise OODLabError(
            f"'{base.name}@{variant}': {base.name} has no train split to make pseudo-OOD from"
        )
    corrupt = make(n)

    def build(split: str):
        images, identity = base.load(split)
        rows = jigsaw_rows(len(images))
        corrupted = ImageSet(
            lambda r: corrupt(
                images, int(rows[r]), np.random.default_rng([JIGSAW_SEED, int(rows[r])])
            ),
            images.labels[rows],
            [f"{images.names[int(row)]} ({variant})" for row in rows],
        )
        return corrupted, {
            "base": identity,
            kind: n if n is not None else True,
            "seed": JIGSAW_SEED,
            "rows": len(rows),
            "variant": variant,
            "generator_version": VARIANT_VERSION,
        }

    return DatasetSpec(
        f"{base.name}@{variant}",
        f"Pseudo-OOD: {base.name} training images {description.format(n=n)}.",
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
VARIANT = re.compile(r"(?P<kind>[a-z]+)(?P<n>\d*)")
VARIANT_VERSION = 1


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
    """The variant ``variant`` of ``base`` (e.g. ``jigsaw3``, ``blur``)."""
    return pseudo_ood_variant(base, variant)
