import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cache_worker import KEY

from ood_core.cache import CacheKey, CorruptEntry, FeatureCache
from ood_core.errors import CacheError

WORKER = Path(__file__).with_name("cache_worker.py")


def _worker(root, log, started="-", pause=0.0):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(root), str(log), str(started), str(pause)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _build(writer, rows=3):
    writer.write(
        "logits", 0, np.arange(rows * 4, dtype=np.float32).reshape(rows, 4), rows
    )
    writer.write("labels", 0, np.arange(rows), rows)
    return {"probes": []}


def test_roundtrip_is_memory_mapped_and_listed(tmp_path):
    cache = FeatureCache(tmp_path)
    features = cache.get_or_create(KEY, _build)
    assert isinstance(features.logits, np.memmap) and len(features) == 3
    np.testing.assert_array_equal(features.labels, [0, 1, 2])
    assert [(e.model, e.dataset, e.rows, e.status) for e in cache.entries()] == [
        (KEY.model_dir, KEY.entry_dir, 3, "ok")
    ]
    meta = json.loads((cache.path(KEY) / "meta.json").read_text())
    assert (
        meta["files"]["logits"]["shape"] == [3, 4]
        and len(meta["files"]["logits"]["sha256"]) == 64
    )
    assert meta["model"] == KEY.model and meta["format_version"] == 1


def test_second_call_does_not_rebuild(tmp_path):
    cache, calls = FeatureCache(tmp_path), []
    cache.get_or_create(KEY, lambda w: calls.append(1) or _build(w))
    cache.get_or_create(KEY, lambda w: calls.append(1) or _build(w))
    assert calls == [1]


def test_process_killed_mid_write_leaves_no_visible_entry(tmp_path):
    started = tmp_path / "started"
    proc = _worker(tmp_path / "cache", tmp_path / "log", started, pause=60)
    deadline = time.time() + 60
    while not started.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cache = FeatureCache(tmp_path / "cache")
    assert cache.entries() == [] and cache.load(KEY) is None
    assert list((tmp_path / "cache" / KEY.model_dir).glob(".tmp-*")), (
        "the killed build's temp dir should be hidden, not gone"
    )
    features = cache.get_or_create(
        KEY, _build
    )  # the next run completes and sweeps the stale temp dir
    assert len(features) == 3 and not list(
        (tmp_path / "cache" / KEY.model_dir).glob(".tmp-*")
    )


def test_two_processes_same_key_build_once_and_read_identical_arrays(tmp_path):
    log = tmp_path / "log"
    procs = [_worker(tmp_path / "cache", log, pause=1.0) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert len(log.read_text().split()) == 1, "exactly one process may build"
    assert outputs[0][0] == outputs[1][0] and len(outputs[0][0].strip()) == 64
    assert len(FeatureCache(tmp_path / "cache").entries()) == 1


@pytest.mark.parametrize(
    "damage",
    ["truncate", "flip_byte", "edit_meta_shape", "garbage_meta", "delete_file"],
)
def test_corrupt_entry_is_detected_and_rebuilt(tmp_path, damage):
    cache = FeatureCache(tmp_path)
    cache.get_or_create(KEY, _build)
    folder = cache.path(KEY)
    logits = folder / "logits.npy"
    if damage == "truncate":
        logits.write_bytes(logits.read_bytes()[:-8])
    elif damage == "flip_byte":
        data = bytearray(logits.read_bytes())
        data[-1] ^= 0xFF
        logits.write_bytes(bytes(data))
    elif damage == "edit_meta_shape":
        meta = json.loads((folder / "meta.json").read_text())
        meta["files"]["logits"]["shape"] = [4, 3]
        (folder / "meta.json").write_text(json.dumps(meta))
    elif damage == "garbage_meta":
        (folder / "meta.json").write_text("{not json")
    else:
        (folder / "labels.npy").unlink()
    with pytest.raises(CorruptEntry):
        cache.load(KEY)
    rebuilt = cache.get_or_create(KEY, _build)
    np.testing.assert_array_equal(
        rebuilt.logits, np.arange(12, dtype=np.float32).reshape(3, 4)
    )
    assert rebuilt.notes and "corrupt" in rebuilt.notes[0]
    assert cache.load(KEY) is not None


def test_failed_build_leaves_nothing(tmp_path):
    cache = FeatureCache(tmp_path)

    def explode(writer):
        _build(writer)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.get_or_create(KEY, explode)
    assert cache.entries() == [] and not list((tmp_path / KEY.model_dir).glob(".tmp-*"))


def test_keys_change_with_weights_transform_and_dataset():
    base = CacheKey.create(
        {"name": "m", "weights_sha256": "a", "transform": "T1"},
        {"dataset": "d", "split": "test", "n": 5},
    )
    assert base == CacheKey.create(
        {"name": "m", "weights_sha256": "a", "transform": "T1"},
        {"dataset": "d", "split": "test", "n": 5},
    )
    assert (
        base.model_dir
        != CacheKey.create(
            {"name": "m", "weights_sha256": "b", "transform": "T1"}, base.dataset
        ).model_dir
    )
    assert (
        base.model_dir
        != CacheKey.create(
            {"name": "m", "weights_sha256": "a", "transform": "T2"}, base.dataset
        ).model_dir
    )
    assert (
        base.entry_dir
        != CacheKey.create(
            base.model, {"dataset": "d", "split": "test", "n": 6}
        ).entry_dir
    )
    assert base.entry_dir.startswith("d-test-")


def test_delete_and_clear(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.get_or_create(KEY, _build)
    other = CacheKey.create(KEY.model, {"dataset": "e", "split": "test"})
    cache.get_or_create(other, _build)
    cache.delete(cache.path(KEY))
    assert [e.dataset for e in cache.entries()] == [other.entry_dir]
    with pytest.raises(CacheError):
        cache.delete(tmp_path)
    assert cache.clear() == 1 and cache.entries() == []


def test_cache_root_that_is_a_file_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheError, match="OOD_LAB_CACHE_DIR"):
        FeatureCache(blocker).get_or_create(KEY, _build)
