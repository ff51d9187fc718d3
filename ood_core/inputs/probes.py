"""Where to look inside a model: the ordered blocks to probe, the linear head and the penultimate feature.

ResNet-style models are probed at every residual block (torchvision ``BasicBlock``/``Bottleneck`` and the demo's
block); any other model falls back to every ReLU module that runs once per forward pass on a 4-D map. The head is the
last ``nn.Linear``; the penultimate feature is its input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import OODLabError

RESIDUAL_BLOCK_TYPES = ("BasicBlock", "Bottleneck")


@dataclass(frozen=True)
class Probes:
    blocks: tuple[str, ...]
    head: str
    kind: str  # "residual blocks" or "post-ReLU modules"


def _call_order(
    model: nn.Module, names: list[str], example: torch.Tensor
) -> dict[str, list[tuple]]:
    """Run ``example`` once; for each named module, the output shapes of each call, in call order (dict order)."""
    calls: dict[str, list[tuple]] = {}
    handles = []
    for name in names:

        def hook(module, inputs, output, name=name):
            calls.setdefault(name, []).append(
                tuple(output.shape) if torch.is_tensor(output) else ()
            )

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def find_probes(model: nn.Module, example: torch.Tensor) -> Probes:
    """Find the probes of ``model`` by one dry forward pass on ``example`` (a [1,C,H,W] input)."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise OODLabError(
            f"{type(model).__name__} has no nn.Linear head; OOD Lab needs a classifier ending in a linear layer"
        )
    blocks = [
        name
        for name, m in model.named_modules()
        if type(m).__name__ in RESIDUAL_BLOCK_TYPES
    ]
    kind = "residual blocks"
    if not blocks:
        blocks = [
            name
            for name, m in model.named_modules()
            if isinstance(m, (nn.ReLU, nn.ReLU6))
        ]
        kind = "post-ReLU modules"
    calls = _call_order(model, blocks + [linears[-1]], example)
    ordered = [
        name
        for name in calls
        if name in blocks and len(calls[name]) == 1 and len(calls[name][0]) == 4
    ]
    if not ordered:
        raise OODLabError(
            f"found no {kind} with a 4-D output in {type(model).__name__}; cannot probe its activations"
        )
    return Probes(tuple(ordered), linears[-1], kind)


def linear_head(model: nn.Module, probes: Probes) -> tuple[np.ndarray, np.ndarray]:
    """The head's weight W [K,D] and bias b [K] as float32 arrays (b is zeros when the layer has no bias)."""
    head = model.get_submodule(probes.head)
    weight = head.weight.detach().float().cpu().numpy()
    bias = (
        head.bias.detach().float().cpu().numpy()
        if head.bias is not None
        else np.zeros(weight.shape[0], np.float32)
    )
    return weight, bias
