import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

try:  # optional: hypothesis is not a declared dependency; the seeded tests below cover the same ground
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

from ood_core.metrics import (
    ALL_METRICS,
    AUROC_SE,
    FPR95_CONVENTIONS,
    FPR95_OOD,
    METRICS,
    IDReference,
    fpr_at_tpr,
    id_accuracy,
    metrics_table,
    ood_metrics,
    roc_points,
    set_metrics,
)


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
        "AUROC low",
        "AUROC high",
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


# --- Exact single-sort path (IDReference) against sklearn as the oracle ------------------------------------

TOL = 1e-9  # absolute, in percent


def _oracle(id_scores, ood_scores):
    """All five metrics (%) from sklearn; float32 inputs are cast to float64 (same order and ties)."""
    a = np.asarray(id_scores, np.float64).ravel()
    b = np.asarray(ood_scores, np.float64).ravel()
    labels = np.r_[np.ones(a.size), np.zeros(b.size)]
    scores = np.r_[a, b]
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fpr_o, tpr_o, _ = roc_curve(1 - labels, -scores, drop_intermediate=False)
    return {
        "AUROC": 100 * roc_auc_score(labels, scores),
        "FPR95": 100 * fpr[np.searchsorted(tpr, 0.95, side="left")],
        "FPR95 (OOD+)": 100 * fpr_o[np.searchsorted(tpr_o, 0.95, side="left")],
        "AUPR-In": 100 * average_precision_score(labels, scores),
        "AUPR-Out": 100 * average_precision_score(1 - labels, -scores),
    }


def _assert_matches_oracle(id_scores, ood_scores):
    got = IDReference(id_scores).metrics(ood_scores)
    want = _oracle(id_scores, ood_scores)
    assert list(got) == [*ALL_METRICS, AUROC_SE]
    for key in ALL_METRICS:
        assert abs(got[key] - want[key]) <= TOL, (key, got[key], want[key])
    four = ood_metrics(id_scores, ood_scores)
    assert list(four) == list(METRICS)
    assert all(four[k] == got[k] for k in METRICS)
    assert (
        ood_metrics(id_scores, ood_scores, fpr_convention="ood")["FPR95"]
        == (got[FPR95_OOD])
    )
    assert fpr_at_tpr(id_scores, ood_scores) == pytest.approx(got["FPR95"] / 100)


SIZES = [(1, 1), (1, 7), (7, 1), (2, 3), (20, 20), (19, 41), (100, 37), (500, 1000)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_id, n_ood", SIZES)
def test_continuous_scores_match_sklearn(seed, n_id, n_ood):
    rng = np.random.default_rng(seed)
    shift = rng.uniform(-2, 2)
    _assert_matches_oracle(rng.normal(shift, 1, n_id), rng.normal(0, 1.5, n_ood))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_id, n_ood", SIZES)
@pytest.mark.parametrize("levels", [1, 2, 5])
def test_heavily_tied_integer_scores_match_sklearn(seed, n_id, n_ood, levels):
    rng = np.random.default_rng(seed)
    id_scores = rng.integers(0, levels, n_id).astype(float)
    ood_scores = rng.integers(0, levels, n_ood).astype(float) - rng.integers(0, 2)
    _assert_matches_oracle(id_scores, ood_scores)


@pytest.mark.parametrize(
    "id_scores, ood_scores",
    [
        (np.full(10, 3.0), np.full(7, 3.0)),  # all equal
        (np.arange(20.0), np.arange(20.0)),  # ID and OOD identical
        (np.r_[np.arange(20.0), 5.0], np.arange(20.0)[::-1]),
        (np.arange(10.0, 20.0), np.arange(0.0, 10.0)),  # perfectly separated, ID above
        (np.arange(0.0, 10.0), np.arange(10.0, 20.0)),  # perfectly separated, ID below
        (np.array([1.0]), np.array([1.0])),
        (np.array([0.0, -0.0, 0.0]), np.array([-0.0, 1.0])),  # -0.0 ties with 0.0
        (np.array([1e300, -1e300]), np.array([0.0, 1e-300])),
    ],
)
def test_edge_cases_match_sklearn(id_scores, ood_scores):
    _assert_matches_oracle(id_scores, ood_scores)


@pytest.mark.parametrize("seed", range(4))
def test_ties_on_one_side_only_match_sklearn(seed):
    # Distinct scores on one side, repeated (and shared) values on the other: the mixed tie structures.
    rng = np.random.default_rng(seed)
    distinct = rng.permutation(np.arange(30.0)) / 3
    repeated = rng.choice(distinct, 45) + rng.choice([0.0, 0.5], 45)
    _assert_matches_oracle(distinct, repeated)
    _assert_matches_oracle(repeated, distinct)
    _assert_matches_oracle(distinct[:1], repeated)
    _assert_matches_oracle(repeated, distinct[:1])


def test_separation_values_both_ways():
    up = IDReference(np.arange(10.0, 20.0)).metrics(np.arange(0.0, 10.0))
    assert up == {
        "AUROC": 100.0,
        "FPR95": 0.0,
        "FPR95 (OOD+)": 0.0,
        "AUPR-In": 100.0,
        "AUPR-Out": 100.0,
        AUROC_SE: 0.0,  # perfect separation: every component is 1 (or 0)
    }
    down = IDReference(np.arange(0.0, 10.0)).metrics(np.arange(10.0, 20.0))
    assert down["AUROC"] == 0.0
    assert down["FPR95"] == 100.0 and down["FPR95 (OOD+)"] == 100.0


def test_identical_sets_fpr95_is_exact_not_sklearn_default_curve():
    # 20 tied (ID, OOD) pairs: the ROC is one straight line, so sklearn's default drop_intermediate=True keeps
    # only its ends and reads FPR = 1 at TPR ≥ 0.95; the exact threshold (19 of 20 ID kept) has FPR = 0.95.
    scores = np.arange(20.0)
    labels = np.r_[np.ones(20), np.zeros(20)]
    fpr, tpr, _ = roc_curve(labels, np.r_[scores, scores])
    assert fpr[np.searchsorted(tpr, 0.95)] == 1.0
    m = IDReference(scores).metrics(scores)
    assert m["FPR95"] == pytest.approx(95.0) and m["FPR95 (OOD+)"] == pytest.approx(
        95.0
    )
    assert m["AUROC"] == pytest.approx(50.0)


@pytest.mark.parametrize("seed", range(5))
def test_float32_inputs_match_sklearn_on_the_float64_cast(seed):
    rng = np.random.default_rng(seed)
    id32 = rng.normal(1, 1, 300).astype(np.float32)
    ood32 = rng.normal(0, 1, 250).astype(np.float32)
    # Round to a coarse grid so float32 ties occur too.
    _assert_matches_oracle(id32, ood32)
    _assert_matches_oracle(np.round(id32, 1), np.round(ood32, 1))
    # Mixed dtypes compare in float64.
    _assert_matches_oracle(id32, ood32.astype(np.float64))
    _assert_matches_oracle(id32.astype(np.float64), ood32)


def test_integer_and_2d_inputs_are_flattened_as_float64():
    id_scores = np.array([[1, 2], [3, 4]])
    ood_scores = np.array([0, 2, 5])
    assert IDReference(id_scores).sorted.dtype == np.float64
    _assert_matches_oracle(id_scores, ood_scores)


def test_shared_id_sort_equals_per_set_computation():
    rng = np.random.default_rng(11)
    id_scores = rng.normal(1, 1, 400).astype(np.float32)
    ood_sets = {
        "far": rng.normal(-3, 1, 300).astype(np.float32),
        "near": rng.normal(0.8, 1, 500).astype(np.float32),
        "tied": np.round(rng.normal(0, 1, 200), 1).astype(np.float32),
        "tiny": np.array([0.5], np.float32),
        "f64": rng.normal(0, 1, 100),
    }
    shared = set_metrics(id_scores, ood_sets)
    ref = IDReference(id_scores)
    assert list(shared) == list(ood_sets)
    for name, scores in ood_sets.items():
        assert shared[name] == IDReference(id_scores).metrics(scores)
        assert shared[name] == ref.metrics(scores)
        want = _oracle(id_scores, scores)
        assert all(abs(shared[name][k] - want[k]) <= TOL for k in ALL_METRICS)


def test_fpr_at_tpr_other_rates_and_conventions():
    rng = np.random.default_rng(3)
    id_scores = rng.integers(0, 30, 157).astype(float)
    ood_scores = rng.integers(-5, 25, 91).astype(float)
    labels = np.r_[np.ones(157), np.zeros(91)]
    scores = np.r_[id_scores, ood_scores]
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fpr_o, tpr_o, _ = roc_curve(1 - labels, -scores, drop_intermediate=False)
    ref = IDReference(id_scores)
    for rate in [0.0, 0.1, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0]:
        assert ref.fpr_at_tpr(ood_scores, rate) == fpr[np.searchsorted(tpr, rate)]
        assert (
            fpr_at_tpr(id_scores, ood_scores, rate) == fpr[np.searchsorted(tpr, rate)]
        )
        assert (
            ref.fpr_at_tpr(ood_scores, rate, "ood")
            == (fpr_o[np.searchsorted(tpr_o, rate)])
        )
    with pytest.raises(ValueError):
        ref.fpr_at_tpr(ood_scores, 1.5)
    with pytest.raises(ValueError):
        ref.fpr_at_tpr(ood_scores, 0.95, "both")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["id", "ood"])
def test_non_finite_scores_raise(bad, where):
    good, poisoned = np.array([0.0, 1.0, 2.0]), np.array([1.0, bad, 0.5])
    id_scores, ood_scores = (poisoned, good) if where == "id" else (good, poisoned)
    with pytest.raises(ValueError, match="NaN or infinity"):
        ood_metrics(id_scores, ood_scores)
    with pytest.raises(ValueError, match="NaN or infinity"):
        set_metrics(id_scores, {"x": ood_scores})
    with pytest.raises(ValueError, match="NaN or infinity"):
        metrics_table({"m": (id_scores, {"x": ood_scores})})
    with pytest.raises(ValueError, match="NaN or infinity"):
        ood_metrics(id_scores.astype(np.float32), ood_scores.astype(np.float32))


def test_empty_scores_raise():
    with pytest.raises(ValueError, match="empty"):
        ood_metrics(np.array([]), np.array([1.0]))
    with pytest.raises(ValueError, match="empty"):
        ood_metrics(np.array([1.0]), np.array([]))


def test_metrics_table_fpr_convention_and_shared_sort():
    rng = np.random.default_rng(5)
    id_scores = rng.integers(0, 6, 120).astype(float)
    per_set = {"a": rng.integers(-2, 4, 80).astype(float), "b": rng.normal(1, 2, 60)}
    results = {"M": (id_scores, per_set)}
    by_id = metrics_table(results).set_index("ood_set")
    by_ood = metrics_table(results, fpr_convention="ood").set_index("ood_set")
    assert list(by_id.index) == ["a", "b", "mean"]
    for name, scores in per_set.items():
        want = _oracle(id_scores, scores)
        assert abs(by_id.loc[name, "FPR95"] - want["FPR95"]) <= TOL
        assert abs(by_ood.loc[name, "FPR95"] - want["FPR95 (OOD+)"]) <= TOL
        for key in ("AUROC", "AUPR-In", "AUPR-Out"):
            assert by_id.loc[name, key] == by_ood.loc[name, key]
            assert abs(by_id.loc[name, key] - want[key]) <= TOL
    assert by_ood.loc["mean", "FPR95"] == pytest.approx(
        by_ood.loc[["a", "b"], "FPR95"].mean()
    )
    assert metrics_table({"M": (id_scores, {})}).empty
    with pytest.raises(ValueError):
        metrics_table(results, fpr_convention="OpenOOD")
    assert set(FPR95_CONVENTIONS) == {"id", "ood"}


def test_roc_points_equals_sklearn_default_curve():
    rng = np.random.default_rng(2)
    id_scores = rng.integers(0, 10, 90).astype(float)
    ood_scores = rng.normal(3, 2, 70)
    fpr, tpr, _ = roc_curve(
        np.r_[np.ones(90), np.zeros(70)], np.r_[id_scores, ood_scores]
    )
    points = roc_points(id_scores, ood_scores)
    assert list(points.columns) == ["fpr", "tpr"]
    np.testing.assert_array_equal(points["fpr"].to_numpy(), fpr)
    np.testing.assert_array_equal(points["tpr"].to_numpy(), tpr)


if given is None:  # pragma: no cover

    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_property_all_metrics_match_sklearn():
        pass

else:
    finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
    small_ints = st.integers(-3, 3).map(float)

    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    @given(
        id_scores=st.lists(st.one_of(finite, small_ints), min_size=1, max_size=40),
        ood_scores=st.lists(st.one_of(finite, small_ints), min_size=1, max_size=40),
        as_float32=st.booleans(),
    )
    def test_property_all_metrics_match_sklearn(id_scores, ood_scores, as_float32):
        dtype = np.float32 if as_float32 else np.float64
        _assert_matches_oracle(np.array(id_scores, dtype), np.array(ood_scores, dtype))


def test_set_metrics_in_one_call_equals_one_set_at_a_time():
    rng = np.random.default_rng(3)
    id_scores = np.round(rng.normal(1, 1, 5000), 2)
    sets = {f"set {i}": np.round(rng.normal(i / 3, 1, 3000 + i), 2) for i in range(7)}
    ref = IDReference(id_scores)
    together = set_metrics(id_scores, sets)
    assert together == {n: ref.metrics(s) for n, s in sets.items()}
    assert list(together) == list(sets)
    # each set against its own slice of the concatenation, not a neighbour's
    for name, scores in sets.items():
        want = _oracle(id_scores, scores)
        assert all(abs(together[name][k] - want[k]) <= TOL for k in ALL_METRICS)
