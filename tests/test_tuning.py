"""Honest tuning: validation data never touches the test OOD sets, the search finds the grid optimum, tuned values
come back only for the model and ID set they were tuned on."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score

from ood_core import cli, tuning
from ood_core.engine import features as engine_features
from ood_core.engine.cache import FeatureCache
from ood_core.errors import OODLabError
from ood_core.inputs import catalog, demo_data
from ood_core.inputs.variants import PSEUDO_OOD
from ood_core.scores import METHODS
from ood_core.workspace import DEMO_OOD, LoadedWorkspace, Workspace, load_workspace
from tests.synthetic import synthetic_features


def _synthetic_workspace(seed: int = 0) -> LoadedWorkspace:
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 0.5, (4, 16)).astype(np.float32)
    return LoadedWorkspace(
        synthetic_features(rng, 300, weight=weight),
        synthetic_features(rng, 400, weight=weight),
        {
            "near": synthetic_features(rng, 200, shift=0.4, weight=weight),
            "far": synthetic_features(rng, 250, shift=1.5, weight=weight),
        },
    )


def _mean_auroc(id_scores: np.ndarray, ood: dict[str, np.ndarray]) -> float:
    return float(
        np.mean(
            [
                100
                * roc_auc_score(
                    np.r_[np.ones(len(id_scores)), np.zeros(len(s))],
                    np.r_[id_scores, s],
                )
                for s in ood.values()
            ]
        )
    )


def test_grid_search_finds_the_energy_temperature_sklearn_finds():
    features = _synthetic_workspace()
    result = tuning.search(features, METHODS["energy"], points=9)
    grid = tuning.dimensions(METHODS["energy"], features, 9)["T"]

    def auroc(t: float) -> float:
        score = lambda f: t * logsumexp(np.asarray(f["logits"], np.float64) / t, 1)
        return _mean_auroc(
            score(features.id_test), {n: score(f) for n, f in features.ood.items()}
        )

    values = {t: auroc(t) for t in grid}
    assert result.strategy == "grid" and len(result.evaluated) == len(grid)
    assert result.chosen["T"] == max(values, key=values.get)
    assert result.value == pytest.approx(max(values.values()), abs=1e-9)


def test_grid_search_over_block_and_eps_finds_the_brute_force_optimum():
    features = _synthetic_workspace(1)
    result = tuning.search(features, METHODS["nap"], points=5)
    dims = tuning.dimensions(METHODS["nap"], features, 5)

    def nap(f, block, eps):  # S = mean_c (max_c / (mean_c + ε))², float64
        ratio = np.asarray(f[f"blocks/{block}/max"], np.float64) / (
            np.asarray(f[f"blocks/{block}/mean"], np.float64) + eps
        )
        return (ratio**2).mean(1)

    values = {
        (block, eps): _mean_auroc(
            nap(features.id_test, block, eps),
            {n: nap(f, block, eps) for n, f in features.ood.items()},
        )
        for block, eps in itertools.product(dims["block"], dims["eps"])
    }
    best = max(values, key=values.get)
    assert (result.chosen["block"], result.chosen["eps"]) == best
    assert result.value == pytest.approx(values[best], abs=1e-9)


def test_block_sets_are_searched_as_the_deepest_blocks_and_the_choice_is_the_best():
    features = _synthetic_workspace(3)
    method = METHODS["nap-multi"]
    assert tuning.tunable(method)
    assert tuning.dimensions(method, features, 3)["block_set"] == ["b2", "b1+b2"]
    result = tuning.search(features, method, points=3)
    values = {
        (p["params"]["block_set"], p["params"]["eps"]): p["value"]
        for p in result.evaluated
    }
    assert len(values) == 2 * len(tuning.dimensions(method, features, 3)["eps"])
    best = max(values, key=values.get)
    assert (result.chosen["block_set"], result.chosen["eps"]) == best


def test_methods_fitted_on_id_data_alone_have_nothing_to_tune():
    for name in ("optfs", "fdbd", "rmds", "mahalanobis++", "kl-matching", "entropy"):
        assert not tuning.tunable(METHODS[name])


def test_coordinate_ascent_never_ends_below_the_defaults_and_records_every_point():
    features = _synthetic_workspace(2)
    result = tuning.search(features, METHODS["line"], points=7)
    assert result.strategy == "coordinate ascent"
    assert result.value >= result.default_value
    assert len(
        {json.dumps(p["params"], sort_keys=True) for p in result.evaluated}
    ) == len(result.evaluated)
    assert max(p["value"] for p in result.evaluated) == result.value


def test_the_accuracy_floor_rejects_pruning_that_costs_accuracy():
    features = _synthetic_workspace(3)
    floor = tuning.accuracy(features, METHODS["line"], {"p_a": 0.0, "p_w": 0.0})
    result = tuning.search(features, METHODS["line"], "auroc@acc", floor, points=5)
    assert tuning.accuracy(features, METHODS["line"], result.chosen) >= floor
    for point in result.evaluated:
        if tuning.accuracy(features, METHODS["line"], point["params"]) < floor:
            assert point["value"] == -np.inf


@pytest.fixture(scope="module")
def digits(demo_model) -> LoadedWorkspace:
    """The demo model and ID set with no OOD set at all."""
    return load_workspace(Workspace("demo", "digits", ()))


def test_a_validation_set_that_is_a_test_set_is_refused():
    with pytest.raises(OODLabError, match="also a test OOD set"):
        tuning.check_leaks(tuning.Protocol(sets=("letters",)), ["letters", "faces"])


def test_a_validation_set_sharing_files_with_a_test_set_is_refused(
    tmp_path, monkeypatch
):
    from PIL import Image

    root = tmp_path / "data"
    (root / "shots").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(
            root / "shots" / f"{i}.png"
        )
    monkeypatch.setenv("OOD_LAB_DATA_ROOT", str(root))
    monkeypatch.delenv("OOD_LAB_CONFIG", raising=False)
    catalog.add_folder_dataset("shots", "shots")
    catalog.add_folder_dataset("same_shots", "shots/.")
    with pytest.raises(OODLabError, match="shares 3 file"):
        tuning.check_leaks(tuning.Protocol(sets=("same_shots",)), ["shots"])
    tuning.check_leaks(
        tuning.Protocol(sets=("same_shots",)), ["letters"]
    )  # disjoint: fine


@pytest.mark.parametrize("variant", ["blur", "permute4", "noise", "invert", "mix"])
def test_corruption_variants_are_seeded_and_change_the_images(digits, variant):
    first, _ = engine_features.dataset_images(f"digits@{variant}", "train")
    engine_features.forget_datasets()
    second, identity = engine_features.dataset_images(f"digits@{variant}", "train")
    originals, _ = engine_features.dataset_images("digits", "train")
    rows = [0, 7, len(first) - 1]
    for row in rows:
        assert np.array_equal(
            np.asarray(first.image(row)), np.asarray(second.image(row))
        )
    assert identity["seed"] is not None and identity["variant"] == variant
    index = {name: row for row, name in enumerate(originals.names)}
    for row in rows:  # each image is a corrupted copy of the training image it names
        source = originals.image(index[first.names[row].rsplit(" (", 1)[0]])
        assert not np.array_equal(np.asarray(first.image(row)), np.asarray(source))


def test_tuning_runs_without_any_test_set_and_caches_the_pseudo_ood(
    digits, monkeypatch, tmp_path
):
    """The test OOD sets may be missing from the registry entirely: tuning never asks for them."""
    real = catalog.get_dataset

    def without_test_sets(name: str):
        if name in DEMO_OOD:
            raise OODLabError(f"no dataset named '{name}'")
        return real(name)

    monkeypatch.setattr(catalog, "get_dataset", without_test_sets)
    out = tmp_path / "tuned.json"
    args = [
        "tune",
        "--methods",
        "energy",
        "react",
        "--val",
        "pseudo:jigsaw3,blur",
        "--out",
        str(out),
    ]
    assert cli.main(args) == 0
    document = json.loads(out.read_text())
    assert set(document["methods"]) == {"energy", "react"}
    assert document["protocol"]["pseudo"] == ["jigsaw3", "blur"]
    assert document["model"]["name"] == "demo" and document["id"]["dataset"] == "digits"
    cached = {
        e.dataset
        for e in FeatureCache().entries(verify=False)
        if e.model.startswith("demo")
    }
    assert any("digits@blur" in d for d in cached)

    def no_extraction(*args, **kwargs):
        raise AssertionError("the pseudo-OOD set was extracted again")

    tuning._splits.clear()
    monkeypatch.setattr(
        "ood_core.engine.features.extract_features", no_extraction, raising=False
    )
    assert cli.main([*args, "--out", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert (
        again["methods"]["energy"]["chosen"] == document["methods"]["energy"]["chosen"]
    )


def test_evaluate_uses_tuned_values_and_refuses_another_model(digits, tmp_path, capsys):
    out = tmp_path / "tuned.json"
    assert cli.main(["tune", "--methods", "react", "--out", str(out)]) == 0
    chosen = json.loads(out.read_text())["methods"]["react"]["chosen"]["p"]
    capsys.readouterr()
    assert (
        cli.main(
            ["evaluate", "--ood", "letters", "--methods", "react", "--config", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"p={float(chosen)}" in printed or f"p={chosen}" in printed

    other = json.loads(out.read_text())
    other["model"]["fingerprint"] = "0" * 16
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert (
        cli.main(
            ["evaluate", "--ood", "letters", "--config", str(tmp_path / "other.json")]
        )
        == 2
    )
    assert "tuned for model demo" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert (
        cli.main(
            ["evaluate", "--ood", "letters", "--config", str(tmp_path / "junk.json")]
        )
        == 2
    )
    assert "is not a valid tuned-values file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--val", "jigsaw3"], "expected pseudo:"),
        (["--val", "pseudo:fog"], "unknown pseudo-OOD variant"),
        (["--methods", "msp"], "nothing to tune"),
        (["--methods", "nope"], "unknown method"),
        (["--val-fraction", "1.5"], "id_fraction: Input should be less than 1"),
        (["--val", "set:letters", "--ood", "letters"], "also a test OOD set"),
    ],
)
def test_bad_tune_arguments_are_one_line_errors(
    digits, arguments, message, capsys, tmp_path
):
    assert cli.main(["tune", "--out", str(tmp_path / "t.json"), *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "t.json").exists()


def test_regret_is_test_best_minus_tuned_over_the_evaluated_points(digits):
    features = load_workspace(Workspace("demo", "digits", ("letters", "noise")))
    found = tuning.split(features, tuning.Protocol(pseudo=("jigsaw3",)))
    result = tuning.search(found.validation, METHODS["react"], points=6)
    row = tuning.regret_row(found, METHODS["react"], result)
    tests = [
        tuning.mean_metrics(found.test, METHODS["react"], p["params"])[0]
        for p in result.evaluated
    ]
    assert row["AUROC test-best"] == pytest.approx(max(tests))
    assert row["regret"] == pytest.approx(max(tests) - row["AUROC tuned"])
    assert row["regret"] >= 0
    react = METHODS["react"]
    assert result.chosen != result.default  # the worst set's change is not trivially 0
    tuned_id, tuned_ood = found.test.scores(react, result.chosen)
    default_id, default_ood = found.test.scores(react, result.default)

    def auroc(id_scores, ood_scores):  # sklearn, ID positive
        labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
        return 100 * roc_auc_score(labels, np.r_[id_scores, ood_scores])

    changes = {
        name: auroc(tuned_id, tuned_ood[name]) - auroc(default_id, default_ood[name])
        for name in tuned_ood
    }
    assert row["worst set"] == min(changes, key=changes.get)
    assert row["worst set Δ"] == pytest.approx(min(changes.values()))
    validation_ids = set(found.validation.id_test.meta["fingerprint"].split(":"))
    assert "val-0" in validation_ids
    assert len(found.validation.id_test) + len(found.test.id_test) == len(
        features.id_test
    )


def test_the_default_objective_never_picks_a_point_below_the_default_on_a_validation_set(
    digits,
):
    features = load_workspace(Workspace("demo", "digits", ()))
    found = tuning.split(features, tuning.Protocol())  # every pseudo-OOD variant
    for name in ("react", "nap-energy", "ash-s"):
        result = tuning.search(found.validation, METHODS[name], points=6)
        by_point = {tuning.digest(p["params"]): p["sets"] for p in result.evaluated}
        chosen, default = (
            by_point[tuning.digest(result.chosen)],
            by_point[tuning.digest(result.default)],
        )
        assert all(chosen[s] >= default[s] - tuning.TOLERANCE for s in default), name
        if not result.kept_default and result.chosen != result.default:
            assert result.gain["p"] < 0.05 and result.gain["delta"] > 0, name


def test_a_gain_that_is_not_significant_keeps_the_default(digits):
    """Only 12 validation ID images: no candidate's gain can be told from noise."""
    features = load_workspace(Workspace("demo", "digits", ()))
    protocol = tuning.Protocol(pseudo=("blur",), id_fraction=0.05)
    found = tuning.split(features, protocol)
    small = found.validation.with_sets(
        {
            name: tuning.subset(f, np.arange(12), "few")
            for name, f in found.validation.ood.items()
        }
    )
    result = tuning.search(small, METHODS["react"], objective="auroc", points=6)
    assert result.kept_default and result.chosen == result.default
    assert "not significant" in result.reason


def test_a_significant_gain_under_the_minimum_keeps_the_default(digits):
    """ReAct's p = 89.9 against its default 90 on every pseudo-OOD variant: a paired DeLong test calls the gain
    significant, yet it is hundredths of a point (a neighbouring grid value, not a finding)."""
    from ood_core.comparisons import setting_difference

    features = load_workspace(Workspace("demo", "digits", ()))
    found = tuning.split(features, tuning.Protocol())
    react = METHODS["react"]
    near, default = {"p": 89.9}, {"p": 90.0}
    gap = setting_difference(found.validation, (react, near), (react, default), "AUROC")
    assert gap.significant and 0 < gap.delta < tuning.MIN_GAIN
    value = tuning.objective_value(found.validation, react, near, "auroc", 0.0)[0]
    searched = tuning.SearchResult(
        "react", "auroc", near, default, value, value - gap.delta, best=near
    )
    result = tuning.settle(found.validation, react, searched)
    assert result.kept_default and result.chosen == default
    assert f"under the {tuning.MIN_GAIN:g}-point minimum" in result.reason


def test_among_equal_validation_values_the_search_keeps_the_point_nearest_the_default(
    monkeypatch,
):
    """Every candidate but the default scores the same: the search moves one grid step, no further (grid order
    would have taken the first value of each range)."""
    features = _synthetic_workspace()
    for name in ("energy", "line"):  # a grid, and coordinate ascent
        method = METHODS[name]
        dims = tuning.dimensions(method, features, 9)
        default = {k: v for k, v in features.resolved(method).items() if k in dims}

        def objective(features, method, params, *args, default=default, **kwargs):
            return (0.0 if params == default else 1.0), {"near": 1.0}

        monkeypatch.setattr(tuning, "objective_value", objective)
        result = tuning.search(features, method, points=9)
        steps = sum(
            abs(values.index(result.best[k]) - values.index(default[k]))
            for k, values in dims.items()
        )
        assert steps == 1, (name, result.best, default)


def test_a_benchmark_with_a_validation_set_tunes_on_it_by_default(
    digits, tmp_path, capsys
):
    """OpenOOD v1.5's protocol: the benchmark's validation OOD set (the demo's val-images) alone; pseudo-OOD where
    there is none, or where that set is a test set of the workspace."""
    features = load_workspace(Workspace("demo", "digits", ("letters",)))
    default = tuning.default_protocol(features)
    assert default.sets == ("val-images",) and default.pseudo == ()
    assert set(demo_data.HELD_OUT).isdisjoint(demo_data.PHOTOS + demo_data.TEXTURES)
    assert tuning.default_sets(features) == (("val-images",), "")
    testing_on_it = load_workspace(Workspace("demo", "digits", ("val-images",)))
    assert tuning.default_protocol(testing_on_it).pseudo == PSEUDO_OOD
    assert (
        "val-images is a test set of this workspace"
        in tuning.default_sets(testing_on_it)[1]
    )
    out = tmp_path / "tuned.json"
    assert cli.main(["tune", "--methods", "energy", "--out", str(out)]) == 0
    assert "validation: 109 ID images, val-images (600)" in capsys.readouterr().out

    def refuse(constant: str):
        raise AssertionError(f"{constant} is not standard JSON")

    document = json.loads(out.read_text(), parse_constant=refuse)
    assert document["protocol"]["sets"] == ["val-images"]
    assert document["methods"]["energy"]["agreement"] is None  # one validation set
    assert (
        tuning.load(out, features).values["energy"]
        == document["methods"]["energy"]["chosen"]
    )


def test_a_workspace_without_images_or_validation_sets_is_told_to_name_some():
    from ood_core.inputs.synthetic import SIZES, register

    register("tiny")
    tiny = SIZES["tiny"]
    features = load_workspace(Workspace(tiny.model, tiny.model, tuple(tiny.ood_names)))
    with pytest.raises(
        OODLabError, match=r"no images to make pseudo-OOD from.*--val set:"
    ):
        tuning.default_protocol(features)


def test_proxy_agreement_is_the_mean_rank_correlation_between_validation_sets():
    points = [
        {"params": {"p": i}, "sets": {"a": a, "b": b, "c": c}}
        for i, (a, b, c) in enumerate([(1, 2, 3), (2, 3, 1), (3, 1, 2), (4, 4, 4)])
    ]
    frame = pd.DataFrame([p["sets"] for p in points])
    expected = np.mean(
        [
            frame["a"].corr(frame["b"], method="spearman"),
            frame["a"].corr(frame["c"], method="spearman"),
            frame["b"].corr(frame["c"], method="spearman"),
        ]
    )
    assert tuning.agreement(points) == pytest.approx(expected)
    assert np.isnan(tuning.agreement(points[:2]))


def test_tune_warns_exactly_where_the_validation_sets_disagree(
    digits, tmp_path, capsys
):
    from scipy.stats import spearmanr

    out = tmp_path / "tuned.json"
    every_variant = "pseudo:" + ",".join(PSEUDO_OOD)
    command = ["tune", "--methods", "energy", "knn", "ash-s", "--val", every_variant]
    assert cli.main([*command, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    document = json.loads(out.read_text())
    warned = set()
    for name, result in document["methods"].items():
        sets = pd.DataFrame([p["sets"] for p in result["evaluated"]])
        sets = sets.loc[:, sets.std() > 0]
        pairs = [
            spearmanr(sets[a], sets[b]).statistic
            for a, b in itertools.combinations(sets.columns, 2)
        ]
        assert result["agreement"] == pytest.approx(np.nanmean(pairs), abs=1e-9)
        label = METHODS[name].label
        line = f"how to rank {label}'s candidates (proxy agreement {result['agreement']:+.2f})"
        assert (line in printed) == (result["agreement"] < tuning.AGREEMENT_WARNING)
        if line in printed:
            warned.add(name)
    assert warned and warned != set(document["methods"]), "one warned, one trusted"
