"""Benchmarks as data and reports: a shipped OpenOOD definition runs end to end on a fixture data root (image lists
with integer and dict-literal labels), missing files are named at once, near/far means are unweighted set means,
and both FPR95 conventions are labelled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.metrics import roc_auc_score

from ood_core import cli, reports
from ood_core.errors import OODLabError
from ood_core.inputs import benchmarks
from ood_core.metrics import IDReference
from ood_core.scores import get_method
from ood_core.workspace import Workspace, load_workspace

C10 = benchmarks.get("openood-cifar10")
MODEL = """
[models.c10net]
arch = "resnet18"
weights = "weights/c10net.pt"
num_classes = 10
input_size = 32
cifar_stem = true
id_dataset = "c10-cifar10"
benchmark = "cifar10"
"""


def _fixture_root(root, rng, per_list: int = 12) -> None:
    """OpenOOD's layout with a few random 32×32 images per list; ID lists alternate integer and dict labels."""
    for split, path in C10.id_lists.items():
        lines = []
        for i in range(per_list):
            name = f"cifar10/{split}/{i}.png"
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                _file(root / C10.images / name)
            )
            label = i % 10
            lines.append(
                f"{name} {label}" if i % 2 else f'{name} {{"class_label": {label}}}'
            )
        _file(root / path).write_text("\n".join(lines) + "\n")
    for ood in (*C10.near, *C10.far, *C10.validation):
        names = [f"{ood.name}/{i}.png" for i in range(per_list)]
        for name in names:
            shade = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) // 2
            Image.fromarray(shade).save(_file(root / ood.images / name))
        _file(root / ood.imglist).write_text("".join(f"{n} -1\n" for n in names))


def _file(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def openood_root(tmp_path, monkeypatch):
    monkeypatch.setenv("OOD_LAB_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("OOD_LAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_missing_files_are_named_in_one_message(openood_root):
    with pytest.raises(OODLabError) as error:
        benchmarks.require(C10)
    message = str(error.value)
    for path in C10.files():
        assert path in message
    assert cli.main(["report", "--benchmark", "openood-cifar10"]) == 2


def _register_model(root) -> None:
    (root / "weights").mkdir()
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    torch.save(net.state_dict(), root / "weights" / "c10net.pt")
    (root / "ood_lab.toml").write_text(MODEL)


def test_the_id_train_split_is_a_seeded_stratified_share(openood_root, monkeypatch):
    from ood_core.engine.features import feature_set

    _fixture_root(openood_root, np.random.default_rng(1))
    _register_model(openood_root)
    full = feature_set("c10net", C10.id_dataset, "train")
    monkeypatch.setenv("OOD_LAB_TRAIN_SHARE", "0.5")
    half = feature_set("c10net", C10.id_dataset, "train")
    assert (
        len(full) == 12 and len(half) == 10
    )  # classes 0 and 1 keep one of two images, the rest their one
    assert sorted(half.labels.tolist()) == list(range(10))
    assert half.root != full.root and half.meta["dataset"]["train_share"] == 0.5
    again = feature_set("c10net", C10.id_dataset, "train")
    assert np.array_equal(again["index"], half["index"])  # seeded: the same rows
    assert (
        len(feature_set("c10net", C10.id_dataset, "test")) == 12
    )  # only train is subsampled
    monkeypatch.setenv("OOD_LAB_TRAIN_SHARE", "2")
    with pytest.raises(OODLabError, match="OOD_LAB_TRAIN_SHARE"):
        feature_set("c10net", C10.id_dataset, "train")


def test_a_shipped_benchmark_runs_end_to_end_through_report(openood_root, capsys):
    _fixture_root(openood_root, np.random.default_rng(0))
    _register_model(openood_root)
    out = openood_root / "reports"
    args = ["report", "--benchmark", "openood-cifar10", "--model", "c10net"]
    assert (
        cli.main([*args, "--methods", "msp", "energy", "nap", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert (
        "FPR95 (OOD+: ID rejected at 95% OOD caught)" in printed
    )  # OpenOOD's convention by default
    table = pd.read_csv(next(out.glob("*.csv")))
    assert table["ood_set"].tolist()[:3] == ["c10-cifar100", "c10-tin", "near mean"]
    assert set(table["group"]) == {"near", "far"}
    assert len(table) == 3 * (2 + 1 + 4 + 1)

    features = load_workspace(Workspace("c10net", C10.id_dataset, C10.ood_datasets))
    assert len(features.id_test) == 12 and sorted(set(features.id_test.labels)) == list(
        range(10)
    )
    energy = get_method("energy")
    id_scores, ood = features.scores(energy)
    aurocs = {
        name: 100 * roc_auc_score(np.r_[np.ones(12), np.zeros(12)], np.r_[id_scores, s])
        for name, s in ood.items()
    }
    rows = table[table.method == "Energy"].set_index("ood_set")
    for name, value in aurocs.items():
        assert rows.loc[name, "AUROC"] == pytest.approx(value)
    assert rows.loc["far mean", "AUROC"] == pytest.approx(
        np.mean([aurocs[f"c10-{s}"] for s in ("mnist", "svhn", "texture", "places365")])
    )
    ood_fpr = IDReference(id_scores).metrics(ood["c10-tin"])["FPR95 (OOD+)"]
    assert rows.loc["c10-tin", "FPR95"] == pytest.approx(ood_fpr)
    assert {p.suffix for p in out.iterdir()} == {".md", ".csv", ".tex", ".json"}
    tex = next(out.glob("*.tex")).read_text()
    assert r"\toprule" in tex and r"c10-cifar100 FPR95" in tex and "OOD+" in tex
    assert [r.model for r in reports.saved(out)[0]] == ["c10net"]


def test_the_id_convention_report_of_the_demo(tmp_path, demo_model, capsys):
    out = tmp_path / "reports"
    assert (
        cli.main(["report", "--methods", "energy", "--fpr", "id", "--out", str(out)])
        == 0
    )
    report = reports.saved(out)[0][0]
    assert report.convention == "id" and report.benchmark == "demo"
    features = load_workspace(Workspace())
    id_scores, ood = features.scores(get_method("energy"))
    rows = report.table.set_index("ood_set")
    expected = IDReference(id_scores).metrics(ood["letters"])["FPR95"]
    assert rows.loc["letters", "FPR95"] == pytest.approx(expected)
    markdown = next(out.glob("*.md")).read_text()
    assert "FPR95 (ID+: OOD accepted at 95% ID kept)" in markdown
    assert markdown.count("\n| Energy |") == 1


def test_the_reports_page_shows_saved_reports_side_by_side(
    demo_model, tmp_path, monkeypatch
):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("OOD_LAB_CACHE_DIR", str(tmp_path / "cache"))
    for convention in ("id", "ood"):
        assert (
            cli.main(["report", "--methods", "energy", "nap", "--fpr", convention]) == 0
        )
    at = AppTest.from_file(
        str(reports.Path(cli.__file__).parents[1] / "app.py"), default_timeout=120
    ).run()
    at.switch_page("pages/reports.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.multiselect(key="reports_chosen").value) == 2
    summary = at.dataframe[0].value
    assert list(summary.index) == ["Energy", "NAP"]
    assert summary.shape[1] == 4  # 2 reports × (near, far)


def test_the_sidebar_benchmark_sets_the_id_and_ood_sets(demo_model):
    from streamlit.testing.v1 import AppTest

    from ood_core.workspace import Workspace as W

    at = AppTest.from_file(
        str(reports.Path(cli.__file__).parents[1] / "app.py"), default_timeout=120
    )
    at.session_state["workspace"] = W("demo", "digits", ("noise",))
    at.run()
    assert at.multiselect(key="ood_sets").value == ["noise"]
    assert at.selectbox(key="ws_benchmark").options == [
        "—",
        "demo",
    ]  # no OpenOOD files here
    at.selectbox(key="ws_benchmark").set_value("demo").run()
    assert at.multiselect(key="ood_sets").value == [
        "letters",
        "textures",
        "photos",
        "faces",
        "noise",
    ]
    # which benchmarks lack their files is said once, on Setup (the app's first page), not in every sidebar
    assert "openood-cifar10" in " ".join(c.value for c in at.main.caption)
    assert "openood-cifar10" not in " ".join(c.value for c in at.sidebar.caption)


def test_a_shipped_benchmark_tunes_on_its_validation_set_by_default(
    openood_root, capsys
):
    """OpenOOD v1.5's protocol: `tune --benchmark openood-cifar10` holds validation ID out of the test split and
    takes val_tin, never a test set, as validation OOD (no pseudo-OOD)."""
    import json

    from ood_core import tuning

    _fixture_root(openood_root, np.random.default_rng(2))
    _register_model(openood_root)
    out = openood_root / "tuned.json"
    args = ["tune", "--benchmark", "openood-cifar10", "--model", "c10net"]
    assert cli.main([*args, "--methods", "energy", "--out", str(out)]) == 0
    assert "validation: 10 ID images, c10-val-tin (12)" in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["protocol"]["sets"] == ["c10-val-tin"]
    assert document["protocol"]["pseudo"] == []
    features = load_workspace(Workspace("c10net", C10.id_dataset, C10.ood_datasets))
    assert tuning.default_protocol(features).sets == ("c10-val-tin",)
