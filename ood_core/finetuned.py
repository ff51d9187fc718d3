"""Models fine-tuned inside OOD Lab (Local Background features), registered beside the demo and TOML models.

Each lives in ``<cache>/models/finetuned/<name>.pt`` with ``<name>.json`` (base model, ID dataset, settings,
training report, sha256 of the weights). ``catalog.models()`` lists them, so they are extracted, cached and
compared like any other model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from filelock import FileLock

from . import catalog, config
from .background import (
    DEFAULT_BACKGROUND_SETTINGS,
    BackgroundSettings,
    Progress,
    fine_tune,
    last_map_background_norms,
)
from .cache import FeatureSet, file_sha256
from .errors import OODLabError
from .extract import pick_device
from .models import ModelSpec, load_model
from .pipeline import loaded_model, model_inputs, sample_rows


def folder() -> Path:
    return config.cache_dir() / "models" / "finetuned"


def background_model_name(base: str, settings: BackgroundSettings) -> str:
    """``<base>-bg-a<α>-k<k>-e<epochs>`` (unique per base model and setting)."""
    return f"{base}-bg-a{settings.alpha:g}-k{settings.k}-e{settings.epochs}"


def specs(base_specs: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
    """Specs of the fine-tuned models whose base model is in ``base_specs`` and whose weights are intact."""
    found = {}
    for report_path in sorted(folder().glob("*.json")) if folder().is_dir() else []:
        try:
            report = json.loads(report_path.read_text())
        except (OSError, ValueError):
            continue
        weights = report_path.with_suffix(".pt")
        base = base_specs.get(report.get("base"))
        if base is None or not weights.exists():
            continue
        settings = report.get("settings", {})
        found[report_path.stem] = dataclasses.replace(
            base,
            name=report_path.stem,
            description=(
                f"{base.name} fine-tuned with the Local Background loss "
                f"(α={settings.get('alpha')}, k={settings.get('k')}, {settings.get('epochs')} epochs) "
                f"on {report.get('id_dataset')}:train"
            ),
            weights=lambda progress, path=weights: path,
            needs_training=lambda: False,
        )
    return found


def report(name: str) -> dict:
    """The training report of a fine-tuned model."""
    return json.loads((folder() / f"{name}.json").read_text())


def background_fine_tune(
    base: str,
    id_dataset: str,
    settings: BackgroundSettings = DEFAULT_BACKGROUND_SETTINGS,
    progress: Progress | None = None,
) -> str:
    """Fine-tune model ``base`` on ``id_dataset:train`` with the background loss; save and register it; its name.

    An existing model of the same name is reused (delete its files to retrain).
    """
    name = background_model_name(base, settings)
    target = folder() / f"{name}.pt"
    try:
        folder().mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder() / f"{name}.lock"))
        lock.acquire()
    except OSError as exc:
        raise OODLabError(
            f"cannot write fine-tuned models to {folder()} ({exc.strerror}); set OOD_LAB_CACHE_DIR"
        ) from exc
    try:
        if target.exists() and target.with_suffix(".json").exists():
            return name
        spec = catalog.get_model(base)
        # A private copy, trained on the GPU when there is one; the shared loaded model is left as it is.
        model = load_model(spec)
        images, _ = catalog.get_dataset(id_dataset).load("train")
        result = fine_tune(
            model.module.to(pick_device()),
            model.probes,
            images.with_transform(model.transform),
            settings,
            progress,
        )
        model.module.cpu()
        fd, tmp = tempfile.mkstemp(dir=folder(), prefix=".tmp-", suffix=".pt")
        os.close(fd)
        torch.save(model.module.state_dict(), tmp)
        result.update(
            base=base,
            base_weights_sha256=model.weights_sha256,
            id_dataset=id_dataset,
            weights_sha256=file_sha256(Path(tmp)),
            interpretation="OOD Lab's interpretation of an abstract-only paper (see ood_core.background)",
        )
        target.with_suffix(".json").write_text(json.dumps(result, indent=2))
        os.replace(tmp, target)
    finally:
        lock.release()
    return name


def background_norm_frame(
    model_names: Sequence[str],
    sets: Mapping[str, FeatureSet],
    k: int,
    limit: int = 256,
) -> pd.DataFrame:
    """Background-feature norms (mean over each image's k lowest-CAM positions) of up to ``limit`` seeded images
    per set under each model: columns model, set, norm."""
    frames = []
    for name, features in sets.items():
        rows = sample_rows(len(features), limit)
        inputs = model_inputs(features, rows)
        for model_name in model_names:
            model = loaded_model(model_name)
            norms = last_map_background_norms(model.module, model.probes, inputs, k)
            frames.append(
                pd.DataFrame({"model": model_name, "set": name, "norm": norms.mean(1)})
            )
    return pd.concat(frames, ignore_index=True)
