"""Activation- and weight-shaping scores on the penultimate feature h, all read out with the energy score."""

from __future__ import annotations

import numpy as np
import torch

from .baselines import energy


def logits_of(h: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.asarray(h, np.float64) @ np.asarray(weight, np.float64).T + bias


def react(
    h: np.ndarray, weight: np.ndarray, bias: np.ndarray, threshold: float
) -> np.ndarray:
    """ReAct (Sun et al., NeurIPS 2021): ``logsumexp(W·min(h, c) + b)``; c = p-th percentile of ID train
    activations (default p = 90)."""
    return energy(logits_of(np.minimum(h, threshold), weight, bias))


def dice_mask(
    weight: np.ndarray, mean_activation: np.ndarray, percentile: float
) -> np.ndarray:
    """DICE's weight mask: keep ``W[k,j]`` where its contribution ``mean_train(h)_j·W[k,j]`` exceeds the p-th
    percentile of all K×D contributions."""
    contribution = mean_activation[None, :] * weight
    return contribution > np.percentile(contribution, percentile)


def dice(
    h: np.ndarray, weight: np.ndarray, bias: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """DICE (Sun & Li, ECCV 2022): ``logsumexp((W ⊙ M)·h + b)``; default p = 90 (CIFAR), 70 (ImageNet)."""
    return energy(logits_of(h, weight * mask, bias))


def ash(h: np.ndarray, percentile: float, variant: str) -> np.ndarray:
    """ASH (Djurisic et al., ICLR 2023) on each sample's activations: keep the top ``k = D − round(D·p/100)``.

    - ``p``: zero the rest;
    - ``b``: set the kept ones to ``s1/k`` (binarised, keeps the sum ``s1``);
    - ``s``: scale the kept ones by ``exp(s1/s2)``, ``s2`` their sum.
    """
    x = torch.as_tensor(np.asarray(h, np.float64))
    n, d = x.shape
    k = max(1, d - int(np.round(d * percentile / 100)))
    values, index = torch.topk(x, k, dim=1)
    s1 = x.sum(1, keepdim=True)
    if variant == "p":
        kept = values
    elif variant == "b":
        kept = (s1 / k).expand(n, k)
    elif variant == "s":
        s2 = values.sum(1, keepdim=True)
        scale = torch.where(
            s2 > 0, torch.exp(s1 / torch.where(s2 > 0, s2, 1)), torch.ones_like(s2)
        )
        kept = values * scale
    else:
        raise ValueError(f"ASH variant must be p, b or s, not {variant!r}")
    return torch.zeros_like(x).scatter_(1, index, kept).numpy()


def ash_energy(
    h: np.ndarray, weight: np.ndarray, bias: np.ndarray, percentile: float, variant: str
) -> np.ndarray:
    """``logsumexp(W·ASH(h) + b)``."""
    return energy(logits_of(ash(h, percentile, variant), weight, bias))
