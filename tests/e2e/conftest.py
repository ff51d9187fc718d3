"""A real `streamlit run app.py` on a free localhost port, driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import streamlit_server
from e2e_paths import SCREENSHOTS
from playwright.sync_api import Error as PlaywrightError

REPO = streamlit_server.REPO
CHROMIUM = streamlit_server.CHROMIUM
# Streamlit's frontend first probes /<page>/_stcore/... on a deep link, gets a 404 and falls back to /_stcore/...
STREAMLIT_DEEP_LINK_PROBE = re.compile(r"/[^/]+/_stcore/(health|host-config)$")


@pytest.fixture(scope="session")
def app_server(demo_model):
    """A running app on the demo cache: ``(process, url)``."""
    from ood_core.workspace import Workspace, load_workspace

    load_workspace(Workspace())  # the pages read the cache; extract it once
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        server, url = streamlit_server.start(REPO / "test-artifacts" / "streamlit.log")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server, url
    streamlit_server.stop(server)


@pytest.fixture(scope="session")
def app_url(app_server) -> str:
    return app_server[1]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium), as .ci/run does"
        )
    with sync_playwright() as playwright:
        chromium = streamlit_server.launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.call_report = report
    return report


def _recorded_page(browser, request, viewport: dict):
    """A fresh page that records console errors (``page.console_errors``); on failure its screenshot and text are
    saved to ``test-artifacts/screenshots/FAILED-<test>.*`` for diagnosis."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.console_errors = []

    def record(message):
        if message.type == "error" and not STREAMLIT_DEEP_LINK_PROBE.search(
            message.location.get("url", "")
        ):
            page.console_errors.append(
                f"{message.text} @ {message.location.get('url')}"
            )

    page.on("console", record)
    yield page
    report = getattr(request.node, "call_report", None)
    if report is not None and report.failed:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        try:
            page.screenshot(
                path=str(SCREENSHOTS / f"FAILED-{name}.png"), full_page=True
            )
            (SCREENSHOTS / f"FAILED-{name}.txt").write_text(page.inner_text("body"))
        except (
            PlaywrightError
        ) as exc:  # the page may be gone: the test's own failure is what matters
            print(f"could not save the failure screenshot: {exc}")
    context.close()


@pytest.fixture
def page(browser, request):
    """A tall page (1400×1800) that sees a whole page at once."""
    yield from _recorded_page(browser, request, {"width": 1400, "height": 1800})


@pytest.fixture
def screen(browser, request):
    """A projector's screen (1280×720): what a lecture shows without scrolling."""
    yield from _recorded_page(browser, request, {"width": 1280, "height": 720})
