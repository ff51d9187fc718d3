"""This tree against an earlier revision, side by side: the metrics of one method's 6 OOD sets and the paired DeLong
tests of the pages' cards (both methods' sorts and components computed afresh), at CIFAR-10 size, in child processes
that alternate between the two trees (a git worktree of ``--base`` made for the run), medians and ratios.

Usage: python benchmarks/bench_revision.py --base 8887388 [--rounds 3] [--methods energy msp react]
(needs the synthetic CIFAR-10-size workspace: ``python -m ood_core synth --size cifar10``)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time, statistics
sys.path.insert(0, {tree!r})
from ood_core.inputs.synthetic import SIZES
from ood_core.scores import METHODS
from ood_core.workspace import Workspace, load_workspace
from ood_core import metrics
size = SIZES["cifar10"]
features = load_workspace(Workspace(size.model, size.model, tuple(size.ood_names)))
out = {{}}
for name in {methods!r}:
    id_scores, ood = features.scores(METHODS[name])
    for _ in range(5):
        metrics.set_metrics(id_scores, ood)
    plain = []
    for _ in range(60):
        start = time.perf_counter(); metrics.set_metrics(id_scores, ood); plain.append(time.perf_counter() - start)
    paired = []
    for _ in range(30):
        metrics._sorted.clear(); metrics._components.clear()
        a = (id_scores.copy(), {{k: v.copy() for k, v in ood.items()}})
        start = time.perf_counter(); metrics.paired_auroc_per_set(a, (id_scores, ood))
        paired.append(time.perf_counter() - start)
    out[name] = [statistics.median(plain) * 1e3, statistics.median(paired) * 1e3]
print(json.dumps(out))
"""


def measure(tree: Path, methods: list[str]) -> dict[str, list[float]]:
    code = CHILD.format(tree=str(tree), methods=methods)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base", required=True, help="the git revision to compare with"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["energy", "msp", "react"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / "base"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(base), args.base],
            check=True,
        )  # fmt: skip
        try:
            runs = {"base": [], "this tree": []}
            for _ in range(args.rounds):  # alternate: a noisy minute hits both sides
                runs["base"].append(measure(base, args.methods))
                runs["this tree"].append(measure(REPO, args.methods))
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)],
                check=True,
            )
    print(
        f"median ms over {args.rounds} alternating processes per side (base = {args.base}):"
    )
    for name in args.methods:
        cells = []
        for column, label in ((0, "metrics, 6 sets"), (1, "paired tests")):
            old, new = (
                statistics.median(run[name][column] for run in runs[side])
                for side in ("base", "this tree")
            )
            cells.append(f"{label} {old:.2f} -> {new:.2f} ({old / new:.2f}x)")
        print(f"  {name:<8} " + "   ".join(cells))


if __name__ == "__main__":
    main()
