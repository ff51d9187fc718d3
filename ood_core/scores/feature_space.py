"""Feature-space detectors on the penultimate feature h (higher = more ID).

- Mahalanobis (Lee et al., NeurIPS 2018): ``−min_c (h − μ_c)ᵀ Σ⁻¹ (h − μ_c)`` with the ID-train class means μ_c
  and one shared covariance Σ of ``h − μ_y`` (as sklearn's ``empirical_covariance``, pseudo-inverted as sklearn's
  ``EmpiricalCovariance`` does); penultimate layer only, no input pre-processing.
- Mahalanobis++ (Mueller & Hein, ICML 2025): the same score on L2-normalised features ``h/‖h‖₂`` (means and
  covariance fitted on normalised ID-train features).
- RMDS, the relative Mahalanobis distance (Ren et al., arXiv 2021): ``−min_c [MD_c(h) − MD_0(h)]``, MD_0 the
  Mahalanobis distance to one Gaussian fitted to all ID-train features (its own mean and covariance).
- KNN (Sun et al., ICML 2022): ``−‖z − z_(k)‖₂`` with ``z = h/‖h‖`` and ``z_(k)`` the k-th nearest normalised ID-train
  feature; default k = 50 (CIFAR-10). The ascending distances to the 200 nearest train features are computed once
  per scored set (exactly, by a bfloat16 screen and an exact re-rank on the CPU: ``neighbours``) so that moving k is
  a column lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OODLabError
from . import dense
from .method import Fit, Method, Param, Prepare, TrainData, arxiv, stored_scores
from .moments import class_means, covariance
from .neighbours import Bank, top_similarities

KNN_MAX_K = 200


@dataclass(frozen=True)
class ClassGaussian:
    """Class means μ [K, D] and the shared precision Σ⁻¹ [D, D] of the ID-train features."""

    means: np.ndarray
    precision: np.ndarray


def fit_class_gaussian(train: TrainData, normalise: bool = False) -> ClassGaussian:
    h = train["penultimate"]
    if normalise:
        h = l2_normalise(h)
    labels = np.asarray(train["labels"])
    means = class_means(h, labels, train["head/weight"].shape[0])
    return ClassGaussian(
        means, pseudo_inverse(covariance(h, lambda a, b: means[labels[a:b]]))
    )


def pseudo_inverse(covariance: np.ndarray) -> np.ndarray:
    """The precision Σ⁺ of a symmetric covariance, as ``scipy.linalg.pinvh`` (which sklearn's
    ``EmpiricalCovariance`` uses) computes it: eigenvalues at most ``max|λ|·D·ε`` are dropped. numpy's ``eigh`` is
    ~7× faster here than the path through ``pinvh`` at D = 2,048."""
    values, vectors = np.linalg.eigh(covariance)
    kept = (
        np.abs(values) > np.abs(values).max() * len(values) * np.finfo(np.float64).eps
    )
    vectors = vectors[:, kept]
    return (vectors / values[kept]) @ vectors.T


CLASS_GAUSSIAN = Fit(
    name="class-gaussian",
    fn=fit_class_gaussian,
    needs=("penultimate", "labels", "head/weight"),
    state=ClassGaussian,
)
NORMALISED_CLASS_GAUSSIAN = Fit(
    name="normalised-class-gaussian",
    fn=lambda train: fit_class_gaussian(train, normalise=True),
    needs=("penultimate", "labels", "head/weight"),
    state=ClassGaussian,
)


def mahalanobis(h: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``−min_c (h − μ_c)ᵀ Σ⁻¹ (h − μ_c)`` [N] (float64, a chunk of rows at a time)."""
    # μ_cᵀ Σ⁻¹ μ_c by BLAS (numpy's einsum ran this as a naive K·D·D loop)
    constant = ((means @ precision) * means).sum(axis=1)

    def rows(chunk: np.ndarray) -> np.ndarray:
        x = np.asarray(chunk, np.float64)
        xp = x @ precision
        return -((xp * x).sum(1)[:, None] - 2 * xp @ means.T + constant).min(axis=1)

    return dense.by_rows(rows, h)


MAHALANOBIS = Method(
    name="mahalanobis",
    label="Mahalanobis",
    family="feature",
    needs=("penultimate",),
    formula=r"S=-\min_c (h-\mu_c)^\top \Sigma^{-1} (h-\mu_c)",
    paper=arxiv(
        "A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks",
        "NeurIPS 2018",
        "1807.03888",
    ),
    fit=CLASS_GAUSSIAN,
    **stored_scores(
        "mahalanobis",
        lambda f, s: mahalanobis(f["penultimate"], s.means, s.precision),
    ),
)

MAHALANOBIS_PLUS = Method(
    name="mahalanobis++",
    label="Mahalanobis++",
    family="feature",
    needs=("penultimate",),
    formula=r"S=-\min_c (z-\mu_c)^\top \Sigma^{-1} (z-\mu_c),\; z=h/\lVert h\rVert_2",
    paper=arxiv(
        "Mahalanobis++: Improving OOD Detection via Feature Normalization",
        "ICML 2025",
        "2505.18032",
    ),
    fit=NORMALISED_CLASS_GAUSSIAN,
    **stored_scores(
        "mahalanobis-pp",
        lambda f, s: mahalanobis(l2_normalise(f["penultimate"]), s.means, s.precision),
    ),
)


@dataclass(frozen=True)
class BackgroundGaussian:
    """Mean μ_0 [D] and precision Σ_0⁻¹ [D, D] of all ID-train features (one Gaussian, classes ignored)."""

    mean: np.ndarray
    precision: np.ndarray


def fit_background_gaussian(train: TrainData) -> BackgroundGaussian:
    h = train["penultimate"]
    mean = np.asarray(h).mean(axis=0, dtype=np.float64)
    return BackgroundGaussian(mean, pseudo_inverse(covariance(h, lambda a, b: mean)))


RMDS_PAPER = arxiv(
    "A Simple Fix to Mahalanobis Distance for Improving Near-OOD Detection",
    "arXiv 2021",
    "2106.09022",
)
BACKGROUND_DISTANCE = Method(
    name="rmds-background",
    label="MD₀",
    family="feature",
    needs=("penultimate",),
    formula=r"S=MD_0(h)=(h-\mu_0)^\top\Sigma_0^{-1}(h-\mu_0)",
    paper=RMDS_PAPER,
    fit=Fit(
        name="background-gaussian",
        fn=fit_background_gaussian,
        needs=("penultimate",),
        state=BackgroundGaussian,
    ),
    **stored_scores(
        "rmds-background",
        lambda f, s: -mahalanobis(f["penultimate"], s.mean[None, :], s.precision),
    ),
    sign="higher = farther from the ID-train mean",
)  # RMDS's second part, not registered: alone it is not a detector

RMDS = Method(
    name="rmds",
    label="RMDS",
    family="feature",
    needs=("penultimate",),
    formula=r"S=-\min_c\left[MD_c(h)-MD_0(h)\right],\; MD_0(h)=(h-\mu_0)^\top\Sigma_0^{-1}(h-\mu_0)",
    paper=RMDS_PAPER,
    # −min_c [MD_c − MD_0] = −min_c MD_c + MD_0: Mahalanobis's scores (its fit and stored scores are shared) plus MD_0.
    score_fn=lambda class_scores, background: class_scores + background,
    parts=((MAHALANOBIS, ()), (BACKGROUND_DISTANCE, ())),
)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32; zero rows stay zero)."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class NeighbourBank:
    """The L2-normalised ID-train features [N_train, D] (float32), prepared for the neighbour search."""

    bank: Bank


NEIGHBOUR_BANK = Fit(
    name="neighbour-bank",
    fn=lambda train: NeighbourBank(Bank(l2_normalise(train["penultimate"]))),
    needs=("penultimate",),
    state=NeighbourBank,
    store=False,  # as large as the train features and cheap to rebuild
)


def nearest_distances(
    queries: np.ndarray, bank: Bank | np.ndarray, k: int = KNN_MAX_K
) -> np.ndarray:
    """Ascending Euclidean distances [N, min(k, N_bank)] from each unit-length query to its nearest bank rows:
    ``‖z − b‖ = sqrt(2 − 2 z·b)`` for unit vectors, from the exact top similarities (``neighbours``)."""
    similarity = top_similarities(queries, bank, k).astype(np.float64)
    return np.sqrt(np.clip(2 - 2 * similarity, 0, None)).astype(np.float32)


KNN_DISTANCES = Prepare(
    name="knn-distances",
    fn=lambda features, state: {
        "knn/distances": nearest_distances(
            l2_normalise(features["penultimate"]), state.bank
        )
    },
    needs=("penultimate",),
    store=True,
)


def knn_from_distances(sorted_distances: np.ndarray, k: int) -> np.ndarray:
    """``−d_(k)`` [N] from ascending neighbour distances [N, k_max]."""
    if k > sorted_distances.shape[1]:
        raise OODLabError(
            f"KNN: k={k} exceeds the {sorted_distances.shape[1]} ID train samples; choose a smaller k"
        )
    return -np.asarray(sorted_distances[:, int(k) - 1], np.float64)


KNN_K = Param(
    "k",
    50,
    1,
    KNN_MAX_K,
    1,
    "k-th nearest neighbour (paper: 50 on CIFAR-10, 1000 on ImageNet).",
    kind="int",
    paper={"cifar10": 50, "cifar100": 50},
)

KNN = Method(
    name="knn",
    label="KNN",
    family="feature",
    needs=("penultimate",),
    formula=r"S=-\lVert z-z_{(k)}\rVert_2,\; z=h/\lVert h\rVert",
    paper=arxiv(
        "Out-of-Distribution Detection with Deep Nearest Neighbors",
        "ICML 2022",
        "2204.06507",
    ),
    score_fn=lambda features, state, k: knn_from_distances(
        features["knn/distances"], k
    ),
    params=(KNN_K,),
    fit=NEIGHBOUR_BANK,
    prepare=KNN_DISTANCES,
)

METHODS = (MAHALANOBIS, MAHALANOBIS_PLUS, RMDS, KNN)
