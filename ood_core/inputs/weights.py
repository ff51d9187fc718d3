"""Model weights on disk: checkpoints as people save them, read safely, and weights OOD Lab writes itself.

Reading accepts a bare ``state_dict``, one nested under ``state_dict``, ``model``, ``model_state_dict``, ``net`` or
``state_dict_ema``, keys prefixed by ``module.`` (DataParallel) or ``model.`` (Lightning), and ``.safetensors``
files. Pickled checkpoints load with ``torch.load(weights_only=True)`` only: one that pickles other objects is
refused, naming the global it needs (never suggesting to load it unsafely). A checkpoint that does not fit the
architecture names the missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from ..errors import CheckpointError, OODLabError
from .files import file_sha256

NESTED_KEYS = ("state_dict", "model", "model_state_dict", "net", "state_dict_ema")
PREFIXES = ("module.", "model.", "net.")


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (``.safetensors`` or a ``torch.save`` file), unwrapped to one state_dict."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"cannot read checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from exc
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
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
    for key in NESTED_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict) or not all(
        torch.is_tensor(v) for v in checkpoint.values()
    ):
        raise CheckpointError(
            f"checkpoint {path} does not hold a state_dict of tensors"
        )
    return checkpoint


def _best_prefix(
    state: dict[str, torch.Tensor], expected: dict
) -> dict[str, torch.Tensor]:
    """``state`` with the wrapper prefix removed (``module.``, ``model.``, ``net.``) that matches most keys."""
    candidates = [state]
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            candidates.append({k.removeprefix(prefix): v for k, v in state.items()})
    return max(candidates, key=lambda c: len(expected.keys() & c.keys()))


def load_weights(module: nn.Module, path: Path, arch: str) -> None:
    """Load ``path`` into ``module``; a mismatch names the checkpoint, the architecture and the first bad keys."""
    expected = module.state_dict()
    state = _best_prefix(read_checkpoint(path), expected)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)}≠{tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{label} ({len(items)}): {', '.join(items[:3])}{' …' if len(items) > 3 else ''}"
            for label, items in (
                ("shape mismatch", wrong),
                ("missing", missing),
                ("unexpected", unexpected),
            )
            if items
        ]
        raise CheckpointError(
            f"checkpoint {path} does not fit architecture '{arch}' ({'; '.join(parts)}); is it a checkpoint of "
            "another model?"
        )
    module.load_state_dict(state)


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


SHIPPED_DEMO_WEIGHTS = Path(__file__).with_name("demo_weights") / "demo_resnet.pt"
