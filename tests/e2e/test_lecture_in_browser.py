"""The lecture in Chromium at 1280×720 (#31): a step's link lands on its section with the chart on the first
screen, presentation mode keeps every page in the top bar, and chart labels overlap neither curves, bars nor each
other (plotly's own elements, measured by their bounding boxes)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from e2e_paths import SCREENSHOTS
from playwright.sync_api import expect
from test_pages_in_browser import IDLE_TIMEOUT, _assert_healthy, _wait_idle

SCREEN_HEIGHT = 720  # the `screen` fixture's viewport
LANDINGS = [  # (step title, the section's anchor, text in the chart that must be on the first screen)
    ("2 · Where the prior lives", "depth", "AUROC of NAP per block"),
    ("3 · NAP-X: combining two scores", "nap-x", "AUROC vs λ"),
    ("8 · All together, honestly", "table", "method"),
]


def _boxes(page, selector: str, within: str | None = None) -> list[dict]:
    """Bounding boxes of the elements matching ``selector`` (inside the first ``within`` if given)."""
    return page.evaluate(
        """([selector, within]) => {
            const root = within ? document.querySelector(within) : document;
            return [...root.querySelectorAll(selector)].map(e => {
                const r = e.getBoundingClientRect();
                return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, text: e.textContent};
            }).filter(r => r.right > r.left && r.bottom > r.top);
        }""",
        [selector, within],
    )


def _overlap(a: dict, b: dict) -> bool:
    return not (
        a["right"] <= b["left"]
        or b["right"] <= a["left"]
        or a["bottom"] <= b["top"]
        or b["bottom"] <= a["top"]
    )


def _chart(page, title: str) -> str:
    """A CSS selector for the plotly chart whose title holds ``title`` (marked with a data attribute)."""
    page.locator(".js-plotly-plot").filter(has_text=title).first.wait_for(
        timeout=IDLE_TIMEOUT
    )
    page.evaluate(
        """(title) => {
            const chart = [...document.querySelectorAll('.js-plotly-plot')]
                .find(c => (c.querySelector('.gtitle')?.textContent || '').includes(title));
            chart.setAttribute('data-under-test', title);
        }""",
        title,
    )
    return f'.js-plotly-plot[data-under-test="{title}"]'


@pytest.mark.parametrize(
    "title,anchor,chart", LANDINGS, ids=[a for _, a, _ in LANDINGS]
)
def test_a_lecture_step_lands_on_its_chart(screen, app_url, title, anchor, chart):
    page = screen
    page.goto(f"{app_url}/lecture?present=1&lecture_step={quote(title)}")
    link = page.get_by_text("Open this step's page in its state")
    link.wait_for(timeout=IDLE_TIMEOUT)
    _wait_idle(page)
    link.click()
    _wait_idle(page)
    page.locator(f"[id='{anchor}']").wait_for(timeout=IDLE_TIMEOUT)
    page.wait_for_function(  # the section at the top of the screen, under the top bar
        "(id) => { const t = document.getElementById(id).getBoundingClientRect().top;"
        " return t >= 0 && t < 160; }",
        arg=anchor,
        timeout=30_000,
    )
    page.wait_for_timeout(
        6_500
    )  # the scroll holds its target while the charts above finish drawing
    top = page.evaluate(
        f"document.getElementById('{anchor}').getBoundingClientRect().top"
    )
    assert 0 <= top < 160, f"{anchor} is at {top:.0f} px"
    target = page.get_by_text(chart, exact=False).first
    box = target.bounding_box()
    assert box and box["y"] + box["height"] <= SCREEN_HEIGHT, (
        f"{chart!r} is below the first screen ({box})"
    )
    page.screenshot(path=str(SCREENSHOTS / f"lecture-{anchor}.png"))
    _assert_healthy(page)


def test_presentation_mode_keeps_every_page_in_the_top_bar(screen, app_url):
    page = screen
    page.goto(f"{app_url}/compare?present=1")
    page.get_by_text("Every method on the same cache").wait_for(timeout=IDLE_TIMEOUT)
    _wait_idle(page)
    header = page.get_by_test_id("stHeader")
    expect(header.get_by_text("more", exact=True)).to_have_count(0)
    for menu in ("Start", "The five ideas", "Evaluate"):
        expect(header.get_by_text(menu, exact=True)).to_be_visible()
    expect(page.get_by_test_id("stAppDeployButton")).to_have_count(0)
    page.goto(f"{app_url}/nap?present=1")  # a chart outside any collapsed expander
    chart = _chart(page, "AUROC of NAP per block")
    _wait_idle(page)
    ticks = _boxes(page, ".xtick text", chart)
    assert ticks and min(t["bottom"] - t["top"] for t in ticks) >= 17, (
        "presentation ticks are smaller than 18 px"
    )
    _assert_healthy(page)


def test_reference_labels_stay_clear_of_curves_and_bars(screen, app_url):
    page = screen
    page.goto(f"{app_url}/primer")
    roc = _chart(page, "ROC curve")
    _wait_idle(page)
    label = [b for b in _boxes(page, ".annotation", roc) if "TPR 95" in b["text"]]
    plot = _boxes(page, ".nsewdrag", roc)
    assert label and plot and not _overlap(label[0], plot[0]), (label, plot)
    legend = _boxes(page, ".legend", roc)
    assert not any(_overlap(label[0], box) for box in legend)

    page.goto(f"{app_url}/block_selection")
    bars = _chart(page, "NormRatio per block")
    _wait_idle(page)
    label = [b for b in _boxes(page, ".annotation", bars) if "NR = 1" in b["text"]]
    values = _boxes(page, ".bartext", bars)
    assert label and values
    assert not any(_overlap(label[0], v) for v in values), (label, values)
    _assert_healthy(page)


def test_the_share_chart_shows_its_whole_y_title(screen, app_url):
    page = screen
    page.goto(f"{app_url}/line")
    chart = _chart(page, "Share of each class")
    _wait_idle(page)
    svg = _boxes(page, ".main-svg", chart)[0]
    title = _boxes(page, ".ytitle", chart)[0]
    assert title["left"] >= svg["left"] and title["top"] >= svg["top"], (title, svg)
    assert title["bottom"] <= svg["bottom"]


def test_labels_of_uploaded_images_with_equal_scores_do_not_collide(
    screen, app_url, tmp_path
):
    import numpy as np
    from PIL import Image

    page = screen
    picture = (np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)
    paths = []
    for name in ("first_copy.png", "second_copy.png", "third_copy.png"):
        Image.fromarray(picture).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    page.goto(f"{app_url}/uploads")
    page.get_by_text("Drop PNG/JPEG images").first.wait_for(timeout=IDLE_TIMEOUT)
    _wait_idle(page)
    page.locator("input[type=file]").set_input_files(paths)
    chart = _chart(page, "scores")
    _wait_idle(page)
    labels = [b for b in _boxes(page, ".annotation", chart) if "copy" in b["text"]]
    assert len(labels) == 3
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            assert not _overlap(a, b), (a, b)
    _assert_healthy(page)
