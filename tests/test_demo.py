"""The embedded demo: offline datasets with provenance, a model that reaches ≥ 97%, and the teaching contrast."""

import json

import numpy as np
import pytest

from ood_core.inputs import catalog
from ood_core.inputs.files import file_sha256
from ood_core.inputs.models import SHIPPED_DEMO_WEIGHTS
from ood_core.metrics import ood_metrics
from ood_core.scores import get_method
from ood_core.workspace import Workspace, load_workspace

EXPECTED_SIZES = {
    ("digits", "train"): 1257,
    ("digits", "test"): 540,
    ("letters", "test"): 600,
    ("textures", "test"): 600,
    ("photos", "test"): 600,
    ("faces", "test"): 200,
    ("noise", "test"): 600,
}


@pytest.mark.parametrize("name,split", list(EXPECTED_SIZES))
def test_demo_sets_are_offline_sized_described_and_deterministic(name, split):
    spec = catalog.get_dataset(name)
    images, identity = spec.load(split)
    again, identity_again = spec.load(split)
    assert len(images) == EXPECTED_SIZES[name, split] == identity["n"]
    assert spec.provenance and spec.description and identity == identity_again
    first = np.asarray(images.image(0))
    assert first.shape == (32, 32) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, np.asarray(again.image(0)))
    assert (images.labels >= 0).all() == (name == "digits")


def test_digit_splits_are_disjoint_and_cover_load_digits():
    from sklearn.datasets import load_digits

    train, _ = catalog.get_dataset("digits").load("train")
    test, _ = catalog.get_dataset("digits").load("test")
    assert len(train) + len(test) == len(load_digits().target)
    assert set(np.bincount(test.labels)) <= set(range(50, 60)), (
        "stratified: every class has 50–59 test images"
    )


def test_the_demo_runs_on_the_shipped_weights_identically_everywhere(demo_model):
    """The demo model is pinned: the app loads the shipped file whose sha256 its report records."""
    report = json.loads(SHIPPED_DEMO_WEIGHTS.with_suffix(".json").read_text())
    assert (
        demo_model.weights_sha256
        == report["weights_sha256"]
        == file_sha256(SHIPPED_DEMO_WEIGHTS)
    )
    assert report["test_accuracy"] >= 0.97 and report["seed"] == 0
    assert demo_model.probes.blocks == ("layer1.0", "layer2.0", "layer3.0", "layer4.0")
    assert SHIPPED_DEMO_WEIGHTS.stat().st_size < 1_000_000


def test_altered_shipped_weights_fall_back_to_seeded_training(tmp_path, monkeypatch):
    """A shipped file that no longer matches its sha256 is never used; the seeded training runs instead."""
    from ood_core.inputs import models

    broken = tmp_path / "demo_resnet.pt"
    broken.write_bytes(SHIPPED_DEMO_WEIGHTS.read_bytes()[:-10])
    broken.with_suffix(".json").write_text(
        SHIPPED_DEMO_WEIGHTS.with_suffix(".json").read_text()
    )
    monkeypatch.setattr(models, "SHIPPED_DEMO_WEIGHTS", broken)
    monkeypatch.setenv("OOD_LAB_CACHE_DIR", str(tmp_path / "cache"))
    trained = []
    monkeypatch.setattr(
        models.demo_model,
        "train_demo_model",
        lambda progress: (trained.append(1) or models.demo_model.DemoResNet(), {}),
    )
    path = models.demo_spec().weights(None)
    assert trained == [1] and path == tmp_path / "cache" / "models" / "demo_resnet.pt"
    assert models.weights_intact(path)


def test_teaching_contrast_nap_wins_where_energy_fails(demo_model):
    features = load_workspace(Workspace())
    id_features, ood = features.id_test, features.ood
    assert features.accuracy >= 97
    textures = ood["textures"]
    nap, energy = get_method("nap"), get_method("energy")
    nap_auroc = ood_metrics(nap.score(id_features), nap.score(textures))["AUROC"]
    energy_auroc = ood_metrics(energy.score(id_features), energy.score(textures))[
        "AUROC"
    ]
    assert nap_auroc >= 95 and energy_auroc < 50, (nap_auroc, energy_auroc)
