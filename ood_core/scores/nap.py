"""Neural Activation Prior (seed 002: "Out-of-Distribution Detection using Neural Activation Prior", 2024).

- NAP on a block's post-ReLU map, from the cached per-channel max and mean: ``S_NAP = mean_c (max_c/(mean_c + ε))²``,
  ε = 1 (paper). A channel that fires strongly at a few positions (high max, low mean) is the ID pattern.
- NAP-X combines it with a base score X: ``S = g(S_X)^λ · S_NAP^(1−λ)``; λ = 1 is X alone, λ = 0 NAP alone. ``g``
  maps X to (0, ∞) so the power is defined: the identity for MSP (already positive), ``softplus`` for scores that
  can be ≤ 0 (energy family, −KNN distance). Both are strictly increasing, so λ = 1 ranks exactly like X. Scores are
  returned as ``log S`` (monotone, so every metric equals the product's). Paper λ (CIFAR-10 / CIFAR-100 / ImageNet):
  Energy 0.4/0.4/0.6, ReAct 0.4/0.5/0.8, ASH 0.5/0.6/0.8; the paper chooses λ by search on pseudo-OOD data.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .feature_space import KNN
from .method import Method, Param, arxiv
from .output import ENERGY, MSP
from .shaping import ASH_S, DICE, REACT

NAP_PAPER = arxiv(
    "Out-of-Distribution Detection using Neural Activation Prior",
    "arXiv 2024",
    "2402.18162",
)
BLOCK = Param(
    "block",
    "last",
    kind="block",
    help="Probed block whose post-ReLU map NAP reads (paper: the last).",
)
EPS = Param(
    "eps",
    1.0,
    0.01,
    10.0,
    0.01,
    "ε in NAP's denominator, for numerical stability (paper: 1).",
    paper={"cifar10": 1.0, "cifar100": 1.0, "imagenet": 1.0},
)


def nap(
    channel_max: np.ndarray, channel_mean: np.ndarray, eps: float = 1.0
) -> np.ndarray:
    """``S_NAP = mean_c (max_c / (mean_c + ε))²`` [N] from one block's per-channel statistics [N, C]."""
    out = np.empty(len(channel_max))
    kernels.nap_rows(
        np.ascontiguousarray(channel_max),
        np.ascontiguousarray(channel_mean),
        float(eps),
        out,
    )
    return out


NAP = Method(
    name="nap",
    label="NAP",
    family="activation",
    needs=("blocks/{block}/max", "blocks/{block}/mean"),
    formula=r"S_{NAP}=\frac{1}{C}\sum_{c=1}^{C}\left(\frac{\max_c}{\operatorname{mean}_c+\epsilon}\right)^2",
    paper=NAP_PAPER,
    score_fn=lambda f, state, block, eps: nap(
        f[f"blocks/{block}/max"], f[f"blocks/{block}/mean"], eps
    ),
    params=(BLOCK, EPS),
)


def log_softplus(s: np.ndarray) -> np.ndarray:
    """``log(log(1 + eˢ))``, stable for very negative s (where it tends to s)."""
    s = np.asarray(s, np.float64)
    safe = np.where(s > -30, s, 0.0)
    return np.where(s > -30, np.log(np.logaddexp(0.0, safe)), s)


def nap_combined(
    base: np.ndarray, nap_score: np.ndarray, lam: float, positive_base: bool
) -> np.ndarray:
    """``log S = λ·log g(S_X) + (1−λ)·log S_NAP`` [N] (see the module docstring for g)."""
    log_base = np.log(np.maximum(base, 1e-300)) if positive_base else log_softplus(base)
    return lam * log_base + (1 - lam) * np.log(np.maximum(nap_score, 1e-300))


def _lambda(default: float, paper: tuple[float, float, float] | None) -> Param:
    return Param(
        "lambda",
        default,
        0.0,
        1.0,
        0.05,
        "λ: 1 = the base method alone, 0 = NAP alone.",
        paper=dict(zip(("cifar10", "cifar100", "imagenet"), paper or ())),
    )


def nap_x(
    name: str,
    base: Method,
    label: str,
    positive: bool,
    lam: float,
    paper: tuple[float, float, float] | None,
) -> Method:
    """NAP-X for ``base``: λ defaults to ``lam``, the paper's λ per benchmark (CIFAR-10, CIFAR-100, ImageNet) where
    it gives one."""
    mapping = r"S_X" if positive else r"\operatorname{softplus}(S_X)"
    base_params = tuple(p.name for p in base.params)
    return Method(
        name=name,
        label=f"NAP-{label}",
        family="activation",
        needs=(*base.needs, *NAP.needs),
        formula=rf"S=\left({mapping}\right)^{{\lambda}}\,S_{{NAP}}^{{1-\lambda}}",
        paper=NAP_PAPER,
        score_fn=lambda base_scores, nap_scores, **own: nap_combined(
            base_scores, nap_scores, own["lambda"], positive
        ),
        params=(_lambda(lam, paper), *base.params, BLOCK, EPS),
        parts=((base, base_params), (NAP, ("block", "eps"))),
    )


NAP_X = (
    nap_x("nap-energy", ENERGY, "Energy", False, 0.4, (0.4, 0.4, 0.6)),
    nap_x("nap-react", REACT, "ReAct", False, 0.4, (0.4, 0.5, 0.8)),
    nap_x("nap-ash", ASH_S, "ASH-S", False, 0.5, (0.5, 0.6, 0.8)),
    nap_x("nap-dice", DICE, "DICE", False, 0.5, None),
    nap_x("nap-msp", MSP, "MSP", True, 0.5, None),
    nap_x("nap-knn", KNN, "KNN", False, 0.5, None),
)

METHODS = (NAP, *NAP_X)
