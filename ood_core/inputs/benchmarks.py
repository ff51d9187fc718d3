"""Benchmarks as data: the OpenOOD v1.5 protocols (and the demo's), each a named set of ID splits and OOD sets.

A benchmark's datasets are OpenOOD image lists under the data root, laid out as OpenOOD's download script leaves them
(``images_classic/`` or ``images_largescale/`` for the images, ``benchmark_imglist/<benchmark>/*.txt`` for the lists;
paths as in ``openood/evaluation_api/datasets.py``). They appear in the catalog as ``<prefix>-<set>`` (e.g.
``c10-tin``) once their list file exists; ``require`` names every missing file in one message.

Protocol (OpenOOD v1.5): ID val is 1,000 images held out of the test split (ImageNet: 5 per class); the validation
OOD set is for tuning only; near/far summaries are the unweighted means of the per-set metrics.

Storage: the ID *train* split (what fits read: class means, KNN's bank, ReAct's percentiles, …) is extracted on a
seeded, class-stratified share of its images — all of CIFAR, 10 % of ImageNet-200, 1 % of ImageNet-1K (OpenOOD's
KNN setting) — so that a ResNet-50's ~15k channels per image do not make ImageNet train a 230 GB cache; set
``OOD_LAB_TRAIN_SHARE`` to choose another share.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from ..errors import OODLabError
from ..rows import stratified_rows
from . import config
from .datasets import DatasetSpec, ImageSet
from .registry_file import DatasetEntry

CLASSIC, LARGE, LISTS = "images_classic", "images_largescale", "benchmark_imglist"


@dataclass(frozen=True)
class OODSet:
    """One OOD set: its short name, image folder and image list (relative to the data root)."""

    name: str
    images: str
    imglist: str


@dataclass(frozen=True)
class Benchmark:
    """A protocol: ID splits (image lists per split), near/far test OOD sets, validation OOD sets and the ID-train
    share extracted by default."""

    name: str
    prefix: str
    id_name: str
    classes: int
    images: str
    id_lists: dict[str, str]
    near: tuple[OODSet, ...]
    far: tuple[OODSet, ...]
    validation: tuple[OODSet, ...]
    train_share: float = 1.0

    @property
    def id_dataset(self) -> str:
        return f"{self.prefix}-{self.id_name}" if self.prefix else self.id_name

    def dataset(self, ood: OODSet) -> str:
        return f"{self.prefix}-{ood.name}" if self.prefix else ood.name

    @property
    def ood_datasets(self) -> tuple[str, ...]:
        """The test OOD sets, near first."""
        groups = self.groups()
        return (*groups["near"], *groups["far"])

    @property
    def ood_sets(self) -> tuple[OODSet, ...]:
        """Every OOD set the benchmark reads: near, far and validation."""
        return (*self.near, *self.far, *self.validation)

    def groups(self) -> dict[str, tuple[str, ...]]:
        """``near`` / ``far`` → dataset names (for the summary rows of a report)."""
        return {
            "near": tuple(self.dataset(s) for s in self.near),
            "far": tuple(self.dataset(s) for s in self.far),
        }

    def files(self) -> list[str]:
        """Every image list and image folder the benchmark reads, relative to the data root (none for the demo's
        built-in sets)."""
        if not self.id_lists:
            return []
        listed = [*self.id_lists.values(), *(s.imglist for s in self.ood_sets)]
        folders = sorted({self.images, *(s.images for s in self.ood_sets)})
        return [*listed, *folders]

    def entries(self) -> list[DatasetEntry]:
        """The benchmark's datasets as registry entries (kind ``imglist``; none for the demo's built-in sets)."""
        if not self.id_lists:
            return []
        split_lists = dict(self.id_lists)
        found = [
            DatasetEntry(
                self.id_dataset, "imglist", self.images, split_lists, tuple(split_lists),
                f"{self.name}: ID ({self.classes} classes)", "OpenOOD v1.5 image lists",
            )
        ]  # fmt: skip
        for group, sets in (
            ("near-OOD", self.near),
            ("far-OOD", self.far),
            ("validation OOD", self.validation),
        ):
            for s in sets:
                found.append(
                    DatasetEntry(
                        self.dataset(s), "imglist", s.images, {"test": s.imglist}, ("test",),
                        f"{self.name}: {group} {s.name}", "OpenOOD v1.5 image lists",
                    )
                )  # fmt: skip
        return found


def _cifar(
    name: str, prefix: str, classes: int, near: tuple[str, str], val_tin: str
) -> Benchmark:
    folder = f"{LISTS}/{name}"
    far = ("mnist", "svhn", "texture", "places365")
    return Benchmark(
        name=f"openood-{name}",
        prefix=prefix,
        id_name=name,
        classes=classes,
        images=CLASSIC,
        id_lists={
            split: f"{folder}/{split}_{name}.txt" for split in ("train", "val", "test")
        },
        near=tuple(OODSet(s, CLASSIC, f"{folder}/test_{s}.txt") for s in near),
        far=tuple(OODSet(s, CLASSIC, f"{folder}/test_{s}.txt") for s in far),
        validation=(OODSet("val-tin", CLASSIC, f"{folder}/{val_tin}"),),
    )


def _imagenet(name: str, prefix: str, classes: int, train_share: float) -> Benchmark:
    folder = f"{LISTS}/{name}"
    return Benchmark(
        name=f"openood-{name}",
        prefix=prefix,
        id_name=name,
        classes=classes,
        images=LARGE,
        id_lists={
            split: f"{folder}/{split}_{name}.txt" for split in ("train", "val", "test")
        },
        near=tuple(
            OODSet(s, LARGE, f"{folder}/test_{s}.txt") for s in ("ssb_hard", "ninco")
        ),
        far=(
            OODSet("inaturalist", LARGE, f"{folder}/test_inaturalist.txt"),
            OODSet("textures", CLASSIC, f"{folder}/test_textures.txt"),
            OODSet("openimage_o", LARGE, f"{folder}/test_openimage_o.txt"),
        ),
        validation=(OODSet("val-openimage_o", LARGE, f"{folder}/val_openimage_o.txt"),),
        train_share=train_share,
    )


DEMO = Benchmark(
    name="demo",
    prefix="",
    id_name="digits",
    classes=10,
    images="",
    id_lists={},
    near=(OODSet("letters", "", ""),),
    far=tuple(OODSet(s, "", "") for s in ("textures", "photos", "faces", "noise")),
    validation=(OODSet("val-images", "", ""),),
)

BENCHMARKS = {
    b.name: b
    for b in (
        DEMO,
        _cifar("cifar10", "c10", 10, ("cifar100", "tin"), "val_tin.txt"),
        _cifar("cifar100", "c100", 100, ("cifar10", "tin"), "val_tin.txt"),
        _imagenet("imagenet200", "in200", 200, 0.1),
        _imagenet(
            "imagenet", "in1k", 1000, 0.01
        ),  # OpenOOD's KNN uses 1 % of ImageNet train
    )
}


def get(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise OODLabError(
            f"unknown benchmark '{name}'; choose one of: {', '.join(BENCHMARKS)}"
        )
    return BENCHMARKS[name]


def missing(benchmark: Benchmark) -> list[str]:
    """The benchmark's files that are not under the data root."""
    root = config.data_root()
    return [path for path in benchmark.files() if not (root / path).exists()]


def require(benchmark: Benchmark) -> None:
    """One message listing every missing file, and where it goes, if the benchmark is not complete."""
    absent = missing(benchmark)
    if absent:
        root = config.data_root()
        raise OODLabError(
            f"benchmark {benchmark.name} needs {len(absent)} more file(s) under the data root {root} "
            f"(OpenOOD v1.5 layout: scripts/download/download.py of OpenOOD, or set OOD_LAB_DATA_ROOT):\n  "
            + "\n  ".join(absent)
        )


TRAIN_SHARE_SEED = 0


def train_share(benchmark: Benchmark) -> float:
    """The share of ID train images extracted: ``OOD_LAB_TRAIN_SHARE`` (0 < share ≤ 1) or the benchmark's default
    (1 on CIFAR; 10 % on ImageNet-200; 1 % on ImageNet-1K, as OpenOOD's KNN)."""
    text = os.environ.get("OOD_LAB_TRAIN_SHARE")
    if text is None:
        return benchmark.train_share
    try:
        share = float(text)
    except ValueError:
        share = float("nan")
    if not 0 < share <= 1:
        raise OODLabError(
            f"OOD_LAB_TRAIN_SHARE must be a number in (0, 1], got {text!r}"
        )
    return share


def id_train_subset(spec: DatasetSpec, share: float) -> DatasetSpec:
    """``spec`` whose train split is a seeded, class-stratified ``share`` of its images (other splits unchanged);
    the share, seed and row count enter the split's identity, so each share is its own cache entry."""
    if share >= 1:
        return spec

    def build(split: str):
        images, identity = spec.build(split)
        if split != "train":
            return images, identity
        rows = stratified_rows(images.labels, share, TRAIN_SHARE_SEED)
        subset = ImageSet(
            lambda r: images.image(int(rows[r])),
            images.labels[rows],
            [images.names[int(r)] for r in rows],
        )
        return subset, {
            **identity,
            "train_share": share,
            "seed": TRAIN_SHARE_SEED,
            "rows": len(rows),
        }

    return dataclasses.replace(spec, build=build)


def validation_sets(id_dataset: str | None) -> tuple[str, ...]:
    """The validation OOD sets (catalog names) of the benchmark whose ID set is ``id_dataset``: OpenOOD v1.5's
    ``val_tin`` / ``val_openimage_o``, the demo's ``val-images``; none for any other ID set."""
    for benchmark in BENCHMARKS.values():
        if benchmark.id_dataset == id_dataset:
            return tuple(benchmark.dataset(s) for s in benchmark.validation)
    return ()


def subset_for(name: str) -> float:
    """The train share of the benchmark whose ID dataset is ``name`` (1 for any other dataset)."""
    for benchmark in BENCHMARKS.values():
        if benchmark.prefix and benchmark.id_dataset == name:
            return train_share(benchmark)
    return 1.0


def available_entries() -> list[DatasetEntry]:
    """Registry entries of every benchmark dataset whose image lists are all present under the data root."""
    root = config.data_root()
    return [
        entry
        for benchmark in BENCHMARKS.values()
        for entry in benchmark.entries()
        if all(  # os.path: asked on every page run, where pathlib's objects cost more than the stat
            os.path.exists(os.path.join(root, path))
            for path in (entry.root, *entry.paths.values())
        )
    ]
