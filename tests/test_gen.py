"""GEN (Liu et al., CVPR 2023) against a hand-worked value, a per-sample loop and pytorch-ood's GEN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_ood.detector import GEN as PoodGEN

from ood_core.scores import get_method
from ood_core.scores.output import gen


def test_two_equal_logits_by_hand():
    # p = (1/2, 1/2), γ = 1: Σ p(1 − p) = 2 · 1/4, negated
    assert gen(np.zeros((1, 2)), gamma=1.0, m=2)[0] == pytest.approx(-0.5)


def _loop(logits: np.ndarray, gamma: float, m: int) -> np.ndarray:
    scores = []
    for row in np.asarray(logits, np.float64):
        p = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        top = sorted(p, reverse=True)[:m]
        scores.append(-sum(q**gamma * (1 - q) ** gamma for q in top))
    return np.array(scores)


@pytest.mark.parametrize(("gamma", "m"), [(0.1, 3), (0.1, 100), (0.5, 1), (2.0, 7)])
def test_equals_a_per_sample_loop_including_ties(gamma, m):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (257, 10)).astype(np.float32)
    logits[:5] = 1.0  # all classes tied
    logits[5] = 0.0
    logits[5, 3] = (
        800.0  # p = 1 in float64: its term is 0; the loop's e^-800 underflows where p^γ = e^-80γ
    )
    np.testing.assert_allclose(
        gen(logits, gamma, m), _loop(logits, gamma, m), rtol=1e-12, atol=1e-30
    )


@pytest.mark.parametrize("m", [None, 4])
def test_matches_pytorch_ood_up_to_its_averaging_and_sign(m):
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (300, 12)).astype(np.float32)
    theirs = PoodGEN.score(torch.from_numpy(logits), gamma=0.1, M=m).double().numpy()
    count = (
        12 if m is None else m
    )  # pytorch-ood averages over the top M and calls OOD higher
    ours = get_method("gen").score({"logits": logits}, blocks=[], gamma=0.1, M=count)
    np.testing.assert_allclose(ours, -count * theirs, rtol=1e-5)
