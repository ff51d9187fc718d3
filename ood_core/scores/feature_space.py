"""Distance-based scores on the penultimate feature (higher = more ID)."""

from __future__ import annotations

import numpy as np

from ..cache import FeatureSet
from ..errors import OODLabError
from ..memo import BoundedMemo
from ..train_stats import TrainStats, l2_normalise


def mahalanobis(
    h: np.ndarray, class_means: np.ndarray, precision: np.ndarray
) -> np.ndarray:
    """``−min_c (h − μ_c)ᵀ Σ⁻¹ (h − μ_c)`` with class means and one shared covariance of the ID train features
    (Lee et al., NeurIPS 2018; penultimate layer only, no input pre-processing)."""
    h = np.asarray(h, np.float64)
    hp = h @ precision
    quad = (
        (hp * h).sum(1)[:, None]
        - 2 * hp @ class_means.T
        + np.einsum("kd,de,ke->k", class_means, precision, class_means)
    )
    return -quad.min(axis=1)


def knn_from_distances(sorted_distances: np.ndarray, k: int) -> np.ndarray:
    """``−‖z − z_(k)‖``: minus the distance to the k-th nearest ID train feature, with z = h/‖h‖ (cosine KNN,
    Sun et al., ICML 2022; default k = 50). ``sorted_distances`` [N, k_max] are ascending neighbour distances."""
    if k > sorted_distances.shape[1]:
        raise OODLabError(
            f"KNN: k={k} exceeds the {sorted_distances.shape[1]} ID train samples; choose a smaller k"
        )
    return -np.asarray(sorted_distances[:, int(k) - 1], np.float64)


_neighbours: BoundedMemo[np.ndarray] = BoundedMemo(32)


def neighbour_distances(features: FeatureSet, stats: TrainStats) -> np.ndarray:
    """Ascending distances [N, k_max] of each normalised feature to its k_max nearest normalised ID train features,
    computed once per (feature set, train set) so that moving the k slider is a lookup."""
    key = (str(features.root), str(features.meta.get("created")), stats.source)

    def compute() -> np.ndarray:
        distances, _ = stats.knn.kneighbors(l2_normalise(features.penultimate))
        return distances.astype(np.float32)

    return _neighbours.get(key, compute)
