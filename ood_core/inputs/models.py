"""Models: the embedded demo model, and the models a researcher brings — any torchvision classification architecture,
any timm model (``arch = "timm:NAME"``) or a class or function of their own (``factory = "file.py:Name"``), always
with weights from a local checkpoint (``inputs.weights``), never from a hub.

A model's fingerprint (architecture, factory source and arguments, sha256 of its weights file, input transform) is
the first half of every cache key. ``loaded_model`` keeps one loaded copy per process. Loading is checked step by
step — building, the checkpoint, the dry forward pass that finds the probes, the head's number of classes — and any
failure is one line naming the model and what to change.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import OODLabError
from ..memo import BoundedMemo
from . import config, demo_data, demo_model
from .files import file_sha256
from .probes import Probes, find_probes
from .registry_file import ModelEntry
from .weights import (
    SHIPPED_DEMO_WEIGHTS,
    load_weights,
    save_once,
    weights_intact,
)

Progress = Callable[[int, int], None]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it, where its weights come from, and its input transform."""

    name: str
    arch: str
    description: str
    num_classes: int
    input_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    build: Callable[[], nn.Module] = field(repr=False)
    weights: Callable[[Progress | None], Path] = field(repr=False)
    resize: int | None = None
    default_id: str | None = None
    needs_training: Callable[[], bool] = field(default=lambda: False, repr=False)
    # Whose paper defaults apply (cifar10, cifar100, imagenet); a synthetic workspace's model names its blocks and
    # has no network.
    benchmark: str | None = None
    synthetic_blocks: tuple[str, ...] = ()
    default_ood: tuple[
        str, ...
    ] = ()  # the OOD sets the sidebar offers first for this model
    probes: str | tuple[str, ...] = (
        "default"  # "default", "all" or probe names (see inputs.probes)
    )
    source: dict = field(
        default_factory=dict
    )  # what else identifies the architecture (factory file, arguments)

    @property
    def preprocessing(self) -> dict:
        """The input transform as data (what the cache keys record; stable across torchvision versions)."""
        return {
            "channels": self.channels,
            "resize": self.resize or self.input_size,
            "crop": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def transform(self):
        """torchvision v2: grey/RGB → resize (shorter side) → centre crop → float in [0, 1] → normalise."""
        from torchvision.transforms import v2

        steps = [v2.Grayscale(1) if self.channels == 1 else v2.RGB()]
        steps.append(v2.Resize(self.resize or self.input_size, antialias=True))
        steps.append(v2.CenterCrop(self.input_size))
        steps += [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(self.mean), list(self.std)),
        ]
        return v2.Compose(steps)


@dataclass
class LoadedModel:
    """A model in eval mode with its weights' digest, probes and input transform."""

    spec: ModelSpec
    module: nn.Module | None  # None for a synthetic workspace's model
    weights_sha256: str
    probes: Probes

    @property
    def transform(self):
        return self.spec.transform()

    def fingerprint(self) -> dict:
        return {
            "name": self.spec.name,
            "arch": self.spec.arch,
            "num_classes": self.spec.num_classes,
            "weights_sha256": self.weights_sha256,
            "transform": self.spec.preprocessing,
            **({"source": self.spec.source} if self.spec.source else {}),
        }


def _trained_demo_path() -> Path:
    return config.cache_dir() / "models" / "demo_resnet.pt"


def _demo_weights(progress: Progress | None) -> Path:
    """The demo weights shipped with the package (identical on every machine); if they are missing or do not match
    their recorded sha256, the same seeded training (≈30 s) runs once into the cache instead."""
    if weights_intact(SHIPPED_DEMO_WEIGHTS):
        return SHIPPED_DEMO_WEIGHTS

    def train() -> tuple[dict, dict]:
        model, report = demo_model.train_demo_model(progress)
        return model.state_dict(), report

    return save_once(_trained_demo_path(), train, weights_intact)


def demo_spec() -> ModelSpec:
    return ModelSpec(
        name="demo",
        arch="DemoResNet(16,32,64,64)",
        description="Small 4-block ResNet trained on the demo digits (seed 0; weights shipped with OOD Lab).",
        num_classes=10,
        input_size=demo_data.SIZE,
        channels=1,
        mean=(demo_model.PIXEL_MEAN,),
        std=(demo_model.PIXEL_STD,),
        build=demo_model.DemoResNet,
        weights=_demo_weights,
        default_id="digits",
        default_ood=("letters", "textures", "photos", "faces", "noise"),
        needs_training=lambda: (
            not weights_intact(SHIPPED_DEMO_WEIGHTS)
            and not weights_intact(_trained_demo_path())
        ),
    )


def _non_inplace(module: nn.Module) -> nn.Module:
    """Activations made non-in-place, so that hooks and taps see the values a module produced."""
    for child in module.modules():
        if getattr(child, "inplace", False) is True:
            child.inplace = False
    return module


def _torchvision(entry: ModelEntry) -> nn.Module:
    import torchvision

    module = torchvision.models.get_model(
        entry.arch, weights=None, num_classes=entry.num_classes, **entry.kwargs
    )
    if entry.cifar_stem:
        module.conv1 = nn.Conv2d(3, module.conv1.out_channels, 3, 1, 1, bias=False)
        module.maxpool = nn.Identity()
    return module


def _timm(entry: ModelEntry) -> nn.Module:
    import timm

    return timm.create_model(
        entry.arch.removeprefix("timm:"),
        pretrained=False,
        num_classes=entry.num_classes,
        **entry.kwargs,
    )


def factory_callable(text: str, resolve: Callable[[str], Path]) -> Callable:
    """The callable ``"path/to/file.py:Name"`` (a file under the data root, imported as the user's own code) or
    ``"package.module:Name"`` (an installed module) names."""
    target, _, attribute = text.rpartition(":")
    try:
        if target.endswith(".py"):
            path = resolve(target)
            name = f"ood_lab_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickling look the module up
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except OODLabError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything while it is imported
        raise OODLabError(
            f"factory '{text}': importing {target} failed ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    found = getattr(module, attribute, None)
    if not callable(found):
        raise OODLabError(
            f"factory '{text}': {target} has no class or function named '{attribute}'"
        )
    return found


def _factory(entry: ModelEntry, resolve: Callable[[str], Path]) -> nn.Module:
    """The user's model: ``factory(**kwargs)``, with ``num_classes`` passed too when the factory names that
    argument and ``kwargs`` does not set it."""
    build = factory_callable(entry.factory, resolve)
    kwargs = dict(entry.kwargs)
    try:
        named = inspect.signature(build).parameters
    except (TypeError, ValueError):
        named = {}
    if "num_classes" in named and "num_classes" not in kwargs:
        kwargs["num_classes"] = entry.num_classes
    try:
        module = build(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        raise OODLabError(
            f"factory '{entry.factory}' raised {type(exc).__name__}: {_first_line(exc)} (with kwargs "
            f"{entry.kwargs or '{}'})"
        ) from None
    if not isinstance(module, nn.Module):
        raise OODLabError(
            f"factory '{entry.factory}' returned a {type(module).__name__}, not a torch.nn.Module"
        )
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _source(entry: ModelEntry, resolve: Callable[[str], Path]) -> dict:
    """What identifies the architecture beyond its name: the factory file's digest and the arguments."""
    source: dict = {"kwargs": entry.kwargs} if entry.kwargs else {}
    if entry.factory:
        target = entry.factory.rpartition(":")[0]
        source["factory"] = entry.factory
        if target.endswith(".py"):
            source["factory_sha256"] = file_sha256(resolve(target))
    if entry.probes != "default":
        source["probes"] = entry.probes
    return source


def registered_spec(entry: ModelEntry, resolve: Callable[[str], Path]) -> ModelSpec:
    """The model a checked registry-file entry describes: a torchvision architecture (``cifar_stem`` swaps in the
    3×3 stem without max-pool of 32×32 ResNets), a timm model or the user's factory."""

    def build() -> nn.Module:
        if entry.factory:
            module = _factory(entry, resolve)
        elif entry.arch.startswith("timm:"):
            module = _timm(entry)
        else:
            module = _torchvision(entry)
        return _non_inplace(module)

    arch = (
        f"factory:{entry.factory}"
        if entry.factory
        else entry.arch + ("+cifar_stem" if entry.cifar_stem else "")
    )
    return ModelSpec(
        name=entry.name,
        arch=arch,
        description=entry.description
        or f"{entry.arch or entry.factory}, {entry.num_classes} classes",
        num_classes=entry.num_classes,
        input_size=entry.input_size,
        channels=len(entry.mean),
        mean=entry.mean,
        std=entry.std,
        build=build,
        weights=lambda progress: resolve(entry.weights),
        resize=entry.resize,
        default_id=entry.id_dataset,
        benchmark=entry.benchmark,
        probes=entry.probes,
        source=_source(entry, resolve),
    )


def load_model(spec: ModelSpec, progress: Progress | None = None) -> LoadedModel:
    """Build the model, load its weights (training the demo model if needed), find its probes by a dry pass.

    A synthetic workspace's model has no network: its fingerprint is its registration file's, its probes are named.
    """
    path = spec.weights(progress)
    if spec.synthetic_blocks:
        return LoadedModel(
            spec,
            None,
            file_sha256(path),
            Probes(spec.synthetic_blocks, "fc", "synthetic"),
        )
    module = spec.build()
    load_weights(module, path, spec.arch)
    module.eval()
    return LoadedModel(spec, module, file_sha256(path), dry_run(spec, module))


def dry_run(spec: ModelSpec, module: nn.Module) -> Probes:
    """The model's probes from one forward pass on a blank input of its size; a model that cannot take that input,
    or whose head does not have the registered number of classes, is refused in one line."""
    example = torch.zeros(1, spec.channels, spec.input_size, spec.input_size)
    try:
        probes = find_probes(module, example, spec.probes)
    except OODLabError as exc:
        raise OODLabError(f"model '{spec.name}': {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any layer may reject the input
        raise OODLabError(
            f"model '{spec.name}' cannot run on a {spec.channels}×{spec.input_size}×{spec.input_size} input "
            f"({type(exc).__name__}: {_first_line(exc)}); check input_size (too small for this architecture?), "
            "the number of channels (mean/std) and the model's own size arguments"
        ) from None
    if probes.classes != spec.num_classes:
        raise OODLabError(
            f"model '{spec.name}': its head '{probes.head}' has {probes.classes} outputs, but num_classes is "
            f"{spec.num_classes}"
        )
    return probes


_loaded: BoundedMemo[LoadedModel] = BoundedMemo(8)


def loaded_model(spec: ModelSpec, progress: Progress | None = None) -> LoadedModel:
    """``spec``'s model, loaded once per process and weights-file version (the demo may train on first use)."""
    path = spec.weights(progress)
    stat = path.stat()
    key = (
        spec.name,
        spec.arch,
        spec.num_classes,
        spec.input_size,
        str(path),
        stat.st_size,
        stat.st_mtime_ns,
    )
    return _loaded.get(key, lambda: load_model(spec))
