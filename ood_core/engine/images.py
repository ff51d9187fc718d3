"""Images behind cached rows, reloaded from their dataset: for galleries, overlays and training a decoder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import DataPathError, OODLabError
from ..inputs.models import LoadedModel
from .cache import FeatureSet
from .features import dataset_images, model_of


def sample_image(dataset: str, split: str | None, row: int) -> Image.Image:
    """The untransformed image of ``dataset:split`` at dataset row ``row``."""
    images, _ = dataset_images(dataset, split)
    return images.image(row)


def has_images(features: FeatureSet) -> bool:
    """Whether ``features`` can be traced back to images (a synthetic workspace has none)."""
    return not features.meta.get("synthetic") and "index" in features


def model_inputs(features: FeatureSet, rows: Sequence[int]) -> torch.Tensor:
    """The images of cached ``rows`` as the model sees them (transformed and normalised): [n, C, H, W]."""
    if not has_images(features):
        raise OODLabError(
            "this is a synthetic workspace: its sets have no images to show"
        )
    model = model_of(features)
    dataset = features.meta["dataset"]
    images, _ = dataset_images(dataset["dataset"], dataset["split"])
    images = images.with_transform(model.transform)
    index = np.asarray(features["index"])
    loaded = []
    for row in rows:
        item = images[int(index[row])]
        if item is None:
            raise DataPathError(
                f"{images.names[int(index[row])]} was readable when it was extracted but no longer is"
            )
        loaded.append(item[0])
    return torch.stack(loaded)


def to_pixels(inputs: torch.Tensor, model: LoadedModel) -> torch.Tensor:
    """Undo the model's normalisation: pixels in [0, 1]."""
    mean = torch.tensor(model.spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.spec.std).view(1, -1, 1, 1)
    return (inputs * std + mean).clamp(0, 1)


def pixels(features: FeatureSet, rows: Sequence[int]) -> torch.Tensor:
    """The images of cached ``rows`` in the model's geometry, pixels in [0, 1]: [n, C, H, W]."""
    return to_pixels(model_inputs(features, rows), model_of(features))
