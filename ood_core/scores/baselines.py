"""Output-based baseline scores (higher = more ID). Pure functions of cached logits."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax


def msp(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability ``max_k softmax(z)_k`` (Hendrycks & Gimpel, ICLR 2017)."""
    return softmax(np.asarray(logits, np.float64), axis=1).max(axis=1)


def max_logit(logits: np.ndarray) -> np.ndarray:
    """Maximum logit ``max_k z_k`` (Hendrycks et al., ICML 2022)."""
    return np.asarray(logits, np.float64).max(axis=1)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy ``T · logsumexp(z / T)`` (Liu et al., NeurIPS 2020); default T = 1."""
    return temperature * logsumexp(np.asarray(logits, np.float64) / temperature, axis=1)
