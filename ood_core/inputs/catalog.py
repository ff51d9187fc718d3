"""What can be named: the demo model and datasets, the registry file's entries, and models fine-tuned in OOD Lab.

Datasets are addressed by reference (``textures``, ``digits:train``, ``digits@jigsaw3``; see ``variants.parse_ref``).
A registry entry that fails its check is left out and listed by ``problems()`` instead of breaking the rest.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import DataPathError, OODLabError, UnknownNameError
from . import benchmarks, config, registry_file, synthetic
from .datasets import (
    DEMO_DATASETS,
    IMAGE_EXTENSIONS,
    DatasetSpec,
    cifar_image_set,
    folder_image_set,
    imglist_image_set,
    svhn_image_set,
)
from .models import LoadedModel, ModelSpec, demo_spec, load_model, registered_spec
from .registry_file import DatasetEntry, Problem
from .variants import parse_ref, variant_spec


def dataset_spec(entry: DatasetEntry) -> DatasetSpec:
    """The dataset a checked registry entry describes; paths resolve inside the data root when a split is loaded."""
    resolve = config.resolve_data_path

    def folder_of(split: str) -> Path:
        value = entry.paths.get(split, entry.root)
        if value is None:
            raise DataPathError(
                f"dataset '{entry.name}' has no folder for split '{split}' in the registry file"
            )
        return resolve(value)

    builders = {
        "folder": lambda split: folder_image_set(folder_of(split), labelled=False),
        "imagefolder": lambda split: folder_image_set(folder_of(split), labelled=True),
        "imglist": lambda split: imglist_image_set(
            resolve(entry.root), resolve(entry.paths[split])
        ),
        "cifar10": lambda split: cifar_image_set(
            resolve(entry.root), split, hundred=False
        ),
        "cifar100": lambda split: cifar_image_set(
            resolve(entry.root), split, hundred=True
        ),
        "svhn": lambda split: svhn_image_set(resolve(entry.root), split),
    }
    labelled = entry.kind in ("imagefolder", "cifar10", "cifar100", "svhn") or (
        entry.kind == "imglist" and "train" in entry.paths
    )
    return DatasetSpec(
        entry.name,
        entry.description,
        entry.provenance,
        entry.splits,
        builders[entry.kind],
        in_distribution=labelled,
    )


def _registry() -> registry_file.Registry:
    return registry_file.read()


def problems() -> list[Problem]:
    """Registry entries that could not be used, with the reason (for Setup and ``list``)."""
    return _registry().problems


def datasets() -> dict[str, DatasetSpec]:
    registered = {
        entry.name: benchmarks.id_train_subset(
            dataset_spec(entry), benchmarks.subset_for(entry.name)
        )
        for entry in benchmarks.available_entries()
    } | {name: dataset_spec(entry) for name, entry in _registry().datasets.items()}
    return {**DEMO_DATASETS, **registered, **synthetic.dataset_specs()}


def finetuned_folder() -> Path:
    return config.cache_dir() / "models" / "finetuned"


def finetuned_specs(base_specs: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
    """Models fine-tuned inside OOD Lab (``<cache>/models/finetuned/<name>.pt`` + ``.json`` report) whose base model
    is registered and whose weights exist."""
    folder = finetuned_folder()
    found = {}
    for report_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
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
                f"{base.name} fine-tuned with the Local Background loss (α={settings.get('alpha')}, "
                f"k={settings.get('k')}, {settings.get('epochs')} epochs) on {report.get('id_dataset')}:train"
            ),
            weights=lambda progress, path=weights: path,
            needs_training=lambda: False,
        )
    return found


def models() -> dict[str, ModelSpec]:
    registered = {
        name: registered_spec(entry, config.resolve_data_path)
        for name, entry in _registry().models.items()
    }
    base = {"demo": demo_spec(), **registered}
    return {**base, **finetuned_specs(base), **synthetic_specs()}


def synthetic_specs() -> dict[str, ModelSpec]:
    """The models of registered synthetic workspaces (no network; see ``inputs.synthetic``)."""
    specs = {}
    for size, seed, path in synthetic.registered().values():
        specs[size.model] = ModelSpec(
            name=size.model,
            arch=f"synthetic-{size.name}",
            description=f"Synthetic workspace at {size.name} size (seed {seed}): cached statistics only, no images.",
            num_classes=size.classes,
            input_size=32,
            channels=3,
            mean=(0.5, 0.5, 0.5),
            std=(0.25, 0.25, 0.25),
            build=lambda: None,
            weights=lambda progress, path=path: path,
            default_id=size.model,
            benchmark="imagenet"
            if size.name == "imagenet"
            else "cifar10"
            if size.name == "cifar10"
            else None,
            synthetic_blocks=tuple(name for name, _ in size.blocks),
            default_ood=tuple(size.ood_names),
        )
    return specs


def get_dataset(ref: str) -> DatasetSpec:
    """The dataset a reference names (its split, if given, is ignored here)."""
    parsed = parse_ref(ref)
    known = datasets()
    if parsed.base not in known:
        broken = [
            p for p in problems() if p.section == "datasets" and p.name == parsed.base
        ]
        if broken:
            raise OODLabError(
                f"dataset '{parsed.base}' is registered but broken: {broken[0].reason}"
            )
        raise UnknownNameError("dataset", parsed.base, list(known))
    spec = known[parsed.base]
    return variant_spec(spec, parsed.variant) if parsed.variant else spec


def get_model(name: str) -> ModelSpec:
    known = models()
    if name not in known:
        broken = [p for p in problems() if p.section == "models" and p.name == name]
        if broken:
            raise OODLabError(
                f"model '{name}' is registered but broken: {broken[0].reason}"
            )
        raise UnknownNameError("model", name, list(known))
    return known[name]


def add_folder_dataset(name: str, folder: str) -> DatasetSpec:
    """Register the images in ``folder`` (a path inside the data root) as OOD dataset ``name``.

    Appends a ``kind = "folder"`` entry to the registry file (locked, atomic). Refused: an empty or taken name, a
    path outside the data root or naming the data root itself, a path that is not a folder or holds no images.
    """
    name, folder = (name or "").strip(), (folder or "").strip()
    if not registry_file.NAME.fullmatch(name):
        raise OODLabError(
            "a dataset name starts with a letter and has at most 40 letters, digits, '-' or '_'"
        )
    if name in datasets():
        raise OODLabError(f"a dataset named '{name}' exists already")
    if not folder or folder in (".", "./"):
        raise OODLabError(
            "give a folder inside the data root, not the data root itself"
        )
    resolved = config.resolve_data_path(folder)
    root = config.data_root(fresh=True)  # as resolve_data_path saw it
    if resolved == root:
        raise OODLabError(
            "give a folder inside the data root, not the data root itself"
        )
    if not resolved.is_dir():
        raise DataPathError(f"'{folder}' is not a folder")
    if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in resolved.rglob("*")):
        raise DataPathError(
            f"'{folder}' holds no images ({', '.join(IMAGE_EXTENSIONS)})"
        )
    relative = resolved.relative_to(root).as_posix()
    registry_file.add_dataset(name, {"kind": "folder", "root": relative})
    return get_dataset(name)


def check_model(name: str, entry: dict) -> LoadedModel:
    """Build, load and dry-run the model a registry entry would describe, without registering it (the Setup form
    and ``probes`` show its probes before any extraction); one ``OODLabError`` line if any step fails."""
    if name in models():
        raise OODLabError(f"a model named '{name}' exists already")
    checked = registry_file.check_model(name, entry)
    return load_model(registered_spec(checked, config.resolve_data_path))


def add_model(name: str, entry: dict) -> LoadedModel:
    """Register ``[models.<name>]`` once the model builds, loads its checkpoint and runs (``check_model``):
    a model that fails any step registers nothing."""
    loaded = check_model(name, entry)
    registry_file.add_model(name, entry)
    return loaded
