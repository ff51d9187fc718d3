"""LINe: Leveraging Important Neurons (seed 000: Ahn, Park & Kim, CVPR 2023), as in the official implementation.

- Importance of penultimate neuron j for class c, the first-order Shapley approximation ``s_j = h_j·∂f_c/∂h_j``;
  for a linear head it is exactly ``Φ[c,j] = W[c,j]·mean_{i∈train, y_i=c} h_ij`` (cross-checked against captum).
- Activation mask ``m_c[j] = 1[Φ[c,j] > pct_{p_a}(Φ[c,:])]``; weight mask ``M_c[k,j] = 1[|Φ[c,j]|·W[k,j] >
  pct_{p_w}(|Φ[c,:]|·W)]`` (percentile over the whole K×D matrix). ``p = 0`` keeps everything (no pruning).
- Clip ``h̄ = min(h, τ)``, predict ``ĉ = argmax(W h̄ + b)``, ``z = (W ⊙ M_ĉ)(h̄ ⊙ m_ĉ) + b``, score ``logsumexp(z)``.
- Defaults (p_w, p_a, τ): CIFAR-10 (90, 90, 1.0), CIFAR-100 (90, 10, 1.0), ImageNet (10, 10, 0.8); τ is an
  absolute activation value.

Computed grouped by predicted class with matrix products: one K×D mask at a time, never K×K×D, never a per-sample loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import logsumexp

from ..memo import BoundedMemo
from . import kernels, quantiles
from .method import Fit, Method, Param, Prepare, TrainData, arxiv
from .moments import class_means
from .shaping import SORTED_ROWS, prefix_scores


def importance(weight: np.ndarray, class_means: np.ndarray) -> np.ndarray:
    """Exact Shapley importance for a linear head: ``Φ[c,j] = W[c,j]·mean_{y=c} h_j`` [K,D]."""
    return np.asarray(weight, np.float64) * np.asarray(class_means, np.float64)


def _keep_above(
    values: np.ndarray, thresholds: np.ndarray, percentile: float
) -> np.ndarray:
    return values > thresholds if percentile > 0 else np.ones(values.shape, bool)


def activation_masks(phi: np.ndarray, p_a: float) -> np.ndarray:
    """``m[c,j] = Φ[c,j] > pct_{p_a}(Φ[c,:])`` [K,D] (all True at p_a = 0)."""
    return _keep_above(phi, np.percentile(phi, p_a, axis=1, keepdims=True), p_a)


def weight_thresholds(phi: np.ndarray, weight: np.ndarray, p_w: float) -> np.ndarray:
    """``pct_{p_w}(|Φ[c,:]|·W)`` for every class c [K], bit for bit as ``np.percentile``, memoised per (Φ, W, p_w):
    the same for every scored set. No class's K·D products are formed: W's columns are sorted once and
    ``kernels.product_order_statistics`` finds the two order statistics numpy interpolates between (at K = 1,000,
    D = 2,048 ~2 s for all classes, where partitioning 2M products per class took 8–15 s)."""
    phi = np.ascontiguousarray(phi, np.float64)
    weight = np.ascontiguousarray(weight, np.float64)
    key = (_fingerprint(phi, weight), float(p_w))

    def compute() -> np.ndarray:
        virtual, below, _ = quantiles.positions(weight.size, np.float64(p_w) / 100)
        stats = np.empty((len(phi), 2))
        kernels.product_order_statistics(
            np.abs(phi), np.sort(weight, axis=0), int(below), stats
        )
        return quantiles.lerp(stats[:, 0], stats[:, 1], virtual - below)

    return _thresholds.get(key, compute)


def _fingerprint(*arrays: np.ndarray) -> str:
    sha = hashlib.sha256()
    for array in arrays:
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()


_thresholds: BoundedMemo[np.ndarray] = BoundedMemo(16)


def weight_mask(
    phi: np.ndarray, weight: np.ndarray, c: int, threshold: float, p_w: float
) -> np.ndarray:
    """``M_c[k,j] = |Φ[c,j]|·W[k,j] > threshold`` [K,D] (all True at p_w = 0)."""
    return _keep_above(np.abs(phi[c])[None, :] * weight, np.asarray(threshold), p_w)


def line_logits(
    h: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    phi: np.ndarray,
    p_a: float,
    p_w: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Pruned logits ``z`` [N,K] and the predicted classes ``ĉ`` [N] (from the clipped, unpruned head)."""
    weight = np.asarray(weight, np.float64)
    clipped = np.minimum(np.asarray(h, np.float64), tau)
    predicted = (clipped @ weight.T + bias).argmax(axis=1)
    act = activation_masks(phi, p_a)
    thresholds = weight_thresholds(phi, weight, p_w)
    # Group samples by predicted class (contiguous slices), then one matrix product per class.
    order = np.argsort(predicted, kind="stable")
    classes, starts = np.unique(predicted[order], return_index=True)
    logits = np.empty((len(clipped), weight.shape[0]))
    for c, rows in zip(classes, np.split(order, starts[1:])):
        pruned_weight = weight * weight_mask(phi, weight, c, thresholds[c], p_w)
        logits[rows] = (clipped[rows] * act[c]) @ pruned_weight.T + bias
    return logits, predicted


@dataclass(frozen=True)
class Evidence:
    """What LINe's pruning does to labelled ID samples: accuracy (%) and mean winning logit, before and after."""

    accuracy_before: float
    accuracy_after: float
    logit_before: float
    logit_after: float


def id_evidence(
    h: np.ndarray,
    logits: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    phi: np.ndarray,
    p_a: float,
    p_w: float,
    tau: float,
) -> Evidence:
    """Accuracy and the mean largest logit of ID samples with the original head (``logits``) and with LINe's
    pruned, clipped head (the paper's claim: ID samples keep their evidence)."""
    pruned, _ = line_logits(h, weight, bias, phi, p_a, p_w, tau)
    original = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    return Evidence(
        100 * float((original.argmax(1) == labels).mean()),
        100 * float((pruned.argmax(1) == labels).mean()),
        float(original.max(1).mean()),
        float(pruned.max(1).mean()),
    )


def line_score(
    h: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    phi: np.ndarray,
    p_a: float,
    p_w: float,
    tau: float,
) -> np.ndarray:
    """LINe score ``logsumexp((W ⊙ M_ĉ)(h̄ ⊙ m_ĉ) + b)`` [N] (higher = more ID), class-grouped matrix products;
    the reference for ``fast_line_score`` and the microscope."""
    return logsumexp(line_logits(h, weight, bias, phi, p_a, p_w, tau)[0], axis=1)


def class_pairs(
    phi: np.ndarray, weight: np.ndarray, p_a: float, p_w: float, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each class c in ``classes``, the (k, j) weights LINe keeps, ``M_c[k,j] ∧ m_c[j]``, with their values:
    ``(starts [K+1], class k, column j, W[k,j])``, grouped by c (class c's pairs are ``starts[c]:starts[c+1]``)."""
    weight = np.asarray(weight, np.float64)
    act = activation_masks(phi, p_a)
    thresholds = weight_thresholds(phi, weight, p_w)
    counts = np.zeros(len(phi) + 1, np.int64)
    parts_k, parts_j = [], []
    for c in np.unique(classes):
        k, j = np.nonzero(
            weight_mask(phi, weight, int(c), thresholds[c], p_w) & act[c][None, :]
        )
        counts[c + 1] = len(k)
        parts_k.append(k)
        parts_j.append(j)
    pair_class = np.concatenate(parts_k) if parts_k else np.zeros(0, np.int64)
    pair_column = np.concatenate(parts_j) if parts_j else np.zeros(0, np.int64)
    return np.cumsum(counts), pair_class, pair_column, weight[pair_class, pair_column]


_pairs: BoundedMemo[tuple] = BoundedMemo(16)
PREDICTED = Prepare(
    name="line-predicted",
    fn=lambda f, state, tau: {
        "line/predicted": prefix_scores(f, kernels.CLIPPED_ARGMAX, clip=tau)
    },
    needs=("penultimate", "head/weight", "head/bias"),
    params=("tau",),
)


def kept_pairs(phi: np.ndarray, weight: np.ndarray, p_a: float, p_w: float) -> tuple:
    """``class_pairs`` for every class, memoised per (Φ, W, p_a, p_w): the same for every scored set."""
    phi, weight = (
        np.ascontiguousarray(phi, np.float64),
        np.ascontiguousarray(weight, np.float64),
    )
    key = (_fingerprint(phi, weight), float(p_a), float(p_w))
    return _pairs.get(
        key, lambda: class_pairs(phi, weight, p_a, p_w, np.arange(len(phi)))
    )


def fast_line_score(
    features, phi: np.ndarray, p_a: float, p_w: float, tau: float
) -> np.ndarray:
    """LINe from the prepared arrays: ĉ (``PREDICTED``, per τ), then only the kept (k, j) weights of each row's ĉ,
    read out with energy (compiled loop); equal to ``line_score``."""
    predicted = np.asarray(features["line/predicted"], np.int64)
    k, d = np.shape(features["head/weight"])
    if (
        k * k * d > PAIR_BUDGET
    ):  # ImageNet: up to K·K·D = 2·10⁹ kept pairs would not fit in memory
        return _grouped_line_energy(features, phi, p_a, p_w, tau, predicted)
    starts, pair_class, pair_column, pair_weight = kept_pairs(
        phi, features["head/weight"], p_a, p_w
    )
    out = np.empty(len(predicted))
    kernels.line_energy(
        features["penultimate"], predicted, float(tau), starts, pair_class, pair_column, pair_weight,
        np.asarray(features["head/bias"], np.float64), out,
    )  # fmt: skip
    return out


PAIR_BUDGET = (
    1 << 27
)  # kept (k, j) pairs over all classes; beyond it, one masked matrix product per class


def _grouped_line_energy(
    features, phi: np.ndarray, p_a: float, p_w: float, tau: float, predicted: np.ndarray
) -> np.ndarray:
    """LINe for a large head: rows grouped by ĉ, one float32 product with ĉ's pruned head per group, the
    log-sum-exp in float64 (as ``line_logits``, with ĉ from the prepared arrays)."""
    weight = np.ascontiguousarray(features["head/weight"], np.float64)
    bias = np.asarray(features["head/bias"], np.float64)
    act = activation_masks(phi, p_a)
    thresholds = weight_thresholds(phi, weight, p_w)
    abs_phi = np.abs(phi)
    weight32 = np.ascontiguousarray(features["head/weight"], np.float32)
    kept = torch.empty(weight.shape, dtype=torch.float32)
    order = np.argsort(predicted, kind="stable")
    classes, starts = np.unique(predicted[order], return_index=True)
    out = np.empty(len(predicted))
    for c, rows in zip(classes, np.split(order, starts[1:])):
        kernels.pruned_head(
            weight32, abs_phi[c], thresholds[c], p_w > 0, act[c], kept.numpy()
        )
        clipped = np.minimum(np.asarray(features["penultimate"][rows], np.float32), tau)
        logits = (torch.from_numpy(clipped) @ kept.T).double().numpy() + bias
        energies = np.empty(len(rows))
        kernels.lse_rows(logits, energies)
        out[rows] = energies
    return out


@dataclass(frozen=True)
class LineImportance:
    """Shapley importance Φ [K, D] of each penultimate neuron for each class, from the ID train set."""

    phi: np.ndarray


def fit_importance(train: TrainData) -> LineImportance:
    weight = np.asarray(train["head/weight"], np.float64)
    means = class_means(
        np.asarray(train["penultimate"], np.float64), train["labels"], weight.shape[0]
    )
    return LineImportance(importance(weight, means))


LINE_IMPORTANCE = Fit(
    name="line-importance",
    fn=fit_importance,
    needs=("penultimate", "labels", "head/weight"),
    state=LineImportance,
)


@dataclass(frozen=True)
class Microscope:
    """One sample under LINe: its activations before/after clipping, the kept neurons and both logit vectors."""

    activations: np.ndarray
    clipped: np.ndarray
    kept: np.ndarray
    predicted: int
    logits_before: np.ndarray
    logits_after: np.ndarray


def microscope(
    h: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    phi: np.ndarray,
    p_a: float,
    p_w: float,
    tau: float,
) -> Microscope:
    """What LINe does to one feature vector ``h`` [D] (for the LINe page's close-up)."""
    row = np.asarray(h, np.float64)[None, :]
    pruned, predicted = line_logits(row, weight, bias, phi, p_a, p_w, tau)
    c = int(predicted[0])
    return Microscope(
        activations=row[0],
        clipped=np.minimum(row[0], tau),
        kept=activation_masks(phi, p_a)[c],
        predicted=c,
        logits_before=row[0] @ np.asarray(weight, np.float64).T
        + np.asarray(bias, np.float64),
        logits_after=pruned[0],
    )


LINE = Method(
    name="line",
    label="LINe",
    family="shaping",
    needs=("penultimate", "head/weight", "head/bias"),
    formula=r"S=\log\sum_k e^{z_k},\; z=(W\odot M_{\hat c})(\min(h,\tau)\odot m_{\hat c})+b",
    paper=arxiv(
        "LINe: Out-of-Distribution Detection by Leveraging Important Neurons",
        "CVPR 2023",
        "2303.13995",
    ),
    score_fn=lambda f, state, p_a, p_w, tau: fast_line_score(
        f, state.phi, p_a, p_w, tau
    ),
    params=(
        Param(
            "p_a",
            90.0,
            0.0,
            99.0,
            1.0,
            "Activation pruning: keep neurons above this percentile of the "
            "predicted class's importance (paper: 90 CIFAR-10, 10 CIFAR-100 and ImageNet).",
            paper={"cifar10": 90.0, "cifar100": 10.0, "imagenet": 10.0},
        ),
        Param(
            "p_w",
            90.0,
            0.0,
            99.0,
            1.0,
            "Weight pruning percentile of |Φ_c|·W (paper: 90 CIFAR, 10 ImageNet).",
            paper={"cifar10": 90.0, "cifar100": 90.0, "imagenet": 10.0},
        ),
        Param(
            "tau",
            1.0,
            0.01,
            1000.0,
            0.01,
            "Clip activations at τ (absolute; paper: 1.0 CIFAR, 0.8 ImageNet).",
            paper={"cifar10": 1.0, "cifar100": 1.0, "imagenet": 0.8},
        ),
    ),
    fit=LINE_IMPORTANCE,
    # ĉ = argmax(W·min(h, τ) + b) depends on τ only: moving p_a or p_w reuses it.
    prepare=(SORTED_ROWS, PREDICTED),
)

METHODS = (LINE,)
