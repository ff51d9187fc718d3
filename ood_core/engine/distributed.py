"""Scale-out with ``torchrun``: every rank extracts one contiguous shard of a set, rank 0 merges them into one entry.

``torchrun --nproc_per_node=N -m ood_core extract …`` (and ``--nnodes/--rdzv-endpoint`` for several machines) starts
N copies of the CLI; each finds its rank in the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), joins the process group (NCCL on GPUs, gloo on CPU) and, per set:

1. rank 0 looks the entry up; if it exists every rank just loads it;
2. each rank extracts rows ``shard_rows(…)`` — contiguous, aligned to the batch size so that every batch is the
   one a single process would run (identical arrays), no padding or duplicates — on its own device, into
   ``<cache>/<model>/.tmp-shards-<entry>/rank<r>/``;
3. after a barrier, rank 0 writes the shards in rank order into the entry through the cache's atomic
   ``get_or_create`` and deletes them; a second barrier lets the other ranks load it.

A rank that fails makes torchrun stop the others before the merge: no entry is created. The shard folders it leaves
are debris: ``cache clear`` removes them, and so does rank 0 at the start of the next job for that entry (before any
rank writes), so shards of another batch size or world size are never merged.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import DataPathError
from ..inputs.datasets import ImageSet
from ..inputs.probes import Probes, linear_head
from .cache import CacheError, CacheKey, CorruptEntry, FeatureCache, FeatureSet
from .extract import (
    ExtractionSettings,
    MemorySink,
    Progress,
    data_loader,
    on_device,
    run_batches,
)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun job."""

    rank: int
    world: int
    local_rank: int

    @property
    def leader(self) -> bool:
        return self.rank == 0


def launched() -> Ranks | None:
    """The job this process belongs to when started by torchrun with more than one process, else ``None``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2:
        return None
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def join(ranks: Ranks, device: str = "auto") -> torch.device:
    """Join the process group once (NCCL when this rank has a GPU, gloo otherwise); this rank's device."""
    gpu = device != "cpu" and torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(ranks.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo")
    return torch.device("cuda", ranks.local_rank) if gpu else torch.device("cpu")


def shard_rows(total: int, batch_size: int, rank: int, world: int) -> range:
    """Rank ``rank``'s contiguous rows of ``total``: whole batches dealt out as evenly as possible (the first
    ``batches % world`` ranks get one more), the last, partial batch to the rank that owns it."""
    batches = -(-total // batch_size)
    per_rank, extra = divmod(batches, world)
    first = rank * per_rank + min(rank, extra)
    count = per_rank + (1 if rank < extra else 0)
    return range(
        min(total, first * batch_size), min(total, (first + count) * batch_size)
    )


def _shard_dir(cache: FeatureCache, key: CacheKey) -> Path:
    return cache.root / key.model_dir / f".tmp-shards-{key.entry_dir}"


def _extract_shard(
    model: nn.Module,
    probes: Probes,
    images: ImageSet,
    rows: range,
    folder: Path,
    settings: ExtractionSettings,
    device: torch.device,
    progress: Progress | None,
) -> None:
    """This rank's rows through the model, saved as ``<array>.npy`` files plus ``report.json`` in ``folder``."""
    loader = data_loader(torch.utils.data.Subset(images, rows), settings, device)
    sink = MemorySink()
    readable = run_batches(
        on_device(model, device), probes, loader, sink, len(rows), device, settings.amp,
        progress, settings.batch_size, first_row=rows.start, float16_stats=settings.float16_stats,
    )  # fmt: skip
    sink.truncate(int(readable.sum()))
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in sink.arrays.items():
        target = folder / (name.replace("/", "__") + ".npy")
        np.save(target, array)
    skipped = [rows.start + int(i) for i in np.flatnonzero(~readable)]
    (folder / "report.json").write_text(
        json.dumps({"rows": len(rows), "skipped": skipped})
    )


def _merge(
    writer, folders: list[Path], images: ImageSet, model: nn.Module, probes: Probes
) -> dict:
    """Write every rank's shard, in rank order, into the entry ``writer``; the meta report of the whole set."""
    reports = [json.loads((f / "report.json").read_text()) for f in folders]
    written = sum(r["rows"] - len(r["skipped"]) for r in reports)
    if written == 0:
        raise DataPathError(f"none of the {len(images)} images could be read")
    start = 0
    for folder, report in zip(folders, reports):
        for file in folder.glob("*.npy"):
            writer.write(file.stem.replace("__", "/"), start, np.load(file), written)
        start += report["rows"] - len(report["skipped"])
    weight, bias = linear_head(model, probes)
    writer.put("head/weight", weight)
    writer.put("head/bias", bias)
    skipped = [row for r in reports for row in r["skipped"]]
    return {
        "probes": list(probes.blocks),
        "probe_kind": probes.kind,
        "device": f"{len(folders)} ranks (torchrun)",
        "skipped": len(skipped),
        "skipped_names": [images.names[i] for i in skipped[:50]],
    }


def extract_sharded(
    model: nn.Module,
    probes: Probes,
    images: ImageSet,
    key: CacheKey,
    cache: FeatureCache,
    settings: ExtractionSettings,
    ranks: Ranks,
    progress: Progress | None = None,
) -> FeatureSet:
    """The entry of ``key``, extracted by every rank of the job on its shard and merged by rank 0 (module doc)."""
    device = join(ranks, settings.device)
    exists = [None]
    if ranks.leader:
        try:
            exists = [cache.load(key) is not None]
        except CorruptEntry:
            exists = [False]
    dist.broadcast_object_list(exists, src=0)
    if not exists[0]:
        folder = _shard_dir(cache, key)
        if (
            ranks.leader
        ):  # shards of an earlier job that died at the merge: never mix them in
            shutil.rmtree(folder, ignore_errors=True)
        dist.barrier()
        rows = shard_rows(len(images), settings.batch_size, ranks.rank, ranks.world)
        _extract_shard(
            model, probes, images, rows, folder / f"rank{ranks.rank}", settings, device,
            progress if ranks.leader else None,
        )  # fmt: skip
        dist.barrier()
        if ranks.leader:
            folders = [folder / f"rank{r}" for r in range(ranks.world)]
            try:
                cache.get_or_create(
                    key, lambda w: _merge(w, folders, images, model, probes)
                )
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    dist.barrier()
    found = cache.load(key)
    if found is None:
        raise CacheError(f"rank 0 did not write the merged entry {key}")
    return found


def leave() -> None:
    """Leave the process group (end of a torchrun job)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
