"""Head read-outs as one matrix product per chunk of rows: the large-K path of the shaping scores.

Where per-row checkpoints of running sums would not fit in memory (K = 1,000 on ImageNet), a slider move costs one
``N×D×K`` product of the shaped features with the head, ``(x @ Wᵀ)·scale + b``, then a log-sum-exp (or argmax) per row.
The product runs in float32 through torch (MKL on the CPU, with its threads), on the GPU when one is present
(``OOD_LAB_SCORE_DEVICE=cpu`` keeps it on the CPU); the scale, the bias and the log-sum-exp are float64. Scores then
equal the float64 reference to float32 precision (≈1e-6 relative; tests assert closeness and rank equality wherever
the reference separates scores by more than that).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

ROWS = 8192  # rows per product: 8192 × 2,048 float32 features are 64 MB


# Entries of x per chunk for ``by_rows``: 8 MB as float64. With chunks of 8,192 × 512 each float64 copy was as large as
# the largest block malloc reuses (32 MB), so every chunk was faulted in anew: Mahalanobis scored 10,000 rows in
# 88–120 ms, against 70–73 ms now.
BY_ROWS_ELEMENTS = 1 << 20


def by_rows(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """``fn`` applied to ~``BY_ROWS_ELEMENTS`` entries of ``x`` at a time (whole rows, at most ``ROWS``: narrow rows
    may have wide results), results stacked: what is built per row (float64 copies, products with K = 1,000 columns)
    then never exists for all rows at once."""
    rows = min(ROWS, max(1, BY_ROWS_ELEMENTS // max(1, int(np.prod(x.shape[1:])))))
    if len(x) <= rows:
        return fn(x)
    return np.concatenate([fn(x[a : a + rows]) for a in range(0, len(x), rows)])


def score_device() -> torch.device:
    """The GPU when one is present, unless ``OOD_LAB_SCORE_DEVICE`` names another device."""
    chosen = os.environ.get("OOD_LAB_SCORE_DEVICE")
    if chosen:
        return torch.device(chosen)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def head_scores(
    shaped: Callable[[int, int], np.ndarray],
    rows: int,
    weight: np.ndarray,
    bias: np.ndarray,
    scale: np.ndarray | None = None,
    argmax: bool = False,
) -> np.ndarray:
    """``logsumexp_k((x_i @ Wᵀ)_k · scale_i + b_k)`` [rows] (or the argmax over k), where ``shaped(start, stop)``
    gives the float32 features ``x`` of rows ``start:stop``."""
    device = score_device()
    weight_t = torch.from_numpy(np.array(weight, np.float32).T.copy()).to(device)
    bias_t = torch.as_tensor(np.asarray(bias, np.float64)).to(device)
    out = np.empty(rows)
    for start in range(0, rows, ROWS):
        stop = min(rows, start + ROWS)
        x = torch.from_numpy(np.require(shaped(start, stop), np.float32, "CW"))
        logits = (x.to(device) @ weight_t).double()
        if scale is not None:
            logits *= torch.as_tensor(scale[start:stop]).to(device)[:, None]
        logits += bias_t
        result = logits.argmax(dim=1) if argmax else torch.logsumexp(logits, dim=1)
        out[start:stop] = result.cpu().numpy()
    return out
