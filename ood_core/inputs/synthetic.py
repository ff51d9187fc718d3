"""Synthetic workspaces of a named size, for measuring OOD Lab at benchmark scale without the data.

``python -m ood_core synth --size cifar10`` registers ``synth-cifar10`` (a model without weights, whose blocks and head
have the benchmark's shapes), its ID dataset ``synth-cifar10`` (train/test) and OOD sets ``synth-cifar10-ood1…``, then
"extracts" them: the engine generates their cache entries from a seed (``ood_core.engine.synthetic``). The app opens
them like any workspace; pages that need images say that a synthetic workspace has none.

Sizes (rows of ID train / ID test / each OOD set, penultimate D, classes K, probed blocks):

- ``cifar10``: 50,000 / 10,000 / 6 × 10,000, D = 512, K = 10, 4 blocks of 64–512 channels (the CIFAR-10 protocol).
- ``imagenet``: 12,800 (a 1% class-stratified train sample) / 50,000 / 4 × 10,000, D = 2,048, K = 1,000, the last
  block of each ResNet-50 stage (256–2,048 channels).
- ``tiny``: 600 / 300 / 2 × 200, D = 32, K = 5, 2 blocks (tests).
- ``warmup``: 26,000 / 400 / 2 × 400, D = 64, K = 10, 2 blocks (``python -m ood_core warm``: enough train rows for
  KNN's screened search of its 200 nearest).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import OODLabError
from . import config
from .datasets import DatasetSpec, ImageSet

GENERATOR_VERSION = (
    2  # 2: OOD sets closer to ID (NAP no longer separates them perfectly)
)


@dataclass(frozen=True)
class SyntheticSize:
    name: str
    train: int
    test: int
    ood: tuple[int, ...]
    dim: int
    classes: int
    blocks: tuple[tuple[str, int], ...]

    @property
    def model(self) -> str:
        return f"synth-{self.name}"

    @property
    def ood_names(self) -> list[str]:
        return [f"{self.model}-ood{i}" for i in range(1, len(self.ood) + 1)]


SIZES = {
    size.name: size
    for size in (
        SyntheticSize(
            "cifar10", 50_000, 10_000, (10_000,) * 6, 512, 10,
            (("layer1.1", 64), ("layer2.1", 128), ("layer3.1", 256), ("layer4.1", 512)),
        ),
        SyntheticSize(
            "imagenet", 12_800, 50_000, (10_000,) * 4, 2048, 1000,
            (("layer1.2", 256), ("layer2.3", 512), ("layer3.5", 1024), ("layer4.2", 2048)),
        ),
        SyntheticSize("tiny", 600, 300, (200, 200), 32, 5, (("b1", 8), ("b2", 16))),
        SyntheticSize("warmup", 26_000, 400, (400, 400), 64, 10, (("b1", 16), ("b2", 32))),
    )
}  # fmt: skip


def folder() -> Path:
    return config.cache_dir() / "synthetic"


def register(size: str, seed: int = 0) -> Path:
    """Write the registration of synthetic workspace ``size`` (its seed is part of every key)."""
    if size not in SIZES:
        raise OODLabError(
            f"unknown synthetic size '{size}'; choose one of: {', '.join(SIZES)}"
        )
    path = folder() / f"{size}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {**asdict(SIZES[size]), "seed": seed, "version": GENERATOR_VERSION},
            indent=1,
        )
    )
    return path


def registered() -> dict[str, tuple[SyntheticSize, int, Path]]:
    """Registered synthetic workspaces: size name → (size, seed, registration file)."""
    found = {}
    for path in sorted(folder().glob("*.json")) if folder().is_dir() else []:
        try:
            record = json.loads(path.read_text())
            size = SIZES[record["name"]]
            found[size.name] = (size, int(record["seed"]), path)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _no_images(row: int):
    raise OODLabError("this is a synthetic workspace: its sets have no images")


def dataset_specs() -> dict[str, DatasetSpec]:
    """The ID and OOD datasets of every registered synthetic workspace."""
    specs = {}
    for size, seed, _ in registered().values():
        for role, name, splits in [("id", size.model, ("train", "test")), *[
            (f"ood{i}", ood, ("test",)) for i, ood in enumerate(size.ood_names, start=1)
        ]]:  # fmt: skip

            def build(split: str, role=role, size=size, seed=seed):
                n = (
                    {"train": size.train, "test": size.test}[split]
                    if role == "id"
                    else size.ood[int(role[3:]) - 1]
                )
                labels = np.full(n, -1, np.int64)
                identity = {
                    "generator": "ood_core.engine.synthetic", "version": GENERATOR_VERSION, "size": size.name,
                    "seed": seed, "role": role, "n": n, "synthetic": True,
                }  # fmt: skip
                return ImageSet(
                    _no_images, labels, [f"{role}#{i}" for i in range(n)]
                ), identity

            specs[name] = DatasetSpec(
                name,
                f"Synthetic {'ID' if role == 'id' else 'OOD'} set at {size.name} size (no images).",
                f"generated by ood_core.engine.synthetic (seed {seed})",
                splits,
                build,
                in_distribution=role == "id",
                has_images=False,
            )
    return specs
