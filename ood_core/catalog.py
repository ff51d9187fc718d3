"""What can be named: the demo model and datasets plus those registered in the TOML registry file.

Example ``data/ood_lab.toml`` (every path is relative to the data root, ``OOD_LAB_DATA_ROOT``)::

    [models.cifar10_resnet18]
    arch = "resnet18"                  # any torchvision.models architecture
    weights = "weights/resnet18_cifar10.pt"
    num_classes = 10
    input_size = 32
    cifar_stem = true
    mean = [0.4914, 0.4822, 0.4465]
    std = [0.2470, 0.2435, 0.2616]
    id_dataset = "cifar10"

    [datasets.cifar10]
    kind = "cifar10"                   # folder | imagefolder | imglist | cifar10 | cifar100
    root = "cifar-10-batches-py/.."

    [datasets.dtd]
    kind = "folder"
    root = "dtd/images"
"""

from __future__ import annotations

import json
import re
import tomllib

from . import config
from .data import DEMO_DATASETS, DatasetSpec, register_folder_dataset
from .errors import DataPathError, OODLabError, UnknownNameError
from .models import ModelSpec, demo_spec, torchvision_spec


def _registry() -> dict:
    path = config.config_file()
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise OODLabError(f"cannot read the registry file {path}: {exc}") from exc


def datasets() -> dict[str, DatasetSpec]:
    registered = {
        name: register_folder_dataset(name, entry, config.resolve_data_path)
        for name, entry in _registry().get("datasets", {}).items()
    }
    return {**DEMO_DATASETS, **registered}


def models() -> dict[str, ModelSpec]:
    registered = {
        name: torchvision_spec(name, entry, config.resolve_data_path)
        for name, entry in _registry().get("models", {}).items()
    }
    from . import finetuned

    base = {"demo": demo_spec(), **registered}
    return {**base, **finetuned.specs(base)}


def add_folder_dataset(name: str, folder: str) -> DatasetSpec:
    """Register the images in ``folder`` (a path inside the data root) as OOD dataset ``name``.

    Appends a ``kind = "folder"`` entry to the registry file. The path must resolve inside the data root
    (``..`` or absolute paths elsewhere are refused) and be a directory; ``name`` must be new and a plain word.
    """
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,39}", name or ""):
        raise OODLabError(
            "a dataset name starts with a letter and has at most 40 letters, digits, '-' or '_'"
        )
    if name in datasets():
        raise OODLabError(f"a dataset named '{name}' exists already")
    resolved = config.resolve_data_path(folder)
    if not resolved.is_dir():
        raise DataPathError(f"'{folder}' is not a folder")
    relative = resolved.relative_to(config.data_root()).as_posix()
    path = config.config_file()
    text = path.read_text() if path.exists() else ""
    entry = f'\n[datasets.{name}]\nkind = "folder"\nroot = {json.dumps(relative)}\n'
    tomllib.loads(text + entry)  # never write a file that would not parse
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + entry)
    return get_dataset(name)


def get_dataset(name: str) -> DatasetSpec:
    base, _, variant = name.partition("@jigsaw")
    if variant:
        from .block_selection import jigsaw_variant

        if not variant.isdigit() or not 2 <= int(variant) <= 16:
            raise OODLabError(
                f"'{name}': the jigsaw grid size must be an integer from 2 to 16"
            )
        return jigsaw_variant(get_dataset(base), int(variant))
    known = datasets()
    if name not in known:
        raise UnknownNameError("dataset", name, list(known))
    return known[name]


def get_model(name: str) -> ModelSpec:
    known = models()
    if name not in known:
        raise UnknownNameError("model", name, list(known))
    return known[name]


def split_ref(ref: str) -> tuple[str, str | None]:
    """``'digits:train'`` → ``('digits', 'train')``; ``'textures'`` → ``('textures', None)`` (the last split)."""
    name, _, split = ref.partition(":")
    return name, split or None
