"""Detectors from the geometry of the classifier head and the ID-train mean feature μ (higher = more ID); ĉ is the
predicted class ``argmax_k z_k`` and z = W·h + b the cached logits.

- fDBD (Liu & Qin, ICML 2024): ``mean_{c≠ĉ} |z_ĉ − z_c| / ‖w_ĉ − w_c‖₂ ÷ ‖h − μ‖₂`` — the mean distance of h to the
  decision boundaries between ĉ and every other class, regularised by the distance to the ID-train mean.
  Hyperparameter-free (the authors' code sums instead of averaging: the same ranking).
- NCI (Liu & Qin, CVPR 2025): ``(h − μ)·w_ĉ / ‖h − μ‖₂ + α‖h‖₁`` — proximity of the centred feature to the
  predicted class's weight vector (neural collapse) plus an L1-norm filter; α = 10⁻⁴ (OpenOOD's default, which
  OpenOOD tunes over 10⁻⁴…10⁻¹ on its validation sets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .method import (
    Arrays,
    Fit,
    Method,
    Param,
    Prepare,
    TrainData,
    arxiv,
    stored_scores,
)


@dataclass(frozen=True)
class TrainMean:
    """The mean ID-train penultimate feature μ [D]."""

    mean: np.ndarray


def fit_train_mean(train: TrainData) -> TrainMean:
    return TrainMean(np.asarray(train["penultimate"], np.float64).mean(axis=0))


TRAIN_MEAN = Fit(
    name="train-mean", fn=fit_train_mean, needs=("penultimate",), state=TrainMean
)


def _norms(centred: np.ndarray) -> np.ndarray:
    """Row norms ``‖h − μ‖₂`` [N] of centred features, as float64 and at least 10⁻¹²."""
    return np.maximum(np.linalg.norm(centred, axis=1).astype(np.float64), 1e-12)


def boundary_distances(logits: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``mean_{c≠ĉ} |z_ĉ − z_c| / ‖w_ĉ − w_c‖₂`` [N] (a class with the same weight row as ĉ is skipped)."""
    z = np.asarray(logits, np.float64)
    w = np.asarray(weight, np.float64)
    squared = (w * w).sum(1)
    gaps = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * w @ w.T, 0))
    predicted = z.argmax(axis=1)
    row_gaps = gaps[predicted]
    margins = np.abs(z[np.arange(len(z)), predicted][:, None] - z)
    terms = np.divide(margins, row_gaps, out=np.zeros_like(margins), where=row_gaps > 0)
    return terms.sum(axis=1) / max(len(w) - 1, 1)


def fdbd(features: Arrays, state: TrainMean) -> np.ndarray:
    """fDBD [N]: boundary distances over the distance to the ID-train mean feature."""
    centred = np.asarray(features["penultimate"], np.float32) - np.asarray(
        state.mean, np.float32
    )  # float32: the one N × D pass of a parameter-free score
    return boundary_distances(features["logits"], features["head/weight"]) / _norms(
        centred
    )


FDBD = Method(
    name="fdbd",
    label="fDBD",
    family="feature",
    needs=("logits", "penultimate", "head/weight"),
    formula=r"S=\frac{1}{K-1}\sum_{c\neq\hat c}\frac{|z_{\hat c}-z_c|}{\lVert w_{\hat c}-w_c\rVert_2}\Big/\lVert h-\mu\rVert_2",
    paper=arxiv(
        "Fast Decision Boundary based Out-of-Distribution Detector",
        "ICML 2024",
        "2312.11536",
    ),
    fit=TRAIN_MEAN,
    **stored_scores("fdbd", fdbd, needs=("logits", "penultimate", "head/weight")),
)


def prepare_nci(features: Arrays, state: TrainMean) -> dict[str, np.ndarray]:
    """Per scored set: the proximity term ``(h − μ)·w_ĉ / ‖h − μ‖₂`` and ``‖h‖₁``, so that moving α is one axpy."""
    h = np.asarray(features["penultimate"], np.float64)
    weight = np.asarray(features["head/weight"], np.float64)
    predicted = np.asarray(features["logits"]).argmax(axis=1)
    centred = h - state.mean
    proximity = (centred * weight[predicted]).sum(axis=1) / _norms(centred)
    return {"nci/proximity": proximity, "nci/l1": np.abs(h).sum(axis=1)}


NCI = Method(
    name="nci",
    label="NCI",
    family="feature",
    needs=("logits", "penultimate", "head/weight"),
    formula=r"S=\frac{(h-\mu)^\top w_{\hat c}}{\lVert h-\mu\rVert_2}+\alpha\lVert h\rVert_1",
    paper=arxiv(
        "Detecting Out-of-Distribution Through the Lens of Neural Collapse",
        "CVPR 2025",
        "2311.01479",
    ),
    score_fn=lambda features, state, alpha: (
        features["nci/proximity"] + alpha * features["nci/l1"]
    ),
    params=(
        Param(
            "alpha",
            1e-4,
            0.0,
            1.0,
            1e-4,
            "Weight α of the L1-norm filter (OpenOOD's default 10⁻⁴; 0 = proximity alone).",
        ),
    ),
    fit=TRAIN_MEAN,
    prepare=Prepare(
        name="nci-terms",
        fn=prepare_nci,
        needs=("logits", "penultimate", "head/weight"),
        store=True,
    ),
)

METHODS = (FDBD, NCI)
