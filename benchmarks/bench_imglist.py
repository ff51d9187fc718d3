"""Listing an ImageNet-size OpenOOD image list (1,281,167 lines): time and peak memory of OOD Lab's streamed reader
against the whole-file reader it replaced (read, split, parse, one ``Path`` per line), side by side.

Each reader runs in its own process (memory: its peak RSS minus its RSS once its imports are done); the list names files that do not
exist, so the stat per line that OOD Lab's key needs costs one failed lookup here (on real data, one ``stat`` of a
cached inode).

Usage: python benchmarks/bench_imglist.py [--lines 1281167]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READERS = {
    "whole file (before)": """
import ast, hashlib, sys, time
from pathlib import Path
root, listing = Path(sys.argv[1]), Path(sys.argv[2])
base = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
start = time.perf_counter()
def parse(line):
    path, _, field = line.strip().partition(" ")
    if not field.strip():
        return path, -1
    value = ast.literal_eval(field.strip())
    if isinstance(value, dict):
        value = value.get("class_label", value.get("label", -1))
    return path, value
rows = [parse(line) for line in listing.read_text().splitlines() if line.strip()]
files = [root / path for path, _ in rows]
labels = [label for _, label in rows]
names = [path for path, _ in rows]
digest = hashlib.sha256(listing.read_bytes()).hexdigest()
seconds = time.perf_counter() - start
""",
    "streamed (OOD Lab)": """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from ood_core.inputs.datasets import imglist_image_set
root, listing = Path(sys.argv[1]), Path(sys.argv[2])
base = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
start = time.perf_counter()
images, identity = imglist_image_set(root, listing)
seconds = time.perf_counter() - start
""",
}
REPORT = """
import resource
print(f"{seconds:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base:.0f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_281_167)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        listing = root / "train_imagenet.txt"
        with open(listing, "w") as fh:  # streamed: the benchmark itself stays small
            for i in range(args.lines):
                cls = i % 1000
                fh.write(
                    f"imagenet_1k/train/n{cls:08d}/n{cls:08d}_{i:07d}.JPEG {cls}\n"
                )
        results = {}
        for name, code in READERS.items():
            run = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    code + REPORT,
                    str(root),
                    str(listing),
                    str(REPO),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds, peak = run.stdout.split()
            results[name] = (float(seconds), float(peak))
        size = listing.stat().st_size / 1e6
    print(f"{args.lines:,} lines ({size:.0f} MB list)")
    print(f"{'reader':<22} {'seconds':>8} {'peak RSS MB over imports':>26}")
    for name, (seconds, peak) in results.items():
        print(f"{name:<22} {seconds:8.2f} {peak:26.0f}")
    (before_s, before_mb), (after_s, after_mb) = results.values()
    print(
        f"streamed / whole file: time {after_s / before_s:.2f}x, peak memory {after_mb / before_mb:.2f}x"
    )


if __name__ == "__main__":
    main()
