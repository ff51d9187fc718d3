"""Peak server memory with 1 vs 4 concurrent browser sessions moving sliders on the same demo cache.

For each session count a fresh `streamlit run app.py` starts; every session (its own browser context) opens the
NAP page and moves the λ slider 6 times, all sessions firing before any is awaited. Prints the server's peak
resident memory (VmHWM) and the time per round, side by side. Needs /usr/bin/chromium and Playwright.

Usage: python benchmarks/bench_sessions.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "e2e")]
import streamlit_server
from playwright.sync_api import expect, sync_playwright

from ood_core.engine.features import model_named
from ood_core.workspace import Workspace, load_workspace

KEYS = ("End", "Home", "ArrowRight", "End", "ArrowLeft", "Home")
TIMEOUT = 120_000


def idle(page) -> None:
    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=TIMEOUT)


def run(browser, sessions: int) -> tuple[float, float, float]:
    """(peak RSS MB, RSS after MB, seconds per round of slider moves) for ``sessions`` sessions."""
    log = Path(tempfile.gettempdir()) / f"ood-lab-bench-sessions-{sessions}.log"
    server, url = streamlit_server.start(log)
    contexts = [browser.new_context() for _ in range(sessions)]
    try:
        pages = [context.new_page() for context in contexts]
        for page in pages:
            page.goto(f"{url}/nap")
            page.get_by_text("AUROC vs λ").first.wait_for(timeout=TIMEOUT)
            idle(page)
        start = time.perf_counter()
        for key in KEYS:
            for page in pages:
                thumb = (
                    page.get_by_test_id("stSlider")
                    .filter(has=page.get_by_text("λ", exact=True))
                    .first.get_by_role("slider")
                )
                thumb.focus()
                page.keyboard.press(key)
            for page in pages:
                idle(page)
                assert page.get_by_test_id("stException").count() == 0
        per_round = (time.perf_counter() - start) / len(KEYS)
        return (
            streamlit_server.memory_mb(server.pid, "VmHWM"),
            streamlit_server.memory_mb(server.pid),
            per_round,
        )
    finally:
        for context in contexts:
            context.close()
        streamlit_server.stop(server)


def main() -> None:
    model_named("demo")
    load_workspace(Workspace())
    with sync_playwright() as playwright:
        browser = streamlit_server.launch_chromium(playwright)
        results = {n: run(browser, n) for n in (1, 4)}
        browser.close()
    print("sessions  peak RSS (MB)  RSS after (MB)  s per round (all sessions)")
    for n, (peak, after, seconds) in results.items():
        print(f"{n:>8}  {peak:>13.0f}  {after:>14.0f}  {seconds:>10.2f}")
    ratio = results[4][0] / results[1][0]
    print(f"peak RSS, 4 sessions / 1 session: {ratio:.3f}")


if __name__ == "__main__":
    main()
