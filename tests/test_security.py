"""Security: the server's bind address and XSRF setting, no raw HTML, paths typed in the UI stay inside the data
root, checkpoints are only read with ``weights_only=True``."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ood_core.errors import OODLabError
from ood_core.inputs import catalog, config

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


def _constant_strings(path) -> set[str]:
    """Module-level names bound to a string literal (or an implicit concatenation of them)."""
    return {
        target.id
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def test_no_raw_html_reaches_the_browser():
    """No HTML built at run time: st.html only with a module-level string constant (a fixed style sheet)."""
    offenders = []
    for path in SOURCES:
        constants = _constant_strings(path)
        for call in _calls(path):
            name = ast.unparse(call.func)
            fixed = (
                name.endswith("st.html")
                and len(call.args) == 1
                and isinstance(call.args[0], ast.Name)
                and call.args[0].id in constants
            )
            if (
                name.endswith(("st.html", "components.html", "components.iframe"))
                and not fixed
            ):
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
    from PIL import Image

    Image.new("L", (8, 8)).save(root / "mine" / "pictures" / "one.png")
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
    assert at.error and any("outside the data root" in c.value for c in at.code)
    assert not config.config_file().exists()

    at.text_input(key="new_dataset_name").set_value("mine")
    at.text_input(key="new_dataset_folder").set_value("mine/pictures")
    at.button(key="add_dataset").click().run()
    assert not at.exception and not at.error
    assert "Added the dataset" in at.success[0].value and at.code[-1].value == "mine"
    assert catalog.get_dataset("mine").name == "mine"
    at.run()
    assert "mine" in at.sidebar.multiselect[0].options


def _picture(path: Path) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(path)


@pytest.mark.parametrize("kind", ["folder", "imagefolder", "imglist"])
def test_symlinked_files_inside_a_registered_folder_that_leave_it_are_refused(
    data_root, kind
):
    """The folder itself was checked; each file is too (a symlink out of it is skipped and counted, never read)."""
    from ood_core.engine.extract import MemorySink, extract
    from ood_core.engine.features import dataset_images, model_named

    secret = data_root.parent / "outside" / "secret.png"
    _picture(secret)
    folder = data_root / "set" / ("test/a" if kind == "imagefolder" else "images")
    _picture(folder / "ok.png")
    (folder / "leak.png").symlink_to(secret)
    entry = {
        "folder": 'kind = "folder"\nroot = "set/images"',
        "imagefolder": 'kind = "imagefolder"\ntest = "set/test"\nsplits = ["test"]',
        "imglist": 'kind = "imglist"\nroot = "set"\ntest_list = "set/list.txt"',
    }[kind]
    (data_root / "set" / "list.txt").write_text(
        "images/ok.png -1\nimages/leak.png -1\n"
    )
    config.config_file().write_text(f"[datasets.probe]\n{entry}\n")
    images, _ = dataset_images("probe", "test")
    model = model_named("demo")
    sink = MemorySink()
    report = extract(
        model.module, model.probes, images.with_transform(model.transform), sink
    )
    assert report["skipped"] == 1 and report["skipped_names"] == [
        "a/leak.png"
        if kind == "imagefolder"
        else "images/leak.png"
        if kind == "imglist"
        else "leak.png"
    ]
    with pytest.raises(OODLabError, match="outside its dataset folder"):
        images.image(images.names.index(report["skipped_names"][0]))


def test_cifar_batches_symlinked_out_of_the_dataset_folder_are_refused(data_root):
    import pickle

    import numpy as np

    outside = data_root.parent / "outside" / "test_batch"
    outside.parent.mkdir(exist_ok=True)
    outside.write_bytes(
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    )
    batches = data_root / "c10" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "test_batch").symlink_to(outside)
    config.config_file().write_text('[datasets.c10]\nkind = "cifar10"\nroot = "c10"\n')
    with pytest.raises(OODLabError, match="outside its dataset folder"):
        catalog.get_dataset("c10").load("test")


def test_a_data_root_that_becomes_a_link_while_the_app_runs_still_reads_its_files(
    tmp_path, monkeypatch
):
    """The app resolves its folders once per run; a data root created (or replaced by a link) later still works."""
    real = tmp_path / "big-disk"
    real.mkdir()
    (real / "weights.pt").write_bytes(b"x")
    root = tmp_path / "data"
    monkeypatch.setenv("OOD_LAB_DATA_ROOT", str(root))
    assert config.data_root() == root  # not there yet
    root.symlink_to(real)
    assert config.resolve_data_path("weights.pt") == real / "weights.pt"
    root.unlink()
    root.mkdir()  # a plain folder first ...
    (root / "weights.pt").write_bytes(b"y")
    assert config.resolve_data_path("weights.pt") == root / "weights.pt"
    (root / "weights.pt").unlink()
    root.rmdir()
    root.symlink_to(real)  # ... then a link to the real disk
    assert config.resolve_data_path("weights.pt") == real / "weights.pt"
    (tmp_path / "secret.txt").write_text("z")
    with pytest.raises(OODLabError, match="outside the data root"):
        config.resolve_data_path("../secret.txt")
