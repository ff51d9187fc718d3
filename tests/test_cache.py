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

from ood_core.engine.cache import CacheKey, CorruptEntry, FeatureCache
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
    writer.write("penultimate", 0, np.ones((rows, 2), np.float32), rows)
    writer.write("labels", 0, np.arange(rows), rows)
    writer.write("index", 0, np.arange(rows), rows)
    for stat in ("max", "mean", "l2"):
        writer.write(f"blocks/b1/{stat}", 0, np.ones((rows, 2), np.float32), rows)
    return {"probes": ["b1"]}


def _flip_last_byte(path: Path) -> None:
    """Same size, other content, and a later mtime even on coarse clocks."""
    before = path.stat().st_mtime_ns
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_roundtrip_is_memory_mapped_and_listed(tmp_path):
    cache = FeatureCache(tmp_path)
    features = cache.get_or_create(KEY, _build)
    assert isinstance(features.logits, np.memmap) and len(features) == 3
    np.testing.assert_array_equal(features.labels, [0, 1, 2])
    assert [
        (e.model, e.dataset, e.kind, e.rows, e.status) for e in cache.entries()
    ] == [(KEY.model_dir, KEY.entry_dir, "features", 3, "ok")]
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
    [
        "truncate",
        "flip_byte",
        "edit_meta_shape",
        "garbage_meta",
        "delete_file",
        "no_probes",
        "probe_without_arrays",
    ],
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
    elif damage in ("no_probes", "probe_without_arrays"):
        meta = json.loads((folder / "meta.json").read_text())
        if damage == "no_probes":
            del meta["probes"]
        else:
            meta["probes"].append(
                "b2"
            )  # a block named by meta.json whose arrays do not exist
        (folder / "meta.json").write_text(json.dumps(meta))
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


def test_arrays_written_whole_are_not_read_back_and_still_checked_when_changed(
    tmp_path, monkeypatch
):
    from ood_core.engine import cache as cache_module

    real, hashed = cache_module.file_sha256, []
    monkeypatch.setattr(
        cache_module, "file_sha256", lambda path: hashed.append(path.name) or real(path)
    )

    # as derived entries are written: each array at once, hashed on the way
    def build_whole(writer):
        writer.put("scores", np.arange(5.0))
        writer.put("labels", np.arange(5))
        return {"kind": "derived"}

    cache = FeatureCache(tmp_path)
    cache.get_or_create(KEY, build_whole)
    FeatureCache(tmp_path).load(KEY)
    # neither the load after the build nor a later one reads the files again
    assert hashed == []
    # memory-mapped arrays (extraction) are hashed when written and again by the load after the build
    cache.get_or_create(CacheKey.create({"name": "other"}, {"dataset": "d"}), _build)
    names = ("logits", "penultimate", "labels", "index", "max", "mean", "l2")
    assert sorted(hashed) == sorted(2 * [f"{n}.npy" for n in names])
    scores = cache.path(KEY) / "scores.npy"
    _flip_last_byte(scores)
    with pytest.raises(CorruptEntry, match="checksum"):
        cache.load(KEY)


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


def test_cache_list_verifies_and_shows_a_truncated_entry_as_corrupt(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.get_or_create(KEY, _build)
    logits = cache.path(KEY) / "logits.npy"
    logits.write_bytes(logits.read_bytes()[:-8])
    [entry] = cache.entries()
    assert entry.status.startswith("corrupt") and "bytes" in entry.status


def test_clear_in_a_folder_that_is_not_a_cache_deletes_nothing(tmp_path):
    """OOD_LAB_CACHE_DIR pointing at a project or home folder: nothing there is an entry."""
    project = tmp_path / "project"
    for folder in (
        "ood_core/scores",
        "tests/e2e",
        "docs/screenshots",
        "Documents/thesis",
    ):
        (project / folder).mkdir(parents=True)
        (project / folder / "keep.txt").write_text("precious")
    # even a folder that looks like an entry (key-shaped name, meta.json) is not one without the cache's markers
    fake = project / "demo-0123456789ab" / "digits-test-0123456789ab"
    fake.mkdir(parents=True)
    (fake / "meta.json").write_text(json.dumps({"format_version": 1, "files": {}}))
    cache = FeatureCache(project)
    with pytest.raises(CacheError, match="not an OOD Lab cache"):
        cache.clear()
    with pytest.raises(CacheError, match="not an entry"):
        cache.delete(fake)
    assert cache.entries() == []
    assert len(list(project.rglob("keep.txt"))) == 4 and (fake / "meta.json").exists()


def test_clear_removes_only_entries_of_marked_model_folders_and_their_debris(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.get_or_create(KEY, _build)
    stranger = (
        tmp_path / "my-notes-0123456789ab" / "d-test-0123456789ab"
    )  # no model marker: not ours
    stranger.mkdir(parents=True)
    (stranger / "meta.json").write_text(json.dumps({"format_version": 1, "files": {}}))
    (tmp_path / KEY.model_dir / ".tmp-stale-build").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "demo_resnet.pt").write_bytes(b"weights")
    assert cache.clear() == 1
    assert cache.entries() == [] and cache.debris() == []
    assert stranger.exists() and (tmp_path / "models" / "demo_resnet.pt").exists()
    assert not list((tmp_path / KEY.model_dir).glob("*.lock"))


def test_cache_files_are_readable_by_the_group(tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        cache = FeatureCache(tmp_path)
        cache.get_or_create(KEY, _build)
    finally:
        os.umask(old)
    entry = cache.path(KEY)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755
    assert stat.S_IMODE((entry / "logits.npy").stat().st_mode) == 0o644
    assert stat.S_IMODE((entry / "blocks" / "b1").stat().st_mode) == 0o755


def test_an_unchanged_entry_is_mapped_once_and_any_change_is_verified_again(
    tmp_path, monkeypatch
):
    from ood_core.engine import cache as cache_module

    real, opened = cache_module.np.load, []
    monkeypatch.setattr(
        cache_module.np,
        "load",
        lambda path, **kw: opened.append(Path(path).name) or real(path, **kw),
    )
    cache = FeatureCache(tmp_path)
    cache.get_or_create(KEY, _build)
    first = cache.load(KEY)
    opened.clear()
    again = FeatureCache(tmp_path).load(KEY)  # every page open of every session
    assert opened == [] and again.logits is first.logits
    logits = cache.path(KEY) / "logits.npy"
    _flip_last_byte(logits)
    with pytest.raises(CorruptEntry, match="checksum"):
        cache.load(KEY)
