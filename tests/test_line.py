"""LINe against independent computations: captum Shapley values, per-class brute-force masks, a per-sample loop."""

import numpy as np
import pytest
import torch
from captum.attr import ShapleyValueSampling
from scipy.special import logsumexp

from ood_core.scores.attribution import classwise_importance, cross_check
from ood_core.scores.line import (
    activation_masks,
    importance,
    line_logits,
    line_score,
    weight_thresholds,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    k, d = 5, 12
    weight, bias = rng.normal(0, 1, (k, d)), rng.normal(0, 0.1, k)
    train = np.maximum(rng.normal(0.5, 1, (200, d)), 0)
    labels = rng.integers(0, k, 200)
    means = np.array([train[labels == c].mean(0) for c in range(k)])
    test = np.maximum(rng.normal(0.5, 1.2, (40, d)), 0)
    return weight, bias, train, labels, importance(weight, means), test


def test_importance_equals_captum_shapley_on_a_linear_head(data):
    weight, bias, train, labels, phi, _ = data
    head = torch.nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight))
        head.bias.copy_(torch.as_tensor(bias))
    x = torch.as_tensor(train)
    for c in range(weight.shape[0]):
        attr = ShapleyValueSampling(head).attribute(
            x[labels == c], target=c, baselines=0.0, n_samples=3
        )
        np.testing.assert_allclose(attr.mean(0).numpy(), phi[c], atol=1e-5)
    captum_phi = classwise_importance(
        head.float(), train, labels, weight.shape[0], "gradxinput"
    )
    check = cross_check(phi, captum_phi)
    assert check["max_abs_diff"] < 1e-4 and check["mean_rank_correlation"] > 0.999


def test_masks_equal_a_brute_force_per_class_loop(data):
    weight, _, _, _, phi, _ = data
    for p in (10, 50, 90):
        masks = activation_masks(phi, p)
        thresholds = weight_thresholds(phi, weight, p)
        for c in range(len(phi)):
            np.testing.assert_array_equal(
                masks[c], [v > np.percentile(phi[c], p) for v in phi[c]]
            )
            matrix = [
                [abs(phi[c, j]) * weight[k, j] for j in range(weight.shape[1])]
                for k in range(weight.shape[0])
            ]
            assert thresholds[c] == pytest.approx(np.percentile(matrix, p), rel=1e-12)


def _per_sample_loop(h, weight, bias, phi, p_a, p_w, tau):
    """Like the official implementation: one sample at a time, with masks built for its predicted class."""
    scores = []
    for x in h:
        x = np.minimum(x, tau)
        c = int(np.argmax(weight @ x + bias))
        act = (
            phi[c] > np.percentile(phi[c], p_a)
            if p_a > 0
            else np.ones_like(phi[c], bool)
        )
        matrix = np.abs(phi[c])[None, :] * weight
        keep = (
            matrix > np.percentile(matrix, p_w)
            if p_w > 0
            else np.ones_like(matrix, bool)
        )
        scores.append(logsumexp((weight * keep) @ (x * act) + bias))
    return np.array(scores)


@pytest.mark.parametrize(
    "p_a,p_w,tau", [(90, 90, 1.0), (10, 10, 0.8), (50, 0, 2.0), (0, 70, np.inf)]
)
def test_line_score_equals_a_per_sample_loop(data, p_a, p_w, tau):
    weight, bias, _, _, phi, test = data
    np.testing.assert_allclose(
        line_score(test, weight, bias, phi, p_a, p_w, tau),
        _per_sample_loop(test, weight, bias, phi, p_a, p_w, tau),
        rtol=1e-10,
    )


def test_no_pruning_and_no_clipping_is_energy(data):
    weight, bias, _, _, phi, test = data
    np.testing.assert_allclose(
        line_score(test, weight, bias, phi, 0, 0, np.inf),
        logsumexp(test @ weight.T + bias, axis=1),
    )
    logits, predicted = line_logits(test, weight, bias, phi, 0, 0, np.inf)
    np.testing.assert_array_equal(predicted, (test @ weight.T + bias).argmax(1))
    np.testing.assert_allclose(logits, test @ weight.T + bias)


def test_memory_stays_bounded_for_imagenet_sized_heads():
    rng = np.random.default_rng(0)
    phi, weight = (
        rng.normal(0, 1, (1000, 2048)),
        rng.normal(0, 1, (1000, 2048)).astype(np.float32),
    )
    thresholds = weight_thresholds(
        phi[:32], weight, 10
    )  # no class's 1000×2048 products are formed
    assert thresholds.shape == (32,) and np.isfinite(thresholds).all()
