"""Metrics at the floor: the exact single-sort path vs the old per-set sklearn path, on the same scores.

6 OOD sets × (10,000 ID + 10,000 OOD) random float32 scores. New path: ``set_metrics`` (ID sorted once for
all sets, each OOD set sorted once; AUROC, both FPR95 conventions, AUPR-In/Out). Old path, per set: one
``roc_curve`` (AUROC via ``auc`` + FPR95) and two ``average_precision_score`` calls, as ``ood_metrics`` did
before. Prints the median of 7 runs of each, in ms, and their ratio (target: new path ≤ 10 ms for all 6 sets).

Usage: python benchmarks/bench_metrics.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import auc, average_precision_score, roc_curve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_core.metrics import set_metrics

N_SETS, N_ID, N_OOD, REPEATS = 6, 10_000, 10_000, 7


def old_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """The previous ``ood_metrics``: concatenate, one ``roc_curve``, two ``average_precision_score``."""
    scores = np.concatenate(
        [np.asarray(id_scores, np.float64), np.asarray(ood_scores, np.float64)]
    )
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    labels = np.concatenate([np.ones(id_scores.size), np.zeros(ood_scores.size)])
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        fprs, tprs, _ = roc_curve(labels, scores)
        return {
            "AUROC": 100 * auc(fprs, tprs),
            "FPR95": 100 * float(fprs[np.searchsorted(tprs, 0.95, side="left")]),
            "AUPR-In": 100 * average_precision_score(labels, scores),
            "AUPR-Out": 100 * average_precision_score(1 - labels, -scores),
        }


def median_ms(fn) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    id_scores = rng.normal(1, 1, N_ID).astype(np.float32)
    ood_sets = {
        f"ood{i}": rng.normal(rng.uniform(-1, 1), 1, N_OOD).astype(np.float32)
        for i in range(N_SETS)
    }

    def new() -> dict:
        return set_metrics(id_scores, ood_sets)

    def old() -> dict:
        return {name: old_metrics(id_scores, s) for name, s in ood_sets.items()}

    new_result, old_result = new(), old()  # warm-up, and a check that both agree
    worst = max(
        abs(new_result[name][key] - old_result[name][key])
        for name in ood_sets
        for key in old_result[name]
    )
    new_ms, old_ms = median_ms(new), median_ms(old)
    print(
        f"{N_SETS} OOD sets × ({N_ID:,} ID + {N_OOD:,} OOD) float32 scores, median of {REPEATS}"
    )
    print(f"  new (one ID sort, all five metrics): {new_ms:7.2f} ms   (target ≤ 10 ms)")
    print(f"  old (sklearn per set, four metrics): {old_ms:7.2f} ms")
    print(
        f"  speed-up: {old_ms / new_ms:.1f}×   max |new − old|: {worst:.2e} (% units)"
    )


if __name__ == "__main__":
    main()
