"""The command line, run as a user would: ``python -m ood_core ...`` in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ood_core", *args],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_extract_prints_cache_entries(demo_model):
    result = run("extract", "--ood", "textures", "faces")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "digits:test",
        "digits:train",
        "digits@jigsaw3:train",
        "textures",
        "faces",
    ]
    assert all(Path(line.split()[-1]).is_dir() for line in lines)


def test_evaluate_prints_table_and_writes_csv(demo_model, tmp_path):
    out = tmp_path / "out.csv"
    result = run(
        "evaluate",
        "--ood",
        "textures",
        "noise",
        "--methods",
        "energy",
        "nap:block=layer4.0,eps=1",
        "--csv",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout and "AUROC" in result.stdout
    table = pd.read_csv(out)
    assert table[["method", "ood_set"]].values.tolist() == [
        ["Energy", "textures"],
        ["Energy", "noise"],
        ["Energy", "mean"],
        ["NAP block=layer4.0 eps=1", "textures"],
        ["NAP block=layer4.0 eps=1", "noise"],
        ["NAP block=layer4.0 eps=1", "mean"],
    ]


def test_cache_list_and_clear(demo_model, tmp_path):
    env = {"OOD_LAB_CACHE_DIR": str(tmp_path)}
    (tmp_path / "models").mkdir()
    for name in ("demo_resnet.pt", "demo_resnet.json"):
        (tmp_path / "models" / name).write_bytes(
            (Path(os.environ["OOD_LAB_CACHE_DIR"]) / "models" / name).read_bytes()
        )
    assert run("extract", "--ood", "noise", env=env).returncode == 0
    listing = run("cache", "list", env=env)
    assert (
        listing.returncode == 0
        and "4 entries" in listing.stdout
        and "noise-test" in listing.stdout
    )
    assert "removed 4 entries" in run("cache", "clear", env=env).stdout
    assert "0 entries" in run("cache", "list", env=env).stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["evaluate", "--ood", "letterz"],
            "error: unknown dataset 'letterz'; choose one of: digits, faces, letters, noise, photos, textures",
        ),
        (
            ["evaluate", "--model", "resnet"],
            "error: unknown model 'resnet'; choose one of: demo",
        ),
        (
            ["evaluate", "--methods", "nap:block=layer9"],
            "error: unknown block 'layer9'; choose one of: layer1.0, layer2.0, layer3.0, layer4.0",
        ),
        (
            ["evaluate", "--methods", "energy:T=0"],
            "error: energy: T=0 is outside [0.1, 100]",
        ),
    ],
)
def test_bad_input_is_one_actionable_line(demo_model, args, message):
    result = run(*args)
    assert result.returncode == 2
    first_line = result.stderr.strip()
    if (
        "choose one of: demo" in message
    ):  # fine-tuned models made by other tests follow demo
        first_line = first_line.split(",")[0]
    assert first_line == message and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreadable_and_mismatched_checkpoints_are_one_line(tmp_path):
    import torch

    (tmp_path / "w").mkdir()
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "w" / "bad.pt")
    (tmp_path / "w" / "junk.pt").write_bytes(b"\x00garbage")
    for weights, expected in (
        ("w/bad.pt", "does not fit architecture 'resnet18'"),
        ("w/junk.pt", "cannot read checkpoint"),
        ("../../etc/passwd", "outside the data root"),
    ):
        (tmp_path / "ood_lab.toml").write_text(
            f'[models.mine]\narch = "resnet18"\nweights = "{weights}"\nnum_classes = 10\n'
        )
        result = run(
            "evaluate", "--model", "mine", env={"OOD_LAB_DATA_ROOT": str(tmp_path)}
        )
        assert (
            result.returncode == 2
            and expected in result.stderr
            and len(result.stderr.strip().splitlines()) == 1
        ), result.stderr


def test_unwritable_cache_path_is_one_line(demo_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("extract", "--ood", "noise", env={"OOD_LAB_CACHE_DIR": str(blocker)})
    assert (
        result.returncode == 2
        and result.stderr.startswith("error: cannot")
        and "Traceback" not in result.stderr
    )


def test_heatmap_trains_a_decoder_and_leaves_the_outlier_set_out(demo_model, tmp_path):
    csv = tmp_path / "heatmap.csv"
    result = run(
        "heatmap",
        "--ood",
        "textures",
        "faces",
        "noise",
        "--outliers",
        "noise",
        "--epochs",
        "1",
        "--csv",
        str(csv),
    )
    assert result.returncode == 0, result.stderr
    assert "outlier-exposure images (noise)" in result.stdout
    table = pd.read_csv(csv)
    assert table["ood_set"].tolist() == ["textures", "faces", "mean"]
    assert table["AUROC"].between(0, 100).all()


def test_fine_tune_registers_a_model_and_prints_before_and_after(demo_model, tmp_path):
    csv = tmp_path / "bg.csv"
    args = ["--ood", "textures", "--epochs", "1", "--k", "4", "--alpha", "0.3"]
    result = run("fine-tune", *args, "--methods", "energy", "--csv", str(csv))
    assert result.returncode == 0, result.stderr
    assert "fine-tuned model: demo-bg-a0.3-k4-e1" in result.stdout
    assert pd.read_csv(csv)["method"].unique().tolist() == [
        "Energy · before",
        "Energy · after",
    ]
    assert "demo-bg-a0.3-k4-e1" in run("list").stdout
