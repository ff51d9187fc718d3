"""Neuron importance through captum, for heads that are not a single linear layer, and a cross-check.

For a linear head, ``ood_core.scores.line.importance`` is exact; these estimate the same class-wise quantity
``Φ[c,j] = mean_{i: y_i=c} attribution_j(h_i, target=c)`` for any differentiable head.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import InputXGradient, ShapleyValueSampling
from scipy.stats import spearmanr


def classwise_importance(
    head: torch.nn.Module,
    h: np.ndarray,
    labels: np.ndarray,
    classes: int,
    method: str = "shapley",
    n_samples: int = 25,
) -> np.ndarray:
    """Φ [K,D]: mean attribution of each penultimate neuron to its own class's logit over that class's samples.

    ``method="shapley"``: captum ``ShapleyValueSampling`` with a zero baseline (``n_samples`` permutations);
    ``method="gradxinput"``: captum ``InputXGradient`` (the first-order approximation LINe uses).
    """
    head = head.eval()
    x = torch.as_tensor(np.asarray(h, np.float32))
    labels = np.asarray(labels)
    phi = np.zeros((classes, x.shape[1]))
    for c in range(classes):
        rows = torch.as_tensor(np.flatnonzero(labels == c))
        if len(rows) == 0:
            continue
        if method == "shapley":
            attr = ShapleyValueSampling(head).attribute(
                x[rows], target=c, baselines=0.0, n_samples=n_samples
            )
        elif method == "gradxinput":
            attr = InputXGradient(head).attribute(
                x[rows].clone().requires_grad_(True), target=c
            )
        else:
            raise ValueError(
                f"method must be 'shapley' or 'gradxinput', not {method!r}"
            )
        phi[c] = attr.detach().double().mean(0).numpy()
    return phi


def cross_check(phi_a: np.ndarray, phi_b: np.ndarray) -> dict[str, float]:
    """How close two importance matrices are: max absolute difference and mean per-class Spearman rank correlation."""
    rhos = [
        spearmanr(a, b).statistic
        for a, b in zip(phi_a, phi_b)
        if np.ptp(a) > 0 and np.ptp(b) > 0
    ]
    return {
        "max_abs_diff": float(np.abs(phi_a - phi_b).max()),
        "mean_rank_correlation": float(np.mean(rhos)),
    }
