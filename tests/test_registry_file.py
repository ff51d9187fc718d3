"""The registry file: entries checked one by one, writes locked and atomic, odd paths refused cleanly."""

from __future__ import annotations

import multiprocessing
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ood_core.errors import OODLabError
from ood_core.inputs import catalog, config, registry_file

GOOD = """
[models.good]
arch = "resnet18"
weights = "w.pt"
num_classes = 10

[datasets.blobs]
kind = "folder"
root = "blobs"
"""


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "data"
    (root / "blobs").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "blobs" / "a.png")
    monkeypatch.setenv("OOD_LAB_DATA_ROOT", str(root))
    monkeypatch.delenv("OOD_LAB_CONFIG", raising=False)
    return root


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (
            '[models.bad]\narch = "resnet18"\nweights = "w.pt"\nnum_classes = "ten"',
            "'num_classes' must be an integer",
        ),
        (
            '[models.bad]\narch = "resnet18"\nweights = "w.pt"\nfoo = 5',
            "unknown key foo",
        ),
        ('[models.bad]\narch = "resnet18"', "'weights' is missing"),
        (
            '[models.bad]\narch = "resnet999"\nweights = "w.pt"',
            "not a torchvision classification architecture",
        ),
        (
            '[models.bad]\narch = "resnet18"\nweights = "w.pt"\nmean = "abc"',
            "'mean' must be a list of numbers",
        ),
        (
            '[models.bad]\narch = "resnet18"\nweights = "w.pt"\nstd = [0.2, 0.0, 0.2]',
            "std > 0",
        ),
        ('[datasets.bad]\nkind = "folder"\nroot = "."', "names the whole data root"),
        (
            '[datasets.bad]\nkind = "folder"\nroot = ""',
            "'root' must be a non-empty string",
        ),
        ('[datasets.bad]\nkind = "zipfile"\nroot = "x"', "unknown kind 'zipfile'"),
        (
            '[datasets.bad]\nkind = "imglist"\nroot = "x"',
            "needs 'root' and at least one of",
        ),
        ('[datasets.bad]\nkind = "cifar10"', "a cifar10 dataset needs 'root'"),
        (
            '[datasets.bad]\nkind = "folder"\nroot = "x"\nsplits = ["dev"]',
            "'splits' must be a list",
        ),
    ],
)
def test_one_broken_entry_is_reported_and_the_rest_still_work(data_root, entry, reason):
    config.config_file().write_text(GOOD + "\n" + entry + "\n")
    models, datasets = catalog.models(), catalog.datasets()
    assert {"demo", "good"} <= set(models) and {"digits", "blobs"} <= set(datasets)
    assert "bad" not in models and "bad" not in datasets
    [problem] = catalog.problems()
    assert problem.name == "bad" and reason in problem.reason, problem.reason
    with pytest.raises(OODLabError, match="registered but broken"):
        catalog.get_dataset("bad") if "[datasets" in entry else catalog.get_model("bad")


def test_a_file_that_does_not_parse_is_one_problem_and_the_demo_works(data_root):
    config.config_file().write_text("[models.x\narch = ")
    assert "demo" in catalog.models() and "digits" in catalog.datasets()
    [problem] = catalog.problems()
    assert problem.section == "file" and "cannot be read" in problem.reason


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("photos \U0001f4f7", None),  # non-BMP characters are written as valid TOML
        ("a\x00b", "NUL byte"),
        ("x" * 6000, "6,000 characters is too long"),
        ("", "not the data root itself"),
        (".", "not the data root itself"),
        ("./", "not the data root itself"),
        ("empty", "holds no images"),
    ],
    ids=["non-BMP", "NUL", "6000-chars", "empty", "dot", "dot-slash", "empty-folder"],
)
def test_odd_folder_paths_are_written_validly_or_refused_in_one_line(
    data_root, folder, message
):
    (data_root / "empty").mkdir()
    if message is None:
        (data_root / folder).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(data_root / folder / "b.png")
        spec = catalog.add_folder_dataset("camera", folder)
        assert spec.name == "camera"
        assert (
            tomllib.loads(config.config_file().read_text())["datasets"]["camera"][
                "root"
            ]
            == folder
        )
        assert catalog.problems() == []
    else:
        with pytest.raises(OODLabError, match=message):
            catalog.add_folder_dataset("odd", folder)
        assert not config.config_file().exists()


def test_empty_names_are_refused(data_root):
    for name in ("", "   "):
        with pytest.raises(OODLabError, match="dataset name"):
            catalog.add_folder_dataset(name, "blobs")


def _add(args: tuple[str, str, str]) -> str:
    root, config_path, name = args
    import os

    os.environ["OOD_LAB_DATA_ROOT"] = root
    os.environ["OOD_LAB_CONFIG"] = config_path
    from ood_core.inputs import catalog as fresh

    fresh.add_folder_dataset(name, "blobs")
    return name


def test_sixty_concurrent_additions_from_several_processes_all_land(data_root):
    """Two processes adding at once used to lose 32 of 60 entries (read-modify-write without a lock)."""
    path = str(config.config_file())
    names = [f"set{i:02d}" for i in range(60)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        added = pool.map(_add, [(str(data_root), path, name) for name in names])
    assert sorted(added) == names
    written = tomllib.loads(Path(path).read_text())["datasets"]
    assert sorted(written) == names
    assert not list(Path(path).parent.glob(".tmp-registry-*"))


def test_a_registry_file_that_does_not_parse_is_never_overwritten(data_root):
    config.config_file().write_text("[datasets.x\nroot = ")
    with pytest.raises(OODLabError, match="does not parse"):
        catalog.add_folder_dataset("blobs2", "blobs")
    assert config.config_file().read_text() == "[datasets.x\nroot = "


def test_entries_written_by_add_dataset_pass_the_schema(data_root):
    registry_file.add_dataset("one", {"kind": "folder", "root": "blobs"})
    with pytest.raises(OODLabError, match="exists already"):
        registry_file.add_dataset("one", {"kind": "folder", "root": "blobs"})
    with pytest.raises(OODLabError, match="unknown kind"):
        registry_file.add_dataset("two", {"kind": "nope", "root": "blobs"})
    assert list(registry_file.read().datasets) == ["one"]
