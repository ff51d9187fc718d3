"""Where a classifier looks: Grad-CAM (captum) and the spatial peaks that NAP reads, for gallery overlays.

These run the model on a handful of gallery images; the detectors themselves never need them.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn


def predictions(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The predicted class of each input."""
    with torch.no_grad():
        return model.eval()(inputs).argmax(1)


def grad_cam(
    model: nn.Module,
    layer: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor | None = None,
) -> np.ndarray:
    """Grad-CAM of ``layer`` (a module or a probe's tap, whose output is a [n, C, h, w] map) for ``target``
    (default: the predicted class), upsampled to the input: [n, H, W] ≥ 0.

    ``ReLU(Σ_c α_c A_c)`` with ``α_c`` the spatial mean of ``∂y_target/∂A_c`` (Selvaraju et al., ICCV 2017),
    computed by captum's ``LayerGradCam`` and upsampled bilinearly with ``LayerAttribution.interpolate``.
    """
    model.eval()
    if target is None:
        target = predictions(model, inputs)
    cam = LayerGradCam(model, layer).attribute(
        inputs, target=target, relu_attributions=True
    )
    upsampled = LayerAttribution.interpolate(
        cam, tuple(inputs.shape[-2:]), interpolate_mode="bilinear"
    )
    return upsampled[:, 0].detach().cpu().numpy()


def block_maps(
    model: nn.Module, layer: nn.Module, inputs: torch.Tensor
) -> torch.Tensor:
    """``layer``'s output maps [n, C, h, w] for ``inputs`` (one forward pass, no gradients)."""
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(
        lambda module, args, output: captured.append(output.detach())
    )
    try:
        with torch.no_grad():
            model.eval()(inputs)
    finally:
        handle.remove()
    return captured[0]


def nap_peaks(
    maps: torch.Tensor, input_size: int, eps: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, where its activation peaks and how peaked it is — the two things NAP's ratio measures.

    Returns ``xy`` [n, C, 2]: the argmax position of each channel's map in input pixels (cell centres), and
    ``ratio`` [n, C]: ``max_c / (mean_c + ε)`` of the post-ReLU map (the ratio NAP, the Neural Activation Prior, averages).
    """
    maps = torch.relu(maps.float())
    n, c, h, w = maps.shape
    flat = maps.reshape(n, c, h * w)
    peak, where = flat.max(2)
    rows, cols = where // w, where % w
    xy = torch.stack([(cols + 0.5) * input_size / w, (rows + 0.5) * input_size / h], 2)
    ratio = peak / (flat.mean(2) + eps)
    return xy.numpy(), ratio.numpy()
