"""Local Background fine-tuning as a job: load the base model, train a private copy, save and register it.

The result lives in ``<cache>/models/finetuned/<name>.pt`` with ``<name>.json`` (base model, ID dataset, settings,
training report, sha256 of the weights); the catalog lists it beside the demo and registry models, so it is
extracted, cached and compared like any other model. Every setting is checked before any work, and nothing is
registered when training fails or produces non-finite weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch

from ..engine.cache import FeatureSet
from ..engine.extract import pick_device
from ..engine.features import dataset_images, model_named
from ..engine.images import model_inputs
from ..errors import OODLabError
from ..inputs import catalog
from ..inputs.models import load_model
from ..inputs.weights import save_once, weights_intact
from ..rows import sample_rows
from .background import (
    DEFAULT_BACKGROUND_SETTINGS,
    BackgroundSettings,
    Progress,
    fine_tune,
    last_map_background_norms,
)

SEEDS = (
    0,
    1,
    2,
)  # every fine-tune (and its α = 0 control) is repeated over these seeds by default


def background_model_name(base: str, settings: BackgroundSettings) -> str:
    """``<base>-bg-a<α>-k<k>-e<epochs>[-s<seed>]`` (unique per base model, setting and seed; seed 0 unmarked)."""
    seed = f"-s{settings.seed}" if settings.seed else ""
    return f"{base}-bg-a{settings.alpha:g}-k{settings.k}-e{settings.epochs}{seed}"


def check_settings(
    settings: BackgroundSettings, last_map_positions: int | None = None
) -> None:
    """One-line errors for settings that cannot train (before any work)."""
    if not (math.isfinite(settings.alpha) and settings.alpha >= 0):
        raise OODLabError(f"--alpha must be a finite number ≥ 0, got {settings.alpha}")
    if settings.epochs < 1:
        raise OODLabError(f"--epochs must be at least 1, got {settings.epochs}")
    if settings.k < 1:
        raise OODLabError(f"--k must be at least 1, got {settings.k}")
    if last_map_positions is not None and settings.k > last_map_positions:
        raise OODLabError(
            f"--k {settings.k} exceeds the {last_map_positions} positions of the model's last feature map"
        )
    if not (math.isfinite(settings.lr) and settings.lr > 0):
        raise OODLabError(
            f"the learning rate must be a finite number > 0, got {settings.lr}"
        )


def last_map_positions(base: str) -> int:
    """h×w of the base model's class-activation map (the positions background features are chosen among)."""
    probes = model_named(base).probes
    name = probes.class_map() if probes.details else probes.blocks[-1]
    if name is None:
        raise OODLabError(
            f"model '{base}' has no spatial map whose channels its head weighs; Local Background needs one"
        )
    return probes.probe(name).positions


def background_fine_tune(
    base: str,
    id_dataset: str,
    settings: BackgroundSettings = DEFAULT_BACKGROUND_SETTINGS,
    progress: Progress | None = None,
) -> str:
    """Fine-tune model ``base`` on ``id_dataset:train`` with the background loss; save and register it; its name.

    An existing model of the same name is reused (delete it on Setup or with ``cache delete`` to retrain).
    """
    check_settings(settings, last_map_positions(base))
    spec = catalog.get_model(base)
    if "train" not in catalog.get_dataset(id_dataset).splits:
        raise OODLabError(f"{id_dataset} has no train split to fine-tune on")
    name = background_model_name(base, settings)

    def train() -> tuple[dict, dict]:
        model = load_model(spec)  # a private copy, trained on the GPU when there is one
        images, _ = dataset_images(id_dataset, "train")
        result = fine_tune(
            model.module.to(pick_device()),
            model.probes,
            images.with_transform(model.transform),
            settings,
            progress,
        )
        model.module.cpu()
        state = model.module.state_dict()
        if not all(
            torch.isfinite(v).all() for v in state.values() if v.is_floating_point()
        ):
            raise OODLabError(
                "fine-tuning diverged (non-finite weights); nothing was registered — lower α or lr"
            )
        result.update(
            base=base,
            base_weights_sha256=model.weights_sha256,
            id_dataset=id_dataset,
            interpretation="OOD Lab's interpretation of an abstract-only paper (see ood_core.training.background)",
        )
        return state, result

    save_once(catalog.finetuned_folder() / f"{name}.pt", train, weights_intact)
    return name


def report(name: str) -> dict:
    """The training report of a fine-tuned model."""
    import json

    return json.loads((catalog.finetuned_folder() / f"{name}.json").read_text())


def delete_finetuned(name: str) -> None:
    """Remove a fine-tuned model's weights and report (its cached features stay until deleted from the cache)."""
    folder = catalog.finetuned_folder()
    weights = folder / f"{name}.pt"
    if not weights.is_file():
        raise OODLabError(f"no fine-tuned model named '{name}' in {folder}")
    for path in (weights, weights.with_suffix(".json"), weights.with_suffix(".lock")):
        Path(path).unlink(missing_ok=True)


def background_norm_frame(
    model_names: Sequence[str], sets: Mapping[str, FeatureSet], k: int, limit: int = 256
) -> pd.DataFrame:
    """Background-feature norms (mean over each image's k lowest-CAM positions) of up to ``limit`` seeded images
    per set under each model: columns model, set, norm."""
    frames = []
    for name, features in sets.items():
        rows = sample_rows(len(features), limit)
        inputs = model_inputs(features, rows)
        for model_name in model_names:
            model = model_named(model_name)
            positions = last_map_positions(model_name)
            norms = last_map_background_norms(
                model.module, model.probes, inputs, min(k, positions)
            )
            frames.append(
                pd.DataFrame({"model": model_name, "set": name, "norm": norms.mean(1)})
            )
    return pd.concat(frames, ignore_index=True)
