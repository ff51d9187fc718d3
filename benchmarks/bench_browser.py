"""Slider to screen in a real browser: the time from a slider move to the updated output, on a CIFAR-size workspace.

Starts ``streamlit run app.py`` on a free localhost port, opens each page in Debian's Chromium (Playwright) with a
deep link to the synthetic CIFAR-10-size workspace (``python -m ood_core synth --size cifar10``; generated here when
missing), moves a slider with the keyboard (each press a new value) and measures until the page shows the new
result: any metric card's text on NAP (λ) and LINe (p_a); on Compare (ReAct's p), until the fragment's rerun
has finished and the table's frame changed. Goal: ≤ 300 ms median.

Usage: python benchmarks/bench_browser.py [--moves 7] [--page nap|line|compare]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import streamlit_server
from playwright.sync_api import expect, sync_playwright

from ood_core.inputs.synthetic import SIZES, register
from ood_core.workspace import Workspace, load_workspace

IDLE = 600_000
# Records every change of the app's run state from now on (in window._runs).
RECORD_RUNS = """() => {
    window._runs = [];
    const app = document.querySelector('[data-testid="stApp"]');
    window._observer?.disconnect();
    window._observer = new MutationObserver(() => window._runs.push(app.getAttribute('data-test-script-state')));
    window._observer.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


def wait_idle(page) -> None:
    app = page.get_by_test_id("stApp")
    try:
        expect(app).not_to_have_attribute(
            "data-test-script-state", "notRunning", timeout=1_000
        )
    except AssertionError:
        pass
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=IDLE)


def slider(page, label: str):
    return (
        page.get_by_test_id("stSlider")
        .filter(has=page.get_by_text(label, exact=True))
        .first.get_by_role("slider")
    )


def measure(page, label: str, moves: int, watch_text: bool) -> list[float]:
    """Seconds from each key press (a new slider value) to the updated display."""
    thumb = slider(page, label)
    thumb.focus()
    page.keyboard.press("ArrowLeft")  # warm-up: the first move of a session
    wait_idle(page)
    times = []
    for _ in range(moves):
        metric = page.get_by_test_id("stMetricValue")
        before = " | ".join(metric.all_inner_texts()) if watch_text else None
        thumb.focus()
        page.evaluate(RECORD_RUNS)
        start = time.perf_counter()
        page.keyboard.press("ArrowLeft")
        if watch_text:  # any metric card's text changes
            page.wait_for_function(
                """before => Array.from(document.querySelectorAll('[data-testid="stMetricValue"]'))
                    .map(e => e.innerText).join(' | ') !== before""",
                arg=before,
                timeout=IDLE,
                polling="raf",
            )
        else:  # a run that started and finished (recorded by the observer: a fast run can flip back unseen)
            page.wait_for_function(
                "() => window._runs.includes('running') && window._runs.at(-1) === 'notRunning'",
                timeout=IDLE,
                polling="raf",
            )
        times.append(time.perf_counter() - start)
        wait_idle(page)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=7)
    parser.add_argument(
        "--page", choices=["nap", "line", "compare"], help="measure one page only"
    )
    args = parser.parse_args()
    size = SIZES["cifar10"]
    register("cifar10")
    load_workspace(Workspace(size.model, size.model, tuple(size.ood_names)))
    link = f"model={size.model}&id={size.model}&ood={','.join(size.ood_names)}"
    server, url = streamlit_server.start(
        REPO / "test-artifacts" / "bench_browser.log", timeout=180
    )
    results = {}
    try:
        with sync_playwright() as playwright:
            browser = streamlit_server.launch_chromium(playwright)
            for page_name, label, ready, watch_text, extra in (
                ("nap", "λ", "AUROC vs λ", True, ""),
                ("line", "p_a (activation pruning)", "Sweep (p_a, p_w)", True, ""),
                ("compare", "p", "ROC, ID vs", False, "&compare_tuned=ReAct"),
            ):
                if args.page and page_name != args.page:
                    continue
                page = browser.new_page(viewport={"width": 1400, "height": 1800})
                start = time.perf_counter()
                page.goto(f"{url}/{page_name}?{link}{extra}")
                page.get_by_text(ready, exact=False).first.wait_for(timeout=IDLE)
                wait_idle(page)
                opened = time.perf_counter() - start
                times = measure(page, label, args.moves, watch_text)
                results[page_name] = times
                print(
                    f"{page_name:<8} slider '{label}': median {statistics.median(times) * 1e3:6.0f} ms, "
                    f"min {min(times) * 1e3:5.0f}, max {max(times) * 1e3:5.0f} over {len(times)} moves "
                    f"(page opened in {opened:.1f} s)",
                    flush=True,
                )
                page.close()
            browser.close()
    finally:
        streamlit_server.stop(server)
    overall = statistics.median([t for times in results.values() for t in times])
    print(f"median over all moves: {overall * 1e3:.0f} ms (goal <= 300 ms)")


if __name__ == "__main__":
    main()
