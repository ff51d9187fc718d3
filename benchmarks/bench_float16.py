"""What storing the block statistics as float16 costs: every method's metrics with float16-rounded statistics
against the float32 originals, on the demo (and a synthetic CIFAR-size workspace with --size cifar10).

Prints per method the largest absolute change over the OOD sets of AUROC, FPR95 (both conventions) and AUPR-In/Out
(percentage points), and the cache bytes saved. `extract --float16-stats` stores exactly these rounded values
(statistics are computed in float32 and rounded when written; the penultimate features and logits stay float32).

Usage: python benchmarks/bench_float16.py [--size demo|cifar10]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_core.engine.cache import FeatureCache, FeatureSet
from ood_core.inputs.synthetic import SIZES, register
from ood_core.metrics import ALL_METRICS, IDReference
from ood_core.scores import METHODS
from ood_core.workspace import LoadedWorkspace, Workspace, load_workspace


def rounded(features: FeatureSet | None) -> FeatureSet | None:
    """An in-memory copy whose ``blocks/*`` statistics went through float16."""
    if features is None:
        return None
    arrays = {
        name: (
            np.asarray(features[name], np.float16).astype(np.float32)
            if name.startswith("blocks/")
            else np.asarray(features[name])
        )
        for name in features.names
    }
    meta = {k: v for k, v in features.meta.items() if k != "files"}
    return FeatureSet(None, {**meta, "created": uuid.uuid4().hex}, arrays)


def metrics(features: LoadedWorkspace, method) -> pd.DataFrame:
    id_scores, per_set = features.scores(method)
    reference = IDReference(id_scores)
    return pd.DataFrame({name: reference.metrics(s) for name, s in per_set.items()}).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["demo", "cifar10"], default="demo")
    args = parser.parse_args()
    if args.size == "demo":
        workspace = Workspace()
    else:
        register("cifar10")
        size = SIZES["cifar10"]
        workspace = Workspace(size.model, size.model, tuple(size.ood_names))
    original = load_workspace(workspace, FeatureCache())
    half = LoadedWorkspace(
        rounded(original.id_test),
        rounded(original.id_train),
        {name: rounded(f) for name, f in original.ood.items()},
        rounded(original.jigsaw),
        None,
        original.benchmark,
        original.model,
        original.id_dataset,
    )
    rows = []
    for method in METHODS.values():
        if method.cost != "cache" or original.unavailable(method):
            continue
        reads_blocks = any(need.startswith("blocks/") for need in method.needs)
        delta = (metrics(half, method) - metrics(original, method)).abs().max()
        rows.append(
            {
                "method": method.label,
                "reads block statistics": reads_blocks,
                **delta.to_dict(),
            }
        )
    table = pd.DataFrame(rows)
    print(
        f"== {args.size}: max |Δ| over OOD sets, float16 block statistics vs float32 (percentage points)"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    worst = table[list(ALL_METRICS)].max()
    print("worst per metric: " + ", ".join(f"{k} {v:.4f}" for k, v in worst.items()))
    stats = sum(
        np.asarray(original.id_test[n]).nbytes
        for n in original.id_test.names
        if n.startswith("blocks/")
    )
    total = sum(np.asarray(original.id_test[n]).nbytes for n in original.id_test.names)
    print(
        f"ID test entry: {total / 1e6:.1f} MB in float32, {(total - stats / 2) / 1e6:.1f} MB with float16 statistics"
    )


if __name__ == "__main__":
    main()
