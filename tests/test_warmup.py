"""What a first table no longer waits for: numba's warm-up (``python -m ood_core warm``, started by the app) and the
train statistics that ``extract``/``synth`` store for the app."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from pages.ui import warmup

REPO = Path(__file__).resolve().parent.parent

# Scores the tiny synthetic workspace as the pages do (table, bootstrap, paired tests) and, unless methods are named,
# runs KNN's screened search on a large bank; prints how many kernels numba compiled meanwhile (loading one from its
# cache is not a compile).
COMPILES = textwrap.dedent(
    """
    import sys
    import numpy as np
    from numba.core import event
    from ood_core.comparisons import per_set_differences, setting_difference
    from ood_core.inputs.synthetic import SIZES, register
    from ood_core.scores import METHODS
    from ood_core.scores.feature_space import l2_normalise, nearest_distances
    from ood_core.scores.neighbours import Bank
    from ood_core.tables import all_methods_table, with_bootstrap
    from ood_core.workspace import Workspace, load_workspace

    tiny = SIZES["tiny"]
    register("tiny")
    features = load_workspace(Workspace(tiny.model, tiny.model, tuple(tiny.ood_names)))
    names = sys.argv[1:] or [n for n, m in METHODS.items() if m.cost == "cache"]
    methods = [(METHODS[n], {}) for n in names if not features.unavailable(METHODS[n])]
    with event.install_recorder("numba:compile") as compiles:
        table = all_methods_table(features, methods)
        with_bootstrap(features, table, methods[:1], resamples=10)
        per_set_differences(features, (METHODS["nap"], {}), (METHODS["energy"], {}))
        setting_difference(features, (METHODS["nap"], {}), (METHODS["energy"], {}), "FPR95")
        if not sys.argv[1:]:  # KNN's screened search, which needs a bank of ≥ 25,600 rows (tiny has 600)
            rows = np.random.default_rng(0).random((26_000, 16), dtype=np.float32)
            nearest_distances(l2_normalise(rows[:50]), Bank(l2_normalise(rows)))
    print(sum(1 for _, e in compiles.buffer if e.is_start))
    """
)

# How many default methods with a stored fit a fresh process finds fitted in the cache (without fitting).
FITTED = textwrap.dedent(
    """
    from ood_core.inputs.synthetic import SIZES
    from ood_core.scores import METHODS
    from ood_core.workspace import Workspace, load_workspace

    tiny = SIZES["tiny"]
    features = load_workspace(Workspace(tiny.model, tiny.model, tuple(tiny.ood_names)))
    stored = [m for m in METHODS.values() if m.cost == "cache" and m.fit is not None and m.fit.store
              and not features.unavailable(m)]
    print(sum(features.state(m, fit=False) is not None for m in stored), len(stored))
    """
)


def _python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_the_warm_up_compiles_every_kernel_the_tables_intervals_and_paired_tests_run(
    tmp_path,
):
    env = {"OOD_LAB_CACHE_DIR": str(tmp_path / "cache")}
    cold = {**env, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cold")}
    # the probe sees compiles: one method on an empty numba cache compiles its kernels
    assert int(_python(["-c", COMPILES, "msp"], cold).stdout.split()[-1]) > 0
    warm = {**env, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    user = {**warm, "OOD_LAB_CACHE_DIR": str(tmp_path / "user-cache")}
    done = _python(["-m", "ood_core", "warm", "--nice", "5"], user)
    assert "kernels of 30 methods compiled or loaded" in done.stdout
    assert not (tmp_path / "user-cache").exists(), "the user's cache is left alone"
    assert _python(["-c", COMPILES], warm).stdout.split()[-1] == "0"


def test_synth_stores_the_train_statistics_unless_told_not_to(tmp_path):
    for flags, expected in (("--no-statistics", "0"), ("", None)):
        env = {"OOD_LAB_CACHE_DIR": str(tmp_path / (flags or "with"))}
        made = _python(
            ["-m", "ood_core", "synth", "--size", "tiny", *flags.split()], env
        )
        assert ("train statistics of" in made.stdout) == (not flags)
        found, stored = _python(["-c", FITTED], env).stdout.split()
        assert int(stored) >= 8, "Mahalanobis, KNN, ViM, ReAct, DICE, … store a fit"
        assert found == (expected or stored), made.stdout


def test_the_app_starts_one_background_warm_up_per_server_process(
    monkeypatch, tmp_path
):
    assert warmup.COMMAND[1:] == ("-m", "ood_core", "warm", "--nice", "10")
    log = tmp_path / "started"
    monkeypatch.setattr(  # each start appends a line, in a process of its own
        warmup,
        "COMMAND",
        (sys.executable, "-c", f"open({str(log)!r}, 'a').write('x\\n')"),
    )

    def sessions(count: int, patience: float) -> list:
        warmup.start_warmup.clear()  # a new server process
        for _ in range(count):
            at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
            assert not at.exception
        deadline = time.monotonic() + patience
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # a second start would have written by now
        return log.read_text().splitlines() if log.exists() else []

    monkeypatch.setenv("OOD_LAB_WARM", "1")
    assert sessions(2, 30) == ["x"], "two sessions of one server start one warm-up"
    log.unlink()
    monkeypatch.setenv("OOD_LAB_WARM", "0")
    assert sessions(1, 2) == [], "OOD_LAB_WARM=0 turns it off"
    warmup.start_warmup.clear()
