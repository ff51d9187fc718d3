"""numba's ``njit`` and ``prange`` for every compiled kernel, with TBB found wherever pip put it.

numba runs parallel kernels on TBB, OpenMP or its own workqueue, chosen at the first parallel launch: TBB when its
``tbbpool`` extension can load ``libtbb.so.12``. pip's ``tbb`` wheel puts that library in ``<prefix>/lib``, which
the loader searches for the system Python but not for a venv or conda environment (``tbbpool`` has no RPATH), so
there numba silently fell back to GNU OpenMP, which is slower on a loaded server (``benchmarks/bench_sliders.py
--load`` times both). Loading the install's own library first, with global symbol scope, lets
the loader match ``tbbpool``'s dependency by its soname. ``NUMBA_THREADING_LAYER`` still overrides the choice.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numba
from numba import njit, prange

__all__ = ["TBB_LIBRARY", "njit", "prange", "threading_layer"]

TBB_SONAME = "libtbb.so.12"


def load_tbb() -> Path | None:
    """Load the active environment's ``libtbb.so.12`` (venv, conda or system prefix) into the process; its path,
    or ``None`` where the environment has none or it does not load (then the loader's own search decides)."""
    for prefix in dict.fromkeys((sys.prefix, sys.exec_prefix)):
        library = Path(prefix) / "lib" / TBB_SONAME
        if library.is_file():
            try:
                ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            return library
    return None


TBB_LIBRARY = load_tbb()  # before any parallel kernel runs


@njit(parallel=True, cache=True)
def _count(n: int) -> int:
    total = 0
    for _ in prange(n):
        total += 1
    return total


def threading_layer() -> str:
    """The layer numba's parallel kernels run on ("tbb", "omp" or "workqueue"), launching a trivial kernel first
    if none has run yet (the layer is chosen at the first launch)."""
    _count(2)
    return numba.threading_layer()
