"""FeatureNorm and NormRatio block selection (seed 001: Yu et al., "Block Selection Method for Using Feature Norm in
Out-of-Distribution Detection", CVPR 2023, arXiv 2212.02295).

- FeatureNorm of block b: ``FN_b(x) = mean_c ‖ReLU(A_c)‖₂``, the mean over channels of the cached ``l2`` statistic.
- NormRatio: ``NR(b) = mean_i FN_b(x_i) / FN_b(J(x_i))`` over ID training images x_i and their jigsaw versions J(x_i)
  (pseudo-OOD: an n×n grid of shuffled tiles, n = 3); the selected block is ``argmax_b NR(b)`` and the detector is FN
  of that block (higher = more ID). The NAP variant ``nap-nr`` reads NAP on the same block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import kernels
from .method import SELECTED_BLOCK, Arrays, Method, Param, arxiv
from .nap import EPS, NAP, NAP_PAPER

NORMRATIO_PAPER = arxiv(
    "Block Selection Method for Using Feature Norm in Out-of-Distribution Detection",
    "CVPR 2023",
    "2212.02295",
)
SELECTED_BLOCK_PARAM = Param(
    "block",
    SELECTED_BLOCK,
    kind="block",
    help="Block to read; 'selected' = argmax NormRatio on jigsaw'd ID train images.",
)


def feature_norm(features: Arrays, block: str) -> np.ndarray:
    """``FN_b(x) = mean_c ‖ReLU(A_c)‖₂`` [N] from the cached per-channel L2 norms."""
    l2 = np.ascontiguousarray(features[f"blocks/{block}/l2"])
    out = np.empty(len(l2))
    kernels.row_sums(l2, out)
    return out / l2.shape[1]


def norm_ratio(
    train: Arrays,
    jigsawed: Arrays,
    train_rows: np.ndarray,
    jigsaw_rows: np.ndarray,
    blocks: Sequence[str],
) -> pd.Series:
    """``NR(b)`` for every block (index: block, in ``blocks`` order); row ``train_rows[i]`` of ``train`` is the
    original of row ``jigsaw_rows[i]`` of ``jigsawed``."""
    return pd.Series(
        {
            b: float(
                np.mean(
                    feature_norm(train, b)[train_rows]
                    / feature_norm(jigsawed, b)[jigsaw_rows]
                )
            )
            for b in blocks
        },
        name="NormRatio",
    )


def select_block(ratios: pd.Series) -> str:
    """``argmax_b NR(b)``."""
    return str(ratios.idxmax())


FEATURE_NORM = Method(
    name="featurenorm",
    label="FeatureNorm",
    family="activation",
    needs=("blocks/{block}/l2",),
    formula=r"S=FN_b(x)=\frac{1}{C}\sum_{c=1}^{C}\lVert \mathrm{ReLU}(A_c)\rVert_2,\; b=\arg\max_b NR(b)",
    paper=NORMRATIO_PAPER,
    score_fn=lambda f, state, block: feature_norm(f, block),
    params=(SELECTED_BLOCK_PARAM,),
)

NAP_NORMRATIO = Method(
    name="nap-nr",
    label="NAP (NormRatio block)",
    family="activation",
    needs=NAP.needs,
    formula=r"S_{NAP}\text{ on } b=\arg\max_b NR(b)",
    paper=NAP_PAPER,
    score_fn=NAP.score_fn,
    params=(SELECTED_BLOCK_PARAM, EPS),
)

METHODS = (FEATURE_NORM, NAP_NORMRATIO)
