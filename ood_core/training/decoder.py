"""Heatmap-based OOD detection (Hornauer et al., WACV 2023): a decoder that paints where an image is OOD.

Given a fixed classifier, the decoder ``G`` maps the penultimate feature ``z`` (scaled to [0, 1] by the ID-train
per-dimension maximum) and the one-hot prediction ``ŷ`` to a heatmap ``h = tanh(G([z', onehot(ŷ)]))`` of the input's
size and channels. With ``x̂ = x + h`` it is trained so that

* ID images are reproduced unchanged: target ``t = x`` (so ``h ≈ 0``);
* outlier-exposure images turn into their nearest ID training image of the same predicted class (Euclidean on
  ``z``): target ``t = x_NN`` (so ``h`` is large where the image differs from ID);

with loss ``mean (1 + 5|t|)·(x̂ − t)²`` and Adam (lr 2e-4, betas 0.5/0.999). The OOD score is the mean over pixels
of the channel-wise maximum of ``|h|``; OOD Lab negates it so that higher means more ID, like every other method.

Images live in the model's input geometry with pixels in [0, 1] (the model's normalisation undone). This module
trains the decoder; ``ood_core.scores.heatmap`` is the detector record that scores from cached ``penultimate`` and
``logits`` only.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DECODER_VERSION = 1
TARGET_WEIGHT = 5.0
TrainProgress = Callable[[int, int, float, float], None]


class HeatmapDecoder(nn.Module):
    """``[z', onehot(ŷ)]`` → linear → 4×4 map → transposed-conv ×2 stages → ``channels × size × size`` → tanh."""

    def __init__(
        self, features: int, classes: int, channels: int, size: int, width: int = 128
    ):
        super().__init__()
        self.features, self.classes, self.channels, self.size = (
            features,
            classes,
            channels,
            size,
        )
        self.width = width
        self.project = nn.Linear(features + classes, width * 16)
        stages = max(1, math.ceil(math.log2(size / 4)))
        layers: list[nn.Module] = []
        cin = width
        for stage in range(stages):
            last = stage == stages - 1
            cout = channels if last else max(cin // 2, 16)
            layers.append(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.upsample = nn.Sequential(*layers)

    def forward(self, z_scaled: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.project(torch.cat([z_scaled, onehot], 1)))
        x = self.upsample(x.view(-1, self.width, 4, 4))
        if x.shape[-1] != self.size:
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        return torch.tanh(x)


def feature_scale(id_train_penultimate: np.ndarray) -> np.ndarray:
    """Per-dimension maximum of the ID-train penultimate features (1 where a dimension is never positive)."""
    scale = np.asarray(id_train_penultimate, np.float32).max(0)
    return np.where(scale > 0, scale, 1.0).astype(np.float32)


def decoder_inputs(
    penultimate: np.ndarray, logits: np.ndarray, scale: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z', onehot(argmax logits))`` as float tensors: the decoder's whole input, from cached arrays only."""
    z = torch.as_tensor(np.asarray(penultimate, np.float32) / scale)
    prediction = torch.as_tensor(np.asarray(logits).argmax(1))
    return z, F.one_hot(prediction, logits.shape[1]).float()


def nearest_id_targets(
    oe_penultimate: np.ndarray,
    oe_predictions: np.ndarray,
    id_penultimate: np.ndarray,
    id_predictions: np.ndarray,
) -> np.ndarray:
    """For each outlier-exposure sample, the ID-train row nearest in penultimate space (Euclidean) among ID samples
    with the same predicted class; classes that no ID sample is predicted as fall back to all ID samples."""
    from sklearn.neighbors import NearestNeighbors

    targets = np.empty(len(oe_penultimate), np.int64)
    everyone = np.arange(len(id_penultimate))
    for c in np.unique(oe_predictions):
        rows = np.flatnonzero(oe_predictions == c)
        pool = np.flatnonzero(id_predictions == c)
        pool = pool if len(pool) else everyone
        finder = NearestNeighbors(n_neighbors=1).fit(id_penultimate[pool])
        targets[rows] = pool[finder.kneighbors(oe_penultimate[rows])[1][:, 0]]
    return targets


def heatmap_loss(
    x: torch.Tensor, heatmap: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """``mean (1 + 5|t|)·(x + h − t)²`` over samples, channels and pixels."""
    return ((1 + TARGET_WEIGHT * target.abs()) * (x + heatmap - target) ** 2).mean()


@dataclass(frozen=True)
class DecoderSettings:
    """Training hyperparameters (Adam lr/betas from the paper; the rest sized for the demo on 2 CPU cores)."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    patience: int = 5
    validation_fraction: float = 0.1
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


DEFAULT_DECODER_SETTINGS = DecoderSettings()


@dataclass
class TrainedDecoder:
    """A trained decoder with the feature scale it expects and its training history."""

    decoder: HeatmapDecoder
    scale: np.ndarray
    history: dict

    def heatmaps(
        self, penultimate: np.ndarray, logits: np.ndarray, batch_size: int = 512
    ) -> np.ndarray:
        """``h`` [N, C, H, W] for cached features (no images needed)."""
        self.decoder.eval()
        z, onehot = decoder_inputs(penultimate, logits, self.scale)
        with torch.inference_mode():
            parts = [
                self.decoder(z[i : i + batch_size], onehot[i : i + batch_size])
                for i in range(0, len(z), batch_size)
            ]
        return torch.cat(parts).numpy()


def train_decoder(
    id_images: torch.Tensor,
    id_penultimate: np.ndarray,
    id_logits: np.ndarray,
    oe_images: torch.Tensor,
    oe_penultimate: np.ndarray,
    oe_logits: np.ndarray,
    settings: DecoderSettings = DEFAULT_DECODER_SETTINGS,
    progress: TrainProgress | None = None,
) -> TrainedDecoder:
    """Train the decoder on ID images (target = the image) and outlier-exposure images (target = nearest ID image).

    Images are [N, C, H, W] in [0, 1]. A seeded ``validation_fraction`` of both sets is held out; training stops
    when the validation loss has not improved for ``patience`` epochs and the best epoch's weights are kept.
    ``progress(epoch, epochs, train_loss, validation_loss)`` is called after every epoch.
    """
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    scale = feature_scale(id_penultimate)
    id_pred, oe_pred = id_logits.argmax(1), oe_logits.argmax(1)
    nearest = nearest_id_targets(oe_penultimate, oe_pred, id_penultimate, id_pred)
    z, onehot = decoder_inputs(
        np.concatenate([id_penultimate, oe_penultimate]),
        np.concatenate([id_logits, oe_logits]),
        scale,
    )
    x = torch.cat([id_images, oe_images]).float()
    target = torch.cat([id_images, id_images[torch.as_tensor(nearest)]]).float()
    order = torch.randperm(len(x), generator=generator)
    held = max(1, int(len(x) * settings.validation_fraction))
    val, train = order[:held], order[held:]
    decoder = HeatmapDecoder(z.shape[1], onehot.shape[1], x.shape[1], x.shape[-1])
    optimizer = torch.optim.Adam(
        decoder.parameters(), settings.lr, betas=(settings.beta1, settings.beta2)
    )
    history: dict = {"train_loss": [], "validation_loss": []}
    best, best_state, stale = math.inf, None, 0
    for epoch in range(settings.epochs):
        decoder.train()
        total = 0.0
        for batch in train[torch.randperm(len(train), generator=generator)].split(
            settings.batch_size
        ):
            loss = heatmap_loss(
                x[batch], decoder(z[batch], onehot[batch]), target[batch]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        decoder.eval()
        with torch.inference_mode():
            val_loss = float(
                heatmap_loss(x[val], decoder(z[val], onehot[val]), target[val])
            )
        history["train_loss"].append(total / len(train))
        history["validation_loss"].append(val_loss)
        if progress:
            progress(epoch + 1, settings.epochs, total / len(train), val_loss)
        if val_loss < best - 1e-6:
            best, stale = val_loss, 0
            best_state = {k: v.clone() for k, v in decoder.state_dict().items()}
        else:
            stale += 1
            if stale >= settings.patience:
                break
    decoder.load_state_dict(best_state)
    decoder.eval()
    history.update(
        best_epoch=int(np.argmin(history["validation_loss"])) + 1,
        epochs_run=len(history["train_loss"]),
        seconds=round(time.perf_counter() - start, 2),
        id_samples=len(id_images),
        oe_samples=len(oe_images),
        settings=settings.as_dict(),
        version=DECODER_VERSION,
    )
    return TrainedDecoder(decoder, scale, history)


@dataclass(frozen=True)
class DecoderState:
    """A trained decoder as plain data (weights, the feature scale, constructor arguments, training history), so
    that it can live in the feature cache; ``trained`` rebuilds the network once."""

    weights: dict[str, np.ndarray]
    scale: np.ndarray
    shape: dict
    history: dict

    @classmethod
    def of(cls, trained: TrainedDecoder) -> DecoderState:
        d = trained.decoder
        return cls(
            weights={k: v.detach().cpu().numpy() for k, v in d.state_dict().items()},
            scale=trained.scale,
            shape={
                "features": d.features,
                "classes": d.classes,
                "channels": d.channels,
                "size": d.size,
                "width": d.width,
            },
            history=trained.history,
        )

    @functools.cached_property
    def trained(self) -> TrainedDecoder:
        decoder = HeatmapDecoder(**self.shape)
        expected = decoder.state_dict()
        decoder.load_state_dict(
            {
                name: torch.as_tensor(np.array(self.weights[name])).reshape(value.shape)
                for name, value in expected.items()
            }
        )
        return TrainedDecoder(decoder.eval(), np.array(self.scale), self.history)
