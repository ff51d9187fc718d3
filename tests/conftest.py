"""Every test session gets its own cache and data root, so tests never touch ./cached_features or ./data."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="ood-lab-tests-"))
atexit.register(
    shutil.rmtree, _SESSION_DIR, ignore_errors=True
)  # ~1.5 GB of caches per run
os.environ["OOD_LAB_CACHE_DIR"] = str(_SESSION_DIR / "cache")
os.environ["OOD_LAB_DATA_ROOT"] = str(_SESSION_DIR / "data")
os.environ["OOD_LAB_WARM"] = (
    "0"  # no background compile beside timed tests (tests/test_warmup.py starts it)
)
(_SESSION_DIR / "data").mkdir()


@pytest.fixture(scope="session")
def demo_model():
    """The demo model (the weights shipped with the package)."""
    from ood_core.engine.features import model_named

    return model_named("demo")


@pytest.fixture(scope="session")
def data_root() -> Path:
    return Path(os.environ["OOD_LAB_DATA_ROOT"])
