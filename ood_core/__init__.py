"""OOD Lab core: extraction engine, feature cache, scores and metrics for activation-based OOD detection."""

import os

# After each parallel region torch's OpenMP threads spin (libgomp's default: 300,000 spins) and take the CPU from the
# numba kernel that runs next: on 2 cores KNN's screen right after its product took 31 ms per chunk instead of 23 ms.
# 10,000 spins remove that; a ResNet-18 forward stays within noise (benchmarks/bench_threads.py). libgomp reads the
# variable when it loads, so this applies when ood_core is imported before torch; a value the user set wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

__version__ = "0.1.0"
