"""Bad things happening to a real workspace: killed extraction, corrupt entries, unreadable images, an unwritable
cache, entries deleted under a running session. Each case checks what the user sees, not just the library."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from page_text import shown
from PIL import Image
from streamlit.testing.v1 import AppTest

from ood_core.engine.cache import FeatureCache
from ood_core.engine.features import cache_key, feature_set, lookup_feature_set
from ood_core.engine.features import model_named as loaded_model
from ood_core.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
SMALL = Workspace(ood_datasets=("textures", "noise"))

KILLABLE = """
import sys, time
from pathlib import Path
from ood_core.engine.extract import ExtractionSettings
from ood_core.engine.features import feature_set

marker = Path(sys.argv[1])

def progress(done, total):
    if done >= 128:  # two batches written: stop here until killed
        marker.touch()
        time.sleep(120)

feature_set("demo", "textures", settings=ExtractionSettings(batch_size=64), progress=progress)
"""


@pytest.fixture
def own_cache(demo_model, tmp_path, monkeypatch) -> Path:
    """An empty cache used by this test alone (the demo weights ship with the package)."""
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("OOD_LAB_CACHE_DIR", str(root))
    return root


def _no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _prepare(workspace: Workspace) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.session_state["workspace"] = workspace
    at.run()
    at.button(key="prepare").click().run()
    _no_exceptions(at)
    return at


def test_extraction_killed_midway_leaves_no_entry_and_the_next_run_completes(own_cache):
    marker = own_cache.parent / "midway"
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(marker)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    while not marker.exists():
        assert worker.poll() is None, worker.stderr.read().decode()
        assert time.time() < deadline, "the extraction never reached its second batch"
        time.sleep(0.1)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    key, _ = cache_key(loaded_model("demo"), "textures")
    model_dir = own_cache / key.model_dir
    assert list(model_dir.glob(".tmp-*")), (
        "the kill should have hit a build in progress"
    )
    assert lookup_feature_set("demo", "textures") == (None, "missing")
    assert FeatureCache().entries() == []
    features = feature_set("demo", "textures")  # the lock died with the process
    assert len(features) == 600 and not list(model_dir.glob(".tmp-*"))


def test_a_corrupt_entry_shows_as_corrupt_and_is_rebuilt_with_a_warning(own_cache):
    _prepare(SMALL)
    noise = feature_set("demo", "noise")
    logits = noise.root / "logits.npy"
    logits.write_bytes(logits.read_bytes()[:-40])  # truncated
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.session_state["workspace"] = SMALL
    at.run()
    table = at.dataframe[0].value.set_index("dataset")
    assert table.loc["noise", "state"].startswith("corrupt")
    at.button(key="prepare").click().run()
    _no_exceptions(at)
    warnings = [shown(w.value) for w in at.warning]
    assert any("was corrupt" in w and "rebuilt" in w for w in warnings), warnings
    assert at.dataframe[0].value.set_index("dataset").loc["noise", "state"] == "cached"
    assert lookup_feature_set("demo", "noise")[1] == "cached"


def test_unreadable_images_of_a_folder_dataset_are_skipped_and_counted_in_the_ui(
    own_cache, tmp_path, monkeypatch
):
    data = tmp_path / "data"
    folder = data / "mixed"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(
            folder / f"ok{i}.png"
        )
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "empty.jpg").write_bytes(b"")
    (data / "ood_lab.toml").write_text(
        '[datasets.mixed]\nkind = "folder"\nroot = "mixed"\n'
    )
    monkeypatch.setenv("OOD_LAB_DATA_ROOT", str(data))
    monkeypatch.delenv("OOD_LAB_CONFIG", raising=False)
    at = _prepare(Workspace(ood_datasets=("mixed",)))
    warnings = [shown(w.value) for w in at.warning]
    assert any("mixed: 2 unreadable images skipped" in w for w in warnings), warnings
    table = at.dataframe[0].value.set_index("dataset")
    assert table.loc["mixed", "images"] == 6
    assert table.loc["mixed", "unreadable (skipped)"] == 2


def _make_read_only(folder: Path) -> list[list[str]]:
    """Make ``folder`` and its sub-folders unwritable, even for root (chattr +i); return the undo commands."""
    undo = []
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "+i", str(path)], check=True)
            undo.append(["chattr", "-i", str(path)])
        else:
            path.chmod(0o555)
            undo.append(["chmod", "755", str(path)])
    probe = folder / "probe"
    try:
        probe.touch()
    except OSError:
        return undo
    probe.unlink()
    for command in undo:
        subprocess.run(command, check=True)
    pytest.fail(f"could not make {folder} read-only on this machine")


def test_an_unwritable_cache_is_a_clear_error_and_existing_entries_stay_browsable(
    own_cache,
):
    _prepare(SMALL)
    undo = _make_read_only(own_cache)
    try:
        nap = AppTest.from_file(APP, default_timeout=300).run()
        nap.session_state["workspace"] = SMALL
        nap.switch_page("pages/nap.py").run()
        _no_exceptions(nap)
        assert not nap.error and len(nap.metric) == 3  # textures, noise, mean

        at = AppTest.from_file(APP, default_timeout=300).run()
        at.session_state["workspace"] = Workspace(ood_datasets=("textures", "faces"))
        at.run()
        at.button(key="prepare").click().run()
        _no_exceptions(at)
        errors = [e.value for e in at.error]
        assert any(
            "cannot write to the feature cache" in e and "OOD_LAB_CACHE_DIR" in e
            for e in errors
        ), errors
        inventory = at.main.caption[-1].value  # the inventory is still listed
        assert "entries in" in inventory
        assert len(at.dataframe[-1].value) == len(FeatureCache().entries()) > 0
    finally:
        for command in reversed(undo):
            subprocess.run(command, check=True)


def test_a_session_recovers_when_another_session_deletes_its_entry(own_cache):
    _prepare(SMALL)
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.session_state["workspace"] = SMALL
    at.switch_page("pages/compare.py").run()
    _no_exceptions(at)
    assert not at.info
    FeatureCache().delete(feature_set("demo", "textures").root)  # "another session"
    at.run()
    _no_exceptions(at)
    assert any("Prepare them on the Setup page" in i.value for i in at.info)
    at.switch_page("pages/setup.py").run()
    at.button(key="prepare").click().run()
    _no_exceptions(at)
    at.switch_page("pages/compare.py").run()
    _no_exceptions(at)
    assert not at.info and not at.error
