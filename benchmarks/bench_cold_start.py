"""Cold start: how long a first table waits after installing, with and without what now prepares it.

A fresh install has an empty numba cache (every kernel compiles at its first call) and, at benchmark size, no stored
train statistics (fits, KNN's nearest neighbours). Every scenario below runs in fresh processes with its own empty
``NUMBA_CACHE_DIR`` (numba's cache as after ``pip install``):

CIFAR-10 size (synthetic workspace, 70,000 scored rows, 30 methods): seconds to the full Compare table in a fresh
process (``bench_sliders.FIRST_USE``: open the workspace, fit what is missing, score every method, metrics);
- *before*: nothing derived stored, no warm-up (what a first run did until now);
- *synth stores the statistics*: ``python -m ood_core synth`` (as ``extract``) now fits and stores them after
  generating the sets, which also compiles the kernels; its time is printed apart, and the same first table is
  also timed in the app (Streamlit's AppTest switching to the Compare page);
- *statistics stored, numba cold*: features and statistics from an older install, numba's cache empty;
- *with the app's warm-up*: ``python -m ood_core warm --nice 10`` starts with the server and the table is opened
  0 or 30 s later (a user who goes straight to Compare, or who reads Setup first).

Demo: seconds from pressing *Prepare features* on Setup (empty feature cache) to its first results (the four
methods and the full table of every method), in Streamlit's AppTest (the server's script runner, no browser): without
the warm-up, with the warm-up started when the app opened (Prepare pressed at once), and after it finished.

Usage: python benchmarks/bench_cold_start.py [--skip-cifar] [--skip-demo]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
from bench_sliders import FIRST_USE, drop_derived

from ood_core.engine.cache import FeatureCache
from ood_core.inputs.synthetic import SIZES, register

WARM = (sys.executable, "-m", "ood_core", "warm", "--nice", "10")

PREPARE = """
import sys, time
sys.path.insert(0, {repo!r})
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({app!r}, default_timeout=600).run()
start = time.perf_counter()
at.button(key="prepare").click().run(timeout=600)
assert not at.exception, [e.value for e in at.exception]
assert len(at.dataframe) >= 3, "first results drawn"
print(f"{{time.perf_counter() - start:.2f}}")
"""

COMPARE = """
import sys, time
start = time.perf_counter()
sys.path.insert(0, {repo!r})
from streamlit.testing.v1 import AppTest
from ood_core.workspace import Workspace
at = AppTest.from_file({app!r}, default_timeout=600).run()
at.session_state["workspace"] = Workspace({model!r}, {model!r}, {ood!r})
ready = time.perf_counter()
at.switch_page("pages/compare.py").run()
assert not at.exception and not at.error and at.dataframe, "the Compare table drawn"
print(f"{{time.perf_counter() - ready:.2f}} {{ready - start:.2f}}")
"""


def run(args, env: dict) -> str:
    return subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout


def table_seconds(env: dict, size) -> str:
    code = FIRST_USE.format(repo=str(REPO), model=size.model, ood=tuple(size.ood_names))
    start = time.perf_counter()
    imports, _, statistics, table, count = run(
        [sys.executable, "-c", code], env
    ).split()
    wall = time.perf_counter() - start
    return (
        f"{float(table):5.1f} s to the table of {count} methods ({float(statistics):.1f} s of it fitting; "
        f"+ {float(imports):.1f} s imports; {wall:.1f} s process wall)"
    )


def cifar(root: Path) -> None:
    size = SIZES["cifar10"]
    cache = FeatureCache()
    register("cifar10")
    run(
        [
            sys.executable,
            "-m",
            "ood_core",
            "synth",
            "--size",
            "cifar10",
            "--no-statistics",
        ],
        dict(os.environ),
    )

    def fresh(label: str) -> dict:
        return {**os.environ, "NUMBA_CACHE_DIR": str(root / label), "OOD_LAB_WARM": "0"}

    print(
        "CIFAR-10 size, seconds to the full Compare table in a fresh process:",
        flush=True,
    )
    drop_derived(cache, size.model)
    print(
        f"  before (nothing stored, numba cold)            {table_seconds(fresh('before'), size)}",
        flush=True,
    )

    drop_derived(cache, size.model)
    env = fresh("synth")
    start = time.perf_counter()
    run([sys.executable, "-m", "ood_core", "synth", "--size", "cifar10"], env)
    made = time.perf_counter() - start
    print(
        f"  synth stores the statistics (synth on existing sets: {made:.1f} s), then a fresh process:",
        flush=True,
    )
    print(
        f"                                                 {table_seconds(env, size)}",
        flush=True,
    )
    code = COMPARE.format(
        repo=str(REPO),
        app=str(REPO / "app.py"),
        model=size.model,
        ood=tuple(size.ood_names),
    )
    opened, ready = run(
        [sys.executable, "-c", code], {**env, "OOD_LAB_WARM": "0"}
    ).split()[-2:]
    print(
        f"    and the app (AppTest): {float(opened):.1f} s from switching to Compare to its table drawn "
        f"(the app ready {float(ready):.1f} s after its process started)",
        flush=True,
    )
    print(
        f"  statistics stored, numba cold                  {table_seconds(fresh('stored'), size)}",
        flush=True,
    )
    for stored in (False, True):
        for delay in (0, 30):
            if not stored:
                drop_derived(cache, size.model)
            env = fresh(f"warm-{stored}-{delay}")
            warm = subprocess.Popen(WARM, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
            time.sleep(delay)
            line = table_seconds(env, size)
            warm.wait()
            what = "statistics stored" if stored else "nothing stored"
            print(
                f"  {what}, warm-up started {delay:2d} s before    {line}", flush=True
            )


def demo(root: Path) -> None:
    code = PREPARE.format(repo=str(REPO), app=str(REPO / "app.py"))
    print(
        "Demo, seconds from pressing Prepare features (empty feature cache) to Setup's first results:",
        flush=True,
    )
    for label, warm_first, app_warms in (
        ("numba cold, no warm-up", False, "0"),
        ("warm-up started as the app opened", False, "1"),
        ("warm-up finished before", True, "0"),
    ):
        env = {
            **os.environ,
            "NUMBA_CACHE_DIR": str(root / f"demo-{label}"),
            "OOD_LAB_CACHE_DIR": tempfile.mkdtemp(dir=root),
            "OOD_LAB_WARM": app_warms,
        }
        if warm_first:
            run(WARM, env)
        seconds = float(run([sys.executable, "-c", code], env).split()[-1])
        print(f"  {label:<36} {seconds:5.1f} s", flush=True)
        wait_for_warm_ups()  # the app's warm-up outlives the AppTest process


def wait_for_warm_ups() -> None:
    def running() -> bool:
        return any(
            p.info["cmdline"] and list(WARM[1:4]) == p.info["cmdline"][1:4]
            for p in psutil.process_iter(["cmdline"])
        )

    while running():
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores; numba caches in a fresh folder per scenario")
    with tempfile.TemporaryDirectory(prefix="cold-start-") as root:
        if not args.skip_demo:
            demo(Path(root))
        if not args.skip_cifar:
            cifar(Path(root))


if __name__ == "__main__":
    main()
