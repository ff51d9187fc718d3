"""What honest tuning costs and gains: per method, test AUROC at the defaults, tuned on validation data, and the
test-oracle best; the regret; the validation↔test rank correlation; the search time.

- ``--size demo``: the embedded demo (ID digits, test OOD letters/textures/photos/faces/noise), once per validation
  protocol: each pseudo-OOD variant of ID training images alone, then all six together. Validation ID = 20% of the
  ID test split (seed 0); the test metrics use the other 80%.
- ``--size cifar10``: the synthetic CIFAR-10-size workspace (``python -m ood_core synth``, generated when missing;
  it has no images, so its first OOD set is the validation set and the other five are the test sets).

Usage: python benchmarks/bench_tuning.py [--size demo|cifar10] [--methods energy react ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_core import tuning
from ood_core.inputs.synthetic import SIZES, register, registered
from ood_core.inputs.variants import PSEUDO_OOD
from ood_core.scores import METHODS
from ood_core.workspace import DEMO_OOD, Workspace, load_workspace

COLUMNS = [
    "method",
    "AUROC default",
    "AUROC tuned",
    "AUROC test-best",
    "regret",
    "rank corr",
    "seconds",
    "tuned",
]


def run(features, protocol: tuning.Protocol, methods: list) -> pd.DataFrame:
    start = time.perf_counter()
    found = tuning.split(features, protocol)
    prepared = time.perf_counter() - start
    results = [tuning.search(found.validation, m) for m in methods]
    table = tuning.regret_table(found, results)
    print(f"\n## {protocol.describe()}  (validation data ready in {prepared:.1f} s)")
    print(table[COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(
        f"mean regret {table['regret'].mean():.2f} AUROC points; median rank corr {table['rank corr'].median():.2f}; "
        f"slowest search {table['seconds'].max():.1f} s ({table.loc[table['seconds'].idxmax(), 'method']})"
    )
    return table.assign(protocol=protocol.describe().split(";")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["demo", "cifar10"], default="demo")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=[n for n, m in METHODS.items() if tuning.tunable(m)],
    )
    args = parser.parse_args()
    methods = [METHODS[name] for name in args.methods]
    if args.size == "demo":
        features = load_workspace(Workspace("demo", "digits", DEMO_OOD))
        protocols = [tuning.Protocol(pseudo=(variant,)) for variant in PSEUDO_OOD]
        protocols.append(tuning.Protocol(pseudo=PSEUDO_OOD))
    else:
        size = SIZES[args.size]
        if args.size not in registered():
            register(args.size)
        features = load_workspace(
            Workspace(size.model, size.model, tuple(size.ood_names[1:]))
        )
        protocols = [tuning.Protocol(pseudo=(), sets=(size.ood_names[0],))]
    methods = [m for m in methods if not features.unavailable(m)]
    tables = [run(features, protocol, methods) for protocol in protocols]
    if len(tables) > 1:
        summary = (
            pd.concat(tables)
            .groupby("protocol", sort=False)[["regret", "rank corr", "seconds"]]
            .agg({"regret": "mean", "rank corr": "median", "seconds": "max"})
        )
        print(
            "\n## per protocol: mean regret (AUROC points), median rank corr, slowest search (s)"
        )
        print(summary.to_string(float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
