"""Models: the embedded demo model (weights shipped with the package) and torchvision architectures with local weights.

Weights load with ``torch.load(weights_only=True)`` only. A model's fingerprint (architecture + sha256 of its weights
file + input transform) is the first half of every cache key. ``loaded_model`` keeps one loaded copy per process.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from ..errors import CheckpointError, OODLabError
from ..memo import BoundedMemo
from . import config, demo_data, demo_model
from .files import file_sha256
from .probes import Probes, find_probes
from .registry_file import ModelEntry

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
        }


def _state_dict_from_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Read a state_dict (optionally nested under 'state_dict'/'model', with DataParallel 'module.' prefixes).

    Only ``torch.load(weights_only=True)``: a checkpoint that pickles other objects is refused, naming the global it
    needs (never suggesting to load it unsafely).
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        text = str(exc)
        blocked = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if blocked:
            reason = (
                f"it pickles {blocked.group(1)}, which is not plain tensor data; save the model's state_dict "
                "(torch.save(model.state_dict(), path)) and register that file"
            )
        else:
            reason = (
                text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            )
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(
        torch.is_tensor(v) for v in checkpoint.values()
    ):
        raise CheckpointError(
            f"checkpoint {path} does not hold a state_dict of tensors"
        )
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def load_weights(module: nn.Module, path: Path, arch: str) -> None:
    """Load ``path`` into ``module``; a mismatch names the checkpoint, the architecture and the first bad keys."""
    state = _state_dict_from_checkpoint(path)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)}≠{tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{label}: {', '.join(items[:3])}{' …' if len(items) > 3 else ''}"
            for label, items in (
                ("shape mismatch", wrong),
                ("missing", missing),
                ("unexpected", unexpected),
            )
            if items
        ]
        raise CheckpointError(
            f"checkpoint {path} does not fit architecture '{arch}' ({'; '.join(parts)})"
        )
    module.load_state_dict(state)


SHIPPED_DEMO_WEIGHTS = Path(__file__).with_name("demo_weights") / "demo_resnet.pt"


def save_once(
    path: Path, train: Callable[[], tuple[dict, dict]], intact: Callable[[Path], bool]
) -> Path:
    """``path`` if ``intact``; otherwise run ``train() -> (state_dict, report)`` once (a file lock makes other
    processes wait) and save the weights and ``<path>.json`` (the report plus the weights' sha256) atomically."""
    if intact(path):
        return path
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path.with_suffix(".lock")))
        lock.acquire()
    except OSError as exc:
        raise OODLabError(
            f"cannot write model weights to {folder} ({exc.strerror}); set OOD_LAB_CACHE_DIR"
        ) from exc
    try:
        if intact(path):  # another process trained it while we waited
            return path
        state, report = train()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
        os.close(fd)
        try:
            torch.save(state, tmp)
            os.chmod(tmp, 0o644)
            report["weights_sha256"] = file_sha256(Path(tmp))
            path.with_suffix(".json").write_text(json.dumps(report, indent=2))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        lock.release()
    return path


def weights_intact(path: Path) -> bool:
    """Whether ``path`` exists and matches the sha256 recorded in ``<path>.json``."""
    try:
        report = json.loads(path.with_suffix(".json").read_text())
        return path.exists() and file_sha256(path) == report.get("weights_sha256")
    except (OSError, ValueError):
        return False


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


def torchvision_spec(entry: ModelEntry, resolve: Callable[[str], Path]) -> ModelSpec:
    """A torchvision architecture with a local checkpoint, from a checked registry-file entry.

    ``cifar_stem`` swaps in the 3×3 stem without max-pool of 32×32 ResNets; ReLUs are made non-in-place so that
    hooks see clean tensors.
    """
    import torchvision

    def build() -> nn.Module:
        module = torchvision.models.get_model(
            entry.arch, weights=None, num_classes=entry.num_classes
        )
        if entry.cifar_stem:
            module.conv1 = nn.Conv2d(3, module.conv1.out_channels, 3, 1, 1, bias=False)
            module.maxpool = nn.Identity()
        for child in module.modules():
            if isinstance(child, nn.ReLU):
                child.inplace = False
        return module

    return ModelSpec(
        name=entry.name,
        arch=entry.arch + ("+cifar_stem" if entry.cifar_stem else ""),
        description=entry.description
        or f"torchvision {entry.arch}, {entry.num_classes} classes",
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
    )


def load_model(spec: ModelSpec, progress: Progress | None = None) -> LoadedModel:
    """Build the model, load its weights (training the demo model if needed), find its probes.

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
    example = torch.zeros(1, spec.channels, spec.input_size, spec.input_size)
    return LoadedModel(spec, module, file_sha256(path), find_probes(module, example))


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
