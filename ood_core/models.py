"""Model registry: the embedded demo model (trained once, cached) and torchvision architectures with local weights.

Weights load with ``torch.load(weights_only=True)`` only. A model's fingerprint (architecture + sha256 of its weights
file + input transform) is the first half of every cache key.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn
from torchvision.transforms import v2

from . import config, demo_data, demo_model
from .cache import file_sha256
from .errors import CheckpointError, OODLabError
from .probes import Probes, find_probes

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

    def transform(self) -> v2.Compose:
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
    module: nn.Module
    weights_sha256: str
    probes: Probes

    @property
    def transform(self) -> v2.Compose:
        return self.spec.transform()

    def fingerprint(self) -> dict:
        return {
            "name": self.spec.name,
            "arch": self.spec.arch,
            "num_classes": self.spec.num_classes,
            "weights_sha256": self.weights_sha256,
            "transform": repr(self.transform),
        }


def _state_dict_from_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Read a state_dict (optionally nested under 'state_dict'/'model', with DataParallel 'module.' prefixes)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        first_line = (
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        raise CheckpointError(
            f"cannot read checkpoint {path} with weights_only=True: {first_line}"
        ) from exc
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


def _demo_weights_path() -> Path:
    return config.cache_dir() / "models" / "demo_resnet.pt"


def _demo_weights(progress: Progress | None) -> Path:
    """The demo model's weights under the cache; trained (≈30 s, seeded) and saved atomically on first use.

    The training report beside the weights records their sha256; a missing, truncated or edited file is retrained.
    """
    path = _demo_weights_path()
    if _demo_weights_intact(path):
        return path
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / "demo_resnet.lock"))
        lock.acquire()
    except OSError as exc:
        raise OODLabError(
            f"cannot write the demo model to {folder} ({exc.strerror}); set OOD_LAB_CACHE_DIR"
        ) from exc
    try:
        if _demo_weights_intact(path):  # another process trained it while we waited
            return path
        model, report = demo_model.train_demo_model(progress)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-demo-", suffix=".pt")
        os.close(fd)
        torch.save(model.state_dict(), tmp)
        report["weights_sha256"] = file_sha256(Path(tmp))
        path.with_suffix(".json").write_text(json.dumps(report, indent=2))
        os.replace(tmp, path)
    finally:
        lock.release()
    return path


def _demo_weights_intact(path: Path) -> bool:
    try:
        report = json.loads(path.with_suffix(".json").read_text())
        return path.exists() and file_sha256(path) == report.get("weights_sha256")
    except (OSError, ValueError):
        return False


def demo_spec() -> ModelSpec:
    return ModelSpec(
        name="demo",
        arch="DemoResNet(16,32,64,64)",
        description="Small 4-block ResNet trained on the demo digits (seed 0, ≈30 s on 2 CPU cores).",
        num_classes=10,
        input_size=demo_data.SIZE,
        channels=1,
        mean=(demo_model.PIXEL_MEAN,),
        std=(demo_model.PIXEL_STD,),
        build=demo_model.DemoResNet,
        weights=_demo_weights,
        default_id="digits",
        needs_training=lambda: not _demo_weights_path().exists(),
    )


def torchvision_spec(
    name: str, entry: dict, resolve: Callable[[str], Path]
) -> ModelSpec:
    """A torchvision architecture with a local checkpoint, from a registry-file entry.

    Keys: ``arch`` (any ``torchvision.models`` name), ``weights`` (path under the data root), ``num_classes``,
    ``input_size`` (224), ``resize`` (256 for 224 inputs), ``mean``/``std`` (ImageNet), ``cifar_stem`` (3×3 stem,
    no max-pool, for 32×32 ResNets), ``id_dataset``.
    """
    import torchvision

    arch = entry.get("arch")
    if arch not in torchvision.models.list_models():
        raise OODLabError(
            f"model '{name}': '{arch}' is not a torchvision.models architecture"
        )
    num_classes = int(entry.get("num_classes", 1000))
    input_size = int(entry.get("input_size", 224))
    cifar_stem = bool(entry.get("cifar_stem", False))

    def build() -> nn.Module:
        module = torchvision.models.get_model(
            arch, weights=None, num_classes=num_classes
        )
        if cifar_stem:
            module.conv1 = nn.Conv2d(3, module.conv1.out_channels, 3, 1, 1, bias=False)
            module.maxpool = nn.Identity()
        for child in (
            module.modules()
        ):  # hooks must never see tensors that a later ReLU overwrites in place
            if isinstance(child, nn.ReLU):
                child.inplace = False
        return module

    return ModelSpec(
        name=name,
        arch=arch + ("+cifar_stem" if cifar_stem else ""),
        description=entry.get(
            "description", f"torchvision {arch}, {num_classes} classes"
        ),
        num_classes=num_classes,
        input_size=input_size,
        channels=3,
        mean=tuple(entry.get("mean", IMAGENET_MEAN)),
        std=tuple(entry.get("std", IMAGENET_STD)),
        build=build,
        weights=lambda progress: resolve(entry["weights"]),
        resize=entry.get("resize", 256 if input_size == 224 else None),
        default_id=entry.get("id_dataset"),
    )


def load_model(spec: ModelSpec, progress: Progress | None = None) -> LoadedModel:
    """Build the model, load its weights (training the demo model if needed), find its probes."""
    path = spec.weights(progress)
    module = spec.build()
    load_weights(module, path, spec.arch)
    module.eval()
    example = torch.zeros(1, spec.channels, spec.input_size, spec.input_size)
    return LoadedModel(spec, module, file_sha256(path), find_probes(module, example))
