"""Slider updates from the cache vs re-running inference, on the demo and on a synthetic CIFAR-scale cache.

For every method with a hyperparameter (ODIN excluded: it re-runs the model by design), one "update" is what a
slider move costs: recompute that method's scores for a new value on the ID test set and every OOD set, then its
metrics table. Derived statistics (train stats, KNN neighbour distances) are built once before timing, as the app
does on first use; their one-time cost is printed separately.

Re-inference = running the model over the same scored samples (ID test + OOD sets): measured for the demo model; for
the synthetic cache, a CIFAR ResNet-18 forward is timed on 512 images and scaled to the scored samples.

Usage: python benchmarks/bench_sliders.py [--repeats 3] [--skip-synthetic]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_core.evaluation import WorkspaceFeatures, workspace_features
from ood_core.pipeline import Workspace, prepare_model

from ood_core.engine.cache import FeatureSet
from ood_core.engine.extract import ExtractionSettings, MemorySink, extract
from ood_core.inputs import catalog
from ood_core.metrics import metrics_table
from ood_core.scores import METHODS
from ood_core.scores.registry import SELECTED_BLOCK


def new_values(method) -> list[dict]:
    """One changed value per numeric parameter (a quarter of the range away from the default)."""
    updates = []
    for p in method.params:
        if p.kind == "block":
            continue
        value = p.default + 0.25 * (p.high - p.low)
        value = value if value <= p.high else p.default - 0.25 * (p.high - p.low)
        updates.append({p.name: int(value) if p.kind == "int" else value})
    return updates


def runnable(features: WorkspaceFeatures) -> list:
    """Methods that score from this cache: not ODIN (re-inference), and NormRatio-block methods only with jigsaw."""
    return [
        m
        for m in METHODS.values()
        if not m.reinference
        and (features.jigsaw is not None or SELECTED_BLOCK not in m.defaults().values())
    ]


def time_updates(features: WorkspaceFeatures, repeats: int) -> dict[str, float]:
    """Median seconds per slider update, per method."""
    per_method = {}
    for method in runnable(features):
        if not new_values(method):
            continue
        times = []
        for _ in range(repeats):
            for params in new_values(method):
                start = time.perf_counter()
                metrics_table({method.label: features.scores(method, params)})
                times.append(time.perf_counter() - start)
        per_method[method.label] = statistics.median(times)
    return per_method


def warm(features: WorkspaceFeatures) -> float:
    start = time.perf_counter()
    for method in runnable(features):
        features.scores(method)
    return time.perf_counter() - start


def report(
    name: str, updates: dict[str, float], inference: float, warm_seconds: float
) -> None:
    worst = max(updates, key=updates.get)
    mean = statistics.mean(updates.values())
    print(f"\n== {name} ==")
    for label, seconds in sorted(updates.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<12} {seconds * 1e3:8.2f} ms per update")
    print(f"  derived statistics, first use (one-time): {warm_seconds:.2f} s")
    print(f"  re-inference over the scored samples: {inference:.2f} s")
    print(
        f"  slowest update {worst} {updates[worst] * 1e3:.1f} ms; mean update {mean * 1e3:.1f} ms"
    )
    print(
        f"RATIO {name}: re-inference / mean slider update = {inference / mean:,.0f}x "
        f"(worst-case method: {inference / updates[worst]:,.0f}x; goal >= 1000x)"
    )


def demo(repeats: int) -> None:
    loaded = prepare_model("demo")
    workspace = Workspace()
    features = workspace_features(workspace)
    warm_seconds = warm(features)
    updates = time_updates(features, repeats)
    sets = [
        (workspace.id_dataset, "test"),
        *[(name, None) for name in workspace.ood_datasets],
    ]
    start = time.perf_counter()
    for name, split in sets:
        images = (
            catalog.get_dataset(name).load(split)[0].with_transform(loaded.transform)
        )
        extract(
            loaded.module,
            loaded.probes,
            images,
            MemorySink(),
            ExtractionSettings(device="cpu"),
        )
    report(
        "demo (540 ID test + 2,600 OOD images)",
        updates,
        time.perf_counter() - start,
        warm_seconds,
    )
    print(
        f"  demo: slowest update {max(updates.values()) * 1e3:.1f} ms (goal < 100 ms)"
    )


def synthetic_set(
    rng, n: int, weight: np.ndarray, shift: float, labels: np.ndarray | None
) -> FeatureSet:
    classes, dim = weight.shape
    y = rng.integers(0, classes, n) if labels is None else labels
    centres = rng.normal(0, 1, (classes, dim)).astype(np.float32)
    h = np.maximum(centres[y] + rng.normal(shift, 1, (n, dim)).astype(np.float32), 0)
    arrays = {
        "penultimate": h,
        "logits": h @ weight.T,
        "labels": y,
        "index": np.arange(n),
        "head/weight": weight,
        "head/bias": np.zeros(classes, np.float32),
    }
    for i, channels in enumerate((64, 128, 256, 512), start=1):
        mean = rng.uniform(0.05, 1, (n, channels)).astype(np.float32)
        arrays[f"blocks/layer{i}.1/mean"] = mean
        arrays[f"blocks/layer{i}.1/max"] = mean * rng.uniform(
            1, 6, (n, channels)
        ).astype(np.float32)
    meta = {
        "probes": [f"layer{i}.1" for i in range(1, 5)],
        "rows": n,
        "created": uuid.uuid4().hex,
    }
    return FeatureSet(Path(f"/synthetic/{uuid.uuid4().hex}"), meta, arrays)


def synthetic(repeats: int) -> None:
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.1, (10, 512)).astype(np.float32)
    train = synthetic_set(rng, 50_000, weight, 0.0, None)
    features = WorkspaceFeatures(
        synthetic_set(rng, 10_000, weight, 0.0, None),
        train,
        {"synthetic-ood": synthetic_set(rng, 10_000, weight, -0.5, None)},
    )
    warm_seconds = warm(features)
    updates = time_updates(features, repeats)
    skipped = sorted(
        {m.label for m in METHODS.values()} - {m.label for m in runnable(features)}
    )
    print(
        f"  (synthetic cache has no jigsaw set and no model: skipped {', '.join(skipped)})"
    )
    import torchvision

    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
    model.eval()
    x = torch.randn(128, 3, 32, 32)
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(4):
            model(x)
    per_image = (time.perf_counter() - start) / 512
    report(
        "synthetic CIFAR-scale cache (50k train + 10k ID + 10k OOD, D=512, K=10, 4 blocks)",
        updates,
        per_image * 20_000,
        warm_seconds,
    )
    print(
        f"  (ResNet-18 CIFAR forward measured at {1 / per_image:.0f} img/s on this CPU, scaled to 20,000 images)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    print(
        f"torch threads {torch.get_num_threads()}; medians of {args.repeats} repeats per parameter"
    )
    demo(args.repeats)
    if not args.skip_synthetic:
        synthetic(args.repeats)


if __name__ == "__main__":
    main()
