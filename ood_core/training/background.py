"""Local Background features as fake OOD features (Ye et al., 2025) — OOD Lab's interpretation.

The paper (abstract only in our seeds) fine-tunes the classifier so that the L2 norm of local *background* features
of ID images shrinks; OOD images share such backgrounds, so their features shrink too and the model grows less
confident on them. **Our interpretation** (the abstract does not fix the details): on the last feature map
``f ∈ R^{C×h×w}``, the background positions of an image are the ``k`` positions with the lowest class activation
``CAM_ij = w_ŷ · f_ij`` (``w_ŷ`` the linear head's row of the predicted class), and the fine-tuning loss is

    L = CE(logits, y) + α · mean_{(i,j) ∈ lowest-k} ‖f_ij‖₂

Defaults: α = 0.1, k = 8, 3 epochs, Adam lr 5e-4 (sized for the demo model on 2 CPU cores).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine.extract import collate_readable, model_device
from ..errors import OODLabError
from ..inputs.probes import Probes
from ..inputs.taps import tapped

Progress = Callable[[int, int, float], None]


def class_activation(
    features: torch.Tensor, weight: torch.Tensor, predicted: torch.Tensor
) -> torch.Tensor:
    """``CAM_ij = w_ŷ · f_ij`` [n, h, w] for feature maps [n, C, h, w] and head weights [K, C]."""
    return torch.einsum("nchw,nc->nhw", features, weight[predicted])


def lowest_positions(cam: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices [n, k] of the ``k`` lowest-CAM positions of each map (ties broken by ``torch.topk``)."""
    flat = cam.flatten(1)
    if not 1 <= k <= flat.shape[1]:
        raise ValueError(f"k must be between 1 and {flat.shape[1]} (h×w), not {k}")
    return flat.topk(k, dim=1, largest=False).indices


def background_norms(
    features: torch.Tensor, weight: torch.Tensor, predicted: torch.Tensor, k: int
) -> torch.Tensor:
    """``‖f_ij‖₂`` [n, k] at each image's ``k`` lowest-CAM positions (the "background features")."""
    where = lowest_positions(
        class_activation(features.detach(), weight.detach(), predicted), k
    )
    norms = features.flatten(2).norm(dim=1)  # [n, h*w]
    return norms.gather(1, where)


def background_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    features: torch.Tensor,
    weight: torch.Tensor,
    alpha: float,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L, CE, mean background norm)`` with ``L = CE + α·mean ‖f_ij‖₂`` over the lowest-k CAM positions."""
    cross_entropy = F.cross_entropy(logits, labels)
    background = background_norms(features, weight, logits.argmax(1), k).mean()
    return cross_entropy + alpha * background, cross_entropy, background


@dataclass(frozen=True)
class BackgroundSettings:
    alpha: float = 0.1
    k: int = 8
    epochs: int = 3
    lr: float = 5e-4
    batch_size: int = 64
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


DEFAULT_BACKGROUND_SETTINGS = BackgroundSettings()


class _LastMap:
    """Keeps the class-activation map (``Probes.class_map``, channel-first) of the current forward pass, with its
    graph; use as a context manager around the forward passes."""

    def __init__(self, model: nn.Module, probes: Probes):
        name = probes.class_map() if probes.details else probes.blocks[-1]
        if name is None:
            raise OODLabError(
                "this model has no spatial map whose channels its head weighs (its head reads "
                f"{probes.penultimate} features), so background positions cannot be found by class activation"
            )
        self.value: torch.Tensor | None = None
        self._taps = tapped(model, probes, [name])
        self._name = name

    def __enter__(self) -> Self:
        taps = self._taps.__enter__()
        self._handle = taps[self._name].register_forward_hook(self._keep)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()
        self._taps.__exit__(*exc)

    def _keep(self, module, args, output) -> None:
        self.value = output


def fine_tune(
    model: nn.Module,
    probes: Probes,
    images: torch.utils.data.Dataset,
    settings: BackgroundSettings = DEFAULT_BACKGROUND_SETTINGS,
    progress: Progress | None = None,
) -> dict:
    """Fine-tune ``model`` in place, on the device it lives on, on ID training ``images`` (transformed, labelled)
    with the background loss.

    ``progress(step, steps, loss)`` after every batch. Returns a report with per-epoch CE and background norm.
    """
    torch.manual_seed(settings.seed)
    loader = torch.utils.data.DataLoader(
        images,
        batch_size=settings.batch_size,
        shuffle=True,
        collate_fn=collate_readable,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    device = model_device(model)
    head = model.get_submodule(probes.head)
    optimizer = torch.optim.Adam(model.parameters(), settings.lr)
    steps, step, start = settings.epochs * len(loader), 0, time.perf_counter()
    report: dict = {"cross_entropy": [], "background_norm": []}
    try:
        with _LastMap(model, probes) as last_map:
            for _ in range(settings.epochs):
                model.train()
                sums = np.zeros(3)
                for batch in loader:
                    step += 1
                    if batch is None:
                        continue
                    x, labels = batch[0].to(device), batch[1].to(device)
                    logits = model(x)
                    loss, ce, bg = background_loss(
                        logits,
                        labels,
                        last_map.value,
                        head.weight,
                        settings.alpha,
                        settings.k,
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    sums += [
                        float(ce.detach()) * len(x),
                        float(bg.detach()) * len(x),
                        len(x),
                    ]
                    if progress:
                        progress(step, steps, float(loss.detach()))
                report["cross_entropy"].append(sums[0] / sums[2])
                report["background_norm"].append(sums[1] / sums[2])
    finally:
        model.eval()
    report.update(
        settings=settings.as_dict(), seconds=round(time.perf_counter() - start, 2)
    )
    return report


def last_map_background_norms(
    model: nn.Module, probes: Probes, inputs: torch.Tensor, k: int
) -> np.ndarray:
    """Background-feature norms [n, k] of ``inputs`` under ``model`` (no gradients), for before/after plots."""
    with _LastMap(model, probes) as last_map, torch.no_grad():
        logits = model.eval()(inputs)
        weight = model.get_submodule(probes.head).weight
        norms = background_norms(last_map.value, weight, logits.argmax(1), k)
    return norms.numpy()
