"""What the OpenMP spin that ``import ood_core`` sets (``GOMP_SPINCOUNT=10000``) changes, against libgomp's default.

After each parallel region torch's OpenMP threads keep spinning (libgomp's default: 300,000 spins) and take the
CPU from whatever runs next. This runs, in child processes alternating between the two settings (the variable is
read when libgomp loads, so each setting needs its own process):

- KNN's pattern: one chunk's bfloat16 product (torch) and then the screen over it (a numba kernel), timing the
  screen right after the product and, for reference, after a pause;
- a torchvision ResNet-18 (CIFAR stem, 32 px) forward at batch 16 and 256, in images/s (extraction's work).

Usage: python benchmarks/bench_threads.py [--processes 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SETTINGS = {"libgomp default (300000)": "300000", "ood_core (10000)": "10000"}

CHILD = """
import sys, time, statistics
sys.path.insert(0, {repo!r})
import ood_core  # the variable was set by the parent; ood_core keeps it
import numpy as np, torch, torchvision
from ood_core.scores import neighbours

rng = np.random.default_rng(0)
queries = torch.from_numpy(rng.random((1024, 512), np.float32)).to(torch.bfloat16)
bank = torch.from_numpy(rng.random((50000, 512), np.float32) - 0.5).to(torch.bfloat16)
product = torch.empty((1024, 50000), dtype=torch.bfloat16)
error = np.full(1024, 1e-3)
candidates = np.empty((1024, 8 * 200 + 1024), np.int32)
counts = np.empty(1024, np.int64)

def screen():
    start = time.perf_counter()
    neighbours._screen(product.view(torch.int16).numpy(), 200, error, 2**-8 / (1 - 2**-8), neighbours.KEY_VALUES,
                       candidates, counts)
    return time.perf_counter() - start

torch.matmul(queries, bank.T, out=product); screen()
after_product, after_pause = [], []
for _ in range(8):
    torch.matmul(queries, bank.T, out=product)
    after_product.append(screen())
    time.sleep(0.2)
    after_pause.append(screen())

model = torchvision.models.resnet18(num_classes=10)
model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
model.maxpool = torch.nn.Identity()
model.eval()
rates = []
with torch.inference_mode():
    for batch in (16, 256):
        x = torch.randn(batch, 3, 32, 32)
        model(x)
        times = []
        for _ in range(5):
            start = time.perf_counter(); model(x); times.append(time.perf_counter() - start)
        rates.append(batch / statistics.median(times))
print(statistics.median(after_product) * 1e3, statistics.median(after_pause) * 1e3, *rates)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--processes", type=int, default=3, help="child processes per setting"
    )
    args = parser.parse_args()
    code = CHILD.format(repo=str(REPO))
    results = {label: [] for label in SETTINGS}
    for _ in range(args.processes):
        for label, spins in SETTINGS.items():
            env = {**os.environ, "GOMP_SPINCOUNT": spins}
            out = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            results[label].append([float(x) for x in out])
    print(f"medians over {args.processes} processes per setting, 2 CPU threads each")
    print(
        f"{'setting':28} {'screen after product':>21} {'after a pause':>14} {'ResNet-18 b16':>14} {'b256':>10}"
    )
    medians = {}
    for label, runs in results.items():
        medians[label] = [statistics.median(column) for column in zip(*runs)]
        screen, paused, b16, b256 = medians[label]
        print(
            f"{label:28} {screen:18.1f} ms {paused:11.1f} ms {b16:8.0f} img/s {b256:6.0f} img/s"
        )
    default, ours = medians.values()
    print(
        f"RATIO screen right after the product, default / ood_core = {default[0] / ours[0]:.2f}; "
        f"ResNet-18 images/s, ood_core / default = {ours[2] / default[2]:.2f} (b16), {ours[3] / default[3]:.2f} (b256)"
    )


if __name__ == "__main__":
    main()
