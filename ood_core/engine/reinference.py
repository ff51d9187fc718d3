"""Re-inference for ODIN (Liang et al., ICLR 2018): temperature scaling plus input perturbation, with gradients.

``x' = x − ε·sign(−∇ₓ log softmax_ŷ(f(x)/T))`` and the score is ``max_k softmax(f(x')/T)_k``. ε is in pixel
units of [0, 1] images: in the model's normalised input space each channel moves by ε/σ_c (as the official code
divides the gradient by the normalisation std). Paper defaults: T = 1000, ε = 0.0014.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..inputs.datasets import ImageSet
from .cache import CacheKey, FeatureCache, FeatureSet
from .extract import (
    ExtractionSettings,
    collate_readable,
    on_device,
    pick_device,
)
from .features import cache_key, model_of

Progress = Callable[[int, int], None]


def odin_scores(
    model: torch.nn.Module,
    images: ImageSet,
    std: tuple[float, ...],
    temperature: float,
    eps: float,
    settings: ExtractionSettings,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ODIN scores [N] and the dataset rows they belong to (unreadable images are skipped)."""
    device = pick_device(settings.device)
    step = eps / torch.tensor(std, device=device).view(1, -1, 1, 1)
    loader = torch.utils.data.DataLoader(
        images, batch_size=settings.batch_size, collate_fn=collate_readable
    )
    scores, rows, seen = [], [], 0
    moved = on_device(model, device).eval()
    for batch in loader:
        seen = min(len(images), seen + settings.batch_size)
        if batch is not None:
            x = batch[0].to(device).requires_grad_(True)
            logits = moved(x) / temperature
            loss = F.cross_entropy(logits, logits.argmax(1))
            # The input's gradient only: nothing accumulates on the (shared) model.
            (gradient,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                perturbed = x - step * torch.sign(gradient)
                scores.append(
                    F.softmax(moved(perturbed) / temperature, dim=1)
                    .amax(1)
                    .cpu()
                    .numpy()
                )
            rows.append(batch[2].numpy())
        if progress:
            progress(seen, len(images))
    return np.concatenate(scores).astype(np.float64), np.concatenate(rows)


def odin_feature_set(
    features: FeatureSet,
    temperature: float,
    eps: float,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
) -> FeatureSet:
    """ODIN scores (array ``odin``) for the same model and dataset split as ``features``, re-inferred once per
    (T, ε) and cached as a derived entry."""
    cache = cache or FeatureCache()
    model = model_of(features)
    dataset = features.meta["dataset"]
    key, images = cache_key(model, dataset["dataset"], dataset["split"])
    variant = {
        "variant": f"odin-T{temperature:g}-eps{eps:g}",
        "odin": {"T": temperature, "eps": eps},
    }
    key = CacheKey.create(key.model, {**key.dataset, **variant})

    def build(writer):
        scores, rows = odin_scores(
            model.module,
            images.with_transform(model.transform),
            model.spec.std,
            temperature,
            eps,
            ExtractionSettings(),
            progress,
        )
        writer.put("odin", scores)
        writer.put("index", rows)
        return {"kind": "derived", "probes": list(model.probes.blocks)}

    return cache.get_or_create(key, build)
