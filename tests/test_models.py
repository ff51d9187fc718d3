"""Real-data path: a torchvision model with a local checkpoint and an ImageFolder dataset from the registry file."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from ood_core.engine.features import feature_set
from ood_core.engine.features import model_named as loaded_model
from ood_core.errors import (
    CheckpointError,
    DataPathError,
    OODLabError,
    UnknownNameError,
)
from ood_core.inputs import catalog
from ood_core.scores import METHODS
from ood_core.tables import evaluate
from ood_core.workspace import Workspace
from ood_core.workspace import load_workspace as workspace_features

REGISTRY = """
[models.tiny]
arch = "resnet18"
weights = "{weights}"
num_classes = {classes}
input_size = 32
cifar_stem = true
id_dataset = "shapes"

[datasets.shapes]
kind = "imagefolder"
train = "shapes/train"
test = "shapes/test"

[datasets.blobs]
kind = "folder"
root = "blobs"
"""


def _write_images(folder, n, rng, modes=("RGB", "L", "RGBA")):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        mode = modes[i % len(modes)]
        channels = {"RGB": 3, "L": None, "RGBA": 4}[mode]
        shape = (int(rng.integers(20, 60)), int(rng.integers(20, 60))) + (
            (channels,) if channels else ()
        )
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(
            folder / f"{i}.png"
        )


@pytest.fixture
def real_workspace(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("circle", "square"):
            _write_images(tmp_path / "shapes" / split / cls, 4, rng)
    _write_images(tmp_path / "blobs", 5, rng)
    (tmp_path / "weights").mkdir()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
        tmp_path / "weights" / "ok.pt",
    )
    monkeypatch.setenv("OOD_LAB_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("OOD_LAB_CACHE_DIR", str(tmp_path / "cache"))

    def register(weights="weights/ok.pt", classes=2):
        (tmp_path / "ood_lab.toml").write_text(
            REGISTRY.format(weights=weights, classes=classes)
        )

    register()
    return tmp_path, register


def test_registered_model_and_datasets_extract_and_evaluate(real_workspace):
    assert {"demo", "tiny"} <= set(catalog.models()) and {
        "shapes",
        "blobs",
        "digits",
    } <= set(catalog.datasets())
    assert (
        catalog.get_dataset("shapes").in_distribution
        and not catalog.get_dataset("blobs").in_distribution
    )
    model = loaded_model("tiny")
    assert model.probes.blocks[-1] == "layer4.1" and model.probes.head == "fc"
    features = workspace_features(Workspace("tiny", "shapes", ("blobs",)))
    assert len(features.id_test) == 8 and sorted(
        set(features.id_test.labels.tolist())
    ) == [0, 1]
    assert (
        features.ood["blobs"].stat("layer4.1", "max").shape == (5, 512)
        and len(features.jigsaw) == 8
    )
    methods = [
        (m, {"k": 5} if m.name in ("knn", "nap-knn") else {})
        for m in METHODS.values()
        if m.cost == "cache"
    ]
    table = evaluate(features, methods)
    assert len(table) == len(methods) and table["AUROC"].between(0, 100).all()


def test_knn_with_k_beyond_the_train_set_is_a_clear_error(real_workspace):
    features = workspace_features(Workspace("tiny", "shapes", ("blobs",)))
    with pytest.raises(OODLabError, match="k=50 exceeds the 8 ID train samples"):
        features.scores(METHODS["knn"])


def test_changed_weights_get_a_new_cache_key(real_workspace):
    root, _ = real_workspace
    first = feature_set("tiny", "blobs").root
    model = torchvision.models.resnet18(num_classes=2)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    torch.save(model.state_dict(), root / "weights" / "ok.pt")
    assert feature_set("tiny", "blobs").root.parent != first.parent


def test_checkpoint_with_wrong_shapes_is_named(real_workspace):
    _, register = real_workspace
    register(classes=7)
    with pytest.raises(
        CheckpointError,
        match=r"ok\.pt does not fit architecture 'resnet18\+cifar_stem'.*fc\.weight",
    ):
        loaded_model("tiny")


def test_pickle_refused_by_weights_only_is_a_clear_error(real_workspace):
    root, register = real_workspace
    torch.save(
        {"model": torch.nn.Linear(2, 2)}, root / "weights" / "pickle.pt"
    )  # a whole module: not weights-only
    register(weights="weights/pickle.pt")
    with pytest.raises(
        CheckpointError, match=r"pickles torch\.nn\.modules\.linear\.Linear"
    ) as refused:
        loaded_model("tiny")
    assert "weights_only=False" not in str(refused.value)


def test_paths_outside_the_data_root_are_refused(real_workspace):
    _, register = real_workspace
    register(weights="../outside.pt")
    with pytest.raises(DataPathError, match="outside the data root"):
        loaded_model("tiny")
    register(weights="weights/missing.pt")
    with pytest.raises(DataPathError, match="does not exist"):
        loaded_model("tiny")


def test_unknown_names_list_the_choices(real_workspace):
    with pytest.raises(
        UnknownNameError, match="unknown model 'nope'; choose one of: demo, tiny"
    ):
        catalog.get_model("nope")
    with pytest.raises(
        UnknownNameError, match="unknown split of dataset 'blobs' 'train'"
    ):
        catalog.get_dataset("blobs").load("train")


def test_a_model_with_non_finite_scores_is_one_line_naming_method_and_set(
    real_workspace, capsys
):
    """NaN weights give NaN logits: evaluate and Setup say which method and set, no traceback."""
    from streamlit.testing.v1 import AppTest

    from ood_core.cli import main

    root, register = real_workspace
    model = torchvision.models.resnet18(num_classes=2)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    state = model.state_dict()
    state["fc.bias"] = torch.tensor([float("nan"), 0.0])
    torch.save(state, root / "weights" / "nan.pt")
    register(weights="weights/nan.pt")
    assert (
        main(
            [
                "evaluate",
                "--model",
                "tiny",
                "--id",
                "shapes",
                "--ood",
                "blobs",
                "--methods",
                "energy",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().split("\r")[-1]  # after the progress bars
    assert (
        err
        == "error: Energy gives non-finite scores on shapes (8 of 8): check the model's features or parameters"
    )
    at = AppTest.from_file(
        str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=300
    ).run()
    at.session_state["workspace"] = Workspace("tiny", "shapes", ("blobs",))
    at.run()
    at.button(key="prepare").click().run()
    assert not at.exception
    assert any("non-finite scores" in e.value for e in at.error)


def test_background_k_slider_stops_at_the_positions_of_the_last_map(real_workspace):
    """A CIFAR-stem ResNet's last map has 4×4 = 16 positions: the slider cannot ask for more."""
    from streamlit.testing.v1 import AppTest

    workspace_features(Workspace("tiny", "shapes", ("blobs",)))
    at = AppTest.from_file(
        str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=300
    ).run()
    at.session_state["workspace"] = Workspace("tiny", "shapes", ("blobs",))
    at.switch_page("pages/background.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.slider(key="bg_k").max == 16


def test_line_page_with_an_ood_set_of_one_image(real_workspace):
    from streamlit.testing.v1 import AppTest

    root, _ = real_workspace
    (root / "one").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "one" / "only.png")
    with open(root / "ood_lab.toml", "a") as fh:
        fh.write('\n[datasets.one]\nkind = "folder"\nroot = "one"\n')
    workspace = Workspace("tiny", "shapes", ("one",))
    workspace_features(workspace)
    at = AppTest.from_file(
        str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=300
    ).run()
    at.session_state["workspace"] = workspace
    at.switch_page("pages/line.py").run()
    at.selectbox(key="line_sample_set").set_value("one").run()
    assert not at.exception, [e.value for e in at.exception]
