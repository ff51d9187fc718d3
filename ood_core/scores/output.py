"""Output-space detectors: scores of the logits alone (higher = more ID).

- MSP ``max_k softmax(z)_k`` (Hendrycks & Gimpel, ICLR 2017).
- MaxLogit ``max_k z_k`` (Hendrycks et al., ICML 2022).
- Energy ``T·logsumexp(z/T)``, the negative free energy (Liu et al., NeurIPS 2020); default T = 1.
- GEN ``−Σ_{j∈top-M} p_j^γ (1 − p_j)^γ`` of the softmax p (Liu et al., CVPR 2023); γ = 0.1, M = 100 (ImageNet),
  M = K on CIFAR.
- Entropy ``Σ_k p_k log p_k``, the negative Shannon entropy of the softmax p (the entropy baseline; pytorch-ood
  cites Chan et al., ICCV 2021).
- KL-Matching ``−min_c KL(p ‖ d_c)`` (Hendrycks et al., ICML 2022): d_c is the mean softmax of the ID-train samples
  the model *predicts* as c (the paper fits on a validation split; labels are not needed). Classes never predicted
  have no template and are skipped.
- ODIN ``max_k softmax(f(x')/T)_k`` on perturbed inputs x' (Liang et al., ICLR 2018); T = 1000, ε = 0.0014.
  Its array ``odin`` needs the model again, so the workspace computes it once per (T, ε) and caches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OODLabError
from . import dense, kernels
from .method import Fit, Method, Paper, Param, Prepare, TrainData, arxiv


def shifted(
    logits: np.ndarray, temperature: float = 1.0, floor: float = -np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """``max((z − max z)/T, floor)`` [N, K] and ``max z`` [N], in float64 (``kernels.shifted_rows``)."""
    out, top = np.empty(np.shape(logits)), np.empty(len(logits))
    kernels.shifted_rows(
        np.ascontiguousarray(logits), float(temperature), float(floor), out, top
    )
    return out, top


def exp_shifted(
    logits: np.ndarray, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``e^{(z − max z)/T}`` [N, K] and ``max z`` [N], in float64, for row sums only: exponents below
    ``kernels.EXP_FLOOR`` are raised to it (the row sums are bit for bit the same, see there)."""
    values, top = shifted(logits, temperature, kernels.EXP_FLOOR)
    return np.exp(values, out=values), top


def row_sums(values: np.ndarray) -> np.ndarray:
    """``Σ_k values[i, k]`` [N] (``kernels.row_sums``: 8× faster than ``sum(axis=1)`` on rows of 10). BLAS's
    matrix-vector product was as fast alone, but between two numba kernels its threads and numba's spun against each
    other on 2 cores: ~4 ms for each side instead of 0.1–0.3 ms."""
    out = np.empty(len(values))
    kernels.row_sums(np.ascontiguousarray(values, np.float64), out)
    return out


def softmax_rows(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``p = softmax(z)`` and ``log p`` [N, K] in float64, with one exp per entry."""
    z = np.asarray(logits, np.float64)
    # A row holding +inf gives NaN (inf − inf), which the workspace reports.
    with np.errstate(invalid="ignore"):
        values = z - z.max(axis=1, keepdims=True)
    exponentials = np.exp(values)
    totals = row_sums(exponentials)
    return exponentials / totals[:, None], values - np.log(totals)[:, None]


def msp(logits: np.ndarray) -> np.ndarray:
    """``max_k softmax(z)_k = 1 / Σ_k e^{z_k − max z}`` [N]."""

    def rows(chunk: np.ndarray) -> np.ndarray:
        sums = row_sums(exp_shifted(chunk)[0])
        return np.reciprocal(sums, out=sums)

    return dense.by_rows(rows, logits)


def max_logit(logits: np.ndarray) -> np.ndarray:
    """``max_k z_k`` [N]."""
    return np.asarray(logits, np.float64).max(axis=1)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``T · logsumexp(z / T) = max z + T · log Σ_k e^{(z_k − max z)/T}`` [N] (stable for large logits)."""

    def rows(chunk: np.ndarray) -> np.ndarray:
        exponentials, top = exp_shifted(chunk, temperature)
        return top + temperature * np.log(row_sums(exponentials))

    return dense.by_rows(rows, logits)


MSP = Method(
    name="msp",
    label="MSP",
    family="output",
    needs=("logits",),
    formula=r"S=\max_k \operatorname{softmax}(z)_k",
    paper=arxiv(
        "A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural Networks",
        "ICLR 2017",
        "1610.02136",
    ),
    score_fn=lambda features, state: msp(features["logits"]),
)

MAX_LOGIT = Method(
    name="maxlogit",
    label="MaxLogit",
    family="output",
    needs=("logits",),
    formula=r"S=\max_k z_k",
    paper=arxiv(
        "Scaling Out-of-Distribution Detection for Real-World Settings",
        "ICML 2022",
        "1911.11132",
    ),
    score_fn=lambda features, state: max_logit(features["logits"]),
)

ENERGY = Method(
    name="energy",
    label="Energy",
    family="output",
    needs=("logits",),
    formula=r"S=T\log\sum_k e^{z_k/T}",
    paper=arxiv(
        "Energy-based Out-of-distribution Detection", "NeurIPS 2020", "2010.03759"
    ),
    score_fn=lambda features, state, T: energy(features["logits"], T),
    params=(
        Param(
            "T",
            1.0,
            0.1,
            100.0,
            0.1,
            "Temperature T of the energy score (paper: 1).",
            paper={"cifar10": 1.0, "cifar100": 1.0, "imagenet": 1.0},
        ),
    ),
)


def gen_terms(logits: np.ndarray) -> np.ndarray:
    """``log(p_j (1 − p_j))`` [N, K] of ``p = softmax(z)`` with each row in decreasing order of ``p`` (float64;
    ``−inf`` where the product is 0): everything of GEN that does not depend on γ or M, computed once per set.

    ``log(1 − p_top)`` of the top class is the log-sum-exp of the other classes' log-probabilities: ``log1p(−p)``
    would cancel once ``1 − p`` falls below ~1e-15 (a confident prediction); the others have ``p ≤ ½``, where
    ``log1p(−p)`` is exact."""

    def rows(chunk: np.ndarray) -> np.ndarray:
        log_p = -np.sort(-softmax_rows(chunk)[1], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            complement = np.log1p(-np.exp(log_p))
            if log_p.shape[1] > 1:
                rest = log_p[:, 1:]
                top = rest.max(axis=1)
                finite = np.isfinite(top)
                shifted = np.where(finite[:, None], rest - top[:, None], rest)
                complement[:, 0] = np.where(
                    finite, top + np.log(row_sums(np.exp(shifted))), top
                )
            return log_p + complement

    return dense.by_rows(rows, logits)


def gen_from_terms(terms: np.ndarray, gamma: float, m: int) -> np.ndarray:
    """``−Σ_{j<M} exp(γ·terms_j)`` [N]: GEN from ``gen_terms`` (M larger than the number of classes means all)."""
    values = np.multiply(np.asarray(terms)[:, : int(m)], gamma)
    sums = row_sums(np.exp(values, out=values))
    return np.negative(sums, out=sums)


def gen(logits: np.ndarray, gamma: float = 0.1, m: int = 100) -> np.ndarray:
    """``−Σ_{j∈top-M} p_j^γ (1 − p_j)^γ`` [N] of ``p = softmax(z)`` (the paper's sum, negated so higher = more ID;
    M larger than the number of classes means all of them), as ``exp(γ·log(p(1 − p)))`` in float64."""
    return gen_from_terms(gen_terms(logits), gamma, m)


GEN = Method(
    name="gen",
    label="GEN",
    family="output",
    needs=("logits",),
    formula=r"S=-\sum_{j\in\text{top-}M} p_j^{\gamma}(1-p_j)^{\gamma},\quad p=\operatorname{softmax}(z)",
    paper=Paper(
        "GEN: Pushing the Limits of Softmax-Based Out-of-Distribution Detection",
        "CVPR 2023",
        "https://openaccess.thecvf.com/content/CVPR2023/html/Liu_GEN_Pushing_the_Limits_of_Softmax-Based_"
        "Out-of-Distribution_Detection_CVPR_2023_paper.html",
    ),
    score_fn=lambda features, state, gamma, M: gen_from_terms(
        features["gen/terms"], gamma, M
    ),
    prepare=Prepare(
        name="gen-terms",
        fn=lambda features, state: {"gen/terms": gen_terms(features["logits"])},
        needs=("logits",),
        store=True,
        version=2,  # 1 took log(1 − p_top) as log1p(−p_top), which cancels for confident predictions
    ),
    params=(
        Param(
            "gamma",
            0.1,
            0.01,
            2.0,
            0.01,
            "Exponent γ of the generalized entropy (paper: 0.1).",
            paper={"cifar10": 0.1, "cifar100": 0.1, "imagenet": 0.1},
        ),
        Param(
            "M",
            100,
            1,
            1000,
            1,
            "How many of the largest probabilities enter the sum (paper: 100 on ImageNet; all classes on CIFAR).",
            kind="int",
            paper={"cifar10": 10, "cifar100": 100, "imagenet": 100},
        ),
    ),
)


def negative_entropy(logits: np.ndarray) -> np.ndarray:
    """``Σ_k p_k log p_k`` [N] of ``p = softmax(z)`` (float64, ``0·log 0 = 0``)."""

    def rows(chunk: np.ndarray) -> np.ndarray:
        # With d = z − max z: Σ p log p = Σ e^d·d / Σ e^d − log Σ e^d.
        values, _ = shifted(chunk)
        out, totals = np.empty(len(values)), np.empty(len(values))
        kernels.entropy_rows(values, np.exp(values), out, totals)
        return np.subtract(out, np.log(totals, out=totals), out=out)

    return dense.by_rows(rows, logits)


ENTROPY = Method(
    name="entropy",
    label="Entropy",
    family="output",
    needs=("logits",),
    formula=r"S=\sum_k p_k\log p_k,\quad p=\operatorname{softmax}(z)",
    paper=arxiv(
        "Entropy Maximization and Meta Classification for Out-of-Distribution Detection in Semantic Segmentation",
        "ICCV 2021",
        "2012.06575",
    ),
    score_fn=lambda features, state: negative_entropy(features["logits"]),
)


@dataclass(frozen=True)
class ClassPosteriors:
    """Mean softmax ``d_c`` [K', K] of the ID-train samples predicted as each class ``classes[i]`` [K']."""

    classes: np.ndarray
    posteriors: np.ndarray


def fit_class_posteriors(train: TrainData) -> ClassPosteriors:
    p, _ = softmax_rows(train["logits"])
    predicted = p.argmax(axis=1)
    classes = np.unique(predicted)
    if len(classes) == 0:
        raise OODLabError("KL-Matching needs at least one ID train sample")
    return ClassPosteriors(
        classes, np.stack([p[predicted == c].mean(axis=0) for c in classes])
    )


def kl_matching(logits: np.ndarray, posteriors: np.ndarray) -> np.ndarray:
    """``−min_c KL(p ‖ d_c) = −min_c Σ_k p_k (log p_k − log d_ck)`` [N] (float64, ``kernels.kl_rows``); a template
    with ``d_ck = 0`` where ``p_k > 0`` is infinitely far."""
    with np.errstate(divide="ignore"):
        log_d = np.log(np.asarray(posteriors, np.float64))
    log_d = np.where(np.isfinite(log_d), log_d, -1e300)
    out = np.empty(len(logits))
    kernels.kl_rows(np.ascontiguousarray(logits), log_d, out)
    return out


KL_MATCHING = Method(
    name="kl-matching",
    label="KL-Matching",
    family="output",
    needs=("logits",),
    formula=r"S=-\min_c \mathrm{KL}\left(p \,\middle\|\, d_c\right),\; d_c=\mathbb{E}_{x\in\text{train}:\hat y(x)=c}[p(x)]",
    paper=MAX_LOGIT.paper,
    score_fn=lambda features, state: kl_matching(features["logits"], state.posteriors),
    fit=Fit(
        name="class-posteriors",
        fn=fit_class_posteriors,
        needs=("logits",),
        state=ClassPosteriors,
    ),
)

ODIN = Method(
    name="odin",
    label="ODIN",
    family="output",
    needs=("odin",),
    formula=r"S=\max_k \operatorname{softmax}\!\left(f(x-\epsilon\,\operatorname{sign}(-\nabla_x \log S_{\hat y}))/T\right)_k",
    paper=arxiv(
        "Enhancing The Reliability of Out-of-distribution Image Detection in Neural Networks",
        "ICLR 2018",
        "1706.02690",
    ),
    score_fn=lambda features, state, T, eps: np.asarray(features["odin"], np.float64),
    params=(
        Param(
            "T",
            1000.0,
            1.0,
            1000.0,
            1.0,
            "Softmax temperature (paper: 1000).",
            paper={"cifar10": 1000.0, "cifar100": 1000.0, "imagenet": 1000.0},
        ),
        Param(
            "eps",
            0.0014,
            0.0,
            0.01,
            0.0002,
            "Perturbation size in [0,1] pixel units (paper: 0.0014).",
            paper={"cifar10": 0.0014, "cifar100": 0.0014},
        ),
    ),
    cost="reinference",
)

METHODS = (MSP, MAX_LOGIT, ENERGY, GEN, ENTROPY, KL_MATCHING, ODIN)
