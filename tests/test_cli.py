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
    *lines, statistics = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "digits:test",
        "digits:train",
        "digits@jigsaw3:train",
        "textures",
        "faces",
    ]
    assert all(Path(line.split()[-1]).is_dir() for line in lines)
    assert statistics.startswith("train statistics of 32 methods stored in ")


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
    assert run("extract", "--ood", "noise", "--no-statistics", env=env).returncode == 0
    listing = run("cache", "list", env=env)
    assert (
        listing.returncode == 0
        and "4 entries" in listing.stdout
        and "noise-test" in listing.stdout
    )
    declined = subprocess.run(
        [sys.executable, "-m", "ood_core", "cache", "clear"],
        cwd=REPO,
        input="n\n",
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )
    assert (
        "will delete" in declined.stdout
        and "noise-test" in declined.stdout
        and "nothing deleted" in declined.stdout
    )
    assert "4 entries" in run("cache", "list", env=env).stdout
    assert "removed 4 entries" in run("cache", "clear", "--yes", env=env).stdout
    assert "0 entries" in run("cache", "list", env=env).stdout


def test_cache_clear_in_a_project_folder_deletes_nothing(tmp_path):
    """`OOD_LAB_CACHE_DIR=.` inside a checkout used to delete ood_core/scores/, tests/e2e/, docs/screenshots/."""
    for folder in ("ood_core/scores", "tests/e2e", "docs/screenshots"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "keep.py").write_text("x = 1")
    result = subprocess.run(
        [sys.executable, "-m", "ood_core", "cache", "clear", "--yes"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OOD_LAB_CACHE_DIR": ".", "PYTHONPATH": str(REPO)},
    )
    assert (
        result.returncode == 2
        and "not an OOD Lab cache" in result.stderr
        and "nothing was deleted" in result.stderr
    )
    assert len(list(tmp_path.rglob("keep.py"))) == 3


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["evaluate", "--ood", "letterz"],
            "error: unknown dataset 'letterz'; choose one of: digits, faces, letters, noise, photos, textures, val-images",
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
        (
            ["evaluate", "--methods", "knn:k=1.7"],
            "error: knn: parameter k must be an integer, got '1.7'",
        ),
        (
            ["evaluate", "--methods", "energy:T=nan"],
            "error: energy: parameter T must be finite, got 'nan'",
        ),
        (
            ["extract", "--batch-size", "0"],
            "error: argument --batch-size: must be at least 1, got 0",
        ),
        (
            ["extract", "--batch-size", "-5"],
            "error: argument --batch-size: must be at least 1, got -5",
        ),
        (
            ["extract", "--workers", "-1"],
            "error: argument --workers: must be 0 or more, got -1",
        ),
        (
            ["extract", "--device", "foo"],
            "error: argument --device: unknown device 'foo' (auto, cpu, cuda, cuda:1 ...)",
        ),
        (
            ["extract", "--device", "cuda"],
            "error: argument --device: --device cuda: this machine has no CUDA GPU (use auto or cpu)",
        ),
        (
            ["evaluate", "--csv", "/no/such/folder/x.csv"],
            "error: argument --csv: /no/such/folder/x.csv: the folder /no/such/folder does not exist",
        ),
        (
            ["evaluate", "--csv", "/tmp"],
            "error: argument --csv: /tmp is a folder; give a file name",
        ),
        (
            ["heatmap", "--epochs", "0"],
            "error: argument --epochs: must be at least 1, got 0",
        ),
        (
            ["evaluate", "--ood", "digits", "noise"],
            "error: 'digits' is the ID dataset; it cannot also be an OOD set",
        ),
        (
            ["evaluate", "--id", "noise", "--ood", "textures"],
            "error: 'noise' has no class labels, so it cannot be the ID set; choose one of: digits",
        ),
        (
            ["fine-tune", "--alpha", "nan"],
            "error: argument --alpha: must be a finite number, got 'nan'",
        ),
        (
            ["fine-tune", "--epochs", "0"],
            "error: argument --epochs: must be at least 1, got 0",
        ),
        (["fine-tune", "--k", "0"], "error: argument --k: must be at least 1, got 0"),
        (
            ["fine-tune", "--k", "65"],
            "error: --k 65 exceeds the 64 positions of the model's last feature map",
        ),
        (
            ["fine-tune", "--methods", "energy", "bogus"],
            "error: unknown method bogus; choose from: msp, maxlogit,",
        ),
    ],
)
def test_bad_input_is_one_actionable_line(demo_model, args, message, capsys):
    """Checked before any work (in-process: the same ``main`` that ``python -m ood_core`` runs)."""
    from ood_core.cli import main

    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's refusals
        code = exit_.code
    stderr = capsys.readouterr().err
    result = subprocess.CompletedProcess(args, code, "", stderr)
    assert result.returncode == 2
    first_line = result.stderr.strip()
    if (
        "choose one of: demo" in message
    ):  # fine-tuned models made by other tests follow demo
        first_line = first_line.split(",")[0]
    if message.endswith(","):  # long lists: the start is enough
        first_line = first_line[: len(message)]
    assert first_line == message and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreadable_and_mismatched_checkpoints_are_one_line(tmp_path):
    import torch

    (tmp_path / "w").mkdir()
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "w" / "bad.pt")
    (tmp_path / "w" / "junk.pt").write_bytes(b"\x00garbage")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "w" / "module.pt")
    for weights, expected in (
        ("w/bad.pt", "does not fit architecture 'resnet18'"),
        ("w/junk.pt", "cannot read checkpoint"),
        (
            "w/module.pt",
            "it pickles torch.nn.modules.linear.Linear, which is not plain tensor data",
        ),
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
            and "weights_only=False" not in result.stderr
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
    assert "fine-tuned model demo-bg-a0.3-k4-e1" in run("cache", "list").stdout


def test_a_non_finite_or_failed_fine_tune_registers_nothing(demo_model, tmp_path):
    from ood_core.errors import OODLabError
    from ood_core.inputs import catalog
    from ood_core.training.background import BackgroundSettings
    from ood_core.training.finetune import background_fine_tune

    before = set(catalog.models())
    for settings in (
        BackgroundSettings(alpha=float("nan")),
        BackgroundSettings(alpha=float("inf")),
        BackgroundSettings(epochs=0),
        BackgroundSettings(k=0),
        BackgroundSettings(k=1000),
        BackgroundSettings(lr=float("nan")),
    ):
        with pytest.raises(OODLabError):
            background_fine_tune("demo", "digits", settings)
    assert set(catalog.models()) == before
    folder = catalog.finetuned_folder()
    assert not folder.exists() or not [
        p for p in folder.iterdir() if "nan" in p.name or "inf" in p.name
    ]


def test_fine_tuned_models_are_listed_and_deleted_like_entries(
    demo_model, tmp_path, capsys
):
    from ood_core.cli import main
    from ood_core.inputs import catalog
    from ood_core.training.background import BackgroundSettings
    from ood_core.training.finetune import background_fine_tune

    name = background_fine_tune(
        "demo", "digits", BackgroundSettings(alpha=0.2, k=4, epochs=1)
    )
    assert (
        main(["cache", "list"]) == 0
        and f"fine-tuned model {name}" in capsys.readouterr().out
    )
    assert (
        main(["cache", "delete", name]) == 0
        and f"deleted fine-tuned model {name}" in capsys.readouterr().out
    )
    assert name not in catalog.models()
    assert main(["cache", "delete", "no-such-entry"]) == 2
    assert "not an entry of the cache" in capsys.readouterr().err
