"""What users hand OOD Lab, checked at the edge (issue "no traceback ever reaches a user"): tuned.json, saved
reports, the registry file, OpenOOD image lists, CIFAR batches, output paths, the cache under a running extraction
and float16 statistics. Each bad input is one line (``OODLabError`` / exit code 2) and loses nothing."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from ood_core import cli, reports
from ood_core.engine.cache import FeatureCache
from ood_core.engine.extract import MemorySink, run_batches
from ood_core.errors import DataPathError, OODLabError
from ood_core.inputs import registry_file
from ood_core.inputs.datasets import cifar_image_set, imglist_image_set
from ood_core.inputs.probes import Probes
from ood_core.workspace import Workspace, load_workspace

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("cache_worker.py")


@pytest.fixture(scope="module")
def tuned(demo_model, tmp_path_factory) -> dict:
    """A real tuned.json of the demo (ReAct), as a dict to break field by field."""
    path = tmp_path_factory.mktemp("tuned") / "tuned.json"
    assert cli.main(["tune", "--methods", "react", "--out", str(path)]) == 0
    return json.loads(path.read_text())


def _evaluate_with(document, tmp_path, capsys, text: str | None = None) -> str:
    path = tmp_path / "tuned.json"
    path.write_text(text if text is not None else json.dumps(document))
    code = cli.main(
        ["evaluate", "--ood", "letters", "--methods", "react", "--config", str(path)]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def _broken(document: dict, path: tuple, value) -> dict:
    broken = json.loads(json.dumps(document))
    target = broken
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("protocol", "id_source"), "foo", "protocol.id_source"),
        (("protocol", "id_fraction"), -0.5, "protocol.id_fraction"),
        (("protocol", "id_fraction"), "x", "protocol.id_fraction"),
        (("protocol", "id_fraction"), 1, "protocol.id_fraction"),
        (("protocol", "id_fraction"), 5, "protocol.id_fraction"),
        (("protocol", "seed"), -1, "protocol.seed"),
        (("protocol", "seed"), "abc", "protocol.seed"),
        (("protocol", "extra"), 1, "protocol.extra"),
        (("protocol",), KeyError, "protocol"),
        (("model",), [1], "model"),
        (("methods", "react", "chosen", "p"), 1e308, "methods.react.chosen"),
        (("methods", "react", "chosen", "p"), "abc", "methods.react.chosen"),
    ],
)
def test_a_bad_tuned_json_field_is_one_line_naming_it(
    tuned, tmp_path, capsys, path, value, named
):
    err = _evaluate_with(_broken(tuned, path, value), tmp_path, capsys)
    assert named in err


def test_a_tuned_json_nested_deeply_is_one_line(tuned, tmp_path, capsys):
    err = _evaluate_with(None, tmp_path, capsys, text="[" * 100_000)
    assert "not a valid tuned-values file" in err


def test_the_ids_own_test_set_cannot_be_a_validation_set(demo_model, capsys, tmp_path):
    code = cli.main(["tune", "--val", "set:digits", "--out", str(tmp_path / "t.json")])
    assert code == 2 and "is the ID dataset" in capsys.readouterr().err


def test_a_validation_share_that_leaves_no_test_rows_is_refused(
    demo_model, capsys, tmp_path
):
    code = cli.main(
        ["tune", "--val-fraction", "0.999", "--out", str(tmp_path / "t.json")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "leaves" in err and "for testing" in err


@pytest.mark.parametrize(
    "arguments",
    [
        ["report", "--out", "{file}"],
        ["evaluate", "--csv", "{missing}/x.csv"],
        ["tune", "--out", "{missing}/t.json"],
    ],
)
def test_output_paths_are_checked_before_any_work(
    tmp_path, monkeypatch, capsys, arguments
):
    monkeypatch.setenv("OOD_LAB_CACHE_DIR", str(tmp_path / "empty-cache"))
    (tmp_path / "a-file").write_text("x")
    filled = [
        a.format(file=tmp_path / "a-file", missing=tmp_path / "missing")
        for a in arguments
    ]
    with pytest.raises(SystemExit) as stopped:
        cli.main(filled)
    assert stopped.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "empty-cache").exists()  # nothing was extracted


def test_two_reports_in_the_same_second_keep_both(demo_model, tmp_path):
    features = load_workspace(Workspace())
    from ood_core.inputs.benchmarks import get
    from ood_core.scores import get_method

    report = reports.build(features, get("demo"), [(get_method("energy"), {})], "id")
    first = reports.save(report, tmp_path)
    second = reports.save(report, tmp_path)
    assert len({*first, *second}) == 8
    assert len(reports.saved(tmp_path)[0]) == 2


@pytest.mark.parametrize(
    "content",
    [
        "[1,2]",
        '{"benchmark": "demo", "model": "m", "convention": "xyz", "accuracy": 1}',
        '{"benchmark": "demo"}',
        "{",
        "[" * 50_000,
    ],
)
def test_a_bad_saved_report_is_listed_not_a_crash(tmp_path, monkeypatch, content):
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "bad.json").write_text(content)
    (folder / "bad.csv").write_text("method,group,ood_set,FPR95,AUROC\nx,near,a,1,2\n")
    found, problems = reports.saved(folder)
    assert not found and len(problems) == 1 and problems[0][0] == "bad.json"
    monkeypatch.setenv("OOD_LAB_CACHE_DIR", str(tmp_path))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("pages/reports.py").run()
    assert not at.exception and not at.error
    assert any("not readable reports" in w.value for w in at.warning)


def test_a_registry_file_nested_3000_deep_is_one_problem(data_root, capsys):
    path = data_root / "ood_lab.toml"
    path.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    try:
        problems = registry_file.read().problems
        assert len(problems) == 1 and "nested too deeply" in problems[0].reason
        assert cli.main(["list"]) == 0
        assert "nested too deeply" in capsys.readouterr().out
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
        assert not at.exception
    finally:
        path.unlink()


def _image_list(data_root: Path, lines: list[str]) -> Path:
    folder = data_root / "listed"
    folder.mkdir(exist_ok=True)
    for i in range(2):
        Image.new("L", (8, 8), 40 * i).save(folder / f"{i}.png")
    listing = folder / "list.txt"
    listing.write_text("".join(line + "\n" for line in lines))
    return listing


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("x.png 1.5", "not a whole number"),
        ("x.png 99999999999999999999999", "outside"),
        ("x.png " + "7" * 200_000, "longer than"),
        ("x.png {'label': [1]}", "not a whole number"),
        ("x.png " + "[" * 500, "neither an integer nor a dict literal"),
        ("x.png -2", "outside"),
    ],
)
def test_a_malformed_image_list_line_is_one_line_naming_it(data_root, line, reason):
    listing = _image_list(data_root, ["0.png 1", line])
    with pytest.raises(DataPathError, match=f"line 2: .*{reason}"):
        imglist_image_set(listing.parent, listing)


def test_an_image_list_key_changes_when_an_image_is_replaced(data_root):
    listing = _image_list(data_root, ["0.png 0", "1.png 1"])
    before = imglist_image_set(listing.parent, listing)[1]
    time.sleep(0.01)
    Image.new("L", (9, 9), 200).save(listing.parent / "0.png")
    after = imglist_image_set(listing.parent, listing)[1]
    assert before["files_sha256"] != after["files_sha256"]


def test_an_image_list_costs_bounded_memory_per_line(tmp_path):
    listing = tmp_path / "big.txt"
    count = 100_000
    listing.write_text(
        "".join(
            f"train/n{i % 1000:08d}/img_{i:07d}.JPEG {i % 1000}\n" for i in range(count)
        )
    )
    tracemalloc.start()
    images, _ = imglist_image_set(tmp_path, listing)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(images) == count and images.labels[7] == 7
    assert images.names[123] == "train/n00000123/img_0000123.JPEG"
    assert peak / count < 100, f"{peak / count:.0f} bytes per line"


def test_id_labels_beyond_the_models_classes_are_refused_before_any_fit(
    data_root, demo_model
):
    listing = _image_list(data_root, ["0.png 3", "1.png 12"])
    (data_root / "ood_lab.toml").write_text(
        '[datasets.wide]\nkind = "imglist"\nroot = "listed"\n'
        'train_list = "listed/list.txt"\ntest_list = "listed/list.txt"\n'
    )
    try:
        with pytest.raises(OODLabError, match="labels from 3 to 12.*predicts 10"):
            load_workspace(Workspace("demo", "wide", ("noise",)))
    finally:
        (data_root / "ood_lab.toml").unlink()
        listing.unlink()


def test_cifar_batches_resaved_by_python3_with_str_keys_load(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (4, 3 * 32 * 32), dtype=np.uint8)
    for name, keys in (("bytes", (b"data", b"labels")), ("str", ("data", "labels"))):
        folder = tmp_path / name / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        batch = {keys[0]: data, keys[1]: [1, 2, 3, 4]}
        (folder / "test_batch").write_bytes(pickle.dumps(batch))
    a, _ = cifar_image_set(tmp_path / "bytes", "test", hundred=False)
    b, _ = cifar_image_set(tmp_path / "str", "test", hundred=False)
    assert b.labels.tolist() == [1, 2, 3, 4]
    assert np.array_equal(np.asarray(a.image(2)), np.asarray(b.image(2)))


def test_cache_clear_spares_a_running_extraction(tmp_path):
    root, log, started = tmp_path / "cache", tmp_path / "log", tmp_path / "started"
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), str(root), str(log), str(started), "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert started.exists(), worker.stderr.read() if worker.poll() else "no start"
    cache = FeatureCache(root)
    assert cache.debris()  # the build's temp folder and lock
    cache.clear()
    assert len(cache.debris()) == 2  # both kept: a live process holds the lock
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert len(cache.entries()) == 1
    cache.clear()
    assert not cache.entries() and not cache.debris()


class _Loud(torch.nn.Module):
    """A block whose post-ReLU map reaches 1e5, above float16's range."""

    def __init__(self):
        super().__init__()
        self.block = torch.nn.ReLU()
        self.fc = torch.nn.Linear(2, 3)

    def forward(self, x):
        a = self.block(x * 1e5)
        return self.fc(a.mean((2, 3)))


def test_float16_statistics_that_would_overflow_are_refused_naming_the_block():
    x = torch.ones(4, 2, 3, 3)
    batches = [(x, torch.zeros(4, dtype=torch.int64), torch.arange(4))]
    with pytest.raises(OODLabError, match="block/max reaches 1e\\+05.*float16"):
        run_batches(
            _Loud(),
            Probes(("block",), "fc", "test"),
            batches,
            MemorySink(),
            4,
            torch.device("cpu"),
            float16_stats=True,
        )
    sink = MemorySink()  # float32 statistics are fine
    run_batches(
        _Loud(), Probes(("block",), "fc", "test"), batches, sink, 4, torch.device("cpu")
    )
    assert sink.arrays["blocks/block/max"].max() == pytest.approx(1e5)
