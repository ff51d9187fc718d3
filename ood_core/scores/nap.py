"""Neural Activation Prior (NAP) and its combination NAP-X (seed 002)."""

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


def log_softplus(s: np.ndarray) -> np.ndarray:
    """``log(log(1 + eˢ))``, stable for very negative s (where it tends to s)."""
    s = np.asarray(s, np.float64)
    safe = np.where(s > -30, s, 0.0)
    return np.where(s > -30, np.log(np.logaddexp(0.0, safe)), s)


def nap_combined(
    base: np.ndarray, nap_score: np.ndarray, lam: float, positive_base: bool
) -> np.ndarray:
    """NAP-X: ``log S = λ·log g(S_X) + (1−λ)·log S_NAP``, the log of the paper's ``g(S_X)^λ · S_NAP^(1−λ)``.

    ``g`` maps the base score to (0, ∞) so the power is defined: the identity for scores that are already
    positive (MSP), ``softplus(s) = log(1 + eˢ)`` for scores that can be ≤ 0 (energy family, −KNN distance).
    Both are strictly increasing, so λ = 1 ranks exactly like X and λ = 0 exactly like NAP; softplus(s) ≈ s for
    the large positive energies the paper combines. The log is monotone, so every metric equals the product's.
    """
    log_base = np.log(np.maximum(base, 1e-300)) if positive_base else log_softplus(base)
    return lam * log_base + (1 - lam) * np.log(np.maximum(nap_score, 1e-300))
