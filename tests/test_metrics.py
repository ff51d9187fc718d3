import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ood_core.metrics import fpr_at_tpr, id_accuracy, metrics_table, ood_metrics


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_sklearn_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    id_scores, ood_scores = rng.normal(1, 1, 300), rng.normal(0, 1.5, 200)
    labels = np.r_[np.ones(300), np.zeros(200)]
    scores = np.r_[id_scores, ood_scores]
    m = ood_metrics(id_scores, ood_scores)
    assert m["AUROC"] == pytest.approx(100 * roc_auc_score(labels, scores))
    assert m["AUPR-In"] == pytest.approx(100 * average_precision_score(labels, scores))
    assert m["AUPR-Out"] == pytest.approx(
        100 * average_precision_score(1 - labels, -scores)
    )


def test_fpr95_hand_worked_example():
    # 20 ID scores 1..20: keeping 95% of ID (19 of 20) puts the threshold at 2.
    id_scores = np.arange(1, 21, dtype=float)
    # OOD scores: 3 of them are ≥ 2 (2.5, 10, 30) and 2 are below (0, 1.5) → FPR = 3/5.
    ood_scores = np.array([0.0, 1.5, 2.5, 10.0, 30.0])
    assert fpr_at_tpr(id_scores, ood_scores) == pytest.approx(0.6)
    assert ood_metrics(id_scores, ood_scores)["FPR95"] == pytest.approx(60.0)


def test_fpr95_brute_force_on_random_scores():
    rng = np.random.default_rng(7)
    id_scores, ood_scores = rng.normal(1, 1, 400), rng.normal(0, 1, 300)
    # Brute force: the largest threshold that keeps ≥ 95% of ID, then the OOD fraction at or above it.
    threshold = max(t for t in id_scores if (id_scores >= t).mean() >= 0.95)
    assert fpr_at_tpr(id_scores, ood_scores) == pytest.approx(
        (ood_scores >= threshold).mean()
    )


def test_perfect_separation_and_sign():
    m = ood_metrics(np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0]))
    assert m == {"AUROC": 100.0, "FPR95": 0.0, "AUPR-In": 100.0, "AUPR-Out": 100.0}
    assert ood_metrics(np.array([1.0, 2.0]), np.array([5.0, 6.0]))["AUROC"] == 0.0


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        ood_metrics(np.array([1.0, np.nan]), np.array([0.0]))


def test_id_accuracy_ignores_unknown_labels():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0], [0.0, 1.0]])
    assert id_accuracy(logits, np.array([0, 0, -1, 1])) == pytest.approx(100 * 2 / 3)


def test_metrics_table_is_tidy_with_mean_rows():
    rng = np.random.default_rng(0)
    results = {
        "A": (
            rng.normal(1, 1, 50),
            {"x": rng.normal(0, 1, 40), "y": rng.normal(0, 1, 30)},
        ),
        "B": (rng.normal(1, 1, 50), {"x": rng.normal(0, 1, 40)}),
    }
    table = metrics_table(results)
    assert list(table.columns) == [
        "method",
        "ood_set",
        "AUROC",
        "FPR95",
        "AUPR-In",
        "AUPR-Out",
    ]
    assert table[["method", "ood_set"]].values.tolist() == [
        ["A", "x"],
        ["A", "y"],
        ["A", "mean"],
        ["B", "x"],
    ]
    a = table[table.method == "A"].set_index("ood_set")
    assert a.loc["mean", "AUROC"] == pytest.approx(
        (a.loc["x", "AUROC"] + a.loc["y", "AUROC"]) / 2
    )
