"""The TOML registry file (``ood_lab.toml``): real models and datasets, each entry checked on its own.

Reading never fails as a whole: every ``[models.<name>]`` and ``[datasets.<name>]`` entry is checked against a small
typed schema, and a broken entry is reported with its reason (Setup and ``list`` show it) while the demo and every
other entry keep working. Writing (Setup's "Add a folder") happens under a file lock with an atomic replace, so two
processes adding entries at once both land, and a file that would not parse is never written.

Example (every path relative to the data root, ``OOD_LAB_DATA_ROOT``)::

    [models.cifar10_resnet18]
    arch = "resnet18"                  # any torchvision classification architecture, or "timm:NAME"
    # factory = "models/densenet.py:DenseNet3"   # or your own class or function (instead of arch)
    # kwargs = { depth = 100, num_classes = 10 } # passed to the architecture or factory
    # probes = "default"                         # "default", "all", or ["layer3.0", "input:fc", "pool"]
    weights = "weights/resnet18_cifar10.pt"    # .pt/.pth/.tar (weights_only) or .safetensors
    num_classes = 10
    input_size = 32
    cifar_stem = true
    mean = [0.4914, 0.4822, 0.4465]
    std = [0.2470, 0.2435, 0.2616]
    id_dataset = "cifar10"
    benchmark = "cifar10"              # which papers' defaults apply (cifar10, cifar100, imagenet)

    [datasets.cifar10]
    kind = "cifar10"                   # folder | imagefolder | imglist | cifar10 | cifar100 | svhn
    root = "cifar10"
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from filelock import FileLock

from ..errors import OODLabError
from . import config
from .config import MAX_PATH

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,39}")
DATASET_KINDS = ("folder", "imagefolder", "imglist", "cifar10", "cifar100", "svhn")
SPLITS = ("train", "val", "test")
BENCHMARKS = ("cifar10", "cifar100", "imagenet")
MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Problem:
    """A registry entry that could not be used, and why."""

    section: str
    name: str
    reason: str

    def __str__(self) -> str:
        return f"[{self.section}.{self.name}] {self.reason}"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    arch: str
    weights: str
    factory: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    probes: str | tuple[str, ...] = "default"
    num_classes: int = 1000
    input_size: int = 224
    resize: int | None = None
    cifar_stem: bool = False
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    id_dataset: str | None = None
    benchmark: str | None = None
    description: str = ""


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: str
    root: str | None
    paths: Mapping[
        str, str
    ]  # split → folder (folder/imagefolder) or list file (imglist)
    splits: tuple[str, ...]
    description: str = ""
    provenance: str = "local files"


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelEntry]
    datasets: dict[str, DatasetEntry]
    problems: list[Problem]


class _Invalid(Exception):
    pass


def _text(
    entry: dict, key: str, required: bool = False, path: bool = False
) -> str | None:
    value = entry.get(key)
    if value is None:
        if required:
            raise _Invalid(f"'{key}' is missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"'{key}' must be a non-empty string, got {value!r}")
    if path:
        _check_path(key, value)
    return value


def _check_path(key: str, value: str) -> None:
    if "\x00" in value:
        raise _Invalid(f"'{key}' contains a NUL byte")
    if len(value) > MAX_PATH:
        raise _Invalid(
            f"'{key}' is {len(value):,} characters long (at most {MAX_PATH})"
        )
    if value.strip() in (".", "./", ""):
        raise _Invalid(
            f"'{key}' names the whole data root; point it at a folder inside it"
        )


def _int(entry: dict, key: str, default: int | None, low: int = 1) -> int | None:
    value = entry.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise _Invalid(f"'{key}' must be an integer ≥ {low}, got {value!r}")
    return value


def _floats(entry: dict, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
    value = entry.get(key, default)
    if not isinstance(value, (list, tuple)) or not value:
        raise _Invalid(f"'{key}' must be a list of numbers, got {value!r}")
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in value
    ):
        raise _Invalid(f"'{key}' must hold finite numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _known_keys(entry: dict, allowed: set[str]) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise _Invalid(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
        )


MODEL_KEYS = {
    "arch",
    "factory",
    "kwargs",
    "probes",
    "weights",
    "num_classes",
    "input_size",
    "resize",
    "cifar_stem",
    "mean",
    "std",
    "id_dataset",
    "benchmark",
    "description",
}
FACTORY = re.compile(r"([^:\x00]+\.py|[A-Za-z_][\w.]*):([A-Za-z_]\w*)")
KWARG = re.compile(r"[A-Za-z_]\w{0,63}")


def _source(entry: dict, architectures: Callable[[], list[str]]) -> tuple[str, str]:
    """``(arch, factory)``: exactly one of a torchvision or timm architecture and a factory."""
    arch, factory = _text(entry, "arch"), _text(entry, "factory")
    if (arch is None) == (factory is None):
        raise _Invalid(
            "give either 'arch' (a torchvision or timm:NAME architecture) or 'factory' (file.py:Name)"
        )
    if factory is not None:
        if not FACTORY.fullmatch(factory):
            raise _Invalid(
                f"'factory' must look like 'path/to/file.py:ClassOrFunction' or 'package.module:callable', "
                f"got {factory!r}"
            )
        _check_path("factory", factory)
        return "", factory
    if arch.startswith("timm:"):
        if not _timm_model(arch.removeprefix("timm:")):
            raise _Invalid(f"'{arch}' is not a timm model (timm.list_models())")
    elif arch not in architectures():
        raise _Invalid(
            f"'{arch}' is not a torchvision classification architecture (or write timm:NAME)"
        )
    return arch, ""


def _timm_model(name: str) -> bool:
    try:
        import timm
    except ImportError as exc:
        raise _Invalid(f"timm is not installed ({exc})") from None
    return bool(timm.is_model(name))


def _kwargs(entry: dict) -> dict:
    value = entry.get("kwargs", {})
    if not isinstance(value, dict) or not all(KWARG.fullmatch(k) for k in value):
        raise _Invalid(
            "'kwargs' must be a table of argument names (kwargs = { depth = 100 })"
        )
    return value


def _probes(entry: dict) -> str | tuple[str, ...]:
    value = entry.get("probes", "default")
    if value in ("default", "all"):
        return value
    if (
        isinstance(value, list)
        and 0 < len(value) <= 200
        and all(isinstance(v, str) and 0 < len(v) <= 300 for v in value)
    ):
        return tuple(value)
    raise _Invalid(
        '\'probes\' must be "default", "all" or a list of module names ("layer4.0", "input:fc", "pool")'
    )


def parse_model(
    name: str, entry: Any, architectures: Callable[[], list[str]]
) -> ModelEntry:
    if not isinstance(entry, dict):
        raise _Invalid("must be a table of keys")
    _known_keys(entry, MODEL_KEYS)
    arch, factory = _source(entry, architectures)
    cifar_stem = entry.get("cifar_stem", False)
    if not isinstance(cifar_stem, bool):
        raise _Invalid(f"'cifar_stem' must be true or false, got {cifar_stem!r}")
    if cifar_stem and (factory or arch.startswith("timm:")):
        raise _Invalid("'cifar_stem' applies to torchvision ResNets only")
    benchmark = _text(entry, "benchmark")
    if benchmark is not None and benchmark not in BENCHMARKS:
        raise _Invalid(
            f"'benchmark' must be one of {', '.join(BENCHMARKS)}, got {benchmark!r}"
        )
    input_size = _int(entry, "input_size", 224)
    mean = _floats(entry, "mean", ModelEntry.mean)
    std = _floats(entry, "std", ModelEntry.std)
    if len(mean) != len(std) or any(s <= 0 for s in std):
        raise _Invalid("'mean' and 'std' need one value per channel, std > 0")
    return ModelEntry(
        name=name,
        arch=arch,
        weights=_text(entry, "weights", required=True, path=True),
        factory=factory,
        kwargs=_kwargs(entry),
        probes=_probes(entry),
        num_classes=_int(entry, "num_classes", 1000),
        input_size=input_size,
        resize=_int(entry, "resize", 256 if input_size == 224 else None),
        cifar_stem=cifar_stem,
        mean=mean,
        std=std,
        id_dataset=_text(entry, "id_dataset"),
        benchmark=benchmark,
        description=_text(entry, "description") or "",
    )


DATASET_KEYS = {
    "kind",
    "root",
    "splits",
    "description",
    "provenance",
    *SPLITS,
    *(f"{s}_list" for s in SPLITS),
}
LABELLED_SPLITS = ("train", "test")


def parse_dataset(name: str, entry: Any) -> DatasetEntry:
    if not isinstance(entry, dict):
        raise _Invalid("must be a table of keys")
    _known_keys(entry, DATASET_KEYS)
    kind = entry.get("kind", "folder")
    if kind not in DATASET_KINDS:
        raise _Invalid(f"unknown kind {kind!r} (one of {', '.join(DATASET_KINDS)})")
    root = _text(entry, "root", path=True)
    if kind == "imglist":
        paths = {
            s: _text(entry, f"{s}_list", path=True)
            for s in SPLITS
            if f"{s}_list" in entry
        }
        if root is None or not paths:
            raise _Invalid(
                "an imglist dataset needs 'root' and at least one of train_list, val_list, test_list"
            )
    elif kind in ("folder", "imagefolder"):
        paths = {s: _text(entry, s, path=True) for s in SPLITS if s in entry}
        if root is None and not paths:
            raise _Invalid(
                f"a {kind} dataset needs 'root' (or a folder per split: train, val, test)"
            )
    else:
        paths = {}
        if root is None:
            raise _Invalid(f"a {kind} dataset needs 'root'")
    default_splits = {
        "folder": tuple(paths) or ("test",),
        "imagefolder": tuple(paths) or LABELLED_SPLITS,
        "imglist": tuple(paths),
    }.get(kind, LABELLED_SPLITS)
    splits = entry.get("splits", default_splits)
    if (
        not isinstance(splits, (list, tuple))
        or not splits
        or not all(isinstance(s, str) and s in SPLITS for s in splits)
    ):
        raise _Invalid(
            f"'splits' must be a list of {', '.join(SPLITS)}, got {splits!r}"
        )
    return DatasetEntry(
        name=name,
        kind=kind,
        root=root,
        paths=paths,
        splits=tuple(splits),
        description=_text(entry, "description") or f"{kind} dataset",
        provenance=_text(entry, "provenance") or "local files",
    )


def parse_file(path: Path) -> dict:
    """The registry file as a TOML document: at most ``MAX_BYTES``, nesting bounded (Python's recursion limit
    ends a deeper one), or one ``OODLabError`` line saying why not."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise OODLabError(
                f"cannot be read: {size:,} bytes (a registry file is at most {MAX_BYTES:,})"
            )
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OODLabError(f"cannot be read: {exc}") from None
    except RecursionError:
        raise OODLabError(
            "cannot be read: its tables or arrays are nested too deeply"
        ) from None


def classification_architectures() -> list[str]:
    """Every torchvision classification architecture (``torchvision.models.list_models(module=...)``)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def read(
    path: Path | None = None, architectures: Callable[[], list[str]] | None = None
) -> Registry:
    """Every valid entry of the registry file plus the problems of the others (a missing file is empty)."""
    path = path or config.config_file()
    if architectures is None:
        architectures = classification_architectures
    if not path.exists():
        return Registry({}, {}, [])
    try:
        document = parse_file(path)
    except OODLabError as exc:
        return Registry({}, {}, [Problem("file", str(path), str(exc))])
    models, datasets, problems = {}, {}, []
    for section, parse, target in (
        ("models", lambda n, e: parse_model(n, e, architectures), models),
        ("datasets", parse_dataset, datasets),
    ):
        table = document.get(section, {})
        if not isinstance(table, dict):
            problems.append(Problem(section, "*", "must be a table of entries"))
            continue
        for name, entry in table.items():
            try:
                if not NAME.fullmatch(name):
                    raise _Invalid(
                        "names start with a letter and have at most 40 letters, digits, '-' or '_'"
                    )
                target[name] = parse(name, entry)
            except _Invalid as exc:
                problems.append(Problem(section, name, str(exc)))
    unknown = sorted(set(document) - {"models", "datasets"})
    problems += [
        Problem(
            "file",
            key,
            "unknown top-level table (use [models.<name>] or [datasets.<name>])",
        )
        for key in unknown
    ]
    return Registry(models, datasets, problems)


def add_dataset(name: str, entry: dict, path: Path | None = None) -> None:
    """Append ``[datasets.<name>]`` to the registry file (see ``add_entry``)."""
    try:
        parse_dataset(name, entry)
    except _Invalid as exc:
        raise OODLabError(f"dataset '{name}': {exc}") from exc
    add_entry("datasets", name, entry, path)


def add_model(name: str, entry: dict, path: Path | None = None) -> ModelEntry:
    """Append ``[models.<name>]`` to the registry file (see ``add_entry``); the checked entry."""
    try:
        checked = parse_model(name, entry, classification_architectures)
    except _Invalid as exc:
        raise OODLabError(f"model '{name}': {exc}") from exc
    add_entry("models", name, entry, path)
    return checked


def check_model(name: str, entry: dict) -> ModelEntry:
    """The entry as a checked ``ModelEntry`` (schema only), or one ``OODLabError`` line."""
    if not NAME.fullmatch(name or ""):
        raise OODLabError(
            "a model name starts with a letter and has at most 40 letters, digits, '-' or '_'"
        )
    try:
        return parse_model(name, entry, classification_architectures)
    except _Invalid as exc:
        raise OODLabError(f"model '{name}': {exc}") from exc


def add_entry(section: str, name: str, entry: dict, path: Path | None = None) -> None:
    """Append ``[<section>.<name>]`` to the registry file, under a lock and with an atomic replace.

    Refuses an existing name and a file that does not parse as it is; never writes a file that would not parse.
    """
    path = path or config.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=30):
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        try:
            current = parse_file(path) if text else {}
        except OODLabError as exc:
            raise OODLabError(
                f"the registry file {path} does not parse ({exc}); fix it before adding entries"
            ) from None
        if name in current.get(section, {}):
            raise OODLabError(f"a {section[:-1]} named '{name}' exists already")
        addition = tomli_w.dumps({section: {name: entry}})
        new_text = (
            text + ("\n" if text and not text.endswith("\n") else "") + "\n" + addition
        )
        tomllib.loads(new_text)  # never write a file that would not parse
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=".tmp-registry-", suffix=".toml"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(new_text)
            if path.exists():
                os.chmod(tmp, path.stat().st_mode & 0o777)
            else:
                os.chmod(tmp, 0o664)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
