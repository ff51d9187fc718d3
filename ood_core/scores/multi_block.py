"""Multi-block scores of the activation family: NAP and FeatureNorm read on several blocks at once (higher = more ID).

The seeds find that different blocks win on different OOD types (NAP: layer3 vs layer4; NormRatio's block choice),
so a score that pools blocks is a natural next step. The aggregation is deliberately simple and documented:
``S(x) = mean_{b ∈ B} (S_b(x) − m_b) / s_b``, the mean over the chosen block set B of each block's score
standardised by its mean m_b and standard deviation s_b over the ID training set (a z-score, so blocks whose scores
live on different scales weigh the same). The block set is a parameter (``all`` by default, or e.g.
``layer3.0+layer4.0``, parameter ``block_set``); with one block the score ranks exactly like that block's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .block_norm import NORMRATIO_PAPER, feature_norm
from .method import ALL_BLOCKS, BLOCK_SEPARATOR, Arrays, Fit, Method, Param, TrainData
from .nap import EPS, NAP, NAP_PAPER

BLOCK_SET = Param(
    "block_set",
    ALL_BLOCKS,
    kind="blocks",
    help="Blocks whose ID-train z-scores are averaged ('all', or names joined by '+').",
)


@dataclass(frozen=True)
class BlockStandardisation:
    """Per probed block, the mean and standard deviation of its score over the ID training set ([2] each)."""

    moments: dict[str, np.ndarray]


def _moments(scores: np.ndarray) -> np.ndarray:
    return np.array([scores.mean(), max(scores.std(), 1e-12)])


def standardised_mean(
    features: Arrays, state: BlockStandardisation, block_set: str, block_score: Callable
) -> np.ndarray:
    """``mean_{b ∈ block_set} (S_b(x) − m_b) / s_b`` [N]."""
    names = block_set.split(BLOCK_SEPARATOR)
    total = 0.0
    for block in names:
        mean, std = state.moments[block]
        total = total + (block_score(features, block) - mean) / std
    return total / len(names)


def _nap_score(eps: float) -> Callable:
    return lambda f, block: NAP.score_fn(f, None, block=block, eps=eps)


def fit_nap_moments(train: TrainData, eps: float) -> BlockStandardisation:
    score = _nap_score(eps)
    return BlockStandardisation({b: _moments(score(train, b)) for b in train.blocks})


def fit_norm_moments(train: TrainData) -> BlockStandardisation:
    return BlockStandardisation(
        {b: _moments(feature_norm(train, b)) for b in train.blocks}
    )


NAP_MULTI = Method(
    name="nap-multi",
    label="NAP (multi-block)",
    family="activation",
    needs=("blocks/*/max", "blocks/*/mean"),
    formula=r"S=\frac{1}{|B|}\sum_{b\in B}\frac{S_{NAP,b}(x)-m_b}{s_b}",
    paper=NAP_PAPER,
    score_fn=lambda f, state, block_set, eps: standardised_mean(
        f, state, block_set, _nap_score(eps)
    ),
    params=(BLOCK_SET, EPS),
    fit=Fit(
        name="nap-block-moments",
        fn=fit_nap_moments,
        needs=("blocks/*/max", "blocks/*/mean"),
        state=BlockStandardisation,
        params=("eps",),
    ),
)

FEATURE_NORM_MULTI = Method(
    name="featurenorm-multi",
    label="FeatureNorm (multi-block)",
    family="activation",
    needs=("blocks/*/l2",),
    formula=r"S=\frac{1}{|B|}\sum_{b\in B}\frac{FN_b(x)-m_b}{s_b}",
    paper=NORMRATIO_PAPER,
    score_fn=lambda f, state, block_set: standardised_mean(
        f, state, block_set, feature_norm
    ),
    params=(BLOCK_SET,),
    fit=Fit(
        name="norm-block-moments",
        fn=fit_norm_moments,
        needs=("blocks/*/l2",),
        state=BlockStandardisation,
    ),
)

METHODS = (NAP_MULTI, FEATURE_NORM_MULTI)
