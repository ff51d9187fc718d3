"""Neural Activation Prior (NAP) score (seed 002, "Out-of-Distribution Detection using Neural Activation Prior")."""

from __future__ import annotations

import numpy as np


def nap(
    channel_max: np.ndarray, channel_mean: np.ndarray, eps: float = 1.0
) -> np.ndarray:
    """``S_NAP = mean_c (max_c / (mean_c + ε))²`` over the channels of a block's post-ReLU map; default ε = 1.

    ``channel_max``/``channel_mean`` are the cached per-channel statistics [N,C] of one probed block. ID samples
    excite a few positions of a channel strongly (high max relative to mean), so a higher score means more ID.
    """
    ratio = np.asarray(channel_max, np.float64) / (
        np.asarray(channel_mean, np.float64) + eps
    )
    return np.mean(ratio**2, axis=1)
