"""Drawing: an image with a heatmap blended over it, or with markers at NAP's channel peaks.

Everything here returns uint8 RGB arrays ready for display; the maps come from the decoder and ``gradcam``.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

DISPLAY_SIZE = 128


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """[C, H, W] in [0, 1] (C = 1 or 3) → [H, W, 3] float."""
    image = np.asarray(pixels, np.float32)
    image = np.repeat(image, 3, 0) if image.shape[0] == 1 else image[:3]
    return image.transpose(1, 2, 0)


def _enlarge(image: np.ndarray, size: int) -> Image.Image:
    picture = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    return picture.resize((size, size), Image.Resampling.NEAREST)


def blend(
    pixels: np.ndarray,
    heat: np.ndarray,
    opacity: float,
    colormap: str = "inferno",
    size: int = DISPLAY_SIZE,
) -> np.ndarray:
    """``(1 − a·heat)·image + a·heat·colour(heat)``: the map [H, W] in [0, 1] over the image [C, H, W] in [0, 1].

    Where the map is 0 the image shows unchanged, so an ID image with an all-zero heatmap looks untouched.
    """
    heat = np.clip(np.asarray(heat, np.float32), 0, 1)[..., None]
    coloured = colormaps[colormap](heat[..., 0])[..., :3]
    weight = opacity * heat
    mixed = (1 - weight) * _rgb(pixels) + weight * coloured
    return np.asarray(_enlarge(mixed, size))


def colour_scale(
    colormap: str = "inferno", width: int = 256, height: int = 14
) -> np.ndarray:
    """A horizontal colour bar [height, width, 3] (uint8) of ``colormap`` from 0 (left) to 1 (right): the legend of
    ``blend``'s overlays."""
    row = colormaps[colormap](np.linspace(0, 1, width))[:, :3]
    return (np.repeat(row[None], height, axis=0) * 255).astype(np.uint8)


def mark_peaks(
    pixels: np.ndarray,
    xy: np.ndarray,
    strength: np.ndarray,
    opacity: float,
    top: int = 8,
    size: int = DISPLAY_SIZE,
) -> np.ndarray:
    """Circles at the ``top`` strongest channels' peak positions ``xy`` [C, 2] (input pixels), radius ∝ strength."""
    picture = _enlarge(_rgb(pixels), size).convert("RGBA")
    layer = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    scale = size / pixels.shape[-1]
    order = np.argsort(strength)[::-1][:top]
    largest = float(strength[order[0]]) if len(order) and strength[order[0]] > 0 else 1
    for c in order:
        x, y = xy[c] * scale
        radius = 3 + 7 * float(strength[c]) / largest
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius),
            outline=(0, 255, 255, int(255 * opacity)),
            width=2,
        )
    return np.asarray(Image.alpha_composite(picture, layer).convert("RGB"))
