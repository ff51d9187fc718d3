"""The Heatmap-based OOD decoder: shapes, nearest-neighbour targets, loss, training, score from cached arrays."""

import numpy as np
import pytest
import torch

from ood_core.scores.heatmap import heatmap_score
from ood_core.training.decoder import (
    DecoderSettings,
    DecoderState,
    HeatmapDecoder,
    decoder_inputs,
    feature_scale,
    heatmap_loss,
    nearest_id_targets,
    train_decoder,
)


@pytest.mark.parametrize(
    ("channels", "size"), [(1, 32), (3, 32), (3, 28), (1, 8), (3, 224)]
)
def test_decoder_paints_a_bounded_map_of_the_input_shape(channels, size):
    decoder = HeatmapDecoder(features=12, classes=5, channels=channels, size=size)
    z, onehot = torch.rand(3, 12), torch.eye(5)[[0, 3, 4]]
    h = decoder.eval()(z, onehot)
    assert h.shape == (3, channels, size, size)
    assert h.abs().max() < 1


def test_decoder_input_is_scaled_features_and_one_hot_prediction():
    penultimate = np.array([[2.0, 0.0, 1.0], [4.0, 0.0, 0.5]], np.float32)
    logits = np.array([[0.1, 0.9], [2.0, -1.0]], np.float32)
    scale = feature_scale(penultimate)
    assert scale.tolist() == [4.0, 1.0, 1.0]  # a never-positive dimension keeps scale 1
    z, onehot = decoder_inputs(penultimate, logits, scale)
    assert z.numpy().tolist() == [[0.5, 0.0, 1.0], [1.0, 0.0, 0.5]]
    assert onehot.numpy().tolist() == [[0, 1], [1, 0]]


def test_outlier_targets_are_the_nearest_same_class_id_sample():
    rng = np.random.default_rng(1)
    id_z, oe_z = rng.normal(size=(60, 6)), rng.normal(size=(25, 6))
    id_pred = rng.integers(0, 3, 60)  # no ID sample is predicted as class 3
    oe_pred = rng.integers(0, 4, 25)
    targets = nearest_id_targets(oe_z, oe_pred, id_z, id_pred)
    for i in range(len(oe_z)):  # brute force
        pool = np.flatnonzero(id_pred == oe_pred[i])
        pool = pool if len(pool) else np.arange(len(id_z))
        distances = [np.linalg.norm(oe_z[i] - id_z[j]) for j in pool]
        assert targets[i] == pool[int(np.argmin(distances))]
    assert (oe_pred == 3).any()


def test_loss_weights_squared_error_by_target_brightness():
    x = torch.tensor([[[[0.0, 1.0]]]])
    h = torch.tensor([[[[0.5, -0.5]]]])
    t = torch.tensor([[[[0.2, 0.0]]]])
    expected = ((1 + 5 * 0.2) * (0.5 - 0.2) ** 2 + 1 * (0.5 - 0.0) ** 2) / 2
    assert float(heatmap_loss(x, h, t)) == pytest.approx(expected)


@pytest.fixture(scope="module")
def tiny():
    """Two 8×8 classes of ID images (bright left / right half) and noise outliers, with made-up features."""
    rng = np.random.default_rng(0)
    id_images = torch.zeros(64, 1, 8, 8)
    id_images[:32, :, :, :4] = 1
    id_images[32:, :, :, 4:] = 1
    oe_images = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    id_z = np.abs(rng.normal(size=(64, 6))).astype(np.float32)
    id_z[:32, 0] += 3
    id_z[32:, 1] += 3
    oe_z = np.abs(rng.normal(size=(48, 6))).astype(np.float32)
    id_logits = np.zeros((64, 2), np.float32)
    id_logits[:32, 0] = id_logits[32:, 1] = 1
    oe_logits = rng.normal(size=(48, 2)).astype(np.float32)
    return id_images, id_z, id_logits, oe_images, oe_z, oe_logits


def test_training_lowers_the_loss_and_keeps_the_best_epoch(tiny):
    settings = DecoderSettings(epochs=12, batch_size=16, patience=100)
    trained = train_decoder(*tiny, settings=settings)
    history = trained.history
    assert history["epochs_run"] == 12
    assert history["train_loss"][-1] < 0.8 * history["train_loss"][0]
    assert history["best_epoch"] == int(np.argmin(history["validation_loss"])) + 1


def test_early_stopping_stops_after_patience_epochs_without_improvement(tiny):
    settings = DecoderSettings(epochs=30, batch_size=16, patience=1, lr=0.5)
    history = train_decoder(*tiny, settings=settings).history
    assert history["epochs_run"] < 30
    assert history["epochs_run"] == history["best_epoch"] + 1


def test_score_is_a_function_of_cached_arrays_and_survives_the_cache(tiny):
    _, id_z, _, _, oe_z, oe_logits = tiny
    trained = train_decoder(*tiny, settings=DecoderSettings(epochs=2, batch_size=16))
    state = DecoderState.of(trained)
    scores = heatmap_score(state, oe_z, oe_logits, batch=7)
    with torch.no_grad():  # the formula, by hand
        z = torch.as_tensor(oe_z / feature_scale(id_z))
        onehot = torch.nn.functional.one_hot(torch.as_tensor(oe_logits.argmax(1)), 2)
        h = trained.decoder(z, onehot.float()).numpy()
    expected = -np.abs(h).max(1).mean((1, 2))
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    rebuilt = DecoderState(
        {k: np.array(v) for k, v in state.weights.items()},
        np.array(state.scale),
        dict(state.shape),
        state.history,
    )  # what a cache round trip gives back
    np.testing.assert_allclose(
        heatmap_score(rebuilt, oe_z, oe_logits, batch=7), scores, rtol=0, atol=0
    )
