"""The teaching layer in AppTest: the guided lecture's links open pages in their state, every page resets to the
papers' defaults and keeps its values when left, the primer and the A/B page compute what they show."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from ood_core.scores import get_method
from ood_core.tables import all_methods_table
from ood_core.workspace import Workspace
from ood_core.workspace import load_workspace as workspace_features
from pages.ui.cards import BADGES
from pages.ui.state import ACTIONS, kept

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")


@pytest.fixture(scope="module")
def extracted(demo_model):
    workspace_features(Workspace())


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=120).run()


def _link(page: str, query: dict[str, str]) -> AppTest:
    """``page`` opened by a deep link carrying ``query`` (as a click on a lecture step's link does)."""
    at = _app()
    for key, value in query.items():
        at.query_params[key] = value
    return at.switch_page(page).run()


def _healthy(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_every_action_widget_is_declared_so_kept_state_never_sets_a_button():
    keys = set()
    for path in (REPO / "pages").glob("*.py"):
        source = path.read_text()
        for call in re.finditer(
            r"\.(button|download_button|file_uploader)\((.*?)\n\s*\)", source, re.DOTALL
        ):
            found = re.search(r'key="([^"]+)"', call.group(2))
            if found:
                keys.add(found.group(1))
    assert keys, "no action widget found: the scan is broken"
    undeclared = {k for k in keys if kept(k)}
    assert not undeclared, f"add to pages.ui.state.ACTIONS: {sorted(undeclared)}"
    assert {"tune_one", "bg_train", "lecture_next"} <= ACTIONS


def test_a_deep_link_opens_nap_with_the_base_and_lambda_it_names(extracted):
    at = _link(
        "pages/nap.py", {"nap_base": "NAP-ReAct", "nap_x:nap-react:lambda": "0.8"}
    )
    _healthy(at)
    assert at.selectbox(key="nap_base").value == "NAP-ReAct"
    assert at.slider(key="nap_x:nap-react:lambda").value == pytest.approx(0.8)


def test_reset_restores_the_papers_defaults_and_lambda_follows_the_base(extracted):
    at = _app()
    at.switch_page("pages/nap.py").run()
    at.selectbox(key="nap_base").set_value("NAP-ASH-S").run()
    at.slider(key="nap_x:nap-ash:lambda").set_value(0.95).run()
    at.selectbox(key="nap_prior_block").set_value("layer1.0").run()
    at.button(key="reset_nap").click().run()
    _healthy(at)
    assert at.selectbox(key="nap_base").value == "NAP-Energy"
    energy_lambda = get_method("nap-energy").param("lambda").default
    assert at.slider(key="nap_x:nap-energy:lambda").value == pytest.approx(
        energy_lambda
    )
    assert at.selectbox(key="nap_prior_block").value == "layer4.0"
    at.selectbox(key="nap_base").set_value("NAP-ASH-S").run()
    assert at.slider(key="nap_x:nap-ash:lambda").value == pytest.approx(
        get_method("nap-ash").param("lambda").default
    )


def test_values_survive_leaving_a_page_and_coming_back(extracted):
    at = _app()
    at.switch_page("pages/nap.py").run()
    at.slider(key="nap_x:nap-energy:lambda").set_value(0.85).run()
    at.switch_page("pages/primer.py").run()
    _healthy(at)
    at.switch_page("pages/nap.py").run()
    _healthy(at)
    assert at.slider(key="nap_x:nap-energy:lambda").value == pytest.approx(0.85)


def test_the_lecture_links_each_step_to_its_page_with_its_state(extracted):
    at = _app()
    at.switch_page("pages/lecture.py").run()
    _healthy(at)
    steps = at.get("button_group")[0].proto.options if at.get("button_group") else []
    assert len(steps) == 9
    link = at.get("page_link")[0].proto
    assert "primer" in str(link)
    at.button(key="lecture_next").click().run()  # step 1: the prior
    at.button(key="lecture_next").click().run()  # step 2: where the prior lives
    _healthy(at)
    notes = [m.value for m in at.markdown if m.value.startswith(BADGES[False])]
    assert any("best block here is **layer2.0**" in n for n in notes)


def test_the_primer_metrics_follow_its_sliders():
    at = _app()
    at.switch_page("pages/primer.py").run()
    _healthy(at)
    cards = {m.label: m.value for m in at.metric}
    at.slider(key="primer_gap").set_value(0.0).run()
    flat = {m.label: m.value for m in at.metric}
    assert float(cards["AUROC"]) > 80 and abs(float(flat["AUROC"]) - 50) < 3
    assert {"FPR95", "FPR95 (OOD+)"} <= set(flat)


def test_ab_pairs_two_settings_and_their_difference(extracted):
    at = _app()
    at.switch_page("pages/ab.py").run()
    _healthy(at)
    at.slider(key="ab_b:nap-energy:lambda").set_value(1.0).run()
    _healthy(at)
    table = at.dataframe[0].value
    features = workspace_features(Workspace())
    method = get_method("nap-energy")
    energy = all_methods_table(features, [(method, {"lambda": 1.0})]).set_index(
        "ood_set"
    )
    default = all_methods_table(features, [(method, {})]).set_index("ood_set")
    assert table.loc["mean", "AUROC B"] == pytest.approx(energy.loc["mean", "AUROC"])
    assert table.loc["mean", "AUROC A"] == pytest.approx(default.loc["mean", "AUROC"])
    assert table.loc["mean", "Δ AUROC (B − A)"] == pytest.approx(
        energy.loc["mean", "AUROC"] - default.loc["mean", "AUROC"]
    )


def test_the_compare_table_reports_progress_before_each_method(extracted):
    features = workspace_features(Workspace())
    methods = [(get_method(name), {}) for name in ("msp", "energy", "nap-energy")]
    calls = []
    table = all_methods_table(features, methods, lambda *call: calls.append(call))
    assert calls == [(0, 3, "MSP"), (1, 3, "Energy"), (2, 3, "NAP-Energy")]
    pd.testing.assert_frame_equal(table, all_methods_table(features, methods))


@pytest.mark.parametrize(
    "page",
    [
        "pages/block_selection.py",
        "pages/lecture.py",
        "pages/background.py",
        "pages/ab.py",
    ],
)
def test_teaching_pages_render_with_a_single_ood_set(extracted, page):
    at = _app()
    at.session_state["workspace"] = Workspace("demo", "digits", ("letters",))
    at.switch_page(page).run()
    _healthy(at)
    if page.endswith("lecture.py"):
        for _ in range(
            4
        ):  # through step 4, Block Selection, whose observations need the per-block means
            at.button(key="lecture_next").click().run()
            _healthy(at)
