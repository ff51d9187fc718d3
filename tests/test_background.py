"""Local Background fine-tuning: position selection, norms, gradient flow, and the registered fine-tuned model."""

import numpy as np
import pytest
import torch
from torch import nn

from ood_core.engine.features import feature_set
from ood_core.engine.features import model_named as loaded_model
from ood_core.inputs import catalog
from ood_core.training import finetune
from ood_core.training.background import (
    BackgroundSettings,
    background_loss,
    background_norms,
    class_activation,
    fine_tune,
    last_map_background_norms,
    lowest_positions,
)


def test_lowest_positions_and_their_norms_match_brute_force():
    g = torch.Generator().manual_seed(0)
    features = torch.rand(4, 6, 3, 5, generator=g)
    weight = torch.randn(7, 6, generator=g)
    predicted = torch.tensor([0, 6, 3, 3])
    cam = class_activation(features, weight, predicted)
    where = lowest_positions(cam, 4)
    norms = background_norms(features, weight, predicted, 4)
    for n in range(4):
        scores = [
            (float(weight[predicted[n]] @ features[n, :, i, j]), i * 5 + j)
            for i in range(3)
            for j in range(5)
        ]
        lowest = [pos for _, pos in sorted(scores)[:4]]
        assert sorted(where[n].tolist()) == sorted(lowest)
        expected = sorted(float(features[n, :, p // 5, p % 5].norm()) for p in lowest)
        assert sorted(norms[n].tolist()) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="k must be between 1 and 15"):
        lowest_positions(cam, 16)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.block(self.stem(x)).mean((2, 3)))


def test_the_background_term_reaches_the_backbone_but_not_the_head():
    model = Tiny()
    kept = {}
    model.block.register_forward_hook(lambda m, a, out: kept.setdefault("f", out))
    logits = model(torch.randn(6, 1, 6, 6))
    total, ce, bg = background_loss(
        logits, torch.tensor([0, 1, 2, 0, 1, 2]), kept["f"], model.fc.weight, 0.5, 5
    )
    assert float(total.detach()) == pytest.approx(
        float(ce.detach()) + 0.5 * float(bg.detach())
    )
    bg.backward()
    assert model.stem.weight.grad.abs().sum() > 0
    assert model.block[0].weight.grad.abs().sum() > 0
    assert model.fc.weight.grad is None  # the CAM only selects positions


def test_fine_tuning_shrinks_background_norms_against_a_plain_fine_tune(demo_model):
    from ood_core.inputs.datasets import DEMO_DATASETS

    images, _ = DEMO_DATASETS["digits"].load("train")
    subset = torch.utils.data.Subset(
        images.with_transform(demo_model.transform), range(256)
    )
    inputs = torch.stack([subset[i][0] for i in range(64)])
    model = loaded_model("demo")

    def tuned_norm(alpha: float) -> float:
        copy = type(model.module)()
        copy.load_state_dict(model.module.state_dict())
        settings = BackgroundSettings(alpha=alpha, k=8, epochs=3)
        report = fine_tune(copy, model.probes, subset, settings)
        return report, last_map_background_norms(copy, model.probes, inputs, 8).mean()

    # Same steps, no background term. On the pinned demo weights the ratio is 0.80 ± 0.02 over training seeds 0–2
    # (3 epochs; with 2 epochs it was 0.89, too close to the bound for other machines' arithmetic).
    _, control = tuned_norm(0.0)
    report, regularised = tuned_norm(2.0)
    assert regularised < 0.9 * control
    assert report["background_norm"][-1] < report["background_norm"][0]


def test_a_fine_tuned_model_is_registered_and_extracted_like_any_model(demo_model):
    settings = BackgroundSettings(alpha=0.5, k=4, epochs=1)
    name = finetune.background_fine_tune("demo", "digits", settings)
    assert name == "demo-bg-a0.5-k4-e1"
    assert name in catalog.models()
    assert finetune.report(name)["base"] == "demo"
    tuned, base = loaded_model(name), loaded_model("demo")
    assert tuned.weights_sha256 != base.weights_sha256
    features = feature_set(name, "digits", "test")
    assert features.meta["model"]["name"] == name
    assert features.logits.shape == (540, 10)
    w_tuned = tuned.module.fc.weight.detach().numpy()
    assert not np.allclose(w_tuned, base.module.fc.weight.detach().numpy())
    assert finetune.background_fine_tune("demo", "digits", settings) == name  # reused
