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
