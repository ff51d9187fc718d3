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

dtype: float32 scores are sorted and compared as float32 (results equal sklearn on the same values cast to
float64, since the cast keeps order and ties); any other dtype, or a float32/float64 mix, is compared in
float64. NaN or ±inf anywhere raises ``ValueError``, as does an empty score set.

``IDReference(id_scores)`` sorts ID once; ``.metrics(ood_scores)`` sorts that OOD set once, merges the two
sorted arrays (a stable sort of their concatenation: one linear merge of two runs, ID first on ties) to get,
for every sample, the other set's count below it, and computes all five values from those counts over the
distinct values, with integer counts throughout (no per-sample Python loop, no ``np.searchsorted`` per sample).
``set_metrics`` / ``metrics_table`` reuse one ``IDReference`` for all OOD sets of a method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

METRICS = ("AUROC", "FPR95", "AUPR-In", "AUPR-Out")
FPR95_OOD = "FPR95 (OOD+)"
ALL_METRICS = ("AUROC", "FPR95", FPR95_OOD, "AUPR-In", "AUPR-Out")
FPR95_CONVENTIONS = {
    "id": "FPR on OOD at 95% TPR on ID, ID positive (seed papers, ODIN)",
    "ood": "FPR on ID at 95% TPR on OOD, OOD positive (OpenOOD, pytorch-ood)",
}
_FPR95_KEY = {"id": "FPR95", "ood": FPR95_OOD}


def _sorted_scores(scores: np.ndarray, what: str) -> np.ndarray:
    """Flattened, sorted ascending, float32 kept else float64; raises on empty, NaN or ±inf."""
    x = np.asarray(scores)
    x = x.ravel() if x.dtype == np.float32 else x.astype(np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{what} scores are empty")
    x = np.sort(x)
    # After sorting, -inf sits first and NaN / +inf last: two checks cover the whole array.
    if not (np.isfinite(x[0]) and np.isfinite(x[-1])):
        raise ValueError(f"{what} scores contain NaN or infinity")
    return x


def _groups(x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Runs of equal values in sorted ``x``: (start index, length) of each, or ``None`` when all are distinct."""
    new = np.empty(x.size, dtype=bool)
    new[0] = True
    np.not_equal(x[1:], x[:-1], out=new[1:])
    if new.all():
        return None
    starts = np.flatnonzero(new)
    return starts, np.diff(starts, append=x.size)


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
        self._set(_sorted_scores(id_scores, "ID"))

    def _set(self, sorted_scores: np.ndarray) -> None:
        self.sorted = sorted_scores
        self.n = sorted_scores.size
        # Distinct ID values: first index and count (None: all distinct, each sample its own value).
        self._groups = _groups(sorted_scores)
        starts = np.arange(self.n) if self._groups is None else self._groups[0]
        self._tp = (self.n - starts).astype(np.float64)  # #ID >= each distinct value
        # For each ID sample, the index of the first ID sample with the same value (ties only).
        self._first = None if self._groups is None else np.repeat(*self._groups)
        self._f64: IDReference | None = None

    def _as_float64(self) -> IDReference:
        """The same reference in float64 (the cast keeps order and ties), for OOD scores of another dtype."""
        if self.sorted.dtype == np.float64:
            return self
        if self._f64 is None:
            self._f64 = IDReference.__new__(IDReference)
            self._f64._set(self.sorted.astype(np.float64))
        return self._f64

    def _with(self, ood_scores: np.ndarray) -> tuple[IDReference, np.ndarray]:
        b = _sorted_scores(ood_scores, "OOD")
        if b.dtype != self.sorted.dtype:
            return self._as_float64(), b.astype(np.float64)
        return self, b

    def metrics(self, ood_scores: np.ndarray) -> dict[str, float]:
        """AUROC, FPR95 (both conventions) and AUPR-In/Out of ``ood_scores`` against this ID set, in percent.

        Keys in ``ALL_METRICS`` order: ``AUROC, FPR95, FPR95 (OOD+), AUPR-In, AUPR-Out``.
        """
        ref, b = self._with(ood_scores)
        a, p, n = ref.sorted, ref.n, b.size
        # Merge the two sorted arrays: a stable sort of their concatenation is one linear merge of two runs,
        # and on equal values it keeps ID before OOD. Then, for each sample, the other set's count below it:
        order = np.concatenate([a, b]).argsort(kind="stable")
        from_id = order < p
        ood_lt = np.flatnonzero(from_id) - np.arange(p)  # ood_lt[i] = #OOD < a[i]
        id_le = np.flatnonzero(~from_id) - np.arange(n)  # id_le[j] = #ID <= b[j]
        # ID positive, at each distinct ID value v: TP = #ID >= v, FP = #OOD >= v; weight = #ID == v.
        if ref._groups is None:
            aupr_in = np.sum(ref._tp / (ref._tp + (n - ood_lt))) / p
        else:
            g, c = ref._groups
            aupr_in = np.dot(c, ref._tp / (ref._tp + (n - ood_lt[g]))) / p
        # OOD positive on -s, at each distinct OOD value w: TP = #OOD <= w, FP = #ID <= w; weight = #OOD == w.
        runs = _groups(b)
        if runs is None:
            tp_out, fp_out, b_w = np.arange(1.0, n + 1), id_le, b
            aupr_out = np.sum(tp_out / (tp_out + fp_out)) / n
        else:
            h, d = runs
            tp_out, fp_out, b_w = (h + d).astype(np.float64), id_le[h], b[h]
            aupr_out = np.dot(d, tp_out / (tp_out + fp_out)) / n
        # Mann-Whitney: pairs with ID above OOD, plus half the tied pairs (#ID equal to each OOD value w).
        last = np.maximum(fp_out - 1, 0)  # the largest ID sample <= w, if any
        tied = (fp_out > 0) & (a[last] == b_w)
        id_eq = (
            tied if ref._first is None else np.where(tied, fp_out - ref._first[last], 0)
        )
        ties = int(id_eq.sum() if runs is None else np.dot(id_eq, runs[1]))
        auroc = (2 * int(ood_lt.sum()) + ties) / (2.0 * p * n)
        # FPR95: the first threshold from the top keeping k ID is the k-th largest ID score a[p - k];
        # OOD+: the first threshold from the bottom detecting k OOD is the k-th smallest OOD score b[k - 1].
        k_id, k_ood = _min_count(0.95, p), _min_count(0.95, n)
        return {
            "AUROC": 100 * auroc,
            "FPR95": 100 * float(n - ood_lt[p - k_id]) / n,
            FPR95_OOD: 100 * float(id_le[k_ood - 1]) / p,
            "AUPR-In": 100 * float(aupr_in),
            "AUPR-Out": 100 * float(aupr_out),
        }

    def fpr_at_tpr(
        self, ood_scores: np.ndarray, tpr: float = 0.95, convention: str = "id"
    ) -> float:
        """FPR (a fraction, not %) at the first threshold whose TPR reaches ``tpr``, in ``convention``."""
        _fpr95_key(convention)
        ref, b = self._with(ood_scores)
        fpr = _fpr_id if convention == "id" else _fpr_ood
        return fpr(ref.sorted, b, tpr)


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
    """``{name: IDReference(id_scores).metrics(scores)}``: all five metrics (%) per OOD set, ID sorted once."""
    ref = IDReference(id_scores)
    return {name: ref.metrics(scores) for name, scores in ood_sets.items()}


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
