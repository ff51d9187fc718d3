"""A classroom on one server: N students follow the guided lecture at once, over Streamlit's own websocket protocol.

Each student is one websocket session speaking Streamlit's protobuf messages (``BackMsg.rerun_script`` with the
widget state a browser would send, ``ForwardMsg`` deltas back), so 30-100 students fit on a 2-core machine where a
browser each would not. A student opens each lecture step's link (the page, its query string and ``focus``), then
moves that page's slider ``--moves`` times with 2-5 s of think time between moves, and goes on to the next step. A
slider inside a fragment reruns only its fragment, as in the browser. The latency of a move is the time from sending
the new widget value to the last delta of that rerun; an *open* is timed the same way for the step's first run.

Errors: an exception element, an error alert (the pages' error boundary draws one), a rerun that never finishes
within ``--timeout`` s, or a dropped connection. The server's CPU (user + system over the run's wall time) and peak
resident memory (``VmHWM``) and proportional set size after the class (PSS: shared pages split between the
processes that map them, so replicas' PSS add up) come from /proc. Alongside, one real Chromium session moves NAP-X's λ on the NAP page
and times key press → script run finished: the check on what a person sees.

Without ``--url`` a fresh ``streamlit run app.py`` starts per class size on the demo cache (extracted first when
missing); with ``--url`` the students drive that server (for instance ``deploy/replicas.py``: replicas behind HAProxy), and
the CPU and memory reported are those of every ``streamlit run app.py`` process on this machine. Unless ``--cold``,
the lecturer opens every step once before the students join (as before a lecture), and that pass is timed apart.

Usage: python benchmarks/bench_classroom.py [--students 1 10 30] [--moves 2] [--url http://host:port] [--no-browser]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import websocket
from google.protobuf.message import DecodeError
from playwright.sync_api import Error as PlaywrightError

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "e2e")]
import streamlit_server
from streamlit_protocol import Run, Slider, Student

# (page, the step link's query, the label of the slider a student moves: a regex, or None for the page's first)
LECTURE = [
    ("primer", {"primer_gap": "1.5", "focus": "playground"}, None),
    ("nap", {"focus": "prior"}, "^λ$"),
    ("nap", {"focus": "depth"}, "^λ$"),
    (
        "nap",
        {"nap_base": "NAP-Energy", "nap_x:nap-energy:lambda": "0.4", "focus": "nap-x"},
        "^λ$",
    ),
    ("block_selection", {"bs_grid": "3", "focus": "normratio"}, None),
    ("line", {"focus": "live"}, "^p_a"),
    ("heatmaps", {"heatmap_overlay": "Grad-CAM", "focus": "gallery"}, "Opacity"),
    ("background", {"bg_alpha": "0.1", "focus": "before-after"}, "^α"),
    ("compare", {"focus": "table"}, None),
]


def pick(sliders: list[Slider], label: str | None) -> Slider | None:
    matching = [s for s in sliders if label is None or re.search(label, s.label)]
    return matching[0] if matching else None


def another_value(slider: Slider, rng: random.Random) -> float:
    steps = max(1, round((slider.high - slider.low) / slider.step))
    while True:
        value = round(slider.low + rng.randint(0, steps) * slider.step, 10)
        if value != slider.value or steps == 1:
            return value


@dataclass
class Results:
    moves: list[float] = field(default_factory=list)
    opens: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    per_step: dict[int, list[float]] = field(default_factory=dict)  # move latencies
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, step: int, run: Run) -> None:
        with self.lock:
            (self.moves if kind == "move" else self.opens).append(run.seconds)
            if kind == "move":
                self.per_step.setdefault(step, []).append(run.seconds)
            self.errors.extend(run.errors)


def follow_the_lecture(
    url: str, seed: int, moves: int, timeout: float, results: Results
) -> None:
    rng = random.Random(seed)
    time.sleep(rng.uniform(0.0, 3.0))  # a class does not click in the same millisecond
    try:
        student = Student(url, timeout)
    except (OSError, websocket.WebSocketException) as exc:
        results.errors.append(f"connect: {exc}")
        return
    try:
        for step, (page, query, label) in enumerate(LECTURE):
            run = student.open(page, query)
            results.add("open", step, run)
            sliders = {s.id: s for s in run.sliders}
            for _ in range(moves):
                time.sleep(rng.uniform(2.0, 5.0))
                slider = pick(list(sliders.values()), label)
                if slider is None:
                    results.errors.append(f"no slider on {page} ({label})")
                    break
                value = another_value(slider, rng)
                run = student.move(slider, value)
                results.add("move", step, run)
                slider.value = value
                sliders.update(
                    {s.id: s for s in run.sliders}
                )  # a rerun may re-key a fragment
    except (
        OSError,
        websocket.WebSocketException,
        DecodeError,
    ) as exc:  # counted, the class goes on
        results.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        student.close()


def rehearse(url: str, timeout: float) -> float:
    """The lecturer's pass before class: open every step once (the server computes what the pages share: scores,
    fitted states, figures at the links' values). Seconds taken."""
    start = time.perf_counter()
    student = Student(url, timeout)
    try:
        for page, query, _ in LECTURE:
            student.open(page, query)
    finally:
        student.close()
    return time.perf_counter() - start


# In the page: every change of the app's script state, with the browser's clock (a fast rerun can be over before a
# poll from Playwright would see it running).
RECORD_SCRIPT_STATES = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    window.scriptStates = [];
    new MutationObserver(() => window.scriptStates.push(
        [app.getAttribute('data-test-script-state'), performance.now()]
    )).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
# The time the first run that started after ``start`` finished, or a falsy value while it has not.
RUN_FINISHED_AFTER = """(start) => {
    const states = window.scriptStates;
    const began = states.findIndex(([state, t]) => t > start && state === 'running');
    if (began < 0) return 0;
    const done = states.slice(began).find(([state]) => state === 'notRunning');
    return done ? done[1] : 0;
}"""


def browser_check(
    url: str, rounds: int, stop: threading.Event
) -> tuple[list[float], int]:
    """Key press → script run finished for one real Chromium session moving NAP-X's λ (the browser's clock), and
    how many presses started no rerun within a minute."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    times, missed = [], 0
    with sync_playwright() as playwright:
        browser = streamlit_server.launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"{url}/nap?focus=nap-x")
        app = page.get_by_test_id("stApp")
        page.get_by_text("AUROC vs λ").first.wait_for(timeout=300_000)
        expect(app).to_have_attribute(
            "data-test-script-state", "notRunning", timeout=300_000
        )
        thumb = (
            page.get_by_test_id("stSlider")
            .filter(has=page.get_by_text("λ", exact=True))
            .first.get_by_role("slider")
        )
        page.evaluate(RECORD_SCRIPT_STATES)
        for key in ["ArrowRight", "ArrowLeft"] * (rounds // 2 + 1):
            if stop.is_set() or len(times) >= rounds:
                break
            time.sleep(3.0)
            thumb.focus()
            start = page.evaluate("performance.now()")
            page.keyboard.press(key)
            try:
                finished = page.wait_for_function(
                    RUN_FINISHED_AFTER, arg=start, timeout=60_000
                ).json_value()
            except (
                PlaywrightTimeout
            ):  # the press started no rerun (the thumb lost focus to a redraw)
                missed += 1
                continue
            times.append((finished - start) / 1e3)
        browser.close()
    return times, missed


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (
        int(fields[11]) + int(fields[12])
    ) / 100.0  # utime + stime, clock ticks (USER_HZ = 100)


def proportional_mb(pid: int) -> float:
    """A process's proportional set size in MB: its private pages plus its share of pages mapped by several
    processes (the libraries, the memory-mapped cache), so replicas' PSS add up to the memory they use together,
    where their RSS counts every shared page once per process."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/smaps_rollup has no Pss")


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def app_servers() -> list[int]:
    """The pids of the ``streamlit run app.py`` processes on this machine (the replicas behind a proxy)."""
    return [
        process.pid
        for process in psutil.process_iter(["cmdline"])
        if "streamlit" in " ".join(process.info["cmdline"] or [])
        and "app.py" in (process.info["cmdline"] or [])
    ]


def classroom(
    url: str,
    students: int,
    moves: int,
    timeout: float,
    browser: bool,
    pids: list[int],
    rehearsed: bool,
) -> None:
    results = Results()
    # one pass per replica: behind a round-robin proxy, each new tab reaches the next replica
    rehearsal = (
        sum(rehearse(url, timeout) for _ in range(max(1, len(pids))))
        if rehearsed
        else None
    )
    threads = [
        threading.Thread(
            target=follow_the_lecture, args=(url, seed, moves, timeout, results)
        )
        for seed in range(students)
    ]
    stop = threading.Event()
    cpu_before, wall = sum(map(cpu_seconds, pids)), time.perf_counter()
    students_cpu = (
        time.process_time()
    )  # the simulated students share this machine's cores
    for thread in threads:
        thread.start()
    seen: list[float] = []
    missed = 0
    if browser:
        try:
            seen, missed = browser_check(url, 4, stop)
        except (PlaywrightError, AssertionError) as exc:  # reported with the rest
            results.errors.append(
                f"Chromium: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            )
    for thread in threads:
        thread.join()
    stop.set()
    wall = time.perf_counter() - wall
    students_cpu = time.process_time() - students_cpu
    line = f"  {students:>3} students: "
    if results.moves:
        line += (
            f"move p50 {percentile(results.moves, 50) * 1e3:6.0f} ms  p95 {percentile(results.moves, 95) * 1e3:6.0f} ms  "
            f"max {max(results.moves) * 1e3:6.0f} ms ({len(results.moves)} moves); "
        )
    if results.opens:
        line += f"open p50 {percentile(results.opens, 50):.2f} s p95 {percentile(results.opens, 95):.2f} s; "
    line += f"{len(results.errors)} errors"
    if pids:
        cpu = 100 * (sum(map(cpu_seconds, pids)) - cpu_before) / wall
        peaks = [streamlit_server.memory_mb(pid, "VmHWM") for pid in pids]
        shares = [proportional_mb(pid) for pid in pids]
        line += (
            f"; server CPU {cpu:.0f} % of one core"
            + (f" ({len(pids)} replicas)" if len(pids) > 1 else "")
            + f", peak RSS {' + '.join(f'{m:,.0f}' for m in peaks)} MB"
            + f", PSS after class {' + '.join(f'{m:,.0f}' for m in shares)}"
            + (f" = {sum(shares):,.0f}" if len(shares) > 1 else "")
            + " MB"
        )
    if seen:
        line += f"; Chromium λ key → finished: median {statistics.median(seen) * 1e3:.0f} ms, max {max(seen) * 1e3:.0f} ms"
    if missed:
        line += f" ({missed} key presses started no rerun)"
    line += f"; the simulated students used {100 * students_cpu / wall:.0f} % of one core ({wall:.0f} s)"
    if rehearsal is not None:
        line += f"; the lecturer's pass before class took {rehearsal:.1f} s" + (
            f" ({len(pids)} passes, one per replica)" if len(pids) > 1 else ""
        )
    print(line, flush=True)
    print(
        "      move p95 per step: "
        + ", ".join(
            f"{step} {LECTURE[step][0]} {percentile(times, 95) * 1e3:.0f} ms"
            for step, times in sorted(results.per_step.items())
        )
    )
    for error in sorted(set(results.errors))[:5]:
        print(f"      {results.errors.count(error)} x {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument(
        "--moves", type=int, default=2, help="slider moves per lecture step"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds before a rerun counts as an error",
    )
    parser.add_argument(
        "--url",
        help="drive this running server (or proxy) instead of starting one per class",
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="no real Chromium session alongside"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="no lecturer's pass through the steps before the students join (the class pays the first computations)",
    )
    args = parser.parse_args()
    print(
        f"== classroom: every student opens the {len(LECTURE)} lecture steps and moves each step's slider "
        f"{args.moves} times (2-5 s think time)"
    )
    if args.url:
        for students in args.students:
            classroom(
                args.url,
                students,
                args.moves,
                args.timeout,
                not args.no_browser,
                app_servers(),
                not args.cold,
            )
        return
    from ood_core.workspace import Workspace, load_workspace

    load_workspace(Workspace())  # the demo's features, extracted once
    for students in args.students:
        server, url = streamlit_server.start(
            Path("/tmp") / f"ood-lab-classroom-{students}.log"
        )
        try:
            classroom(
                url,
                students,
                args.moves,
                args.timeout,
                not args.no_browser,
                [server.pid],
                not args.cold,
            )
        finally:
            streamlit_server.stop(server)


if __name__ == "__main__":
    main()
