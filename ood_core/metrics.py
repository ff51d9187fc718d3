"""OOD metrics with ID as the positive class (higher score = more ID), computed by scikit-learn.

- AUROC: area under the ROC curve.
- FPR95: false-positive rate on OOD at the threshold that keeps 95% of ID (TPR ≥ 0.95).
- AUPR-In: average precision with ID positive; AUPR-Out: with OOD positive and negated scores.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import sklearn
from sklearn.metrics import auc, average_precision_score, roc_curve

METRICS = ("AUROC", "FPR95", "AUPR-In", "AUPR-Out")


def _labelled(
    id_scores: np.ndarray, ood_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate(
        [
            np.asarray(id_scores, np.float64).ravel(),
            np.asarray(ood_scores, np.float64).ravel(),
        ]
    )
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    labels = np.concatenate(
        [np.ones(np.size(id_scores)), np.zeros(np.size(ood_scores))]
    )
    return labels, scores


def _fpr_at(fprs: np.ndarray, tprs: np.ndarray, tpr: float) -> float:
    return float(fprs[np.searchsorted(tprs, tpr, side="left")])


def fpr_at_tpr(
    id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95
) -> float:
    """FPR on OOD at the first ROC threshold whose TPR on ID reaches ``tpr``."""
    labels, scores = _labelled(id_scores, ood_scores)
    fprs, tprs, _ = roc_curve(labels, scores)
    return _fpr_at(fprs, tprs, tpr)


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """AUROC, FPR95, AUPR-In and AUPR-Out, in percent.

    One sklearn ``roc_curve`` gives both AUROC (``auc`` of the curve, as ``roc_auc_score`` computes it) and FPR95.
    Inputs are checked for NaN/inf here, so sklearn's own re-validation is skipped (it dominated slider updates).
    """
    labels, scores = _labelled(id_scores, ood_scores)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        fprs, tprs, _ = roc_curve(labels, scores)
        return {
            "AUROC": 100 * auc(fprs, tprs),
            "FPR95": 100 * _fpr_at(fprs, tprs, 0.95),
            "AUPR-In": 100 * average_precision_score(labels, scores),
            "AUPR-Out": 100 * average_precision_score(1 - labels, -scores),
        }


def id_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent over samples with a known label (label ≥ 0)."""
    known = np.asarray(labels) >= 0
    return float(
        100 * (np.asarray(logits)[known].argmax(1) == np.asarray(labels)[known]).mean()
    )


def metrics_table(
    results: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]],
    mean: bool = True,
) -> pd.DataFrame:
    """``{method: (id_scores, {ood_set: ood_scores})}`` → tidy table, one row per (method, OOD set), metrics in %.

    With ``mean``, each method gets an extra row ``ood_set == "mean"`` averaging its sets.
    """
    rows = []
    for method, (id_scores, per_set) in results.items():
        method_rows = [
            {"method": method, "ood_set": name, **ood_metrics(id_scores, scores)}
            for name, scores in per_set.items()
        ]
        rows += method_rows
        if mean and len(method_rows) > 1:
            rows.append(
                {
                    "method": method,
                    "ood_set": "mean",
                    **{m: float(np.mean([r[m] for r in method_rows])) for m in METRICS},
                }
            )
    return pd.DataFrame(rows, columns=["method", "ood_set", *METRICS])
