"""What this install runs on: the facts that decide OOD Lab's speed, for ``python -m ood_core doctor`` and Setup."""

from __future__ import annotations

import os
import platform
import sys

import numba
import numpy as np
import threadpoolctl
import torch

from . import jit
from .inputs.config import cache_dir, data_root


def _environment() -> str:
    kind = "venv" if sys.prefix != sys.base_prefix else "system Python"
    return f"{kind} at {sys.prefix}"


def _blas() -> str:
    libraries = [
        f"{info['internal_api']} {info.get('version') or ''} ({info['num_threads']} threads)".replace(
            "  ", " "
        )
        for info in threadpoolctl.threadpool_info()
        if info["user_api"] == "blas"
    ]
    return "; ".join(libraries) or "none found"


def _device() -> str:
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} GPU(s))"
    return "cpu (no CUDA device)"


def _cores() -> int:
    affinity = getattr(
        os, "sched_getaffinity", None
    )  # Linux: the cores this process may run on
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def facts() -> dict[str, str]:
    """Each fact's name and value, in reading order."""
    layer = jit.threading_layer()
    tbb = str(jit.TBB_LIBRARY) if jit.TBB_LIBRARY else "the loader's search path"
    return {
        "python": f"{platform.python_version()} ({_environment()})",
        "numba": f"{numba.__version__}, threading layer {layer}, {numba.get_num_threads()} threads",
        "TBB library": tbb if layer == "tbb" else f"not in use ({tbb})",
        "BLAS": _blas(),
        "torch": f"{torch.__version__}, {torch.get_num_threads()} threads, {torch.get_num_interop_threads()} inter-op",
        "device": _device(),
        "cache": str(cache_dir()),
        "data root": str(data_root()),
        "CPU cores": f"{_cores()} usable",
        "numpy": np.__version__,
    }
