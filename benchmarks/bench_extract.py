"""Extraction overhead and cache size on the demo model.

Prints, measured side by side in one run (interleaved repetitions, medians):
- (forward + hooks computing max/mean/l2 of every probed block + copying the compact arrays to the host) / (bare forward),
  over the same pre-made batches — target ≤ 1.15;
- the same with the DataLoader and transforms included, for reference;
- cache bytes per entry / bytes of a float32 dump of the probed blocks' full activation maps — target ≤ 1/50,
  for the demo model and, computed from shapes, for a CIFAR-style ResNet-18.

Then, on the device at hand (random inputs, interleaved repeats): images/s of a bare forward and of the forward with
every probed block's statistics, for a torchvision ResNet-18 (CIFAR stem, 32 px) and ResNet-50 (224 px); the cache
bytes per image of each model (float32, and float16 statistics) and, from those and the measured throughput, the
cache size and extraction time of each shipped benchmark (OpenOOD v1.5 set sizes; ID train at the benchmark's
share); and the wall time of `python -m ood_core extract` on the demo in one process vs `torchrun` with 2 processes.

Per family (random weights, ``--families``): images/s of a bare forward and of the forward with every default probe's
statistics read at its tap (``inputs.taps``), and their ratio (target ≤ 1.15): ResNet-18, DenseNet-121, the DICE
DenseNet-BC-100 (tests/models/densenet_bc.py), MobileNetV2, VGG-11, EfficientNet-B0, ConvNeXt-T, Swin-T, ViT-B/16
and a timm ViT, at their native input sizes.

Usage: python benchmarks/bench_extract.py [--repeats 7] [--batch-size 256] [--device auto] [--skip-demo]
       [--families | --only-families]
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
from ood_core.inputs.benchmarks import BENCHMARKS
from ood_core.inputs.probes import find_probes

# Test-time set sizes of OpenOOD v1.5 (ID test, ID val, near, far, validation OOD) and full ID train sizes.
SET_ROWS = {
    "openood-cifar10": (
        50_000,
        9_000 + 1_000 + 9_000 + 7_793 + 70_000 + 26_032 + 5_640 + 35_195 + 1_000,
    ),
    "openood-cifar100": (
        50_000,
        9_000 + 1_000 + 10_000 + 6_526 + 70_000 + 26_032 + 5_640 + 33_773 + 972,
    ),
    "openood-imagenet200": (
        256_000,
        9_000 + 1_000 + 49_000 + 5_879 + 10_000 + 5_160 + 15_869 + 1_763,
    ),
    "openood-imagenet": (
        1_281_167,
        45_000 + 5_000 + 49_000 + 5_879 + 10_000 + 5_160 + 15_869 + 1_763,
    ),
}


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
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument(
        "--families", action="store_true", help="also time every family"
    )
    parser.add_argument("--only-families", action="store_true")
    args = parser.parse_args()
    device = pick_device(args.device)
    if args.only_families:
        families(device, max(3, args.repeats // 2))
        return
    if args.families:
        families(device, max(3, args.repeats // 2))
    if not args.skip_demo:
        demo(args, device)
    throughputs = model_throughput(device, max(3, args.repeats // 2))
    storage_table(throughputs)
    torchrun_demo()


def demo(args, device) -> None:
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


def _resnet(depth: int, classes: int, cifar: bool) -> torch.nn.Module:
    import torchvision

    net = getattr(torchvision.models, f"resnet{depth}")(num_classes=classes)
    if cifar:
        net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = torch.nn.Identity()
    return net.eval()


def per_image_bytes(net: torch.nn.Module, probes, classes: int, stat_bytes: int) -> int:
    """Cache bytes per image: 3 statistics per probed channel, penultimate and logits (float32), label + index."""
    channels = sum(_channels(net, b) for b in probes.blocks)
    dim = net.fc.in_features
    return stat_bytes * 3 * channels + 4 * (dim + classes) + 16


def _channels(net: torch.nn.Module, block: str) -> int:
    module = net.get_submodule(block)
    last = module.conv3 if hasattr(module, "conv3") else module.conv2
    return last.out_channels


def model_throughput(device: torch.device, repeats: int) -> dict:
    """images/s of a bare forward and of extraction (forward + statistics) per model; bytes per image."""
    from ood_core.engine.extract import MemorySink, run_batches

    results = {}
    for name, depth, classes, size, batch in (
        ("ResNet-18 (CIFAR stem, 32 px)", 18, 10, 32, 128),
        ("ResNet-50 (224 px)", 50, 1000, 224, 16),
    ):
        net = _resnet(depth, classes, size == 32).to(device)
        probes = find_probes(net, torch.zeros(1, 3, size, size, device=device))
        x = torch.randn(batch, 3, size, size, device=device)
        batches = [(x, torch.zeros(batch, dtype=torch.int64), torch.arange(batch))]

        def bare(net=net, x=x):
            with torch.inference_mode():
                net(x).float().cpu()

        def stats(net=net, probes=probes, batches=batches, batch=batch):
            run_batches(net, probes, batches, MemorySink(), batch, device)

        bare(), stats()
        times = {"bare": [], "stats": []}
        for _ in range(repeats):
            times["bare"].append(timed(bare))
            times["stats"].append(timed(stats))
        med = {k: statistics.median(v) for k, v in times.items()}
        bytes32 = per_image_bytes(net, probes, classes, 4)
        bytes16 = per_image_bytes(net, probes, classes, 2)
        results[name] = {
            "img/s": batch / med["stats"],
            "bytes32": bytes32,
            "bytes16": bytes16,
        }
        print(
            f"{name:<30} {len(probes.blocks)} blocks: bare {batch / med['bare']:7.1f} img/s, with statistics "
            f"{batch / med['stats']:7.1f} img/s, RATIO {med['stats'] / med['bare']:.3f}; cache {bytes32:,} B/img "
            f"(float16 statistics: {bytes16:,} B/img)"
        )
    return results


FAMILIES = (  # name, builder, input size, CPU batch
    ("ResNet-18 (32 px)", lambda: _resnet(18, 10, True), 32, 64),
    ("DenseNet-BC-100 (DICE, 32 px)", lambda: _densenet_bc(), 32, 64),
    ("DenseNet-121", lambda: _torchvision("densenet121"), 224, 8),
    ("MobileNetV2", lambda: _torchvision("mobilenet_v2"), 224, 8),
    ("VGG-11", lambda: _torchvision("vgg11"), 224, 8),
    ("EfficientNet-B0", lambda: _torchvision("efficientnet_b0"), 224, 8),
    ("ConvNeXt-T", lambda: _torchvision("convnext_tiny"), 224, 8),
    ("Swin-T", lambda: _torchvision("swin_t"), 224, 8),
    ("ViT-B/16", lambda: _torchvision("vit_b_16"), 224, 8),
    ("timm ViT-S/16", lambda: _timm("vit_small_patch16_224"), 224, 8),
)


def _torchvision(arch: str) -> torch.nn.Module:
    import torchvision

    from ood_core.inputs.models import _non_inplace

    return _non_inplace(torchvision.models.get_model(arch, weights=None)).eval()


def _timm(name: str) -> torch.nn.Module:
    import timm

    return timm.create_model(name, pretrained=False).eval()


def _densenet_bc() -> torch.nn.Module:
    import importlib.util

    path = (
        Path(__file__).resolve().parent.parent / "tests" / "models" / "densenet_bc.py"
    )
    spec = importlib.util.spec_from_file_location("densenet_bc", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DenseNet3(depth=100, num_classes=10).eval()


def families(device: torch.device, repeats: int) -> None:
    """Statistics extraction time / bare forward, per family, at its default probes."""
    from ood_core.engine.extract import MemorySink, run_batches

    print(
        f"\nper family on {device} ({repeats} interleaved repeats, medians; random weights):"
    )
    print(
        f"{'model':<32} {'probes':>6} {'layouts':<14} {'bare img/s':>10} {'stats img/s':>11} {'RATIO':>6}"
    )
    for name, build, size, batch in FAMILIES:
        net = build().to(device)
        probes = find_probes(net, torch.zeros(1, 3, size, size, device=device))
        x = torch.randn(batch, 3, size, size, device=device)
        batches = [(x, torch.zeros(batch, dtype=torch.int64), torch.arange(batch))]

        def bare(net=net, x=x):
            with torch.inference_mode():
                net(x).float().cpu()
            if device.type == "cuda":
                torch.cuda.synchronize()

        def stats(net=net, probes=probes, batches=batches, batch=batch):
            run_batches(net, probes, batches, MemorySink(), batch, device)
            if device.type == "cuda":
                torch.cuda.synchronize()

        bare(), stats()
        times = {"bare": [], "stats": []}
        for _ in range(repeats):
            times["bare"].append(timed(bare))
            times["stats"].append(timed(stats))
        med = {k: statistics.median(v) for k, v in times.items()}
        layouts = "/".join(sorted({probes.probe(b).layout for b in probes.blocks}))
        print(
            f"{name:<32} {len(probes.blocks):>6} {layouts:<14} {batch / med['bare']:10.1f} "
            f"{batch / med['stats']:11.1f} {med['stats'] / med['bare']:6.3f}"
        )
        del net


def storage_table(throughputs: dict) -> None:
    """Cache size and extraction time per shipped benchmark (ID train at its share)."""
    model_of = {
        "openood-cifar10": "ResNet-18 (CIFAR stem, 32 px)",
        "openood-cifar100": "ResNet-18 (CIFAR stem, 32 px)",
        "openood-imagenet200": "ResNet-50 (224 px)",
        "openood-imagenet": "ResNet-50 (224 px)",
    }
    print(
        "\n| benchmark | model | ID train share | images | cache (float32) | cache (float16 stats) | extraction here |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (train, rest) in SET_ROWS.items():
        share = BENCHMARKS[name].train_share
        rows = round(train * share) + rest
        model = throughputs[model_of[name]]
        seconds = rows / model["img/s"]
        print(
            f"| {name} | {model_of[name]} | {share:g} | {rows:,} | {rows * model['bytes32'] / 1e9:.1f} GB | "
            f"{rows * model['bytes16'] / 1e9:.1f} GB | {seconds / 3600:.1f} h |"
        )


def torchrun_demo() -> None:
    """Wall time of the demo extraction (digits train/test/jigsaw, letters, noise): 1 process vs torchrun 2."""
    import os
    import subprocess
    import tempfile

    args = [
        "-m",
        "ood_core",
        "extract",
        "--ood",
        "letters",
        "noise",
        "--batch-size",
        "64",
    ]
    walls = {}
    for label, prefix, threads in (
        ("1 process, 2 threads", [sys.executable], "2"),
        ("torchrun, 2 processes x 1 thread", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                               "--nproc_per_node=2"], "1"),
    ):  # fmt: skip
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "OOD_LAB_CACHE_DIR": cache, "OMP_NUM_THREADS": threads}
            start = time.perf_counter()
            subprocess.run([*prefix, *args], env=env, check=True, capture_output=True)
            walls[label] = time.perf_counter() - start
        print(f"demo extraction, {label:<34} {walls[label]:6.1f} s wall")
    one, two = walls.values()
    print(
        f"RATIO torchrun-2 / single process = {two / one:.2f} (2 CPU cores; process start-up included)"
    )


if __name__ == "__main__":
    main()
