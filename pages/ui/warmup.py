"""Numba's warm-up (``python -m ood_core warm``), started once per server process in the background.

The first table a user opens otherwise waits for numba to compile its kernels (~15 s of the first CIFAR-size
Compare table on 2 cores after a fresh install; ``benchmarks/bench_cold_start.py``). The warm-up runs at low priority (``nice`` 10), so students' reruns
come first, and only loads the kernels once numba's cache holds them. ``OOD_LAB_WARM=0`` turns it off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import streamlit as st

REPO = Path(__file__).resolve().parents[2]
COMMAND = (sys.executable, "-m", "ood_core", "warm", "--nice", "10")


@st.cache_resource(show_spinner=False)
def start_warmup() -> subprocess.Popen | None:
    """The background warm-up process of this server (``None`` when turned off); started on the first call."""
    if os.environ.get("OOD_LAB_WARM", "1") == "0":
        return None
    path = os.environ.get("PYTHONPATH")
    process = subprocess.Popen(
        COMMAND,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), path))),
        },
        stdin=subprocess.DEVNULL,  # its one line of output and any error go to the server's log
        start_new_session=True,  # a Ctrl-C of the server does not interrupt its compile mid-write
    )
    threading.Thread(target=process.wait, daemon=True).start()  # reaped when done
    return process
