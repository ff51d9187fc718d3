"""Extraction overhead and cache size on the demo model.

Prints, measured side by side in one run (interleaved repetitions, medians):
- (forward + hooks computing max/mean/l2 of every probed block + copying the compact arrays to the host) / (bare forward),
  over the same pre-made batches — target ≤ 1.15;
- the same with the DataLoader and transforms included, for reference;
- cache bytes per entry / bytes of a float32 dump of the probed blocks' full activation maps — target ≤ 1/50,
  for the demo model and, computed from shapes, for a CIFAR-style ResNet-18.

Usage: python benchmarks/bench_extract.py [--repeats 7] [--batch-size 256] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_core.engine.extract import (
    ExtractionSettings,
    MemorySink,
    extract,
    pick_device,
    run_batches,
)
from ood_core.engine.features import feature_set, model_named
from ood_core.inputs import catalog


def full_map_floats(
    model: torch.nn.Module, blocks: tuple[str, ...], example: torch.Tensor
) -> int:
    """Floats per image of all probed blocks' activation maps (from one dry run)."""
    sizes = []
    handles = [
        model.get_submodule(b).register_forward_hook(
            lambda m, i, o: sizes.append(o[0].numel())
        )
        for b in blocks
    ]
    with torch.inference_mode():
        model.eval()(example)
    for h in handles:
        h.remove()
    return sum(sizes)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    loaded = model_named("demo")
    model, probes = loaded.module.to(device).eval(), loaded.probes
    spec = catalog.get_dataset("digits")
    images = spec.load("train")[0].with_transform(loaded.transform)
    x = torch.stack([images[i][0] for i in range(len(images))]).to(device)
    n = len(x)
    batches = [
        (
            x[i : i + args.batch_size],
            torch.zeros(len(x[i : i + args.batch_size]), dtype=torch.int64),
            torch.arange(i, min(i + args.batch_size, n)),
        )
        for i in range(0, n, args.batch_size)
    ]

    def bare():
        with torch.inference_mode():
            for xb, _, _ in batches:
                model(xb).float().cpu()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def with_stats():
        run_batches(model, probes, batches, MemorySink(), n, device)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def end_to_end():
        extract(
            model,
            probes,
            images,
            MemorySink(),
            ExtractionSettings(args.batch_size, str(device)),
        )

    for fn in (bare, with_stats, end_to_end):  # warm-up
        fn()
    times = {"bare": [], "stats": [], "e2e": []}
    for _ in range(args.repeats):
        times["bare"].append(timed(bare))
        times["stats"].append(timed(with_stats))
        times["e2e"].append(timed(end_to_end))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, {n} images of digits:train, batch {args.batch_size}, "
        f"{args.repeats} interleaved repeats (medians)"
    )
    print(
        f"bare forward             {med['bare'] * 1e3:8.1f} ms  ({n / med['bare']:8.0f} img/s)"
    )
    print(
        f"forward + all stats      {med['stats'] * 1e3:8.1f} ms  ({n / med['stats']:8.0f} img/s)"
    )
    print(
        f"extract() incl. loading  {med['e2e'] * 1e3:8.1f} ms  ({n / med['e2e']:8.0f} img/s)"
    )
    print(
        f"RATIO extraction-with-stats / bare-forward = {med['stats'] / med['bare']:.3f}  (target <= 1.15)"
    )
    print(
        f"ratio extract()-incl-data-loading / bare-forward = {med['e2e'] / med['bare']:.3f}  (reference)"
    )

    entry = feature_set("demo", "digits", "train")
    entry_bytes = sum(f.stat().st_size for f in entry.root.rglob("*") if f.is_file())
    dump_bytes = 4 * n * full_map_floats(model.cpu(), probes.blocks, x[:1].cpu())
    print(
        f"cache entry {entry_bytes / 1e6:.2f} MB vs full-map float32 dump {dump_bytes / 1e6:.1f} MB of {len(probes.blocks)} blocks"
    )
    print(
        f"RATIO cache-bytes / full-activation-bytes (demo) = 1/{dump_bytes / entry_bytes:.0f}  (target <= 1/50)"
    )

    import torchvision

    resnet = torchvision.models.resnet18(num_classes=10)
    resnet.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    resnet.maxpool = torch.nn.Identity()
    blocks = tuple(f"layer{i}.{j}" for i in range(1, 5) for j in range(2))
    channels = sum(resnet.get_submodule(b).conv2.out_channels for b in blocks)
    per_image_cache = (
        4 * (3 * channels + 512 + 10) + 16
    )  # stats + penultimate + logits (float32) + label/index (int64)
    per_image_dump = 4 * full_map_floats(resnet, blocks, torch.zeros(1, 3, 32, 32))
    print(
        f"ResNet-18 (CIFAR stem, 32x32, 8 blocks), from shapes: cache {per_image_cache} B/img vs dump {per_image_dump} B/img: "
        f"ratio 1/{per_image_dump / per_image_cache:.0f}"
    )


if __name__ == "__main__":
    main()
