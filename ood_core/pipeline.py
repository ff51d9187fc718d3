"""From names to cached features: load the model, load the dataset split, extract once, return the FeatureSet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import catalog
from .cache import CacheKey, CorruptEntry, FeatureCache, FeatureSet
from .extract import DEFAULT_SETTINGS, ExtractionSettings, extract
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
    if key not in _loaded:
        if len(_loaded) >= 8:
            _loaded.pop(next(iter(_loaded)))
        _loaded[key] = load_model(spec)
    return _loaded[key]


_loaded: dict[tuple, LoadedModel] = {}


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


def cached_feature_set(
    model_name: str,
    dataset: str,
    split: str | None = None,
    cache: FeatureCache | None = None,
) -> FeatureSet | None:
    """The cached features if they exist and verify; ``None`` otherwise (never trains or extracts)."""
    if catalog.get_model(model_name).needs_training():
        return None
    key, _ = cache_key(loaded_model(model_name), dataset, split)
    try:
        return (cache or FeatureCache()).load(key)
    except CorruptEntry:
        return None


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
