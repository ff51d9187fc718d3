"""OptFS, optimal piecewise-constant feature shaping (Zhao et al., "Towards Optimal Feature-Shaping Methods for
Out-of-Distribution Detection", ICLR 2024; higher = more ID).

Fitted on ID train alone, with the model's predicted classes ŷ (no labels, no OOD data, nothing to tune):

- The value range ``[q_0.001, q_0.999]`` of all ID-train penultimate activations is cut into B = 100 equal intervals.
- Each row's logit contribution per interval: ``C_b(x) = Σ_{j: h_j ∈ I_b} W[ŷ, j]·h_j`` (values outside the range
  fall in no interval, i.e. are shaped to 0).
- The shaping value of interval b is the closed form ``θ_b ∝ mean_train C_b(x)``, scaled to ‖θ‖₂ = 1000.
- Score (the reference code's default, "vanilla"): the predicted class's logit of the shaped feature
  ``Σ_j W[ŷ, j]·θ(h_j)·h_j = Σ_b θ_b C_b(x)``, ŷ from the unshaped logits, no bias.

The per-interval contributions of a scored set are computed once; the score is then one matrix-vector product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .method import Arrays, Fit, Method, Prepare, TrainData, arxiv

INTERVALS = 100
TAIL = 1e-3
THETA_NORM = 1000.0


@dataclass(frozen=True)
class Shaping:
    """The interval grid (``low`` and ``width`` [1] each) and the shaping value θ of every interval [B]."""

    low: np.ndarray
    width: np.ndarray
    theta: np.ndarray


def interval_contributions(
    h: np.ndarray,
    logits: np.ndarray,
    weight: np.ndarray,
    low: float,
    width: float,
    intervals: int = INTERVALS,
    chunk: int = 4096,
) -> np.ndarray:
    """``C[i, b] = Σ_{j: h_ij ∈ [low + b·width, low + (b+1)·width)} W[ŷ_i, j]·h_ij`` [N, B] (float64)."""
    weight = np.asarray(weight, np.float64)
    predicted = np.asarray(logits).argmax(axis=1)
    out = np.empty((len(h), intervals))
    for start in range(0, len(h), chunk):
        rows = np.asarray(h[start : start + chunk], np.float64)
        n = len(rows)
        index = np.floor((rows - low) / width)
        inside = (index >= 0) & (index < intervals)
        flat = (
            np.arange(n)[:, None] * intervals + index.clip(0, intervals - 1)
        ).astype(np.int64)
        terms = weight[predicted[start : start + n]] * rows
        out[start : start + n] = np.bincount(
            flat[inside], weights=terms[inside], minlength=n * intervals
        ).reshape(n, intervals)
    return out


def fit_shaping(train: TrainData) -> Shaping:
    h = np.asarray(train["penultimate"], np.float64)
    low, high = np.quantile(h, [TAIL, 1 - TAIL])
    width = max((high - low) / INTERVALS, 1e-12)
    theta = interval_contributions(
        h, train["logits"], train["head/weight"], low, width
    ).mean(axis=0)
    theta = theta / max(np.linalg.norm(theta), 1e-300) * THETA_NORM
    return Shaping(np.array([low]), np.array([width]), theta)


def prepare_contributions(features: Arrays, state: Shaping) -> dict[str, np.ndarray]:
    return {
        "optfs/contributions": interval_contributions(
            features["penultimate"], features["logits"], features["head/weight"],
            float(state.low[0]), float(state.width[0]), len(state.theta),
        ).astype(np.float32)
    }  # fmt: skip


OPTFS = Method(
    name="optfs",
    label="OptFS",
    family="shaping",
    needs=("penultimate", "logits", "head/weight"),
    formula=r"S=\sum_j W_{\hat y j}\,\theta(h_j)\,h_j,\;"
    r"\theta_b\propto\mathbb{E}_{train}\Big[\sum_{j:h_j\in I_b}W_{\hat y j}h_j\Big]",
    paper=arxiv(
        "Towards Optimal Feature-Shaping Methods for Out-of-Distribution Detection",
        "ICLR 2024",
        "2402.00865",
    ),
    score_fn=lambda features, state: (
        np.asarray(features["optfs/contributions"], np.float64) @ state.theta
    ),
    fit=Fit(
        name="optfs-shaping",
        fn=fit_shaping,
        needs=("penultimate", "logits", "head/weight"),
        state=Shaping,
    ),
    prepare=Prepare(
        name="optfs-contributions",
        fn=prepare_contributions,
        needs=("penultimate", "logits", "head/weight"),
        store=True,
    ),
)

METHODS = (OPTFS,)
