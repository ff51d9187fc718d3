"""Scale-out with torchrun on CPU (gloo): two ranks give the arrays of one process, a dead rank leaves no entry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ood_core.engine.cache import FeatureCache
from ood_core.engine.distributed import shard_rows
from ood_core.engine.features import feature_set

REPO = Path(__file__).resolve().parent.parent
EXTRACT = [
    "extract",
    "--model",
    "demo",
    "--id",
    "digits",
    "--ood",
    "noise",
    "--batch-size",
    "64",
]


@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("total", [0, 1, 63, 64, 65, 1000, 1797])
def test_shards_are_contiguous_batch_aligned_and_cover_every_row_once(total, world):
    shards = [shard_rows(total, 64, r, world) for r in range(world)]
    assert [row for shard in shards for row in shard] == list(range(total))
    assert all(s.start % 64 == 0 for s in shards if len(s))
    sizes = [-(-len(s) // 64) for s in shards]  # batches per rank differ by at most one
    assert max(sizes) - min(sizes) <= 1


def _run(args: list[str], cache: Path, torchrun: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "OOD_LAB_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    prefix = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",  # a local rendezvous on a free port
            "--nproc_per_node=2",
        ]
        if torchrun
        else [sys.executable]
    )
    return subprocess.run(
        [*prefix, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_two_ranks_write_the_arrays_of_one_process(tmp_path, demo_model):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    one = _run(["-m", "ood_core", *EXTRACT], single, torchrun=False)
    assert one.returncode == 0, one.stderr
    two = _run(["-m", "ood_core", *EXTRACT], sharded, torchrun=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert (
        two.stdout.count("rows") == one.stdout.count("rows") == 4
    )  # only rank 0 reports
    for dataset, split in (
        ("digits", "test"),
        ("digits", "train"),
        ("digits@jigsaw3", "train"),
        ("noise", None),
    ):
        a = feature_set("demo", dataset, split, cache=FeatureCache(single))
        b = feature_set("demo", dataset, split, cache=FeatureCache(sharded))
        assert a.root.name == b.root.name  # the same key
        assert sorted(a.names) == sorted(b.names)
        for name in a.names:
            assert np.array_equal(a[name], b[name]), (dataset, split, name)
        assert b.meta["device"] == "2 ranks (torchrun)"
    assert not list(sharded.rglob(".tmp-shards-*"))  # rank 0 removed the shards


def test_a_rank_that_dies_leaves_no_entry(tmp_path, demo_model):
    cache = tmp_path / "cache"
    run = _run(
        [str(REPO / "tests" / "dist_failing_worker.py"), *EXTRACT], cache, torchrun=True
    )
    assert run.returncode != 0
    assert FeatureCache(cache).entries() == []


def test_stale_shards_of_a_job_that_died_at_the_merge_are_never_merged(
    tmp_path, demo_model
):
    """A job that died at the merge left rank 1's shard; the next job, with a batch size that gives rank 1 no
    rows, must not merge it (it used to fail with a broadcast error, or worse, add its rows)."""
    from ood_core.engine.features import cache_key, model_named

    cache = tmp_path / "cache"
    key, images = cache_key(model_named("demo"), "noise")
    stale = cache / key.model_dir / f".tmp-shards-{key.entry_dir}" / "rank1"
    stale.mkdir(parents=True)
    for name, shape in (("logits", (7, 10)), ("labels", (7,)), ("index", (7,))):
        np.save(stale / f"{name}.npy", np.zeros(shape, np.float32))
    (stale / "report.json").write_text('{"rows": 7, "skipped": []}')
    batch = str(2 * len(images))  # one batch: rank 0 extracts every row, rank 1 none
    args = ["-m", "ood_core", "extract", "--model", "demo", "--id", "digits"]
    run = _run([*args, "--ood", "noise", "--batch-size", batch], cache, torchrun=True)
    assert run.returncode == 0, run.stderr[-3000:]
    single = _run([*args, "--ood", "noise"], tmp_path / "single", torchrun=False)
    assert single.returncode == 0, single.stderr
    a = feature_set("demo", "noise", cache=FeatureCache(cache))
    b = feature_set("demo", "noise", cache=FeatureCache(tmp_path / "single"))
    assert len(a) == len(b) == len(images)
    for name in b.names:
        assert np.array_equal(a[name], b[name]), name
