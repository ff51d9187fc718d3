"""The Streamlit app, driven headlessly with AppTest."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture
def fresh_cache(demo_model, tmp_path, monkeypatch):
    """An empty feature cache (the demo weights ship with the package)."""
    monkeypatch.setenv("OOD_LAB_CACHE_DIR", str(tmp_path))
    return tmp_path


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_setup_extracts_the_demo_with_one_click_and_shows_results(fresh_cache):
    at = AppTest.from_file(APP, default_timeout=60).run()
    _no_errors(at)
    assert "First results" in [s.value for s in at.subheader]
    assert not at.metric, "no results before features exist"
    assert "8 of 8 sets still to extract" in at.caption[1].value
    at.button(key="prepare").click().run(timeout=300)
    _no_errors(at)
    assert (
        at.caption[1].value == "All features cached."
        and at.dataframe[0].value["cached"].all()
    )
    assert (
        at.metric[0].label == "ID test accuracy"
        and float(at.metric[0].value.rstrip("%")) >= 97
    )
    auroc = at.dataframe[1].value
    assert list(auroc.columns) == [
        "letters",
        "textures",
        "photos",
        "faces",
        "noise",
        "mean",
    ]
    assert list(auroc.index) == ["MSP", "MaxLogit", "Energy", "NAP"]
    assert auroc.loc["NAP", "textures"] >= 95 and auroc.loc["Energy", "textures"] < 50
    full = at.dataframe[2].value
    assert len(full) == 24
    assert list(full.columns) == [
        "method",
        "ood_set",
        "AUROC",
        "FPR95",
        "AUPR-In",
        "AUPR-Out",
        "AUROC low",
        "AUROC high",
    ]
    inventory = at.dataframe[-1].value
    assert len(inventory) == 8 and set(inventory["status"]) == {"ok"}


def test_workspace_sidebar_changes_the_table(fresh_cache):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.multiselect(key="ood_sets").value == [
        "letters",
        "textures",
        "photos",
        "faces",
        "noise",
    ]
    at.button(key="prepare").click().run(timeout=300)
    at.multiselect(key="ood_sets").set_value(["textures"]).run()
    _no_errors(at)
    assert list(at.dataframe[1].value.columns) == ["textures"]


def test_deleting_an_entry_from_the_inventory(fresh_cache):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.button(key="prepare").click().run(timeout=300)
    noise = next(o for o in at.multiselect(key="doomed").options if "noise-test" in o)
    at.multiselect(key="doomed").set_value([noise]).run()
    at.button(key="delete").click().run()
    _no_errors(at)
    tables = [d.value for d in at.dataframe]  # datasets, probes, inventory
    assert len(tables[-1]) == 7
    assert not any("letters" in t.columns for t in tables), "results give way to a hint"
    assert "1 of 8 sets still to extract" in at.caption[1].value
    assert not at.dataframe[0].value.set_index("dataset").loc["noise", "cached"]


def test_a_broken_registry_file_is_an_error_message_not_a_crash(
    fresh_cache, tmp_path, monkeypatch
):
    bad = tmp_path / "bad.toml"
    bad.write_text("[models.x\narch = ")
    monkeypatch.setenv("OOD_LAB_CONFIG", str(bad))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert any("broken and left out" in w.value for w in at.warning)
    problems = (
        at.dataframe[-1].value
        if "problem" in at.dataframe[-1].value
        else at.dataframe[-2].value
    )
    assert "cannot be read" in problems["problem"].iloc[0]
    assert at.sidebar.selectbox[0].value == "demo"  # the demo keeps working


def test_setup_says_what_the_install_runs_on():
    from ood_core import jit

    at = AppTest.from_file(APP, default_timeout=60).run()
    _no_errors(at)
    (box,) = [e for e in at.expander if e.label == "About this install"]
    table = box.dataframe[0].value
    facts = dict(zip(table.iloc[:, 0], table["value"]))
    assert f"threading layer {jit.threading_layer()}," in facts["numba"]
    assert facts["device"].startswith(("cpu", "cuda"))


RACE = """
import sys, threading
sys.path.insert(0, {repo!r})
import numpy, pandas, plotly, streamlit, torch  # the third-party part is loaded in a server before any session
barrier = threading.Barrier(3)
errors = []

def session(module):
    barrier.wait()  # three sessions' scripts start at the same moment, as when a class opens the link
    try:
        import pages.ui.preload  # what app.py does first
        __import__(module)
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=session, args=(m,)) for m in ("ood_core.claims", "ood_core.scores", "ood_core.tables")]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
"""


def test_sessions_that_import_the_pages_at_once_never_see_a_half_imported_module():
    """Without the preload, these three imports race on a cycle in ``ood_core.scores`` and one thread gets a
    partially initialised module (every time, on this machine): a class opening a fresh server saw tracebacks."""
    import subprocess
    import sys

    repo = str(Path(APP).parent)
    out = subprocess.run(
        [sys.executable, "-c", RACE.format(repo=repo)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "[]", out


@pytest.mark.parametrize(
    "script",
    [APP, *sorted(str(p) for p in (Path(APP).parent / "pages").glob("*.py"))],
    ids=lambda p: Path(p).name,
)
def test_the_app_and_every_page_preload_before_importing_anything_else(script):
    """Until one session has run app.py, Streamlit runs a deep-linked page script without it (``pages/`` reads as
    an old-style multipage folder), so each page needs the preload itself."""
    import ast

    tree = ast.parse(Path(script).read_text(encoding="utf-8"))
    imports = [
        node
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
        and not (isinstance(node, ast.Import) and node.names[0].name == "streamlit")
    ]
    first = imports[0]
    assert isinstance(first, ast.Import) and first.names[0].name == "pages.ui.preload"
