"""Gallery overlays for a few samples: the decoder's heatmap, Grad-CAM, or NAP's channel peaks over each image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..engine.cache import FeatureSet
from ..engine.features import model_of
from ..engine.images import model_inputs, to_pixels
from ..inputs.models import LoadedModel
from ..inputs.taps import tapped
from ..training.decoder import TrainedDecoder
from .gradcam import block_maps, grad_cam, nap_peaks
from .overlays import blend, mark_peaks

OVERLAYS = ("decoder heatmap", "Grad-CAM", "NAP peaks")


@dataclass(frozen=True)
class OverlayMaps:
    """What an overlay shows before its opacity is chosen: the images' pixels [n, C, H, W] in [0, 1] and, per kind,
    heat maps [n, H, W] in [0, 1] (decoder heatmap, Grad-CAM; with their colour map) or NAP's channel peaks."""

    kind: str
    pixels: np.ndarray
    heat: np.ndarray | None = None
    colormap: str = "inferno"
    peaks: tuple[np.ndarray, np.ndarray] | None = None  # (xy, ratio) per image

    def draw(self, opacity: float) -> list[np.ndarray]:
        """uint8 RGB pictures with the overlay at ``opacity``."""
        if self.peaks is not None:
            xy, ratio = self.peaks
            return [
                mark_peaks(p, c, r, opacity) for p, c, r in zip(self.pixels, xy, ratio)
            ]
        return [
            blend(p, h, opacity, self.colormap) for p, h in zip(self.pixels, self.heat)
        ]


def image_maps(
    features: FeatureSet, rows: Sequence[int], kind: str, **options
) -> OverlayMaps:
    """``overlay_maps`` for cached ``rows`` of ``features`` (images reloaded from their dataset)."""
    index = np.asarray(list(rows), dtype=int)
    return overlay_maps(
        model_of(features),
        model_inputs(features, index.tolist()),
        features.penultimate[index],
        features.logits[index],
        kind,
        **options,
    )


def overlay_inputs(
    model: LoadedModel,
    inputs: torch.Tensor,
    penultimate: np.ndarray,
    logits: np.ndarray,
    kind: str,
    *,
    opacity: float = 0.6,
    **options,
) -> list[np.ndarray]:
    """uint8 RGB pictures of model ``inputs`` [n, C, H, W] with the ``kind`` overlay (``overlay_maps``) at
    ``opacity``."""
    return overlay_maps(model, inputs, penultimate, logits, kind, **options).draw(
        opacity
    )


def overlay_maps(
    model: LoadedModel,
    inputs: torch.Tensor,
    penultimate: np.ndarray,
    logits: np.ndarray,
    kind: str,
    *,
    block: str | None = None,
    decoder: TrainedDecoder | None = None,
    eps: float = 1.0,
) -> OverlayMaps:
    """The ``kind`` overlay (one of ``OVERLAYS``) of model ``inputs`` [n, C, H, W], before its opacity:

    * decoder heatmap: ``max_c |h|`` from ``penultimate`` and ``logits``, on a fixed [0, 1] scale (an ID image
      should stay untouched);
    * Grad-CAM of ``block`` (default: the last probed block) for the predicted class, scaled per image (a token or
      channel-last map is read at its tap, channel-first: ``inputs.taps``);
    * NAP peaks: the argmax position of the 8 channels of ``block`` with the largest ``max/(mean+ε)``.
    """
    if kind not in OVERLAYS:
        raise ValueError(f"overlay must be one of {OVERLAYS}, not {kind!r}")
    pixels = to_pixels(inputs, model).numpy()
    if kind == "decoder heatmap":
        if decoder is None:
            raise ValueError("the decoder heatmap overlay needs a trained decoder")
        heat = np.abs(decoder.heatmaps(penultimate, logits)).max(1)
        return OverlayMaps(kind, pixels, heat=heat)
    block = block or model.probes.blocks[-1]
    with tapped(model.module, model.probes, [block]) as taps:
        if kind == "Grad-CAM":
            cams = grad_cam(model.module, taps[block], inputs)
            peaks = cams.reshape(len(cams), -1).max(1)
            heat = cams / np.where(peaks > 0, peaks, 1)[:, None, None]
            return OverlayMaps(kind, pixels, heat=heat, colormap="jet")
        maps = block_maps(model.module, taps[block], inputs)
    return OverlayMaps(kind, pixels, peaks=nap_peaks(maps, inputs.shape[-1], eps))
