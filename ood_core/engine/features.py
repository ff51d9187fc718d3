"""From names to cached features: load the model and the dataset split, extract once, return the FeatureSet.

Dataset listings (a folder scan, an image list, CIFAR batches) are memoised per process so that pages that re-read
the cache on every rerun do not re-list the files; ``forget_datasets()`` rescans (Setup's Prepare does).
"""

from __future__ import annotations

from collections.abc import Callable

from ..inputs import benchmarks, catalog, config
from ..inputs.datasets import ImageSet
from ..inputs.models import LoadedModel, loaded_model
from ..inputs.variants import parse_ref
from ..memo import BoundedMemo
from . import distributed
from .cache import CacheKey, CorruptEntry, FeatureCache, FeatureSet
from .extract import ExtractionSettings, extract

Progress = Callable[[int, int], None]
_listings: BoundedMemo[tuple[ImageSet, dict]] = BoundedMemo(16)


def model_named(name: str, progress: Progress | None = None) -> LoadedModel:
    """The registered model ``name``, loaded once per process (the demo trains on first use if its shipped weights
    are missing); ``progress(epoch, epochs)`` reports that training."""
    return loaded_model(catalog.get_model(name), progress)


def model_of(features: FeatureSet) -> LoadedModel:
    """The loaded model that ``features`` were extracted with."""
    return model_named(features.meta["model"]["name"])


def dataset_images(ref: str, split: str | None = None) -> tuple[ImageSet, dict]:
    """The (untransformed) images of ``ref`` (``name``, ``name@variant``) and split, with their identity."""
    parsed = parse_ref(ref)
    split = split or parsed.split
    registry = config.config_file()
    version = registry.stat().st_mtime_ns if registry.exists() else None
    key = (
        parsed.dataset,
        split,
        str(config.data_root()),
        str(registry),
        version,
        benchmarks.subset_for(parsed.dataset),  # OOD_LAB_TRAIN_SHARE may change
    )
    return _listings.get(key, lambda: catalog.get_dataset(parsed.dataset).load(split))


def forget_datasets() -> None:
    """Drop memoised dataset listings (files added or removed since are seen on the next load)."""
    _listings.clear()


def cache_key(
    model: LoadedModel,
    dataset: str,
    split: str | None = None,
    float16_stats: bool = False,
) -> tuple[CacheKey, ImageSet]:
    """The cache key of ``dataset:split`` under ``model`` and the (untransformed) images (float16 statistics are
    their own entry)."""
    images, identity = dataset_images(dataset, split)
    identity = {
        **identity,
        "transform": model.spec.preprocessing,
        "probes": model.probes.keys,
        **({"stats_dtype": "float16"} if float16_stats else {}),
    }
    return CacheKey.create(model.fingerprint(), identity), images


def feature_set(
    model_name: str,
    dataset: str,
    split: str | None = None,
    *,
    cache: FeatureCache | None = None,
    settings: ExtractionSettings | None = None,
    progress: Progress | None = None,
) -> FeatureSet:
    """The cached features of ``dataset:split`` under ``model_name``, extracting them first if needed."""
    cache = cache or FeatureCache()
    settings = settings or ExtractionSettings()
    model = model_named(model_name)
    key, images = cache_key(model, dataset, split, settings.float16_stats)
    if model.spec.synthetic_blocks:
        return cache.get_or_create(
            key, lambda writer: _generate(writer, key.dataset, progress)
        )

    transformed = images.with_transform(model.transform)
    ranks = distributed.launched()
    if (
        ranks is not None
    ):  # started by torchrun: every rank extracts a shard, rank 0 merges
        return distributed.extract_sharded(
            model.module,
            model.probes,
            transformed,
            key,
            cache,
            settings,
            ranks,
            progress,
        )
    return cache.get_or_create(
        key,
        lambda writer: extract(
            model.module, model.probes, transformed, writer, settings, progress
        ),
    )


def _generate(writer, identity: dict, progress: Progress | None) -> dict:
    """A synthetic workspace's set is generated from its seed instead of extracted."""
    from ..inputs.synthetic import SIZES
    from .synthetic import write

    return write(
        writer,
        SIZES[identity["size"]],
        identity["seed"],
        identity["role"],
        identity["split"],
        progress,
    )


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
    key, _ = cache_key(
        model_named(model_name), dataset, split, ExtractionSettings().float16_stats
    )
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


def in_memory_features(model: LoadedModel, images: dict) -> FeatureSet:
    """Images (name → PIL image) through ``model`` with the same statistics as a cache entry, kept in memory.

    Its fingerprint is the content's digest, so per-set memos (KNN distances, scores) key on what was uploaded.
    """
    import hashlib

    import numpy as np

    from .extract import MemorySink

    names = list(images)
    image_set = ImageSet(
        lambda row: images[names[row]], np.full(len(names), -1), names, model.transform
    )
    sink = MemorySink()
    report = extract(model.module, model.probes, image_set, sink)
    content = hashlib.sha256(sink.arrays["penultimate"].tobytes()).hexdigest()
    meta = {
        **report,
        "rows": len(names),
        "model": model.fingerprint(),
        "fingerprint": content,
        "names": names,
    }
    return FeatureSet(None, meta, sink.arrays)
