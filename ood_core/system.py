"""Facts about the process and the machine it runs on, and the one knob OOD Lab turns on the allocator."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import time


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def trim_memory() -> bool:
    """Hand freed heap memory back to the operating system (glibc's ``malloc_trim``); ``False`` where the C
    library has no such call. Large temporary buffers (uploads) are freed into the allocator's arenas, which glibc
    keeps by default: without this a server's resident memory stays at its peak."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    trim(0)
    return True


_trimmer: threading.Thread | None = None


def keep_trimming(every_s: float = 10.0) -> None:
    """Trim the heap every ``every_s`` seconds in a daemon thread (started once per process; ~1 ms a trim).

    A long-running app server frees large buffers at moments no page sees: a closed tab's session is dropped some
    time after it disconnects, and with it whatever it held. Without a trim that memory stays resident."""
    global _trimmer
    if _trimmer is not None or _libc() is None:
        return

    def loop() -> None:
        while True:
            time.sleep(every_s)
            trim_memory()

    _trimmer = threading.Thread(target=loop, name="ood-lab-trim", daemon=True)
    _trimmer.start()
