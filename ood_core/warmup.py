"""Compile every numba kernel the app runs before a user waits for one.

numba compiles a kernel at its first call and keeps the machine code in its on-disk cache (``cache=True``), one
entry per argument types. A fresh install has none: with the train statistics stored, the first Compare table at
CIFAR-10 size took 15–16 s with an empty numba cache and ~1 s with a warm one (``benchmarks/bench_cold_start.py``). ``warm`` scores a small synthetic workspace the way the pages
score a real one (cache entries memory-mapped as the app maps them, 26,000 train rows so that KNN takes its screened
search, every default method, DeLong intervals, paired tests, the bootstrap), which compiles every kernel at the
argument types the app calls it with. The app starts ``python -m ood_core warm`` in a background process at low
priority when its server starts (``pages/ui/warmup.py``); with a warm cache it only loads the kernels (seconds).
"""

from __future__ import annotations

from .comparisons import per_set_differences, setting_difference
from .inputs.synthetic import SIZES, register
from .scores import METHODS
from .tables import all_methods_table, default_settings, with_bootstrap
from .workspace import Workspace, load_workspace

WARMUP = SIZES["warmup"]


def warm() -> int:
    """Run every kernel of the tables, intervals and paired tests on the ``warmup`` synthetic workspace of the
    current cache folder (generated there on first use, ~10 MB); the number of methods scored."""
    register(WARMUP.name)
    features = load_workspace(
        Workspace(WARMUP.model, WARMUP.model, tuple(WARMUP.ood_names))
    )
    methods = default_settings(features)
    table = all_methods_table(features, methods)
    with_bootstrap(features, table, methods[:1], resamples=10)
    energy, nap = (METHODS["energy"], {}), (METHODS["nap"], {})
    per_set_differences(features, nap, energy)
    setting_difference(features, nap, energy, "FPR95")
    return len(methods)
