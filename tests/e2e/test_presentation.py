"""Presentation mode at 1280×720: every page renders without horizontal scrolling, with the sidebar and toolbars
hidden and the pages in a top bar (screenshots: test-artifacts/screenshots/present-<page>.png)."""

from __future__ import annotations

import pytest
from e2e_paths import SCREENSHOTS
from playwright.sync_api import expect
from test_pages_in_browser import IDLE_TIMEOUT, _assert_healthy, _wait_idle

PAGES = [
    ("", "First results"),
    ("lecture", "Guided lecture"),
    ("primer", "How OOD detection is measured"),
    ("nap", "AUROC vs λ"),
    ("block_selection", "FeatureNorm of any block"),
    ("line", "Sweep (p_a, p_w)"),
    ("heatmaps", "Gallery"),
    ("background", "1 · Fine-tune"),
    ("compare", "Every method on the same cache"),  # (the ROC is folded away)
    ("ab", "two settings of one method"),
    ("tune", "Tune hyperparameters honestly"),
    ("reports", "Reports"),
    ("uploads", "Drop PNG/JPEG images"),
]


@pytest.mark.parametrize("path,ready", PAGES, ids=[p or "setup" for p, _ in PAGES])
def test_every_page_fits_a_1280x720_screen_in_presentation_mode(
    screen, app_url, path, ready
):
    page = screen  # 1280×720
    page.goto(f"{app_url}/{path}?present=1")
    page.get_by_text(ready, exact=False).first.wait_for(timeout=IDLE_TIMEOUT)
    _wait_idle(page)
    page.screenshot(path=str(SCREENSHOTS / f"present-{path or 'setup'}.png"))
    _assert_healthy(page)
    expect(page.get_by_test_id("stSidebar")).to_be_hidden(timeout=IDLE_TIMEOUT)
    expect(page.get_by_text("Exit presentation mode")).to_be_visible(
        timeout=IDLE_TIMEOUT
    )
    overflow = page.evaluate(
        """() => [document.documentElement, document.querySelector('[data-testid="stMain"]')]
            .filter(Boolean).map(e => e.scrollWidth - e.clientWidth)"""
    )
    assert max(overflow) <= 0, (
        f"{path or 'setup'} scrolls horizontally by {max(overflow)} px"
    )
    page.screenshot(path=str(SCREENSHOTS / f"present-{path or 'setup'}.png"))


def test_a_lecture_link_opens_its_page_in_the_state_it_names(screen, app_url):
    page = screen  # 1280×720
    page.goto(f"{app_url}/nap?nap_base=NAP-ReAct&nap_x:nap-react:lambda=0.8")
    page.get_by_text("AUROC vs λ", exact=False).first.wait_for(timeout=IDLE_TIMEOUT)
    _wait_idle(page)
    _assert_healthy(page)
    expect(page.get_by_role("combobox", name="Base method X")).to_have_value(
        "NAP-ReAct"
    )
    expect(
        page.locator(".gtitle").filter(has_text="NAP-ReAct: AUROC vs λ")
    ).to_have_count(1)
    expect(page.get_by_test_id("stSlider").filter(has_text="λ").first).to_contain_text(
        "0.80"
    )


OBSERVED = [
    ("nap", "AUROC vs λ", ("nap_depth", "nap_combination")),
    ("block_selection", "FeatureNorm of any block", ("block_selection",)),
    ("line", "Sweep (p_a, p_w)", ("line",)),
    ("compare", "ROC, ID vs", ("compare",)),
]


@pytest.mark.parametrize("path,ready,blocks", OBSERVED, ids=[p for p, _, _ in OBSERVED])
def test_observation_blocks_render_in_the_browser(page, app_url, path, ready, blocks):
    page.goto(f"{app_url}/{path}")
    page.get_by_text(ready, exact=False).first.wait_for(timeout=IDLE_TIMEOUT)
    _wait_idle(page)
    _assert_healthy(page)
    for key in blocks:
        block = page.locator(f".st-key-observations_{key}")
        expect(block).to_contain_text("What you should see here")
        block.scroll_into_view_if_needed()
        block.screenshot(path=str(SCREENSHOTS / f"observations-{key}.png"))
