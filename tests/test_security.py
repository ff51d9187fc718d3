"""Security: the server's bind address and XSRF setting, no raw HTML, paths typed in the UI stay inside the data
root, checkpoints are only read with ``weights_only=True``."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ood_core import catalog, config
from ood_core.errors import OODLabError

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
SOURCES = [
    *REPO.glob("ood_core/**/*.py"),
    *REPO.glob("pages/*.py"),
    REPO / "app.py",
    *REPO.glob("benchmarks/*.py"),
]


def test_server_binds_to_localhost_with_xsrf_protection():
    settings = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["address"] == "localhost"
    assert settings["server"]["enableXsrfProtection"] is True
    assert settings["server"].get("enableCORS", True) is True
    assert settings["browser"]["gatherUsageStats"] is False


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node


def test_no_raw_html_reaches_the_browser():
    offenders = []
    for path in SOURCES:
        for call in _calls(path):
            name = ast.unparse(call.func)
            if name.endswith(("st.html", "components.html", "components.iframe")):
                offenders.append(f"{path.name}:{call.lineno} {name}")
            for keyword in call.keywords:
                if keyword.arg == "unsafe_allow_html" and not (
                    isinstance(keyword.value, ast.Constant)
                    and keyword.value.value is False
                ):
                    offenders.append(f"{path.name}:{call.lineno} unsafe_allow_html")
    assert offenders == []


def test_every_torch_load_is_weights_only():
    loads = [
        call
        for path in SOURCES
        for call in _calls(path)
        if ast.unparse(call.func) == "torch.load"
    ]
    aliased = [
        path.name
        for path in SOURCES
        if "from torch import load" in path.read_text()
        or "torch.serialization.load" in path.read_text()
    ]
    assert aliased == []
    assert loads, "expected at least the checkpoint loader"
    for call in loads:
        flags = {k.arg: k.value for k in call.keywords}
        assert "weights_only" in flags, ast.unparse(call)
        assert isinstance(flags["weights_only"], ast.Constant)
        assert flags["weights_only"].value is True, ast.unparse(call)


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "data"
    (root / "mine" / "pictures").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    monkeypatch.setenv("OOD_LAB_DATA_ROOT", str(root))
    monkeypatch.delenv("OOD_LAB_CONFIG", raising=False)
    return root


@pytest.mark.parametrize(
    "folder",
    ["../outside", "mine/../../outside", "{outside}", "/etc", "mine/missing"],
)
def test_folders_outside_the_data_root_are_refused(data_root, folder):
    folder = folder.format(outside=data_root.parent / "outside")
    with pytest.raises(OODLabError):
        catalog.add_folder_dataset("sneaky", folder)
    assert not config.config_file().exists()


def test_a_symlink_out_of_the_data_root_is_refused(data_root):
    (data_root / "link").symlink_to(data_root.parent / "outside")
    with pytest.raises(OODLabError, match="outside the data root"):
        catalog.add_folder_dataset("linked", "link")


def test_names_cannot_inject_into_the_registry_file(data_root):
    for name in ['x"]\n[models.evil', "a.b", "", "1abc", "x" * 41]:
        with pytest.raises(OODLabError, match="dataset name"):
            catalog.add_folder_dataset(name, "mine")
    assert not config.config_file().exists()


def test_setup_form_adds_a_folder_inside_the_root_and_refuses_one_outside(
    data_root, demo_model
):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input(key="new_dataset_name").set_value("sneaky")
    at.text_input(key="new_dataset_folder").set_value("../outside")
    at.button(key="add_dataset").click().run()
    assert any("outside the data root" in e.value for e in at.error)
    assert not config.config_file().exists()

    at.text_input(key="new_dataset_name").set_value("mine")
    at.text_input(key="new_dataset_folder").set_value("mine/pictures")
    at.button(key="add_dataset").click().run()
    assert not at.exception and not at.error
    assert "Added 'mine'" in at.success[0].value
    assert catalog.get_dataset("mine").name == "mine"
    at.run()
    assert "mine" in at.sidebar.multiselect[0].options
