"""Embedded, offline demo images: digits (ID) and five OOD families, all 32×32 grayscale uint8.

Every generator is deterministic for a seed and returns ``(images [N,32,32] uint8, labels [N] int64)``.
Bump ``GENERATOR_VERSION`` whenever an output changes: it is part of every demo dataset's cache key.
"""

from __future__ import annotations

import os
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# matplotlib, scikit-image, scikit-learn and torch are imported where an image set is generated: opening a cached
# workspace never needs them.

GENERATOR_VERSION = "1"
SIZE = 32
DIGIT_TEST_FRACTION = 0.3

# Letters easily confused with digits (O/0, l/1, S/5, Z/2, ...) are left out so "letters" stays semantically OOD.
LETTERS = [c for c in string.ascii_letters if c not in "OoIlSsZzBbgqG"]
LETTER_FONTS = [
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono.ttf",
    "STIXGeneral.ttf",
    "cmr10.ttf",
]
TEXTURES = ("brick", "grass", "gravel")
PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "cat")
# The validation OOD set's sources: scikit-image's other bundled images, none of them in a test set.
HELD_OUT = ("hubble_deep_field", "immunohistochemistry", "retina", "cell", "clock")


def _upsample(images: np.ndarray, max_value: float) -> np.ndarray:
    """[N,h,w] → [N,32,32] uint8 with bilinear interpolation (the digits' look)."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(images, dtype=torch.float32)[:, None] / max_value
    up = F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return (up[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _resize_crop(crop: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(crop).resize((SIZE, SIZE), Image.Resampling.BOX))


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = np.asarray(Image.fromarray(image[..., :3]).convert("L"))
    return image.astype(np.uint8)


def _random_crops(
    sources: list[np.ndarray],
    n: int,
    rng: np.random.Generator,
    min_size: int,
    max_size: int,
) -> np.ndarray:
    out = np.empty((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        src = sources[i % len(sources)]
        size = int(rng.integers(min_size, min(max_size, *src.shape[:2]) + 1))
        y = int(rng.integers(0, src.shape[0] - size + 1))
        x = int(rng.integers(0, src.shape[1] - size + 1))
        out[i] = _resize_crop(src[y : y + size, x : x + size])
    return out


def digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled ``load_digits`` (1,797 8×8 images), upsampled to 32×32; fixed stratified 70/30 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    rows = np.arange(len(bunch.target))
    train, test = train_test_split(
        rows, test_size=DIGIT_TEST_FRACTION, random_state=0, stratify=bunch.target
    )
    rows = {"train": train, "test": test}[split]
    rows = np.sort(rows)
    return _upsample(bunch.images[rows], 16.0), bunch.target[rows].astype(np.int64)


def letters(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Latin letters rendered from matplotlib's bundled fonts, then put through the digits' 8×8 → 32×32 pipeline."""
    rng = np.random.default_rng(seed)
    import matplotlib

    font_dir = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    small = np.empty((n, 8, 8), np.float32)
    for i in range(n):
        font = ImageFont.truetype(
            os.path.join(font_dir, LETTER_FONTS[i % len(LETTER_FONTS)]),
            int(rng.integers(34, 42)),
        )
        canvas = Image.new("L", (SIZE, SIZE), 0)
        ImageDraw.Draw(canvas).text(
            (SIZE / 2, SIZE / 2),
            LETTERS[int(rng.integers(len(LETTERS)))],
            fill=255,
            font=font,
            anchor="mm",
        )
        canvas = canvas.rotate(
            float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR
        )
        # Same look as load_digits: 4×4 area averaging to 8×8, 17 grey levels.
        small[i] = np.asarray(canvas, np.float32).reshape(8, 4, 8, 4).mean(axis=(1, 3))
    small = np.round(small / 255 * 16)
    return _upsample(small, 16.0), np.full(n, -1, np.int64)


def textures(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random crops (48–160 px) of scikit-image's bundled brick, grass and gravel textures."""
    from skimage import data as skdata

    sources = [getattr(skdata, name)() for name in TEXTURES]
    return _random_crops(sources, n, np.random.default_rng(seed), 48, 160), np.full(
        n, -1, np.int64
    )


def photos(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random grayscale crops (64–256 px) of scikit-image's and scikit-learn's bundled photographs."""
    from skimage import data as skdata
    from sklearn.datasets import load_sample_images

    sources = [_gray(getattr(skdata, name)()) for name in PHOTOS]
    sources += [_gray(image) for image in load_sample_images().images]
    return _random_crops(sources, n, np.random.default_rng(seed), 64, 256), np.full(
        n, -1, np.int64
    )


def held_out(n: int = 600, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validation OOD (the demo's ``val_tin``): random grayscale crops (48–256 px) of scikit-image's bundled images
    that no test set uses (Hubble deep field, immunohistochemistry, retina, cell, clock)."""
    from skimage import data as skdata

    sources = [_gray(getattr(skdata, name)()) for name in HELD_OUT]
    return _random_crops(sources, n, np.random.default_rng(seed), 48, 256), np.full(
        n, -1, np.int64
    )


def faces() -> tuple[np.ndarray, np.ndarray]:
    """The 200 25×25 faces of scikit-image's bundled ``lfw_subset``, resized to 32×32."""
    from skimage import data as skdata

    images = skdata.lfw_subset()
    return _upsample(images, 1.0), np.full(len(images), -1, np.int64)


def noise(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Half Gaussian noise (mean 128, sd 64, clipped), half uniform noise on [0, 255]."""
    rng = np.random.default_rng(seed)
    half = n // 2
    gaussian = np.clip(rng.normal(128, 64, (half, SIZE, SIZE)), 0, 255)
    uniform = rng.uniform(0, 256, (n - half, SIZE, SIZE))
    return np.concatenate([gaussian, uniform]).astype(np.uint8), np.full(
        n, -1, np.int64
    )
