"""The embedded demo: offline datasets with provenance, a model that reaches ≥ 97%, and the teaching contrast."""

import json

import numpy as np
import pytest

from ood_core import catalog, config
from ood_core.evaluation import accuracy, workspace_features
from ood_core.metrics import ood_metrics
from ood_core.pipeline import Workspace
from ood_core.scores import get_method

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


def test_demo_model_reaches_97_percent_and_reports_its_training(demo_model):
    report = json.loads(
        (config.cache_dir() / "models" / "demo_resnet.json").read_text()
    )
    assert report["test_accuracy"] >= 0.97 and report["seed"] == 0
    assert demo_model.probes.blocks == ("layer1.0", "layer2.0", "layer3.0", "layer4.0")


def test_teaching_contrast_nap_wins_where_energy_fails(demo_model):
    features = workspace_features(Workspace())
    id_features, ood = features.id_test, features.ood
    assert accuracy(id_features) >= 97
    textures = ood["textures"]
    nap, energy = get_method("nap"), get_method("energy")
    nap_auroc = ood_metrics(nap.score(id_features), nap.score(textures))["AUROC"]
    energy_auroc = ood_metrics(energy.score(id_features), energy.score(textures))[
        "AUROC"
    ]
    assert nap_auroc >= 95 and energy_auroc < 50, (nap_auroc, energy_auroc)
