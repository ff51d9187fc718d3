"""A real `streamlit run app.py` on a free localhost port, driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from e2e_paths import SCREENSHOTS

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# Streamlit's frontend first probes /<page>/_stcore/... on a deep link, gets a 404 and falls back to /_stcore/...
STREAMLIT_DEEP_LINK_PROBE = re.compile(r"/[^/]+/_stcore/(health|host-config)$")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(demo_model):
    from ood_core.evaluation import workspace_features
    from ood_core.pipeline import Workspace

    workspace_features(Workspace())  # the pages read the cache; extract it once
    port = _free_port()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log = open(REPO / "test-artifacts" / "streamlit.log", "w")  # noqa: SIM115 (closed at teardown)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
        ],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://localhost:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            server.kill()
            pytest.fail(
                f"streamlit did not become healthy on {url}; see test-artifacts/streamlit.log"
            )
        time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium), as .ci/run does"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page that records console errors (``page.console_errors``)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
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
    context.close()
