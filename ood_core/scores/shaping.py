"""Activation and weight shaping on the penultimate feature h, read out with the energy score (higher = more ID).

- ReAct (Sun et al., NeurIPS 2021): ``logsumexp(W·min(h, c) + b)``, c = the p-th percentile of all ID-train
  activations (default p = 90).
- DICE (Sun & Li, ECCV 2022): ``logsumexp((W ⊙ M)·h + b)``, M keeps weights whose contribution
  ``mean_train(h)_j·W[k,j]`` exceeds the p-th percentile of all K×D contributions (p = 90 CIFAR, 70 ImageNet).
- ASH-P/B/S (Djurisic et al., ICLR 2023), per sample: keep the top ``k = D − round(D·p/100)`` activations and
  zero the rest (P), set them to ``s1/k`` (B, keeps the sum s1) or scale them by ``exp(s1/s2)`` (S, s2 = their
  sum). Ties are broken towards the lower index (a stable sort), so every variant is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .method import Fit, Method, Param, arxiv
from .output import energy

QUANTILE_GRID = np.linspace(
    0, 1, 1001
)  # ReAct thresholds for p = 0, 0.1, …, 100 exactly as np.percentile
HEAD = ("head/weight", "head/bias")


def logits_of(h: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.asarray(h, np.float64) @ np.asarray(weight, np.float64).T + np.asarray(
        bias, np.float64
    )


@dataclass(frozen=True)
class ActivationQuantiles:
    """Quantiles of all ID-train penultimate activations on ``QUANTILE_GRID``."""

    quantiles: np.ndarray

    def threshold(self, percentile: float) -> float:
        """The ``percentile``-th percentile of all ID-train activations (linear, as ``np.percentile``)."""
        return float(np.interp(percentile / 100, QUANTILE_GRID, self.quantiles))


ACTIVATION_QUANTILES = Fit(
    name="activation-quantiles",
    fn=lambda train: ActivationQuantiles(
        np.quantile(np.asarray(train["penultimate"], np.float64).ravel(), QUANTILE_GRID)
    ),
    needs=("penultimate",),
    state=ActivationQuantiles,
)


def react(
    h: np.ndarray, weight: np.ndarray, bias: np.ndarray, threshold: float
) -> np.ndarray:
    """``logsumexp(W·min(h, c) + b)`` [N]."""
    return energy(logits_of(np.minimum(h, threshold), weight, bias))


REACT_P = Param(
    "p",
    90.0,
    50.0,
    99.9,
    0.1,
    "Clip at this percentile of ID train activations (paper: 90).",
    paper={"cifar10": 90.0, "cifar100": 90.0, "imagenet": 90.0},
)
REACT = Method(
    name="react",
    label="ReAct",
    family="shaping",
    needs=("penultimate", *HEAD),
    formula=r"S=\log\sum_k e^{(W\min(h,c)+b)_k},\; c=\mathrm{pct}_p(h_{train})",
    paper=arxiv(
        "ReAct: Out-of-distribution Detection With Rectified Activations",
        "NeurIPS 2021",
        "2111.12797",
    ),
    score_fn=lambda f, state, p: react(
        f["penultimate"], f["head/weight"], f["head/bias"], state.threshold(p)
    ),
    params=(REACT_P,),
    fit=ACTIVATION_QUANTILES,
)


@dataclass(frozen=True)
class MeanActivation:
    """``mean_i h_i`` [D] over the ID-train features."""

    mean: np.ndarray


MEAN_ACTIVATION = Fit(
    name="mean-activation",
    fn=lambda train: MeanActivation(
        np.asarray(train["penultimate"], np.float64).mean(axis=0)
    ),
    needs=("penultimate",),
    state=MeanActivation,
)


def dice_mask(
    weight: np.ndarray, mean_activation: np.ndarray, percentile: float
) -> np.ndarray:
    """Keep ``W[k,j]`` where ``mean_train(h)_j·W[k,j]`` exceeds the p-th percentile of all K×D contributions."""
    contribution = mean_activation[None, :] * np.asarray(weight, np.float64)
    return contribution > np.percentile(contribution, percentile)


def dice(
    h: np.ndarray, weight: np.ndarray, bias: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """``logsumexp((W ⊙ M)·h + b)`` [N]."""
    return energy(logits_of(h, np.asarray(weight, np.float64) * mask, bias))


DICE_P = Param(
    "p",
    90.0,
    0.0,
    99.0,
    1.0,
    "Weight sparsity percentile (paper: 90 CIFAR, 70 ImageNet).",
    paper={"cifar10": 90.0, "cifar100": 90.0, "imagenet": 70.0},
)
DICE = Method(
    name="dice",
    label="DICE",
    family="shaping",
    needs=("penultimate", *HEAD),
    formula=r"S=\log\sum_k e^{((W\odot M)h+b)_k},\; M=[\bar h_j W_{kj}>\mathrm{pct}_p]",
    paper=arxiv(
        "DICE: Leveraging Sparsification for Out-of-Distribution Detection",
        "ECCV 2022",
        "2111.09805",
    ),
    score_fn=lambda f, state, p: dice(
        f["penultimate"],
        f["head/weight"],
        f["head/bias"],
        dice_mask(f["head/weight"], state.mean, p),
    ),
    params=(DICE_P,),
    fit=MEAN_ACTIVATION,
)


def kept_count(dim: int, percentile: float) -> int:
    """How many activations ASH keeps: ``D − round(D·p/100)``, at least one."""
    return max(1, dim - int(np.round(dim * percentile / 100)))


def ash(h: np.ndarray, percentile: float, variant: str) -> np.ndarray:
    """ASH-``variant`` of each row of ``h`` [N, D] (see the module docstring); ties go to the lower index."""
    x = np.asarray(h, np.float64)
    n, d = x.shape
    k = kept_count(d, percentile)
    index = np.argsort(-x, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(x, index, axis=1)
    s1 = x.sum(1, keepdims=True)
    if variant == "p":
        kept = values
    elif variant == "b":
        kept = np.broadcast_to(s1 / k, (n, k))
    elif variant == "s":
        s2 = values.sum(1, keepdims=True)
        scale = np.exp(
            np.divide(s1, s2, out=np.zeros_like(s1), where=s2 > 0),
            where=s2 > 0,
            out=np.ones_like(s1),
        )
        kept = values * scale
    else:
        raise ValueError(f"ASH variant must be p, b or s, not {variant!r}")
    out = np.zeros_like(x)
    np.put_along_axis(out, index, kept, axis=1)
    return out


def ash_energy(
    h: np.ndarray, weight: np.ndarray, bias: np.ndarray, percentile: float, variant: str
) -> np.ndarray:
    """``logsumexp(W·ASH(h) + b)`` [N]."""
    return energy(logits_of(ash(h, percentile, variant), weight, bias))


ASH_PAPER = arxiv(
    "Extremely Simple Activation Shaping for Out-of-Distribution Detection",
    "ICLR 2023",
    "2209.09858",
)


def ash_param(default: float, cifar: float) -> Param:
    return Param(
        "p",
        default,
        0.0,
        99.0,
        1.0,
        f"Prune all but the top (100−p)% activations (paper: {default:g} ImageNet, {cifar:g} CIFAR).",
        paper={"cifar10": cifar, "cifar100": cifar, "imagenet": default},
    )


def _ash_method(variant: str, default: float, cifar: float) -> Method:
    return Method(
        name=f"ash-{variant}",
        label=f"ASH-{variant.upper()}",
        family="shaping",
        needs=("penultimate", *HEAD),
        formula=rf"S=\log\sum_k e^{{(W\,\mathrm{{ASH}}_{variant.upper()}(h)+b)_k}}",
        paper=ASH_PAPER,
        score_fn=lambda f, state, p: ash_energy(
            f["penultimate"], f["head/weight"], f["head/bias"], p, variant
        ),
        params=(ash_param(default, cifar),),
    )


ASH_P = _ash_method("p", 60.0, 90.0)
ASH_B = _ash_method("b", 65.0, 95.0)
ASH_S = _ash_method("s", 90.0, 95.0)

METHODS = (REACT, DICE, ASH_P, ASH_B, ASH_S)
