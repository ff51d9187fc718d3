"""OOD metrics, exact and vectorised: one sort per score set, the ID sort shared by every OOD set.

Scores: higher = more in-distribution (ID). ``P`` ID samples, ``N`` OOD samples. A threshold ``t`` is one of
the distinct score values; "ID positive" predicts ID for ``s >= t``.

- **AUROC** (ID positive): probability that a random ID score exceeds a random OOD score, ties counting one
  half (Mann-Whitney U / (P·N)); equals ``sklearn.metrics.roc_auc_score(labels, scores)``.
- **FPR95** (``"id"`` convention; seed papers, ODIN): scanning thresholds from the highest score down, the
  first one whose TPR on ID reaches 0.95; the value is the fraction of OOD scored ``>= t`` there. Equals
  ``fpr[np.searchsorted(tpr, 0.95, side="left")]`` with ``fpr, tpr, _ = roc_curve(labels, scores,
  drop_intermediate=False)``. With sklearn's default ``drop_intermediate=True`` collinear ROC points are
  dropped, and on runs of tied scores the first point reaching 0.95 can be one of them: the oracle then reads
  a later point with a higher FPR. The exact value is the one without dropping.
- **FPR95 (OOD+)** (``"ood"`` convention; OpenOOD, pytorch-ood): OOD is the positive class with score ``-s``;
  the first threshold (from the lowest ``s`` up) at which 95% of OOD is detected (``s <= t``); the value is
  the fraction of ID scored ``<= t`` there. Same oracle with labels flipped and scores negated.
- **AUPR-In**: average precision with ID positive, ``average_precision_score(labels, scores)``:
  ``Σ_t (R(t) − R(t⁺)) · Precision(t)``, i.e. the mean over ID samples of the precision at their own score.
- **AUPR-Out**: the same with OOD positive and negated scores, ``average_precision_score(1 − labels, −scores)``.

Ties: all samples with the same score share one threshold, exactly like sklearn (whose thresholds are the
distinct score values); ``-0.0 == 0.0`` is one value. Every value is returned in percent.

Scores of any real dtype are compared in float64 (the cast keeps order and ties, so the results equal sklearn on the
same values). NaN or ±inf anywhere raises ``ValueError``, as does an empty score set.

``IDReference(id_scores)`` sorts ID once; ``.metrics(ood_scores)`` sorts that OOD set once (a radix sort) and one
linear merge of the two sorted arrays counts, over the distinct values, everything the five values need, with
integer counts throughout (``metric_kernels``). ``set_metrics`` / ``metrics_table`` reuse one ``IDReference`` for all
OOD sets of a method and sort and merge the sets side by side in one parallel compiled call
(``IDReference.metrics_of_sets``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from . import metric_kernels

METRICS = ("AUROC", "FPR95", "AUPR-In", "AUPR-Out")
FPR95_OOD = "FPR95 (OOD+)"
ALL_METRICS = ("AUROC", "FPR95", FPR95_OOD, "AUPR-In", "AUPR-Out")
FPR95_CONVENTIONS = {
    "id": "FPR on OOD at 95% TPR on ID, ID positive (seed papers, ODIN)",
    "ood": "FPR on ID at 95% TPR on OOD, OOD positive (OpenOOD, pytorch-ood)",
}
_FPR95_KEY = {"id": "FPR95", "ood": FPR95_OOD}


def _flat_scores(scores: np.ndarray, what: str) -> np.ndarray:
    """Flattened float64; raises on empty, NaN or ±inf."""
    x = np.ascontiguousarray(scores, np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{what} scores are empty")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} scores contain NaN or infinity")
    return x


def _sorted_scores(scores: np.ndarray, what: str) -> np.ndarray:
    """``_flat_scores``, sorted ascending."""
    return metric_kernels.radix_sort(_flat_scores(scores, what))


def _min_count(rate: float, total: int) -> int:
    """Smallest ``k`` in ``0..total`` with ``k / total >= rate`` in float64, as sklearn compares ``tps / tps[-1]``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"TPR must lie in [0, 1], got {rate}")
    k = min(max(math.ceil(rate * total), 0), total)
    while k > 0 and (k - 1) / total >= rate:
        k -= 1
    while k < total and k / total < rate:
        k += 1
    return k


class IDReference:
    """ID scores sorted once, ready to be scored against any number of OOD sets.

    >>> ref = IDReference(id_scores)
    >>> {name: ref.metrics(s) for name, s in ood_sets.items()}   # one sort per OOD set, none more for ID
    """

    def __init__(self, id_scores: np.ndarray):
        self.sorted = _sorted_scores(id_scores, "ID")
        self.n = self.sorted.size

    def metrics(self, ood_scores: np.ndarray) -> dict[str, float]:
        """AUROC, FPR95 (both conventions) and AUPR-In/Out of ``ood_scores`` against this ID set, in percent.

        Keys in ``ALL_METRICS`` order: ``AUROC, FPR95, FPR95 (OOD+), AUPR-In, AUPR-Out``.
        """
        return self.metrics_of_sets({"": ood_scores})[""]

    def metrics_of_sets(
        self, ood_sets: Mapping[str, np.ndarray]
    ) -> dict[str, dict[str, float]]:
        """``{name: self.metrics(scores)}``, every set sorted and merged in one parallel compiled call."""
        arrays = [_flat_scores(scores, "OOD") for scores in ood_sets.values()]
        sizes = np.array([a.size for a in arrays], np.int64)
        starts = np.zeros(len(arrays) + 1, np.int64)
        np.cumsum(sizes, out=starts[1:])
        counts = np.empty((len(arrays), 3), np.int64)
        sums = np.empty((len(arrays), 2))
        metric_kernels.set_counts(
            self.sorted,
            np.concatenate(arrays) if arrays else np.empty(0),
            starts,
            _min_count(0.95, self.n),
            np.array([_min_count(0.95, n) for n in sizes], np.int64),
            counts,
            sums,
        )
        p = self.n
        return {
            name: {
                "AUROC": 100 * int(twice_u) / (2.0 * p * n),
                "FPR95": 100 * int(fp_id) / n,
                FPR95_OOD: 100 * int(fp_ood) / p,
                "AUPR-In": 100 * float(aupr_in) / p,
                "AUPR-Out": 100 * float(aupr_out) / n,
            }
            for name, n, (twice_u, fp_id, fp_ood), (aupr_in, aupr_out) in zip(
                ood_sets, sizes.tolist(), counts, sums
            )
        }

    def fpr_at_tpr(
        self, ood_scores: np.ndarray, tpr: float = 0.95, convention: str = "id"
    ) -> float:
        """FPR (a fraction, not %) at the first threshold whose TPR reaches ``tpr``, in ``convention``."""
        _fpr95_key(convention)
        fpr = _fpr_id if convention == "id" else _fpr_ood
        return fpr(self.sorted, _sorted_scores(ood_scores, "OOD"), tpr)


def _fpr_id(a: np.ndarray, b: np.ndarray, tpr: float) -> float:
    """ID positive: the first threshold from the top with TPR ≥ ``tpr`` is the k-th largest ID score."""
    k = _min_count(tpr, a.size)
    if k == 0:  # sklearn's prepended (0, 0) point, threshold +inf
        return 0.0
    return float(b.size - np.searchsorted(b, a[a.size - k], side="left")) / b.size


def _fpr_ood(a: np.ndarray, b: np.ndarray, tpr: float) -> float:
    """OOD positive on ``-s``: the first threshold from the bottom with TPR ≥ ``tpr`` is the k-th smallest OOD score."""
    k = _min_count(tpr, b.size)
    if k == 0:
        return 0.0
    return float(np.searchsorted(a, b[k - 1], side="right")) / a.size


def set_metrics(
    id_scores: np.ndarray, ood_sets: Mapping[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """``{name: IDReference(id_scores).metrics(scores)}``: all five metrics (%) per OOD set, ID sorted once and the
    OOD sets sorted and merged side by side in one compiled call."""
    return IDReference(id_scores).metrics_of_sets(ood_sets)


def fpr_at_tpr(
    id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95
) -> float:
    """FPR on OOD at the first threshold (from the top) whose TPR on ID reaches ``tpr``, as a fraction.

    Exact over all distinct thresholds (sklearn ``roc_curve(..., drop_intermediate=False)``; see module doc).
    """
    return IDReference(id_scores).fpr_at_tpr(ood_scores, tpr, "id")


def ood_metrics(
    id_scores: np.ndarray, ood_scores: np.ndarray, fpr_convention: str = "id"
) -> dict[str, float]:
    """AUROC, FPR95, AUPR-In and AUPR-Out (the ``METRICS`` keys), in percent.

    ``fpr_convention`` picks which FPR95 fills ``"FPR95"`` (see ``FPR95_CONVENTIONS``); for all five values
    use ``IDReference(id_scores).metrics(ood_scores)``.
    """
    key = _fpr95_key(fpr_convention)
    m = IDReference(id_scores).metrics(ood_scores)
    return {
        "AUROC": m["AUROC"],
        "FPR95": m[key],
        "AUPR-In": m["AUPR-In"],
        "AUPR-Out": m["AUPR-Out"],
    }


def _fpr95_key(convention: str) -> str:
    try:
        return _FPR95_KEY[convention]
    except KeyError:
        raise ValueError(
            f"fpr_convention must be one of {sorted(_FPR95_KEY)}, got {convention!r}"
        ) from None


def id_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent over samples with a known label (label ≥ 0)."""
    known = np.asarray(labels) >= 0
    return float(
        100 * (np.asarray(logits)[known].argmax(1) == np.asarray(labels)[known]).mean()
    )


def metrics_table(
    results: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]],
    mean: bool = True,
    fpr_convention: str = "id",
) -> pd.DataFrame:
    """``{method: (id_scores, {ood_set: ood_scores})}`` → tidy table, one row per (method, OOD set), metrics in %.

    Each method's ID scores are sorted once for all its OOD sets. ``fpr_convention`` (``"id"`` or ``"ood"``,
    see ``FPR95_CONVENTIONS``) picks which FPR95 fills the FPR95 column.
    With ``mean``, each method gets an extra row ``ood_set == "mean"`` averaging its sets.
    """
    key = _fpr95_key(fpr_convention)
    rows = []
    for method, (id_scores, per_set) in results.items():
        method_rows = []
        if per_set:
            for name, m in set_metrics(id_scores, per_set).items():
                method_rows.append(
                    {
                        "method": method,
                        "ood_set": name,
                        "AUROC": m["AUROC"],
                        "FPR95": m[key],
                        "AUPR-In": m["AUPR-In"],
                        "AUPR-Out": m["AUPR-Out"],
                    }
                )
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


def roc_points(
    id_scores: np.ndarray, ood_scores: np.ndarray, max_points: int | None = None
) -> pd.DataFrame:
    """ROC curve (sklearn, default ``drop_intermediate=True``) with ID as the positive class: columns fpr, tpr.

    For plotting; the metrics above do not go through it. With ``max_points``, a curve with more vertices keeps at
    most that many, evenly spaced along it (the first and last included): enough for the eye, light for a browser.
    """
    from sklearn.metrics import roc_curve  # plotting only

    labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    fpr, tpr, _ = roc_curve(labels, np.r_[id_scores, ood_scores])
    if max_points is not None and len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return pd.DataFrame({"fpr": fpr, "tpr": tpr})
