"""Every on-disk dataset format from tiny generated fixtures (CIFAR-10/100 python batches, SVHN .mat, ImageFolder, a
plain folder), read with the right images and labels and run end to end through `evaluate` with a registered
torchvision model (OpenOOD image lists: tests/test_reports.py)."""

from __future__ import annotations

import pickle

import numpy as np
import torch
import torchvision
from PIL import Image
from scipy.io import savemat

from ood_core import cli
from ood_core.inputs import catalog

REGISTRY = """
[models.net]
arch = "resnet18"
weights = "net.pt"
num_classes = 10
input_size = 32
cifar_stem = true
id_dataset = "c10"

[datasets.c10]
kind = "cifar10"
root = "c10"

[datasets.c100]
kind = "cifar100"
root = "c100"

[datasets.svhn]
kind = "svhn"
root = "svhn"

[datasets.shapes]
kind = "imagefolder"
root = "shapes"

[datasets.blobs]
kind = "folder"
root = "blobs"
"""


def _pickle(path, data: np.ndarray, key: bytes, labels: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({b"data": data.reshape(len(data), -1), key: labels}))


def test_every_format_loads_its_images_and_labels_and_evaluates(
    tmp_path, monkeypatch, capsys
):
    rng = np.random.default_rng(0)
    cifar = rng.integers(0, 255, (6, 3, 32, 32), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _pickle(
            tmp_path / "c10" / "cifar-10-batches-py" / name,
            cifar,
            b"labels",
            [0, 1, 2, 3, 4, 5],
        )
    for name in ("train", "test"):
        _pickle(
            tmp_path / "c100" / "cifar-100-python" / name,
            cifar[:4],
            b"fine_labels",
            [7, 70, 97, 99],
        )
    (tmp_path / "svhn").mkdir()
    svhn = rng.integers(0, 255, (32, 32, 3, 5), dtype=np.uint8)
    savemat(
        tmp_path / "svhn" / "test_32x32.mat",
        {"X": svhn, "y": np.array([[10], [1], [2], [3], [4]])},
    )
    for cls in ("circle", "square"):
        for i in range(3):
            folder = tmp_path / "shapes" / cls
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
                folder / f"{i}.png"
            )
    (tmp_path / "blobs").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(
            tmp_path / "blobs" / f"{i}.jpg"
        )
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    (tmp_path / "ood_lab.toml").write_text(REGISTRY)
    monkeypatch.setenv("OOD_LAB_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("OOD_LAB_CACHE_DIR", str(tmp_path / "cache"))

    c10, _ = catalog.get_dataset("c10").load("test")
    assert c10.labels.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(np.asarray(c10.image(2)), cifar[2].transpose(1, 2, 0))
    c100, _ = catalog.get_dataset("c100").load("test")
    assert c100.labels.tolist() == [7, 70, 97, 99]
    street, _ = catalog.get_dataset("svhn").load("test")
    assert street.labels.tolist() == [0, 1, 2, 3, 4]  # SVHN's label 10 is the digit 0
    np.testing.assert_array_equal(np.asarray(street.image(4)), svhn[..., 4])
    shapes, _ = catalog.get_dataset("shapes").load("test")
    assert sorted(shapes.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    blobs, _ = catalog.get_dataset("blobs").load("test")
    assert len(blobs) == 4 and (blobs.labels == -1).all()

    args = [
        "evaluate",
        "--model",
        "net",
        "--id",
        "c10",
        "--ood",
        "c100",
        "svhn",
        "shapes",
        "blobs",
    ]
    assert cli.main([*args, "--methods", "msp", "energy", "nap"]) == 0
    printed = capsys.readouterr().out
    for name in ("c100", "svhn", "shapes", "blobs", "mean"):
        assert f" {name} " in printed
