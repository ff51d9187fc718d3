"""The lecture flows (#31), in AppTest and on the helpers behind the charts: each step's link names a section its
page draws and scrolls to once, every step previews its observations, and the chart defects seen in the browser
stay fixed (words, labels, axes, numbering, captions read from the chart's own numbers)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from ood_core.observations import pruning_tradeoff
from ood_core.workspace import Workspace
from ood_core.workspace import load_workspace as workspace_features
from pages.ui.charts import axis_type, label_rows, mark_values

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
STEPS = 9


@pytest.fixture(scope="module")
def extracted(demo_model):
    workspace_features(Workspace())


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=180).run()


def _healthy(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _step(index: int) -> AppTest:
    """A fresh session's lecture at step ``index`` (0-based), reached with its Next button."""
    at = _app().switch_page("pages/lecture.py").run()
    for _ in range(index):
        at.button(key="lecture_next").click().run()
    _healthy(at)
    return at


def _parse(link) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(link.proto.query_string))


def _scrolls(at: AppTest) -> list[str]:
    """The anchors the page asked the browser to scroll to (the scripts ``sections.section`` emits)."""
    return [
        element.proto.body
        for element in at.get("html")
        if "scrollIntoView" in element.proto.body
    ]


# --- step links land on their section -------------------------------------------------------------------------------


def test_every_step_links_to_a_section_its_page_draws_and_scrolls_there_once(
    extracted,
):
    landed = {}
    for index in range(STEPS):
        at = _step(index)
        link = at.get("page_link")[0]
        query = _parse(link)
        assert query.get("focus"), f"step {index} names no section"
        page = f"pages/{link.proto.page.strip('/')}.py"
        target = _app()
        for key, value in query.items():
            target.query_params[key] = value
        target.switch_page(page).run()
        _healthy(target)
        scripts = _scrolls(target)
        landed[index] = bool(scripts)
        if scripts:  # the script scrolls to this anchor and no other
            assert len(scripts) == 1 and f'"{query["focus"]}"' in scripts[0]
            target.run()  # the next run (a slider move) does not scroll again
            assert not _scrolls(target)
        assert not target.warning or all("focus" not in w.value for w in target.warning)
    # Local Background's before/after table exists only once the fine-tunes ran: its page opens at the top then.
    assert {i for i, ok in landed.items() if not ok} <= {7}, landed


def test_a_focus_that_names_no_section_scrolls_nowhere_and_warns_nothing(extracted):
    at = _app()
    at.query_params["focus"] = "no-such-section"
    at.switch_page("pages/nap.py").run()
    _healthy(at)
    assert not _scrolls(at)
    assert not at.warning


# --- every step previews its observations ---------------------------------------------------------------------------


def test_every_lecture_step_previews_its_observations(extracted):
    for index in range(STEPS):
        at = _step(index)
        texts = [m.value for m in at.markdown]
        header = next(
            (i for i, t in enumerate(texts) if t.startswith("**What you should")), None
        )
        assert header is not None, f"step {index} previews no observation"
        assert texts[header + 1 :] and texts[header + 1].strip(), (
            f"step {index}: the block holds no sentence"
        )


def test_step_zero_reads_the_workspace_baseline_in_words(extracted):
    at = _step(0)
    text = " ".join(m.value for m in at.markdown)
    assert "MSP" in text and "random pairs" in text and "FPR95" in text


# --- presentation: every page in the top bar, charts drawn with the template ---------------------------------------


def test_the_navigation_has_three_menus_holding_every_page():
    source = (REPO / "app.py").read_text()
    pages = sorted(p.name for p in (REPO / "pages").glob("*.py"))
    for name in pages:
        assert f'"pages/{name}"' in source, f"{name} is not in the navigation"
    for menu in ("Start", "The five ideas", "Evaluate"):
        assert f'"{menu}": [' in source


def test_the_toolbar_has_no_deploy_button():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "minimal"


def test_presentation_mode_draws_charts_with_the_template_and_folds_the_prose(
    extracted,
):
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["present"] = "1"  # a link with ?present=1, opened in a new session
    at.switch_page("pages/nap.py").run()
    _healthy(at)
    assert [e.label for e in at.expander][:1] == ["About this page"]
    charts = at.get("plotly_chart")
    assert charts
    for chart in charts:
        spec = chart.proto.spec
        assert '"size":18' in spec.replace(" ", ""), "a chart misses the template"
        assert chart.proto.theme == ""  # Streamlit's theme would override the fonts
    at.toggle(key="present").set_value(False).run()
    assert "About this page" not in [e.label for e in at.expander]


# --- items 4-16 ------------------------------------------------------------------------------------------------------


def test_nap_depth_bars_show_their_values_a_zero_and_the_table_shows_the_auroc(
    extracted,
):
    at = _app()
    at.switch_page("pages/nap.py").run()
    _healthy(at)
    import json

    bars = json.loads(
        next(
            c for c in at.get("plotly_chart") if "per block" in c.proto.spec
        ).proto.spec
    )
    for trace in bars["data"]:
        assert trace["texttemplate"] == "%{y:.0f}"
        assert (
            trace["marker"]["line"]["width"] > 0
        )  # a bar of height 0 keeps a visible edge
    table = next(df for df in at.dataframe if "AUROC" in str(df.value.index.name))
    from ood_core import tables

    features = workspace_features(Workspace())
    sweep = tables.block_sweep(features)
    plotted = sweep[sweep.ood_set != "mean"].pivot(
        index="block", columns="ood_set", values="AUROC"
    )
    for name in features.ood:  # the table shows the AUROC the bars plot, not FPR95
        assert table.value[name].to_numpy() == pytest.approx(
            plotted.loc[table.value.index, name].to_numpy(), abs=0.051
        )


def test_pruning_caption_says_what_the_chart_shows():
    # the case: AUROC peaks at p = 30 with accuracy unchanged; accuracy drops at p = 99 with a lower AUROC
    pareto = pd.DataFrame(
        {
            "p": [0, 10, 30, 50, 90, 99],
            "ID accuracy": [95.0, 95.0, 95.0, 94.9, 93.0, 84.8],
            "AUROC": [80.0, 82.0, 88.0, 85.0, 83.0, 70.0],
        }
    )
    text = pruning_tradeoff(pareto)
    assert "peaks at p = 30 (88.0, +8.0 vs no pruning)" in text
    assert "ID accuracy is 95.0 % (+0.0)" in text
    assert "lowest at p = 99 (84.8 %)" in text and "loses both" in text
    assert "price of the AUROC gained" not in text
    flat = pareto.assign(**{"ID accuracy": 95.0})
    assert "costs no accuracy" in pruning_tradeoff(flat)


def test_a_parameter_over_decades_gets_a_log_axis():
    assert axis_type(pd.Series([0.1, 0.5, 1, 2, 5, 10, 100])) == "log"
    assert axis_type(pd.Series([10, 30, 50, 70, 90])) == "linear"
    assert axis_type(pd.Series([0, 1, 100])) == "linear"  # 0 has no logarithm
    assert axis_type(pd.Series(["layer1.0", "layer2.0"])) == "linear"


def test_label_rows_keep_close_labels_apart():
    assert label_rows([0.0, 0.05, 0.5, 0.52, 0.53], gap=0.1) == [0, 1, 0, 1, 2]
    assert label_rows([3.0, 1.0, 2.0], gap=0.5) == [0, 0, 0]
    positions = [0.3, 0.31, 0.32, 0.9]
    rows = label_rows(positions, gap=0.1)
    for i, a in enumerate(positions):
        for j, b in enumerate(positions):
            if i < j and rows[i] == rows[j]:
                assert abs(a - b) >= 0.1


def test_marked_values_on_a_histogram_of_arrays_get_a_line_and_a_row_each():
    import numpy as np
    import plotly.graph_objects as go

    figure = go.Figure(
        go.Bar(x=np.linspace(-2.0, 2.0, 9), y=np.ones(9))
    )  # plotly keeps x as an array
    mark_values(figure, [0.5, 0.5, 0.5], ["a", "b", "c"])
    assert len(figure.layout.shapes) == 3
    assert sorted(a.y for a in figure.layout.annotations) == pytest.approx(
        [0.82, 0.91, 1.0]
    )


def test_tune_says_one_method_in_the_singular_and_shows_the_chosen_values(
    extracted,
):
    at = _app()
    at.switch_page("pages/tune.py").run()
    at.multiselect(key="tune_pseudo").set_value(["jigsaw3"]).run()
    at.selectbox(key="tune_method").set_value("Energy").run()
    at.button(key="tune_one").click().run()
    _healthy(at)
    captions = " ".join(c.value for c in at.caption)
    assert "over 1 method;" in captions and "1 methods" not in captions
    board = next(df for df in at.dataframe if "tuned" in df.value.columns)
    assert board.proto.column_order[:2] == ["method", "tuned"]
    assert "T=" in board.value["tuned"].iloc[0]


def test_ab_calls_an_exact_tie_a_tie_and_writes_the_papers_symbols(extracted):
    at = _app()
    at.switch_page("pages/ab.py").run()
    _healthy(at)
    text = " ".join(m.value for m in at.markdown)
    assert "tie" in text and "ahead" not in text  # A and B start at the same setting
    labels = {s.label for s in at.slider}
    assert {"λ", "ε"} <= labels and not {"lambda", "eps"} & labels


def test_heatmaps_number_their_sections_without_a_gap_before_training(extracted):
    at = _app()
    at.switch_page("pages/heatmaps.py").run()
    _healthy(at)
    headers = [h.value for h in at.header]
    numbered = [h for h in headers if h[:1].isdigit()]
    assert numbered == ["1 · Train the decoder", "2 · Gallery"]


def test_setup_holds_the_benchmark_note_and_the_sidebar_does_not(extracted):
    at = _app()
    _healthy(at)
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "not available yet" not in sidebar.lower()
    main = " ".join(c.value for c in at.main.caption)
    assert "Benchmarks not available yet" in main
    prepare = at.button(key="prepare")
    assert "trains the demo model on first use" not in (prepare.help or "")
    assert "weights ship" in prepare.help


def test_the_primer_resets_its_sliders_not_paper_defaults():
    at = _app()
    at.switch_page("pages/primer.py").run()
    _healthy(at)
    assert at.button(key="reset_primer").label == "↺ Reset the sliders"


def test_compare_draws_its_sliders_above_the_table_and_marks_their_row(extracted):
    at = _app()
    at.switch_page("pages/compare.py").run()
    _healthy(at)
    at.selectbox(key="compare_tuned").set_value("ReAct").run()
    kinds = [
        type(e).__name__
        for e in at.main
        if getattr(e, "key", None) == "compare:react:p"
        or type(e).__name__ == "Dataframe"
    ]
    assert kinds[:2] == ["Slider", "Dataframe"], kinds
    marked = at.dataframe[0].value.set_index("method")[" "]
    assert marked["ReAct"] == "▶" and (marked.drop(index="ReAct") == "").all()


def test_the_upload_widget_and_its_caption_state_the_same_size_limit(extracted):
    from pages.uploads import MAX_FILE_MIB

    at = _app()
    at.switch_page("pages/uploads.py").run()
    _healthy(at)
    (uploader,) = at.get("file_uploader")
    assert uploader.proto.max_upload_size_mb == MAX_FILE_MIB
    captions = " ".join(c.value for c in at.caption)
    assert f"{MAX_FILE_MIB} MB per file" in captions
