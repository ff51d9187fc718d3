"""AppTest of the analysis pages: they render from the cache, and their sliders change what is shown."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from ood_core.inputs.variants import PSEUDO_OOD
from ood_core.metrics import ood_metrics
from ood_core.scores import get_method
from ood_core.tuning import AGREEMENT_WARNING
from ood_core.workspace import Workspace
from ood_core.workspace import load_workspace as workspace_features
from pages.ui.cards import BADGES

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(scope="module")
def extracted(demo_model):
    workspace_features(Workspace())  # every demo set in the session cache


def _open(page: str, workspace: Workspace | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    if workspace is not None:
        at.session_state["workspace"] = workspace
    at.switch_page(page).run()
    _no_errors(at)
    return at


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _chart(at: AppTest, index: int) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def _cards(at: AppTest) -> dict[str, float]:
    return {m.label: float(m.value) for m in at.metric}


def test_nap_lambda_slider_changes_the_auroc(extracted):
    at = _open("pages/nap.py")
    before = _cards(at)
    assert set(before) == {
        f"AUROC · {s}"
        for s in ("letters", "textures", "photos", "faces", "noise", "mean")
    }
    at.slider(key="nap_x:nap-energy:lambda").set_value(0.0).run()
    _no_errors(at)
    after = _cards(at)
    assert after != before
    features = workspace_features(Workspace())
    nap = get_method("nap")
    for name, f in features.ood.items():  # λ = 0 is NAP alone (last block, ε = 1)
        expected = ood_metrics(nap.score(features.id_test), nap.score(f))["AUROC"]
        assert after[f"AUROC · {name}"] == pytest.approx(expected, abs=0.051)


def test_nap_block_switch_changes_the_prior_plot(extracted):
    at = _open("pages/nap.py")
    first = _chart(at, 0)
    at.selectbox(key="nap_prior_block").set_value("layer1.0").run()
    _no_errors(at)
    second = _chart(at, 0)
    assert second["layout"]["title"]["text"].startswith("layer1.0")
    assert second["data"][0]["x"] != first["data"][0]["x"]


def test_nap_depth_section_covers_every_block(extracted):
    at = _open("pages/nap.py")
    bars = _chart(at, 2)
    assert sorted({x for trace in bars["data"] for x in trace["x"]}) == [
        "layer1.0",
        "layer2.0",
        "layer3.0",
        "layer4.0",
    ]


@pytest.mark.parametrize("ood_set", ["letters", "textures", "photos", "faces", "noise"])
def test_nap_and_compare_render_for_every_single_ood_set(extracted, ood_set):
    workspace = Workspace(ood_datasets=(ood_set,))
    for page in ("pages/nap.py", "pages/compare.py"):
        _open(page, workspace)


def test_nap_every_base_method_renders(extracted):
    at = _open("pages/nap.py")
    for base in [o for o in at.selectbox(key="nap_base").options]:
        at.selectbox(key="nap_base").set_value(base).run()
        _no_errors(at)


def _leaderboard(at) -> pd.DataFrame:
    """Compare's table by method, without the column that marks the row whose sliders are shown."""
    return at.dataframe[0].value.drop(columns=[" "]).set_index("method")


def test_compare_slider_recomputes_only_its_method(extracted):
    at = _open("pages/compare.py")
    table = _leaderboard(at)
    assert {
        "MSP",
        "Energy",
        "Mahalanobis",
        "KNN",
        "ReAct",
        "DICE",
        "ASH-S",
        "NAP",
        "NAP-Energy",
    } <= set(table.index)
    assert "ODIN" not in table.index
    at.selectbox(key="compare_tuned").set_value("ReAct").run()
    at.slider(key="compare:react:p").set_value(60.0).run()
    _no_errors(at)
    changed = _leaderboard(at)
    marker = at.dataframe[0].value.set_index("method")[" "]
    assert marker["ReAct"] == "▶" and (marker.drop(index="ReAct") == "").all()
    assert changed.loc["ReAct", "mean"] != table.loc["ReAct", "mean"]
    assert changed.drop(index="ReAct").equals(table.drop(index="ReAct"))


def test_compare_lists_every_method_and_moves_the_new_ones(extracted):
    at = _open("pages/compare.py")
    table = _leaderboard(at)
    from ood_core.scores import METHODS

    assert {m.label for m in METHODS.values() if m.cost == "cache"} <= set(table.index)
    at.selectbox(key="compare_tuned").set_value("NAP (multi-block)").run()
    at.multiselect(key="compare:nap-multi:block_set").set_value(["layer2.0"]).run()
    at.selectbox(key="compare_tuned").set_value("ViM").run()
    at.slider(key="compare:vim:share").set_value(10.0).run()
    _no_errors(at)
    changed = _leaderboard(at)
    moved = ["NAP (multi-block)", "ViM"]
    assert (changed.loc[moved, "mean"] != table.loc[moved, "mean"]).all()
    assert changed.drop(index=moved).equals(table.drop(index=moved))


def test_compare_roc_and_histogram_follow_their_selectors(extracted):
    at = _open("pages/compare.py")
    at.selectbox(key="compare_roc_set").set_value("noise").run()
    at.selectbox(key="compare_hist_method").set_value("KNN").run()
    _no_errors(at)
    titles = [
        c["layout"]["title"]["text"]
        for c in map(json.loads, (c.proto.spec for c in at.get("plotly_chart")))
    ]
    assert "ROC, ID vs noise" in titles and "KNN: ID vs OOD scores" in titles


def test_line_pa_slider_changes_the_auroc_and_the_sweep_renders(extracted):
    at = _open("pages/line.py")
    before = _cards(at)
    at.slider(key="line:line:p_a").set_value(10).run()
    _no_errors(at)
    assert _cards(at) != before
    titles = [
        json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "")
        for c in at.get("plotly_chart")
    ]
    assert any(
        t.startswith("Share of each class's positive importance Σ Φ kept at p_a = 10")
        for t in titles
    )
    sweep = next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if "p_w" in json.dumps(json.loads(c.proto.spec)["layout"])
    )
    z = sweep["data"][0]["z"]  # plotly ships large arrays as typed buffers with a shape
    assert (
        z["shape"].replace(" ", "") if isinstance(z, dict) else f"{len(z)},{len(z[0])}"
    ) == "8,8"
    at.radio(key="line_tau_mode").set_value("ID-train percentile").run()
    at.selectbox(key="line_sample_set").set_value("textures").run()
    _no_errors(at)


def test_tune_page_tunes_on_validation_and_hands_the_values_to_compare(extracted):
    at = _open("pages/tune.py")
    assert not at.dataframe  # nothing tuned yet
    untunable = at.info[0].value
    assert "Nothing to tune on OOD data" in untunable and "OptFS" in untunable
    assert "Energy" not in untunable.split(".")[0]
    # the demo's benchmark has a validation OOD set: OpenOOD's protocol, that set alone
    assert at.multiselect(key="tune_sets").value == ["val-images"]
    assert at.multiselect(key="tune_pseudo").value == []
    at.button(key="tune_one").click().run()  # the first method (Energy)
    _no_errors(at)
    leaderboard = at.dataframe[0].value
    assert list(leaderboard["method"]) == ["Energy"]
    row = leaderboard.iloc[0]
    assert row["AUROC test-best"] >= row["AUROC tuned"] - 1e-9
    hidden = [w.value for w in at.warning if w.value.startswith("The mean hides")]
    assert bool(hidden) == (row["worst set Δ"] < -5)  # on the demo: letters, -59.9
    assert (
        not hidden
        or f"Energy ({row['worst set']} {row['worst set Δ']:+.1f})" in hidden[0]
    )
    assert row["regret"] == pytest.approx(row["AUROC test-best"] - row["AUROC tuned"])
    tuned_t = float(row["tuned"].split("=")[1])
    assert (
        len(at.get("plotly_chart")) == 2
    )  # the T profile and the validation-vs-test scatter
    # the proxy warning shows exactly when the validation sets disagree (the value is tested in test_tuning)
    agreement = float(row["proxy agreement"])
    warned = [
        w.value
        for w in at.warning
        if "disagree on how to rank Energy" in w.value
        and f"{agreement:+.2f}" in w.value
    ]
    assert bool(warned) == (agreement < AGREEMENT_WARNING)
    expected = (
        "Proxy agreement needs two validation sets or more"
        if math.isnan(
            agreement
        )  # one validation set: nothing to compare its ranking with
        else f"Proxy agreement {agreement:+.2f}"
    )
    if not warned:
        assert any(expected in c.value for c in at.caption)
    temperature = get_method("energy").param("T")
    at.slider(key="tune_points").set_value(
        5
    ).run()  # fewer values per parameter: a new search
    at.button(key="tune_one").click().run()
    _no_errors(at)
    coarse = at.dataframe[0].value.iloc[0]
    assert coarse["points"] == len(set(temperature.grid(5)) | {temperature.default})
    tuned_t = float(coarse["tuned"].split("=")[1])
    assert tuned_t in set(temperature.grid(5)) | {temperature.default}
    at.button(key="tune_apply").click().run()
    _no_errors(at)
    assert at.slider(key="compare:energy:T").value == pytest.approx(tuned_t)


def test_tune_page_defaults_follow_the_workspace_and_say_why_they_fall_back(extracted):
    """The demo's validation set becomes a test set: the page falls back to pseudo-OOD and says why, instead of
    keeping the last workspace's (now empty) choices; emptying both sources is a prompt, not an error."""
    at = _open("pages/tune.py")
    assert at.multiselect(key="tune_sets").value == ["val-images"]
    at.multiselect(key="ood_sets").set_value(["letters", "val-images"]).run()
    _no_errors(at)
    assert at.multiselect(key="tune_sets").value == []
    assert at.multiselect(key="tune_pseudo").value == list(PSEUDO_OOD)
    assert any(
        "val-images is a test set of this workspace" in c.value for c in at.caption
    )
    at.multiselect(key="tune_pseudo").set_value([]).run()
    _no_errors(at)
    assert any("Choose at least one validation OOD source" in i.value for i in at.info)


def _notes(at: AppTest) -> list[str]:
    """The observation sentences of a page (the badged lines of its "what you should see here" blocks)."""
    return [m.value for m in at.markdown if m.value.startswith(tuple(BADGES.values()))]


def test_nap_observations_flip_between_a_workspace_that_agrees_with_the_paper_and_one_that_does_not(
    extracted,
):
    from ood_core.inputs.synthetic import SIZES, register

    register("tiny")
    tiny = SIZES["tiny"]
    synthetic = Workspace(tiny.model, tiny.model, tuple(tiny.ood_names))
    workspace_features(synthetic)  # generated into the cache
    agrees = _notes(_open("pages/nap.py", synthetic))
    demo = _notes(_open("pages/nap.py"))
    depth_agrees = next(n for n in agrees if "last block" in n)
    depth_demo = next(n for n in demo if "last block" in n)
    # the tiny synthetic workspace's blocks are too close for its few samples: no claim either way
    assert depth_agrees.startswith(
        f"{BADGES[None]} No clear difference between the last block b2"
    )
    assert depth_demo.startswith(
        f"{BADGES[False]} Unlike the paper, the best block here is **layer2.0**"
    )
    assert "Why this can happen" in depth_demo and "8×8 digits" in depth_demo
    # NAP-Energy at its default λ: the sentence names what it is compared with
    assert any("**NAP-Energy**" in n and "Energy alone" in n for n in demo)


def test_every_analysis_page_shows_its_observations_on_the_demo(extracted):
    for page, expected in (
        ("pages/block_selection.py", "NormRatio picks"),
        ("pages/line.py", "LINe"),
        ("pages/compare.py", "Best mean AUROC here"),
    ):
        notes = _notes(_open(page))
        assert any(expected in n for n in notes), (page, notes)
