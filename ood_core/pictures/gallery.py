"""Gallery overlays for a few samples: the decoder's heatmap, Grad-CAM, or NAP's channel peaks over each image."""

from __future__ import annotations

from collections.abc import Sequence

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


def overlay_images(
    features: FeatureSet, rows: Sequence[int], kind: str, **options
) -> list[np.ndarray]:
    """``overlay_inputs`` for cached ``rows`` of ``features`` (images reloaded from their dataset)."""
    rows = list(rows)
    if not rows:
        return []
    index = np.asarray(rows)
    return overlay_inputs(
        model_of(features),
        model_inputs(features, rows),
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
    block: str | None = None,
    decoder: TrainedDecoder | None = None,
    eps: float = 1.0,
) -> list[np.ndarray]:
    """uint8 RGB pictures of model ``inputs`` [n, C, H, W] with the ``kind`` overlay (one of ``OVERLAYS``).

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
        return [blend(p, h, opacity) for p, h in zip(pixels, heat)]
    block = block or model.probes.blocks[-1]
    with tapped(model.module, model.probes, [block]) as taps:
        if kind == "Grad-CAM":
            cams = grad_cam(model.module, taps[block], inputs)
            peaks = cams.reshape(len(cams), -1).max(1)
            heat = cams / np.where(peaks > 0, peaks, 1)[:, None, None]
            return [blend(p, h, opacity, "jet") for p, h in zip(pixels, heat)]
        maps = block_maps(model.module, taps[block], inputs)
    xy, ratio = nap_peaks(maps, inputs.shape[-1], eps)
    return [mark_peaks(p, c, r, opacity) for p, c, r in zip(pixels, xy, ratio)]
