"""Dataset registry: the embedded demo sets and real datasets from local folders.

A dataset is addressed by name and split (``digits:train``, ``textures``). Every split yields PIL images, its labels
(-1 for OOD) and an *identity* (generator version and seed, or a digest of the file list) that goes into its cache key.
Real datasets are registered in the TOML file described in ``ood_core.registry_file``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from . import demo_data
from .errors import DataPathError, OODLabError, UnknownNameError

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageSet(torch.utils.data.Dataset):
    """Images of one dataset split, transformed for a model. ``__getitem__`` returns ``(tensor, label, row)``,
    or ``None`` for an unreadable file (the collate function drops it and the extraction counts it)."""

    def __init__(
        self,
        loader: Callable[[int], Image.Image],
        labels: np.ndarray,
        names: list[str],
        transform=None,
    ):
        self._load, self.labels, self.names, self.transform = (
            loader,
            labels,
            names,
            transform,
        )

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, row: int) -> Image.Image:
        return self._load(row)

    def __getitem__(self, row: int):
        try:
            image = self._load(row)
        except (
            OSError,
            UnidentifiedImageError,
            ValueError,
            Image.DecompressionBombError,
        ) as exc:
            log.warning("skipping unreadable image %s: %s", self.names[row], exc)
            return None
        x = self.transform(image) if self.transform else image
        return x, int(self.labels[row]), row

    def with_transform(self, transform) -> ImageSet:
        return ImageSet(self._load, self.labels, self.names, transform)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to build each split, where it comes from, and whether it is ID (has labels)."""

    name: str
    description: str
    provenance: str
    splits: tuple[str, ...]
    build: Callable[[str], tuple[ImageSet, dict]] = field(repr=False)
    in_distribution: bool = False

    def load(self, split: str | None = None) -> tuple[ImageSet, dict]:
        """Return the split's images and its identity (for the cache key)."""
        split = split or self.splits[-1]
        if split not in self.splits:
            raise UnknownNameError(
                f"split of dataset '{self.name}'", split, list(self.splits)
            )
        images, identity = self.build(split)
        return images, {"dataset": self.name, "split": split, **identity}


def array_image_set(images: np.ndarray, labels: np.ndarray, prefix: str) -> ImageSet:
    """An in-memory uint8 array [N,H,W] or [N,H,W,C] as an ImageSet."""
    return ImageSet(
        lambda row: Image.fromarray(images[row]),
        labels,
        [f"{prefix}#{i}" for i in range(len(labels))],
    )


def _demo_spec(
    name: str,
    description: str,
    provenance: str,
    generate: Callable[[], tuple[np.ndarray, np.ndarray]],
):
    generate = functools.cache(generate)  # deterministic: generate once per process

    def build(split: str):
        images, labels = generate()
        identity = {
            "generator": f"ood_core.demo_data.{name}",
            "version": demo_data.GENERATOR_VERSION,
            "n": len(labels),
        }
        return array_image_set(images, labels, name), identity

    return DatasetSpec(name, description, provenance, ("test",), build)


@functools.cache
def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    return demo_data.digits(split)


def _digits_spec() -> DatasetSpec:
    def build(split: str):
        images, labels = _digits(split)
        identity = {
            "generator": "ood_core.demo_data.digits",
            "version": demo_data.GENERATOR_VERSION,
            "n": len(labels),
        }
        return array_image_set(images, labels, f"digits-{split}"), identity

    return DatasetSpec(
        "digits",
        "Handwritten digits 0–9 (ID), 8×8 upsampled to 32×32; fixed stratified 70/30 train/test split.",
        "scikit-learn load_digits (UCI ML hand-written digits, 1,797 images, bundled with scikit-learn)",
        ("train", "test"),
        build,
        in_distribution=True,
    )


DEMO_DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        _digits_spec(),
        _demo_spec(
            "letters",
            "Near-OOD: Latin letters drawn in the digits' 8×8 style (digit look-alikes left out).",
            "rendered from matplotlib's bundled DejaVu, STIX and Computer Modern fonts",
            demo_data.letters,
        ),
        _demo_spec(
            "textures",
            "Far-OOD: random crops of brick, grass and gravel textures.",
            "scikit-image bundled textures (skimage.data.brick/grass/gravel)",
            demo_data.textures,
        ),
        _demo_spec(
            "photos",
            "Far-OOD: random grayscale crops of natural photographs.",
            "scikit-image bundled photos (camera, astronaut, coffee, chelsea, rocket, coins, moon, cat) "
            "and scikit-learn sample images (china, flower)",
            demo_data.photos,
        ),
        _demo_spec(
            "faces",
            "Far-OOD: 200 face crops.",
            "scikit-image bundled lfw_subset (Labeled Faces in the Wild)",
            demo_data.faces,
        ),
        _demo_spec(
            "noise",
            "Synthetic OOD: Gaussian and uniform pixel noise.",
            "numpy generator, seed 0",
            demo_data.noise,
        ),
    ]
}


def _open_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def _file_list_identity(root: Path, files: list[Path], labels: np.ndarray) -> dict:
    digest = hashlib.sha256()
    for path, label in zip(files, labels):
        stat = path.stat()
        digest.update(
            f"{path.relative_to(root)}\t{label}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode()
        )
    return {"root": str(root), "n": len(files), "files_sha256": digest.hexdigest()}


def folder_image_set(root: Path, labelled: bool) -> tuple[ImageSet, dict]:
    """All images below ``root`` in sorted order; with ``labelled``, ImageFolder layout (one sub-folder per class)."""
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise DataPathError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}"
        )
    if labelled:
        classes = sorted(
            {
                p.relative_to(root).parts[0]
                for p in files
                if len(p.relative_to(root).parts) > 1
            }
        )
        if not classes:
            raise DataPathError(
                f"{root} has no class sub-folders; an ImageFolder dataset needs <root>/<class>/<image>"
            )
        index = {c: i for i, c in enumerate(classes)}
        files = [p for p in files if len(p.relative_to(root).parts) > 1]
        labels = np.array(
            [index[p.relative_to(root).parts[0]] for p in files], np.int64
        )
    else:
        labels = np.full(len(files), -1, np.int64)
    images = ImageSet(
        lambda row: _open_image(files[row]),
        labels,
        [str(p.relative_to(root)) for p in files],
    )
    return images, _file_list_identity(root, files, labels)


def imglist_image_set(root: Path, imglist: Path) -> tuple[ImageSet, dict]:
    """An OpenOOD-style image list: one ``relative/path.jpg label`` per line, paths relative to ``root``."""
    rows = [line.split() for line in imglist.read_text().splitlines() if line.strip()]
    try:
        files = [root / row[0] for row in rows]
        labels = np.array(
            [int(row[1]) if len(row) > 1 else -1 for row in rows], np.int64
        )
    except (IndexError, ValueError) as exc:
        raise DataPathError(
            f"{imglist} is not an image list ('path label' per line): {exc}"
        ) from exc
    for path in files:
        if not path.resolve().is_relative_to(root):
            raise DataPathError(
                f"{imglist} names {path}, outside the dataset root {root}"
            )
    images = ImageSet(
        lambda row: _open_image(files[row]), labels, [row[0] for row in rows]
    )
    identity = {
        "root": str(root),
        "imglist": str(imglist),
        "n": len(files),
        "files_sha256": hashlib.sha256(imglist.read_bytes()).hexdigest(),
    }
    return images, identity


def cifar_image_set(root: Path, split: str, hundred: bool) -> tuple[ImageSet, dict]:
    """torchvision CIFAR-10/100 from a local folder holding the extracted python pickles (never downloads)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR100 if hundred else CIFAR10
    try:
        dataset = cls(str(root), train=split == "train", download=False)
    except RuntimeError as exc:
        raise DataPathError(
            f"{root} does not hold the {cls.__name__} python batches ({exc})"
        ) from exc
    labels = np.asarray(dataset.targets, np.int64)
    images = array_image_set(dataset.data, labels, f"{cls.__name__}-{split}")
    return images, {"root": str(root), "torchvision": cls.__name__, "n": len(labels)}


def register_folder_dataset(
    name: str, entry: dict, resolve: Callable[[str], Path]
) -> DatasetSpec:
    """Build a DatasetSpec from a registry-file entry (see ``ood_core.registry_file``)."""
    kind = entry.get("kind", "folder")
    splits = tuple(
        entry.get(
            "splits",
            ["train", "test"]
            if kind in ("imagefolder", "cifar10", "cifar100")
            else ["test"],
        )
    )

    def root_of(split: str) -> Path:
        value = entry.get(split, entry.get("root"))
        if value is None:
            raise DataPathError(
                f"dataset '{name}' has no path for split '{split}' in the registry file"
            )
        return resolve(value)

    def build(split: str):
        if kind == "folder":
            return folder_image_set(root_of(split), labelled=False)
        if kind == "imagefolder":
            return folder_image_set(root_of(split), labelled=True)
        if kind == "imglist":
            return imglist_image_set(
                resolve(entry["root"]), resolve(entry[f"{split}_list"])
            )
        if kind in ("cifar10", "cifar100"):
            return cifar_image_set(resolve(entry["root"]), split, kind == "cifar100")
        raise OODLabError(
            f"dataset '{name}': unknown kind '{kind}' (folder, imagefolder, imglist, cifar10, cifar100)"
        )

    labelled = kind != "folder"
    return DatasetSpec(
        name,
        entry.get("description", f"{kind} dataset"),
        entry.get("provenance", "local files"),
        splits,
        build,
        in_distribution=labelled,
    )
