"""Statistics of the ID training set that post-hoc methods need, derived once from a cached train FeatureSet.

Memoised per process by the train entry's path and creation time, so slider moves never recompute them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.covariance import EmpiricalCovariance
from sklearn.neighbors import NearestNeighbors

from .cache import FeatureSet
from .errors import OODLabError
from .memo import BoundedMemo

# ReAct thresholds for p in 0..100 step 0.1, exactly as np.percentile.
QUANTILE_GRID = np.linspace(0, 1, 1001)
KNN_MAX_K = 200


@dataclass(frozen=True)
class TrainStats:
    """Derived from the ID train penultimate features ``h`` [N,D], labels and the linear head."""

    weight: np.ndarray  # W [K,D]
    bias: np.ndarray  # b [K]
    class_means: np.ndarray  # μ_c [K,D]
    precision: np.ndarray  # shared Σ⁻¹ [D,D] of h − μ_y (sklearn EmpiricalCovariance)
    mean_activation: np.ndarray  # mean_i h_i [D] (DICE)
    # Quantiles of all entries of h on QUANTILE_GRID (ReAct).
    activation_quantiles: np.ndarray
    knn: NearestNeighbors  # fitted on L2-normalised h (cosine KNN)
    source: str  # the train entry, for provenance

    def react_threshold(self, percentile: float) -> float:
        """The ``percentile``-th percentile of all ID train activations (linear interpolation, as np.percentile)."""
        return float(
            np.interp(percentile / 100, QUANTILE_GRID, self.activation_quantiles)
        )


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def compute_train_stats(train: FeatureSet) -> TrainStats:
    """Compute the statistics from a train FeatureSet (labels ≥ 0 required)."""
    h = np.asarray(train.penultimate, np.float64)
    labels = np.asarray(train.labels)
    if (labels < 0).any():
        raise OODLabError(
            f"{train.root.name}: train features need class labels for class means"
        )
    weight = np.asarray(train["head/weight"], np.float64)
    bias = np.asarray(train["head/bias"], np.float64)
    classes = weight.shape[0]
    counts = np.bincount(labels, minlength=classes)
    sums = np.zeros((classes, h.shape[1]))
    np.add.at(sums, labels, h)
    means = sums / np.maximum(counts, 1)[:, None]
    covariance = EmpiricalCovariance(assume_centered=True).fit(h - means[labels])
    knn = NearestNeighbors(n_neighbors=min(KNN_MAX_K, len(h)), algorithm="brute").fit(
        l2_normalise(h)
    )
    return TrainStats(
        weight=weight,
        bias=bias,
        class_means=means,
        precision=covariance.precision_,
        mean_activation=h.mean(axis=0),
        activation_quantiles=np.quantile(h.ravel(), QUANTILE_GRID),
        knn=knn,
        source=str(train.root),
    )


_memo: BoundedMemo[TrainStats] = BoundedMemo(8)


def train_stats(train: FeatureSet) -> TrainStats:
    """Memoised ``compute_train_stats`` (one computation per train entry and process)."""
    key = (str(train.root), str(train.meta.get("created")))
    return _memo.get(key, lambda: compute_train_stats(train))
