"""From names to cached features: load the model, load the dataset split, extract once, return the FeatureSet."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import catalog
from .cache import CacheKey, CorruptEntry, FeatureCache, FeatureSet
from .errors import DataPathError
from .extract import DEFAULT_SETTINGS, ExtractionSettings, extract
from .heatmap import (
    DECODER_VERSION,
    DEFAULT_DECODER_SETTINGS,
    DecoderSettings,
    TrainedDecoder,
    TrainProgress,
    decoder_arrays,
    decoder_from_arrays,
    decoder_shape,
    train_decoder,
)
from .memo import BoundedMemo
from .models import LoadedModel, load_model

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Workspace:
    """What the user is looking at: a model, its ID dataset and the OOD datasets to compare against."""

    model: str = "demo"
    id_dataset: str = "digits"
    ood_datasets: tuple[str, ...] = ("letters", "textures", "photos", "faces", "noise")


def loaded_model(name: str) -> LoadedModel:
    """The model by name, loaded once per process and weights-file version (the demo model trains on first use)."""
    spec = catalog.get_model(name)
    path = spec.weights(None)
    stat = path.stat()
    key = (
        name,
        spec.arch,
        spec.num_classes,
        spec.input_size,
        str(path),
        stat.st_size,
        stat.st_mtime_ns,
    )
    return _loaded.get(key, lambda: load_model(spec))


_loaded: BoundedMemo[LoadedModel] = BoundedMemo(8)


def prepare_model(name: str, progress: Progress | None = None) -> LoadedModel:
    """Make sure the model's weights exist (training the demo model with ``progress(epoch, epochs)``), then load it."""
    catalog.get_model(name).weights(progress)
    return loaded_model(name)


def cache_key(
    model: LoadedModel, dataset: str, split: str | None = None
) -> tuple[CacheKey, object]:
    """The cache key of ``dataset:split`` under ``model`` and the (untransformed) images."""
    images, identity = catalog.get_dataset(dataset).load(split)
    identity = {
        **identity,
        "transform": repr(model.transform),
        "probes": list(model.probes.blocks),
    }
    return CacheKey.create(model.fingerprint(), identity), images


def feature_set(
    model_name: str,
    dataset: str,
    split: str | None = None,
    *,
    cache: FeatureCache | None = None,
    settings: ExtractionSettings = DEFAULT_SETTINGS,
    progress: Progress | None = None,
) -> FeatureSet:
    """The cached features of ``dataset:split`` under ``model_name``, extracting them first if needed."""
    cache = cache or FeatureCache()
    model = loaded_model(model_name)
    key, images = cache_key(model, dataset, split)

    def build(writer):
        return extract(
            model.module,
            model.probes,
            images.with_transform(model.transform),
            writer,
            settings,
            progress,
        )

    return cache.get_or_create(key, build)


def lookup_feature_set(
    model_name: str,
    dataset: str,
    split: str | None = None,
    cache: FeatureCache | None = None,
) -> tuple[FeatureSet | None, str]:
    """The cached features (or ``None``) and their state: ``cached``, ``missing`` or ``corrupt: <why>``.

    Never trains or extracts; a corrupt entry is rebuilt by the next ``feature_set`` call.
    """
    if catalog.get_model(model_name).needs_training():
        return None, "missing"
    key, _ = cache_key(loaded_model(model_name), dataset, split)
    try:
        found = (cache or FeatureCache()).load(key)
    except CorruptEntry as exc:
        return None, f"corrupt: {exc}"
    return found, "cached" if found is not None else "missing"


def cached_feature_set(
    model_name: str,
    dataset: str,
    split: str | None = None,
    cache: FeatureCache | None = None,
) -> FeatureSet | None:
    """The cached features if they exist and verify; ``None`` otherwise (never trains or extracts)."""
    return lookup_feature_set(model_name, dataset, split, cache)[0]


def odin_feature_set(
    features: FeatureSet,
    temperature: float,
    eps: float,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
) -> FeatureSet:
    """ODIN scores for the same model and dataset split as ``features``, re-inferred once per (T, ε) and cached."""
    from .odin import odin_scores

    cache = cache or FeatureCache()
    model = loaded_model(features.meta["model"]["name"])
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
            DEFAULT_SETTINGS,
            progress,
        )
        writer.put("odin", scores)
        writer.put("index", rows)
        return {"probes": list(model.probes.blocks)}

    return cache.get_or_create(key, build)


def sample_image(dataset: str, split: str | None, row: int):
    """The untransformed image of ``dataset:split`` at dataset row ``row`` (for galleries)."""
    images, _ = catalog.get_dataset(dataset).load(split)
    return images.image(row)


def model_inputs(features: FeatureSet, rows: Sequence[int]) -> torch.Tensor:
    """The images of cached ``rows`` as the model sees them (transformed and normalised): [n, C, H, W]."""
    model = loaded_model(features.meta["model"]["name"])
    dataset = features.meta["dataset"]
    images, _ = catalog.get_dataset(dataset["dataset"]).load(dataset["split"])
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


def sample_rows(n: int, limit: int, seed: int = 0) -> np.ndarray:
    """All ``n`` rows, or a sorted seeded subset of ``limit`` of them."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def heatmap_decoder_key(
    id_train: FeatureSet,
    outliers: FeatureSet,
    settings: DecoderSettings,
    max_images: int,
) -> CacheKey:
    """Where the decoder trained on ``id_train`` with outlier exposure ``outliers`` is cached."""
    oe = outliers.meta["dataset"]
    return CacheKey.create(
        id_train.meta["model"],
        {
            "dataset": id_train.meta["dataset"]["dataset"],
            "split": "train",
            "variant": f"heatmap-decoder-oe-{oe['dataset']}",
            "id": id_train.meta["dataset"],
            "outliers": oe,
            "settings": settings.as_dict(),
            "max_images": max_images,
            "version": DECODER_VERSION,
        },
    )


def train_set_decoder(
    id_train: FeatureSet,
    outliers: FeatureSet,
    settings: DecoderSettings = DEFAULT_DECODER_SETTINGS,
    *,
    max_images: int = 2000,
    progress: TrainProgress | None = None,
) -> TrainedDecoder:
    """Train a heatmap decoder on (at most ``max_images`` seeded) images of two cached sets; not cached."""
    model = loaded_model(id_train.meta["model"]["name"])
    id_rows = sample_rows(len(id_train), max_images, settings.seed)
    oe_rows = sample_rows(len(outliers), max_images, settings.seed + 1)
    return train_decoder(
        to_pixels(model_inputs(id_train, id_rows), model),
        id_train.penultimate[id_rows],
        id_train.logits[id_rows],
        to_pixels(model_inputs(outliers, oe_rows), model),
        outliers.penultimate[oe_rows],
        outliers.logits[oe_rows],
        settings,
        progress,
    )


def heatmap_decoder(
    id_train: FeatureSet,
    outliers: FeatureSet,
    settings: DecoderSettings = DEFAULT_DECODER_SETTINGS,
    *,
    max_images: int = 2000,
    cache: FeatureCache | None = None,
    progress: TrainProgress | None = None,
    train: bool = True,
) -> TrainedDecoder | None:
    """The heatmap decoder for ``id_train`` with outlier exposure ``outliers``, trained once and cached.

    At most ``max_images`` (seeded) images of each set are used. With ``train=False``, ``None`` unless cached.
    """
    cache = cache or FeatureCache()
    key = heatmap_decoder_key(id_train, outliers, settings, max_images)
    if not train:
        try:
            entry = cache.load(key)
        except CorruptEntry:
            entry = None
    else:

        def build(writer):
            trained = train_set_decoder(
                id_train, outliers, settings, max_images=max_images, progress=progress
            )
            for name, array in decoder_arrays(trained).items():
                writer.put(name, array)
            return {"history": trained.history, "shape": decoder_shape(trained)}

        entry = cache.get_or_create(key, build)
    if entry is None:
        return None
    arrays = {name: entry[name] for name in entry.names}
    return decoder_from_arrays(arrays, entry.meta["shape"], entry.meta["history"])
