"""Run in subprocesses by test_cache.py: build one cache entry slowly, optionally signalling mid-write."""

import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_core.engine.cache import CacheKey, FeatureCache

KEY = CacheKey.create({"name": "m", "w": 1}, {"dataset": "d", "split": "test"})


def build_slowly(writer, log: Path, started: Path | None, pause: float) -> dict:
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    writer.write("logits", 0, np.arange(12, dtype=np.float32).reshape(3, 4), 3)
    if started:
        started.touch()
    time.sleep(pause)
    writer.write("labels", 0, np.array([0, 1, -1]), 3)
    writer.write("penultimate", 0, np.ones((3, 2), np.float32), 3)
    writer.write("index", 0, np.arange(3), 3)
    return {"probes": []}


if __name__ == "__main__":
    root, log, started, pause = (
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        sys.argv[3],
        float(sys.argv[4]),
    )
    features = FeatureCache(root).get_or_create(
        KEY,
        lambda w: build_slowly(
            w, log, Path(started) if started != "-" else None, pause
        ),
    )
    print(
        hashlib.sha256(
            np.ascontiguousarray(features.logits).tobytes()
            + np.ascontiguousarray(features.labels).tobytes()
        ).hexdigest()
    )
