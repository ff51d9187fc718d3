"""What honest tuning costs and gains: per method, test AUROC at the defaults, tuned on validation data, and the
test-oracle best; the regret (test-best − tuned); whether the default was kept (no significant validation gain);
the proxy agreement (how the validation sets rank the candidates alike: visible without test data) and the true
validation↔test rank correlation it stands for; the search time.

Summary per protocol (objective ``dominant``, significance gate): mean regret tuned and at the defaults, the share
of methods whose tuned test AUROC is ≥ the default's and how many of them still lose > 5 points on one test set
(``worst set Δ``: the test set the tuned values lower most), and the Spearman correlation across methods between
proxy agreement and the true validation↔test rank correlation.

- ``--size demo``: the embedded demo (ID digits, test OOD letters/textures/photos/faces/noise). Validation ID = 20%
  of the ID test split (seed 0); the test metrics use the other 80%. Three protocols: the default (the demo
  benchmark's validation OOD set ``val-images``, as OpenOOD v1.5 tunes on ``val_tin``), that set with every pseudo-OOD
  variant, and every pseudo-OOD variant alone (what a model without a validation OOD set gets). ``--each-variant`` also runs each pseudo-OOD variant alone with
  the plain mean-AUROC objective (the first default: ``jigsaw3`` alone).
- ``--size cifar10``: the synthetic CIFAR-10-size workspace (``python -m ood_core synth``, generated when missing;
  it has no images, so its first two OOD sets are the validation sets and the other four are the test sets).

Usage: python benchmarks/bench_tuning.py [--size demo|cifar10] [--methods energy react ...] [--each-variant]
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
    "worst set Δ",
    "default kept",
    "proxy agreement",
    "rank corr",
    "seconds",
    "tuned",
]


def run(
    features, protocol: tuning.Protocol, methods: list, objective: str
) -> pd.DataFrame:
    start = time.perf_counter()
    found = tuning.split(features, protocol)
    prepared = time.perf_counter() - start
    results = [tuning.search(found.validation, m, objective) for m in methods]
    table = tuning.regret_table(found, results)
    print(
        f"\n## {protocol.describe()}; objective {objective}  (validation data ready in {prepared:.1f} s)"
    )
    print(table[COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    default_regret = (table["AUROC test-best"] - table["AUROC default"]).mean()
    share = (table["AUROC tuned"] >= table["AUROC default"] - 1e-9).mean()
    usable = table[["proxy agreement", "rank corr"]].dropna()
    agreement = (
        usable["proxy agreement"].corr(usable["rank corr"], method="spearman")
        if len(usable) > 2
        else float("nan")
    )
    given_up = int((table["worst set Δ"] < -5).sum())
    print(
        f"mean regret {table['regret'].mean():.2f} AUROC points tuned vs {default_regret:.2f} at the defaults; "
        f"tuned >= default on test for {share:.0%} of {len(table)} methods; {given_up} lose > 5 points on one "
        "test set; default kept for "
        f"{int(table['default kept'].sum())}; median rank corr {table['rank corr'].median():.2f}; "
        f"proxy agreement vs true rank corr, Spearman across methods: {agreement:.2f}; slowest search "
        f"{table['seconds'].max():.1f} s ({table.loc[table['seconds'].idxmax(), 'method']})"
    )
    return table.assign(protocol=protocol.describe().split("; validation ID")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["demo", "cifar10"], default="demo")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=[n for n, m in METHODS.items() if tuning.tunable(m)],
    )
    parser.add_argument("--each-variant", action="store_true")
    args = parser.parse_args()
    methods = [METHODS[name] for name in args.methods]
    if args.size == "demo":
        features = load_workspace(Workspace("demo", "digits", DEMO_OOD))
        default = tuning.default_protocol(features)
        protocols = [
            (default, tuning.DEFAULT_OBJECTIVE),
            (tuning.Protocol(sets=default.sets), tuning.DEFAULT_OBJECTIVE),
            (tuning.Protocol(), tuning.DEFAULT_OBJECTIVE),
        ]
        if args.each_variant:
            protocols += [
                (tuning.Protocol(pseudo=(variant,)), "auroc") for variant in PSEUDO_OOD
            ]
    else:
        size = SIZES[args.size]
        if args.size not in registered():
            register(args.size)
        features = load_workspace(
            Workspace(size.model, size.model, tuple(size.ood_names[2:]))
        )
        protocols = [
            (
                tuning.Protocol(pseudo=(), sets=tuple(size.ood_names[:2])),
                tuning.DEFAULT_OBJECTIVE,
            )
        ]
    methods = [m for m in methods if not features.unavailable(m)]
    tables = [run(features, p, methods, objective) for p, objective in protocols]
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
