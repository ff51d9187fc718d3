"""No traceback reaches a user (AppTest): a failure anywhere on a page becomes one line plus collapsed details,
deep links are checked like the widgets they set, and Tune hands tuned values to Compare in the shape its controls
take."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from markdown_it import MarkdownIt
from page_text import shown
from streamlit.testing.v1 import AppTest

from ood_core import tables
from ood_core.workspace import Workspace
from ood_core.workspace import load_workspace as workspace_features
from pages.ui.text import plain

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
PAGES = sorted(
    f"pages/{p.name}" for p in (REPO / "pages").glob("*.py") if p.name != "__init__.py"
)


@pytest.fixture(scope="module")
def extracted(demo_model):
    workspace_features(Workspace())


def _open(page: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180).run()
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.switch_page(page).run()


def _warnings(at: AppTest) -> str:
    """The page's warnings as a reader sees them."""
    return shown(" ".join(w.value for w in at.warning))


def _healthy(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _one_error(at: AppTest, words: str) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1, [e.value for e in at.error]
    assert words in at.error[0].value
    details = [e for e in at.expander if e.label == "Details"]
    assert details and "injected" in details[0].code[0].value


@pytest.mark.parametrize("page", PAGES)
def test_a_failure_on_any_page_is_one_line_with_collapsed_details(
    extracted, monkeypatch, page
):
    def broken(*args, **kwargs):
        raise RuntimeError("injected failure")

    at = AppTest.from_file(APP, default_timeout=180).run()
    monkeypatch.setattr(st, "title", broken)  # every page opens with its title
    at.switch_page(page).run()
    _one_error(at, "Something went wrong here (RuntimeError: injected failure)")


def test_a_failure_inside_a_fragment_rerun_stays_in_the_fragment(
    extracted, monkeypatch
):
    at = _open("pages/nap.py")
    _healthy(at)

    def broken(*args, **kwargs):
        raise ValueError("injected in a fragment")

    monkeypatch.setattr(tables, "all_methods_table", broken)
    at.slider(key="nap_x:nap-energy:lambda").set_value(0.9).run()
    _one_error(at, "ValueError: injected in a fragment")
    assert at.title[0].value.startswith("NAP")  # the rest of the page is drawn


def test_a_failing_callback_is_reported_on_the_next_run(extracted, monkeypatch):
    from pages.ui import state

    def broken(prefixes):
        raise KeyError("injected in a callback")

    at = _open("pages/nap.py")
    monkeypatch.setattr(state, "forget", broken)
    at.run()  # the reset button now carries the broken callback
    at.button(key="reset_nap").click().run()
    _one_error(at, "KeyError")


@pytest.mark.parametrize("value", ["5", "inf", "1e400", "nan", "abc", "0.5|0.7"])
def test_a_deep_link_value_outside_a_slider_is_ignored_with_a_note(extracted, value):
    at = _open(
        "pages/nap.py", {"nap_base": "NAP-ReAct", "nap_x:nap-react:lambda": value}
    )
    _healthy(at)
    assert at.selectbox(key="nap_base").value == "NAP-ReAct"
    assert 0 <= at.slider(key="nap_x:nap-react:lambda").value <= 1
    assert "nap_x:nap-react:lambda" in _warnings(at)


@pytest.mark.parametrize("value", ["-5", "9" * 60_000])
def test_compare_ignores_a_linked_parameter_its_slider_cannot_take(extracted, value):
    at = _open("pages/compare.py", {"compare_tuned": "ReAct", "compare:react:p": value})
    _healthy(at)
    assert at.slider(key="compare:react:p").value == 90
    assert "compare:react:p" in _warnings(at)


@pytest.mark.parametrize(
    "query",
    [{"tune_points": "1000"}, {"tune_fraction": "0.9"}, {"tune_results": "x"}],
)
def test_tune_links_cannot_break_the_page_or_set_its_internal_state(extracted, query):
    at = _open("pages/tune.py", query)
    _healthy(at)
    assert next(iter(query)) in _warnings(at)
    at.selectbox(key="tune_method").set_value("Energy").run()
    _healthy(at)


def test_a_link_names_only_widgets_of_its_page(extracted):
    at = _open("pages/nap.py", {"bs_grid": "4", "nap_prior_block": "layer2.0"})
    _healthy(at)
    assert at.selectbox(key="nap_prior_block").value == "layer2.0"
    assert "bs_grid" not in at.session_state
    assert "bs_grid: no such control" in _warnings(at)


def test_tuned_block_sets_reach_compare_as_lists_of_blocks(extracted):
    at = _open("pages/tune.py")
    at.selectbox(key="tune_method").set_value("FeatureNorm (multi-block)").run()
    at.button(key="tune_one").click().run()
    _healthy(at)
    at.button(key="tune_apply").click().run()
    _healthy(at)
    assert at.title[0].value == "Compare methods"
    chosen = at.multiselect(key="compare:featurenorm-multi:block_set").value
    assert chosen and all(b.startswith("layer") for b in chosen), chosen
    assert not any("l+a+y" in c.value for c in at.caption)


def test_a_handed_over_value_a_control_cannot_take_is_refused(extracted):
    from ood_core.scores import METHODS
    from pages.ui.controls import hand_over

    blocks = ["layer1.0", "layer4.0"]
    refused = hand_over(
        {"react": {"p": 1e308}, "energy": {"T": "abc"}, "nap": {"block": "l"}},
        METHODS,
        blocks,
        "compare",
    )
    assert len(refused) == 3


@pytest.mark.parametrize(
    "text",
    [
        "![x](http://127.0.0.2:9/p.png)",
        "[click](http://evil.example)",
        "http://127.0.0.2:9/autolink and www.example.com",
        "<http://127.0.0.2:9/>",
        "digits:train: 256/1257 :material/warning: $x^2$ **bold** `code` # heading",
    ],
)
def test_user_text_renders_as_the_same_text_without_links_images_or_markup(text):
    rendered = MarkdownIt("gfm-like").render(plain(text))
    assert "<a" not in rendered and "<img" not in rendered
    assert "<strong>" not in rendered and "<code>" not in rendered
    assert "<h1>" not in rendered
    visible = MarkdownIt("gfm-like").renderInline(plain(text))
    assert visible.replace("\u200b", "").replace("&amp;", "&") == text.replace(
        "<", "&lt;"
    ).replace(">", "&gt;")
