"""Every page in a real browser: renders without exceptions or console errors, a control changes what is shown."""

from __future__ import annotations

import re

import pytest
from e2e_paths import SCREENSHOTS
from playwright.sync_api import expect

# A generous ceiling, not a delay: every wait below ends as soon as the app reports its script run finished, so a
# loaded machine (CI, two other jobs on 2 cores) only makes the waits longer, never a failure.
IDLE_TIMEOUT = 600_000


def _open(page, app_url: str, path: str, ready_text: str) -> None:
    page.goto(f"{app_url}/{path}")
    page.get_by_text(ready_text, exact=False).first.wait_for(timeout=IDLE_TIMEOUT)
    _wait_idle(page)


def _wait_idle(page) -> None:
    """Wait until no script run is requested or running, so the page shows one finished run.

    The app root carries the run state (``data-test-script-state``); the status widget alone
    appears only after a delay, so a short or just-requested run can slip past it.
    """
    app = page.get_by_test_id("stApp")
    try:  # a run that was just requested may not have started yet: give it a moment to
        expect(app).not_to_have_attribute(
            "data-test-script-state", "notRunning", timeout=1_500
        )
    except AssertionError:
        pass  # it already finished (or nothing was requested)
    expect(app).to_have_attribute(
        "data-test-script-state", "notRunning", timeout=IDLE_TIMEOUT
    )
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=IDLE_TIMEOUT)


def _assert_healthy(page) -> None:
    assert page.get_by_test_id("stException").count() == 0, page.get_by_test_id(
        "stException"
    ).first.inner_text()
    assert page.console_errors == []


def _slider(page, label: str):
    return (
        page.get_by_test_id("stSlider")
        .filter(has=page.get_by_text(label, exact=True))
        .first.get_by_role("slider")
    )


def _metric(page):
    return page.get_by_test_id("stMetricValue").first


def _chart_title(page, startswith: str):
    return page.locator(".gtitle").filter(has_text=startswith).first


PAGES = [
    # (url path, text that appears when rendered, slider label, key to press, what must change)
    ("nap", "AUROC vs λ", "λ", "Home", _metric),
    ("line", "Sweep (p_a, p_w)", "p_a (activation pruning)", "Home", _metric),
    (
        "block_selection",
        "FeatureNorm of any block",
        "Jigsaw grid size n",
        "ArrowRight",
        lambda page: _chart_title(page, "NormRatio per block"),
    ),
    (
        "compare",
        "ROC, ID vs",
        "T",
        "End",
        lambda page: page.locator(".scatterlayer .js-line").first,
    ),
]


@pytest.mark.parametrize(
    "path,ready,label,key,observed", PAGES, ids=[p[0] for p in PAGES]
)
def test_page_renders_and_its_slider_changes_the_display(
    page, app_url, path, ready, label, key, observed
):
    _open(page, app_url, path, ready)
    _assert_healthy(page)
    target = observed(page)
    before = target.text_content() if path != "compare" else target.get_attribute("d")
    thumb = _slider(page, label)
    thumb.focus()
    page.keyboard.press(key)
    _wait_idle(page)
    if (
        path == "compare"
    ):  # charts follow the sliders on request, so that sliders stay fast
        page.get_by_role("button", name="Redraw with the current sliders").click()
        _wait_idle(page)
        expect(target).not_to_have_attribute("d", before, timeout=IDLE_TIMEOUT)
    else:
        expect(target).not_to_have_text(before, timeout=IDLE_TIMEOUT)
    _assert_healthy(page)
    page.screenshot(path=str(SCREENSHOTS / f"{path}.png"))


def test_setup_page_shows_results_and_the_workspace(page, app_url):
    _open(page, app_url, "", "First results")
    _assert_healthy(page)
    accuracy = float(_metric(page).inner_text().rstrip("%"))
    assert accuracy >= 97
    sidebar = page.get_by_test_id("stSidebar")
    for name in (
        "Setup",
        "NAP",
        "Block Selection",
        "LINe",
        "Heatmaps",
        "Local Background",
        "Compare",
        "Try your own images",
        "Workspace",
    ):
        expect(sidebar.get_by_text(name, exact=True).first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "setup.png"))


def test_heatmaps_page_trains_a_decoder_and_the_opacity_slider_redraws(page, app_url):
    _open(page, app_url, "heatmaps", "Train the decoder")
    epochs = _slider(page, "Epochs (at most)")
    epochs.focus()
    page.keyboard.press("Home")  # one epoch keeps the test short
    _wait_idle(page)
    train = page.get_by_role(
        "button", name=re.compile(r"^Train the decoder \(\d+ seeds\)$")
    )
    results = page.get_by_text("3 · Gallery")  # numbered 3 once a decoder exists
    expect(train.or_(results).first).to_be_visible(timeout=IDLE_TIMEOUT)
    if train.count():  # an earlier run may have trained it
        train.click()
    results.wait_for(timeout=IDLE_TIMEOUT)
    _wait_idle(page)
    _assert_healthy(page)
    pictures = page.get_by_test_id("stImage").locator("img")
    expect(pictures).to_have_count(
        37, timeout=IDLE_TIMEOUT
    )  # 6 sets × 6 images + the colour scale
    first = pictures.first.get_attribute("src")
    thumb = _slider(page, "Opacity")
    thumb.focus()
    page.keyboard.press("End")
    _wait_idle(page)
    expect(pictures.first).not_to_have_attribute("src", first, timeout=IDLE_TIMEOUT)
    _assert_healthy(page)
    page.screenshot(path=str(SCREENSHOTS / "heatmaps.png"), full_page=True)


def test_background_page_fine_tunes_and_shows_before_and_after(page, app_url):
    _open(page, app_url, "background", "Fine-tune")

    def fine_tune(new_model: bool) -> str:
        button = page.get_by_role(
            "button", name=re.compile(r"^Fine-tune and extract \(\d+ seeds\)$")
        )
        results = page.get_by_text("2 · Before and after")
        if new_model:  # wait for the rerun to offer it (the old results may still show)
            expect(button).to_be_visible(timeout=IDLE_TIMEOUT)
        else:  # either the button or (when an earlier run made the model) the results: wait until one is drawn
            expect(button.or_(results).first).to_be_visible(timeout=IDLE_TIMEOUT)
        if button.count():
            button.click()
        _wait_idle(page)  # fine-tuning and extraction run inside this script run
        results.wait_for(timeout=IDLE_TIMEOUT)
        _wait_idle(page)
        _assert_healthy(page)
        return page.get_by_test_id("stMetricValue").nth(2).inner_text()

    first = fine_tune(new_model=False)  # an earlier run may have made it
    page.screenshot(path=str(SCREENSHOTS / "background.png"), full_page=True)
    thumb = _slider(page, "α (background weight)")
    thumb.focus()
    page.keyboard.press("End")
    _wait_idle(page)
    assert fine_tune(new_model=True) != first  # the background norm after α = 2 differs


def test_uploads_page_scores_an_uploaded_image(page, app_url, tmp_path):
    import numpy as np
    from PIL import Image

    picture = tmp_path / "noise.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(picture)
    _open(page, app_url, "uploads", "Drop PNG/JPEG images")
    page.locator("input[type=file]").set_input_files(str(picture))
    page.get_by_text("1 · Every method's verdict").wait_for(timeout=IDLE_TIMEOUT)
    _wait_idle(page)
    _assert_healthy(page)
    image = page.get_by_test_id("stImage").locator("img").first
    before = image.get_attribute("src")
    thumb = _slider(page, "Opacity")
    thumb.focus()
    page.keyboard.press("Home")
    _wait_idle(page)
    expect(image).not_to_have_attribute("src", before, timeout=IDLE_TIMEOUT)
    _assert_healthy(page)
    page.screenshot(path=str(SCREENSHOTS / "uploads.png"), full_page=True)


def test_a_deep_link_on_a_page_gets_the_app_shell(page, app_url):
    """pages/ beside app.py must not fall back to Streamlit's legacy file navigation (which lists common.py)."""
    _open(page, app_url, "compare", "Compare methods")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Workspace", exact=True)).to_be_visible()
    assert sidebar.get_by_text("common", exact=True).count() == 0


def test_compare_keeps_the_values_of_methods_whose_sliders_are_not_shown(page, app_url):
    """Compare draws one method's sliders at a time (fragment reruns); every moved value must survive the others'."""
    _open(page, app_url, "compare", "ROC, ID vs")
    caption = page.get_by_text("Every method at its default.")
    expect(caption).to_be_visible()
    for method, label in (("ReAct", "p"), ("Energy", "T")):
        page.get_by_test_id("stSelectbox").filter(
            has=page.get_by_text("Method to tune", exact=True)
        ).click()
        page.keyboard.type(
            method
        )  # filters the options, so that the one wanted is drawn
        page.get_by_role("option", name=method, exact=True).click()
        _wait_idle(page)
        thumb = _slider(page, label)
        thumb.wait_for(timeout=IDLE_TIMEOUT)
        thumb.focus()
        page.keyboard.press("Home")
        _wait_idle(page)
    moved = page.get_by_text("Away from the defaults:", exact=False)
    expect(moved).to_contain_text("ReAct p=")
    expect(moved).to_contain_text("Energy T=0.1")
    _assert_healthy(page)
