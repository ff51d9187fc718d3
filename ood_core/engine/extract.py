"""The extraction engine: one batched, deterministic pass of a model over a dataset.

Forward hooks at each probe's tap (``inputs.taps``: the map channel-first, whatever the family) reduce ``ReLU(A)`` of
every probed map ``A [B,C,H,W]`` to per-channel ``max``, ``mean`` and ``l2`` (Frobenius norm over H×W; a token map's
patch tokens) on the device, inside the hook, so full activation maps never leave it. The head's
forward pre-hook records the penultimate feature. Per batch, only these compact arrays are copied to the host and
written to a sink (``cache.EntryWriter`` or ``MemorySink``).
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, Self

import numpy as np
import torch
from torch import nn

from ..errors import DataPathError, OODLabError
from ..inputs.datasets import ImageSet
from ..inputs.probes import Probes, linear_head
from ..inputs.taps import tapped

STATS = ("max", "mean", "l2")
Progress = Callable[[int, int], None]


class Sink(Protocol):
    def write(
        self, name: str, start: int, values: np.ndarray, total_rows: int
    ) -> None: ...

    def put(self, name: str, array: np.ndarray) -> None: ...

    def truncate(self, rows: int) -> None: ...


class MemorySink:
    """Collects extracted arrays in memory (tests, benchmarks, small ad-hoc sets)."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def write(self, name: str, start: int, values: np.ndarray, total_rows: int) -> None:
        if name not in self.arrays:
            self.arrays[name] = np.empty((total_rows, *values.shape[1:]), values.dtype)
        self.arrays[name][start : start + len(values)] = values

    def put(self, name: str, array: np.ndarray) -> None:
        self.arrays[name] = np.array(array)

    def truncate(self, rows: int) -> None:
        self.arrays = {
            k: (v if k.startswith("head/") else v[:rows])
            for k, v in self.arrays.items()
        }


@dataclass(frozen=True)
class ExtractionSettings:
    batch_size: int = 256
    device: str = "auto"
    # Autocast: "off", "fp16" (CUDA) or "bf16" (CUDA or CPU); statistics are always accumulated in float32.
    amp: str = "off"
    num_workers: int = 0
    # Store the per-channel block statistics as float16 (half the cache); default: OOD_LAB_FLOAT16_STATS=1.
    float16_stats: bool = field(
        default_factory=lambda: os.environ.get("OOD_LAB_FLOAT16_STATS") == "1"
    )


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


AMP_MODES = ("off", "fp16", "bf16")


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``amp`` on ``device``: float16 on CUDA only, bfloat16 on CUDA or CPU, else ``None``."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, not {amp!r}")
    if amp == "fp16" and device.type == "cuda":
        return torch.float16
    if amp == "bf16" and device.type in ("cuda", "cpu"):
        return torch.bfloat16
    return None


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live (CPU for a model without parameters)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` itself when it already lives on ``device``, otherwise a copy moved there for one run.

    Loaded models are shared between app sessions (and stay on the CPU for galleries and uploads), so a GPU run
    works on its own copy instead of moving the shared model under another session's feet.
    """
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    return model if model_device(model) == device else copy.deepcopy(model).to(device)


def channel_stats(
    activation: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel max, mean and L2 norm of ReLU(A) over the spatial positions: [B,C,H,W] → 3 × [B,C] float32."""
    flat = torch.relu(activation).flatten(2).float()
    return flat.amax(-1), flat.mean(-1), torch.linalg.vector_norm(flat, dim=-1)


def collate_readable(
    items: list,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Stack readable samples; unreadable ones arrive as ``None`` and are dropped here."""
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    images, labels, rows = zip(*kept)
    return (
        torch.stack(images),
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(rows, dtype=torch.int64),
    )


class _StatHooks:
    """Reads every probe at its tap (``inputs.taps``); after each forward, ``batch`` maps array names to device
    tensors. Use as a context manager around the forward passes (a probe read from a function call needs it)."""

    def __init__(self, model: nn.Module, probes: Probes):
        self.model, self.probes = model, probes
        self.batch: dict[str, torch.Tensor] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        taps = self._stack.enter_context(tapped(self.model, self.probes))
        for name, tap in taps.items():
            handle = tap.register_forward_hook(self._block_hook(name))
            self._stack.callback(handle.remove)
        head = self.model.get_submodule(self.probes.head)
        handle = head.register_forward_pre_hook(self._head_hook)
        self._stack.callback(handle.remove)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _block_hook(self, block: str):
        def hook(module, inputs, output):
            for stat, value in zip(STATS, channel_stats(output)):
                self.batch[f"blocks/{block}/{stat}"] = value

        return hook

    def _head_hook(self, module, inputs):
        self.batch["penultimate"] = inputs[0].flatten(1).float()


def run_batches(
    model: nn.Module,
    probes: Probes,
    batches: Iterable,
    sink: Sink,
    total: int,
    device: torch.device,
    amp: str = "off",
    progress: Progress | None = None,
    batch_size: int | None = None,
    first_row: int = 0,
    float16_stats: bool = False,
) -> np.ndarray:
    """The engine's inner loop over ``(x, labels, rows)`` batches (``None`` for an all-unreadable batch).

    Writes every per-sample array to ``sink`` and returns a boolean mask [total] of the rows that were read
    (dataset rows ``first_row … first_row + total − 1``: a shard of a larger set starts after row 0).
    ``model`` must already live on ``device`` (see ``on_device``).
    """
    model.eval()
    dtype = autocast_dtype(amp, device)
    written, seen = 0, 0
    readable = np.zeros(total, bool)
    # float16 statistics: the largest value per array, checked at the end
    peaks: dict[str, torch.Tensor] = {}
    with (
        _StatHooks(model, probes) as hooks,
        torch.inference_mode(),
        torch.autocast(device.type, dtype) if dtype else contextlib.nullcontext(),
    ):
        for batch in batches:
            if batch is not None:
                x, labels, rows = batch
                hooks.batch["logits"] = model(x.to(device, non_blocking=True)).float()
                for name, value in hooks.batch.items():
                    if float16_stats and name.startswith("blocks/"):
                        top = value.amax()
                        peaks[name] = (
                            top if name not in peaks else peaks[name].maximum(top)
                        )
                        value = value.half()  # computed in float32, stored rounded
                    sink.write(name, written, value.cpu().numpy(), total)
                sink.write("labels", written, labels.numpy(), total)
                sink.write("index", written, rows.numpy(), total)
                readable[rows.numpy() - first_row] = True
                written += len(rows)
            seen = min(total, seen + (batch_size or len(batch[0])))
            if progress:
                progress(seen, total)
    _check_float16(peaks)
    return readable


FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def _check_float16(peaks: dict[str, torch.Tensor]) -> None:
    """Refuse float16 statistics that overflowed (stored as inf): the extraction fails, so no entry is kept."""
    for name, peak in peaks.items():
        value = float(peak)
        if not value <= FLOAT16_MAX:
            raise OODLabError(
                f"{name.removeprefix('blocks/')} reaches {value:.4g}, above float16's largest value "
                f"{FLOAT16_MAX:,.0f}: this model's statistics do not fit float16; extract without --float16-stats "
                "(and without OOD_LAB_FLOAT16_STATS=1)"
            )


def data_loader(
    dataset: torch.utils.data.Dataset,
    settings: ExtractionSettings,
    device: torch.device,
) -> torch.utils.data.DataLoader:
    """Batches in order, unreadable images dropped; worker processes prefetch 4 batches each, and batches are pinned
    when they go to a GPU."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=False,
        collate_fn=collate_readable,
        num_workers=settings.num_workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if settings.num_workers else None,
    )


def extract(
    model: nn.Module,
    probes: Probes,
    images: ImageSet,
    sink: Sink,
    settings: ExtractionSettings | None = None,
    progress: Progress | None = None,
) -> dict:
    """Run ``model`` over ``images`` (transformed) and write every array to ``sink``; return a report for meta.json.

    Arrays: ``logits [N,K]``, ``penultimate [N,D]``, ``labels [N]``, ``index [N]`` (dataset row of each sample),
    ``blocks/<block>/{max,mean,l2} [N,C]``, ``head/weight [K,D]``, ``head/bias [K]``. Unreadable images are skipped:
    N is the number of readable ones, and the report lists the skipped names.
    """
    settings = settings or ExtractionSettings()
    device = pick_device(settings.device)
    total = len(images)
    loader = data_loader(images, settings, device)
    start = time.perf_counter()
    readable = run_batches(
        on_device(model, device),
        probes,
        loader,
        sink,
        total,
        device,
        settings.amp,
        progress,
        settings.batch_size,
        float16_stats=settings.float16_stats,
    )
    written = int(readable.sum())
    if written == 0:
        raise DataPathError(f"none of the {total} images could be read")
    if written < total:
        sink.truncate(written)
    weight, bias = linear_head(model, probes)
    sink.put("head/weight", weight)
    sink.put("head/bias", bias)
    skipped = np.flatnonzero(~readable).tolist()
    return {
        "probes": list(probes.blocks),
        "probe_kind": probes.kind,
        "device": str(device),
        "amp": str(autocast_dtype(settings.amp, device) or "off"),
        "seconds": round(time.perf_counter() - start, 3),
        "skipped": len(skipped),
        "skipped_names": [images.names[i] for i in skipped[:50]],
    }
