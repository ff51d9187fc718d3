"""Dataset registry: the embedded demo sets and real datasets from local folders.

A dataset is addressed by name and split (``digits:train``, ``textures``). Every split yields PIL images, its labels
(-1 for OOD) and an *identity* (generator version and seed, or a digest of the file list) that goes into its cache key.
Real datasets are registered in the TOML registry file (``ood_core.inputs.registry_file``); each kind has one builder
(``folder``, ``imagefolder``, ``imglist``, ``cifar10``/``cifar100``, ``svhn``). A dataset's root must lie inside the
data root, and every file it reads must resolve inside that root: a symlink pointing elsewhere is refused for that
file (skipped and counted like an unreadable image).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import logging
import os
import pickle
import re
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataPathError, UnknownNameError
from . import demo_data

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
            DataPathError,
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
    has_images: bool = (
        True  # False: a synthetic workspace's set (cached statistics only)
    )

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
            "val-images",
            "Validation OOD, never a test set: random crops of scikit-image's other bundled images.",
            "scikit-image bundled hubble_deep_field, immunohistochemistry, retina, cell and clock",
            demo_data.held_out,
        ),
        _demo_spec(
            "noise",
            "Synthetic OOD: Gaussian and uniform pixel noise.",
            "numpy generator, seed 0",
            demo_data.noise,
        ),
    ]
}


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        return False


def _open_image(path: Path, root: Path) -> Image.Image:
    if not _inside(path, root):
        raise DataPathError(
            f"{path} resolves outside its dataset folder {root} (a symlink?); refused"
        )
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
        lambda row: _open_image(files[row], root),
        labels,
        [str(p.relative_to(root)) for p in files],
    )
    return images, _file_list_identity(root, files, labels)


MAX_LIST_LINE = 4096  # characters: a path and its label
MAX_LABEL = 2**31 - 1
_INTEGER = re.compile(r"-?[0-9]{1,10}")


def parse_imglist_line(line: str) -> tuple[str, int]:
    """One OpenOOD image-list line: ``relative/path.jpg <label>`` split on the first space; the label is an integer
    (−1 for OOD) or a dict literal whose ``class_label``/``label`` entry is used (−1 without one). A label that is
    not a whole number in [−1, 2³¹) raises ``ValueError`` with the reason."""
    path, _, field = line.strip().partition(" ")
    field = field.strip()
    if not field:
        return path, -1
    if _INTEGER.fullmatch(field):
        value: object = int(field)
    else:
        try:
            value = ast.literal_eval(field)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ValueError(
                f"label {field[:40]!r} is neither an integer nor a dict literal"
            ) from None
        if isinstance(value, dict):
            value = value.get("class_label", value.get("label", -1))
    if not isinstance(value, int) or isinstance(value, bool):
        # ValueError like every other bad line: callers catch one type
        raise ValueError(f"label {field[:40]!r} is not a whole number")  # noqa: TRY004
    if not -1 <= value <= MAX_LABEL:
        raise ValueError(f"label {field[:40]!r} is outside [-1, {MAX_LABEL}]")
    return path, value


class NameList(Sequence[str]):
    """Many relative paths in one buffer (UTF-8 bytes plus offsets): a 1.28 M-line list costs ~60 MB, not the
    ~700 MB of a list of ``str`` and ``Path`` objects."""

    def __init__(self):
        self._data = bytearray()
        self._ends = array("q")

    def append(self, name: str) -> None:
        self._data += name.encode("utf-8", "surrogateescape")
        self._ends.append(len(self._data))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, row):  # type: ignore[override]
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        if row < 0:
            row += len(self)
        start = self._ends[row - 1] if row > 0 else 0
        return self._data[start : self._ends[row]].decode("utf-8", "surrogateescape")


def read_imglist(root: Path, imglist: Path) -> tuple[NameList, np.ndarray, str]:
    """Stream an image list: names, labels and a digest of every line's path, label, file size and modification
    time (so a replaced image changes the cache key). Memory stays bounded: lines are read one at a time, each at
    most ``MAX_LIST_LINE`` characters. Raises ``ValueError`` naming the first bad line."""
    names, labels, digest = NameList(), array("q"), hashlib.sha256()
    folder = str(root)
    with open(imglist, encoding="utf-8", errors="surrogateescape") as fh:
        number = 0
        while line := fh.readline(MAX_LIST_LINE + 1):
            number += 1
            if len(line) > MAX_LIST_LINE and not line.endswith("\n"):
                raise ValueError(
                    f"line {number}: longer than {MAX_LIST_LINE:,} characters"
                )
            if not line.strip():
                continue
            try:
                path, label = parse_imglist_line(line)
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
            try:
                stat = os.stat(os.path.join(folder, path))
                size, mtime = stat.st_size, stat.st_mtime_ns
            except (OSError, ValueError):
                size, mtime = (
                    -1,
                    -1,
                )  # missing or unreadable: skipped (and counted) at extraction
            names.append(path)
            labels.append(label)
            digest.update(
                f"{path}\t{label}\t{size}\t{mtime}\n".encode("utf-8", "surrogateescape")
            )
    return names, np.frombuffer(labels, np.int64).copy(), digest.hexdigest()


def imglist_image_set(root: Path, imglist: Path) -> tuple[ImageSet, dict]:
    """An OpenOOD-style image list (``parse_imglist_line`` per line), paths relative to ``root``."""
    if not _inside(imglist, imglist.parent):
        raise DataPathError(
            f"{imglist} resolves outside its folder (a symlink?); refused"
        )
    try:
        names, labels, files_digest = read_imglist(root, imglist)
    except (OSError, ValueError, UnicodeError) as exc:
        raise DataPathError(
            f"{imglist} is not an image list ('path label' per line): {exc}"
        ) from None
    if not len(names):
        raise DataPathError(f"{imglist} lists no images")
    images = ImageSet(lambda row: _open_image(root / names[row], root), labels, names)
    identity = {
        "root": str(root),
        "imglist": str(imglist),
        "n": len(names),
        "files_sha256": files_digest,
    }
    return images, identity


def _stat_identity(paths: list[Path]) -> str:
    """A digest of the files' names, sizes and modification times (cheap; changes when a file is replaced)."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _checked_file(path: Path, root: Path) -> Path:
    if not path.is_file():
        raise DataPathError(f"{path} is missing")
    if not _inside(path, root):
        raise DataPathError(
            f"{path} resolves outside its dataset folder {root} (a symlink?); refused"
        )
    return path


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only (CIFAR's python batches); any other global is refused."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a dataset file"
            )
        return super().find_class(module, name)


CIFAR_FILES = {
    False: (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        b"labels",
    ),
    True: ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}


def _entry(batch: object, key: bytes) -> object:
    """A CIFAR batch's entry under ``key`` as bytes (the original Python 2 pickles) or as str (re-saved by Python 3,
    which torchvision also reads)."""
    if not isinstance(batch, dict):
        raise KeyError(key)
    return batch[key] if key in batch else batch[key.decode()]


def cifar_image_set(root: Path, split: str, hundred: bool) -> tuple[ImageSet, dict]:
    """CIFAR-10/100 from the extracted python batches under ``root`` (``cifar-10-batches-py/`` or
    ``cifar-100-python/``), read without running pickled code; never downloads."""
    folder, train_files, test_files, label_key = CIFAR_FILES[hundred]
    data, labels = [], []
    paths = [
        _checked_file(root / folder / name, root)
        for name in (train_files if split == "train" else test_files)
    ]
    for path in paths:
        try:
            with open(path, "rb") as fh:
                batch = _ArrayUnpickler(fh, encoding="bytes").load()
            data.append(
                np.asarray(_entry(batch, b"data"), np.uint8).reshape(-1, 3, 32, 32)
            )
            labels.extend(_entry(batch, label_key))
        except (
            OSError,
            pickle.UnpicklingError,
            KeyError,
            ValueError,
            EOFError,
            TypeError,
        ) as exc:
            raise DataPathError(f"{path} is not a CIFAR python batch ({exc})") from exc
    images = np.concatenate(data).transpose(0, 2, 3, 1)
    kind = "CIFAR100" if hundred else "CIFAR10"
    return array_image_set(images, np.asarray(labels, np.int64), f"{kind}-{split}"), {
        "root": str(root),
        "format": f"{kind} python batches",
        "n": len(labels),
        "files": _stat_identity(paths),
    }


def svhn_image_set(root: Path, split: str) -> tuple[ImageSet, dict]:
    """SVHN from ``<root>/<split>_32x32.mat`` (X [32,32,3,N], y [N]; label 10 is the digit 0); never downloads."""
    from scipy.io import loadmat

    path = _checked_file(root / f"{split}_32x32.mat", root)
    try:
        mat = loadmat(path)
        images = np.ascontiguousarray(
            np.asarray(mat["X"], np.uint8).transpose(3, 0, 1, 2)
        )
        labels = np.asarray(mat["y"], np.int64).ravel() % 10
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DataPathError(f"{path} is not an SVHN .mat file ({exc})") from exc
    return array_image_set(images, labels, f"SVHN-{split}"), {
        "root": str(root),
        "format": "SVHN .mat",
        "split": split,
        "n": len(labels),
        "files": _stat_identity([path]),
    }
