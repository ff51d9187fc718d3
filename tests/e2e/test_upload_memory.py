"""One upload of any content raises the app server's resident memory by a bounded amount (issue: uploads that took
a server from ~1 GB to ~2.5 GB, and kept 1.8 GB after the tab closed), and three tabs' uploads are released."""

from __future__ import annotations

import io
import math
import os
import time
import zipfile
from pathlib import Path

import pytest
import streamlit_server
from PIL import Image
from test_pages_in_browser import _assert_healthy, _open, _wait_idle

BOUND_MB = 300


def _bzip2_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_BZIP2) as archive:
        for i in range(60):
            archive.writestr(f"m{i}.png", b"\0" * (10 * 2**20 - 1))
    return buffer.getvalue()


def _huge_images() -> bytes:
    picture = io.BytesIO()
    Image.new("RGB", (6000, 6000), (200, 120, 40)).save(picture, "PNG")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(12):
            archive.writestr(f"huge{i}.png", picture.getvalue())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def own_server(demo_model):
    from ood_core.workspace import Workspace, load_workspace

    load_workspace(Workspace())
    server, url = streamlit_server.start(
        streamlit_server.REPO / "test-artifacts" / "streamlit-uploads.log",
        options=("--server.disconnectedSessionTTL", "5"),  # closed tabs end soon
    )
    yield server, url
    streamlit_server.stop(server)


@pytest.mark.parametrize("content", ["bzip2-bomb", "huge-images"])
def test_one_upload_raises_the_server_rss_by_a_bounded_amount(
    browser, own_server, tmp_path, content
):
    server, url = own_server
    path = tmp_path / f"{content}.zip"
    path.write_bytes(_bzip2_bomb() if content == "bzip2-bomb" else _huge_images())
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.console_errors = []
    try:
        _open(page, url, "uploads", "Drop PNG/JPEG images")
        idle = streamlit_server.memory_mb(server.pid)
        Path(f"/proc/{server.pid}/clear_refs").write_text(
            "5"
        )  # peak RSS counts from here
        page.locator("input[type=file]").set_input_files(str(path))
        page.get_by_text("were not used").first.wait_for(timeout=600_000)
        _wait_idle(page)
        _assert_healthy(page)
        peak = streamlit_server.memory_mb(server.pid, "VmHWM")
        assert peak - idle < BOUND_MB, (
            f"{content}: peak RSS {peak:.0f} MB, idle {idle:.0f} MB"
        )
    finally:
        page.close()


def test_three_tabs_of_large_uploads_stay_bounded_and_are_released(
    browser, own_server, tmp_path
):
    """The issue's scenario at the largest size a file may have: three tabs, each uploading 30 files of 9.5 MB
    (285 MB, of which the first 100 MB are read): ≤ +300 MB with the tabs open, ≤ +100 MB once they are closed."""
    server, url = own_server
    files = []
    for i in range(30):
        path = tmp_path / f"random{i}.png"
        path.write_bytes(os.urandom(int(9.5 * 2**20)))
        files.append(str(path))
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    _open(page, url, "uploads", "Drop PNG/JPEG images")
    baseline = streamlit_server.memory_mb(server.pid)
    page.close()
    tabs = []
    for _ in range(3):
        tab = browser.new_page(viewport={"width": 1400, "height": 1400})
        tab.console_errors = []
        tabs.append(tab)
        _open(tab, url, "uploads", "Drop PNG/JPEG images")
        tab.locator("input[type=file]").set_input_files(files)
        tab.get_by_text("30 file(s) were not used").first.wait_for(timeout=300_000)
        _wait_idle(tab)
        _assert_healthy(tab)
        assert tab.get_by_text("would exceed 100 MiB in all").count() > 0
    opened = streamlit_server.memory_mb(server.pid) - baseline
    assert opened <= 300, f"{opened:.0f} MB over the baseline with three tabs open"
    for tab in tabs:
        tab.close()
    deadline, closed = time.time() + 90, math.inf
    while time.time() < deadline and closed > 100:
        time.sleep(3)
        closed = streamlit_server.memory_mb(server.pid) - baseline
    assert closed <= 100, f"{closed:.0f} MB over the baseline after the tabs closed"
