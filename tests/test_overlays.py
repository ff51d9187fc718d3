"""Grad-CAM against a hand-written Grad-CAM, NAP peaks against a loop, and the overlay pictures."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ood_core.pictures.gradcam import block_maps, grad_cam, nap_peaks
from ood_core.pictures.overlays import blend, mark_peaks


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        return self.fc(self.block(self.features(x)).mean((2, 3)))


def _manual_grad_cam(model, x, target):
    """Selvaraju et al.: α_c = spatial mean of ∂y_t/∂A_c; map = ReLU(Σ α_c A_c); bilinear upsampling."""
    kept = {}
    handle = model.block.register_forward_hook(
        lambda m, a, out: kept.setdefault("A", out)
    )
    logits = model(x)
    handle.remove()
    activation = kept["A"]
    grads = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), activation)[0]
    cam = F.relu((grads.mean((2, 3), keepdim=True) * activation).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear")[:, 0].detach()


def test_grad_cam_equals_a_hand_written_grad_cam():
    model = Tiny().eval()
    x = torch.randn(5, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    predicted = model(x).argmax(1)
    ours = grad_cam(model, model.block, x)
    assert ours.shape == (5, 12, 12)
    np.testing.assert_allclose(
        ours, _manual_grad_cam(model, x, predicted).numpy(), atol=1e-6
    )
    other = (predicted + 1) % 4
    np.testing.assert_allclose(
        grad_cam(model, model.block, x, other),
        _manual_grad_cam(model, x, other).numpy(),
        atol=1e-6,
    )


def test_nap_peaks_match_a_loop_over_channels():
    model = Tiny().eval()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    maps = block_maps(model, model.block, x)
    assert maps.shape == (3, 5, 6, 6)
    xy, ratio = nap_peaks(maps, input_size=12, eps=1.0)
    for n in range(3):
        for c in range(5):
            a = maps[n, c].numpy()
            i, j = np.unravel_index(a.argmax(), a.shape)
            assert xy[n, c].tolist() == [(j + 0.5) * 2, (i + 0.5) * 2]
            assert ratio[n, c] == pytest.approx(a.max() / (a.mean() + 1.0), rel=1e-5)


def test_a_zero_heatmap_leaves_the_image_untouched_and_a_full_one_colours_it():
    pixels = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    plain = blend(pixels, np.zeros((8, 8)), opacity=1.0, size=8)
    np.testing.assert_array_equal(plain[..., 0], (pixels[0] * 255).astype(np.uint8))
    assert plain.shape == (8, 8, 3)
    hot = blend(pixels, np.ones((8, 8)), opacity=1.0, size=16)
    assert hot.shape == (16, 16, 3)
    assert len(np.unique(hot.reshape(-1, 3), axis=0)) == 1  # one colour everywhere
    half = blend(pixels, np.ones((8, 8)), opacity=0.5, size=8)
    assert not np.array_equal(half, hot) and not np.array_equal(half, plain)


def test_peak_markers_are_drawn_where_the_strongest_channels_peak():
    pixels = np.zeros((3, 8, 8), np.float32)
    xy = np.array([[2.0, 2.0], [6.0, 6.0]])
    picture = mark_peaks(pixels, xy, np.array([1.0, 0.0]), opacity=1.0, top=1, size=64)
    assert picture.shape == (64, 64, 3)
    marked = np.argwhere(picture.sum(2) > 0)
    centre = marked.mean(0)
    assert np.allclose(centre, [16, 16], atol=1.5)  # (2, 2) input px × 8, not (6, 6)
