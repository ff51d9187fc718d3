"""Every model a researcher brings, probed where the papers probe: random-weight torchvision models of every family,
a timm model and a DenseNet-BC from a file of the user's (``factory``), each registered with a checkpoint saved the
way people save them, extracted, and checked against an independent oracle."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest
from torch.overrides import TorchFunctionMode

from ood_core import cli
from ood_core.engine.features import feature_set, model_named
from ood_core.errors import OODLabError
from ood_core.inputs import catalog, registry_file
from ood_core.scores import get_method

REPO = Path(__file__).resolve().parent.parent
DENSENET_BC = Path(__file__).with_name("models") / "densenet_bc.py"
CLASSES = 3
SIZE = 32
# name: (registry entry without weights, how the checkpoint is saved, where the global pool reads its map)
FAMILIES = {
    "resnet18": ({"arch": "resnet18"}, "module-prefix", ("input", "avgpool")),
    "densenet121": (
        {"arch": "densenet121"},
        "net",
        ("call", "adaptive_avg_pool2d"),
    ),
    "mobilenet_v2": (
        {"arch": "mobilenet_v2"},
        "bare",
        ("call", "adaptive_avg_pool2d"),
    ),
    "vgg11": ({"arch": "vgg11"}, "safetensors", ("input", "classifier")),
    "efficientnet_b0": (
        {"arch": "efficientnet_b0"},
        "state_dict",
        ("input", "avgpool"),
    ),
    "convnext_tiny": ({"arch": "convnext_tiny"}, "model", ("input", "avgpool")),
    "swin_t": ({"arch": "swin_t"}, "bare", ("input", "avgpool")),
    "vit_b_16": (
        {"arch": "vit_b_16", "kwargs": {"image_size": SIZE}},
        "bare",
        ("tokens", "encoder.ln"),
    ),
    "timm_vit": (
        {"arch": "timm:vit_tiny_patch16_224", "kwargs": {"img_size": SIZE}},
        "safetensors",
        ("tokens", "norm"),
    ),
    "densenet_bc": (
        {"factory": "nets/densenet_bc.py:DenseNet3", "kwargs": {"depth": 22}},
        "module-prefix",
        ("call", "avg_pool2d"),
    ),
}


def _build(name: str) -> torch.nn.Module:
    entry = FAMILIES[name][0]
    torch.manual_seed(0)
    if "factory" in entry:
        spec = importlib.util.spec_from_file_location("densenet_bc", DENSENET_BC)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.DenseNet3(num_classes=CLASSES, **entry["kwargs"])
    if entry["arch"].startswith("timm:"):
        import timm

        return timm.create_model(
            entry["arch"][5:], num_classes=CLASSES, **entry["kwargs"]
        )
    return torchvision.models.get_model(
        entry["arch"], weights=None, num_classes=CLASSES, **entry.get("kwargs", {})
    )


def _save(model: torch.nn.Module, how: str, folder: Path) -> str:
    state = model.state_dict()
    if how == "safetensors":
        path = folder / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return path.name
    wrapped = {
        "bare": state,
        "state_dict": {"state_dict": state},
        "model": {"model": state, "epoch": 3},
        "net": {"net": state, "acc": 91.0},
        "module-prefix": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
    }[how]
    path = folder / "weights.pt"
    torch.save(wrapped, path)
    return path.name


def _images(folder: Path, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )


@pytest.fixture(scope="module")
def registered(data_root):
    """Every family registered with its checkpoint; a tiny 3-class ImageFolder ID set and an OOD folder."""
    for split, seed in (("train", 1), ("test", 2)):
        for label in range(CLASSES):
            _images(data_root / "tiny" / split / f"c{label}", 4, seed * 10 + label)
    _images(data_root / "blobs3", 8, 99)
    (data_root / "nets").mkdir(exist_ok=True)
    shutil.copy(DENSENET_BC, data_root / "nets")
    registry = {
        "datasets": {
            "tiny": {"kind": "imagefolder", "train": "tiny/train", "test": "tiny/test"},
            "blobs3": {"kind": "folder", "root": "blobs3"},
        },
        "models": {},
    }
    for name, (entry, how, _) in FAMILIES.items():
        folder = data_root / "families" / name
        folder.mkdir(parents=True, exist_ok=True)
        weights = _save(_build(name), how, folder)
        registry["models"][name] = {
            **entry,
            "weights": f"families/{name}/{weights}",
            "num_classes": CLASSES,
            "input_size": SIZE,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "id_dataset": "tiny",
        }
    spec = importlib.util.spec_from_file_location("densenet_bc", DENSENET_BC)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.NoHead().state_dict(), data_root / "families" / "nohead.pt")
    path = data_root / "ood_lab.toml"
    path.write_text(tomli_w.dumps(registry))
    yield
    path.unlink()


class _Calls(TorchFunctionMode):
    """Every input of one torch function (the oracle's own capture of a functional pool)."""

    def __init__(self, name: str):
        super().__init__()
        self.name, self.inputs = name, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == self.name:
            self.inputs.append(args[0].detach().clone())
        return func(*args, **(kwargs or {}))


def _capture(model, x: torch.Tensor, where: str, target: str) -> torch.Tensor:
    """The map at ``target`` for ``x``: a module's input or output, or the last input of a function."""
    if where == "call":
        calls = _Calls(target)
        with torch.no_grad(), calls:
            model(x)
        return calls.inputs[-1]
    module = model.get_submodule(target)
    seen = []
    if where == "input":
        handle = module.register_forward_pre_hook(
            lambda m, args: seen.append(args[0].detach().clone())
        )
    else:
        handle = module.register_forward_hook(
            lambda m, args, out: seen.append(out.detach().clone())
        )
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0]


def _brute_stats(full: torch.Tensor, layout: str, prefix: int) -> dict[str, np.ndarray]:
    """Per-sample, per-channel max, mean and L2 of ReLU(map) by explicit loops over positions."""
    a = np.maximum(full.double().numpy(), 0)
    if layout == "tokens":
        a = a[:, prefix:, :].transpose(0, 2, 1)
    elif layout == "hwc":
        a = a.transpose(0, 3, 1, 2)
    n, c = a.shape[:2]
    out = {k: np.zeros((n, c)) for k in ("max", "mean", "l2")}
    for i in range(n):
        for j in range(c):
            values = a[i, j].ravel()
            out["max"][i, j] = values.max()
            out["mean"][i, j] = values.sum() / len(values)
            out["l2"][i, j] = np.sqrt((values**2).sum())
    return out


def _inputs(model_name: str, features) -> torch.Tensor:
    from ood_core.engine.images import model_inputs

    return model_inputs(features, list(range(len(features))))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_probe_is_a_map_the_oracle_reads_and_the_pre_pool_map_is_probed(
    registered, name
):
    loaded = model_named(name)
    probes = loaded.probes
    assert probes.pre_pool is not None, probes.table()
    assert len(probes.blocks) <= 24
    features = feature_set(name, "tiny", "test")
    x = _inputs(name, features)
    model = loaded.module
    for probe_name in probes.blocks:
        probe = probes.probe(probe_name)
        target = probe.call.split("#")[0] if probe.where == "call" else probe.module
        full = _capture(model, x, probe.where, target)
        expected = _brute_stats(full, probe.layout, probe.prefix_tokens)
        for stat, values in expected.items():
            np.testing.assert_allclose(
                features.stat(probe_name, stat), values, rtol=2e-4, atol=1e-5,
                err_msg=f"{name} {probe_name} {stat}",
            )  # fmt: skip
    # the pre-pool probe reads what the global pool reads (located by hand for each family, not by the probe)
    where, target = FAMILIES[name][2]
    pooled = _capture(model, x, "output" if where == "tokens" else where, target)
    layout = "tokens" if where == "tokens" else probes.probe(probes.pre_pool).layout
    if (
        name == "vgg11"
    ):  # VGG has no global pool: its classifier reads the flattened map
        pooled = pooled.reshape(len(x), 512, 7, 7)
    prefix = 1 if where == "tokens" else 0
    oracle = _brute_stats(pooled, layout, prefix)
    for stat in ("max", "mean", "l2"):
        np.testing.assert_allclose(
            features.stat(probes.pre_pool, stat), oracle[stat], rtol=2e-4, atol=1e-5
        )
    # NAP at the pre-pool probe, by the per-sample formula S = mean_c (max_c / (mean_c + 1))²
    nap = get_method("nap").score(features, block=probes.pre_pool)
    per_sample = [
        np.mean((oracle["max"][i] / (oracle["mean"][i] + 1.0)) ** 2)
        for i in range(len(x))
    ]
    np.testing.assert_allclose(nap, per_sample, rtol=1e-4)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_evaluate_nap_and_energy_runs_for_every_family(registered, name, capsys):
    args = ["evaluate", "--model", name, "--id", "tiny", "--ood", "blobs3"]
    assert cli.main([*args, "--methods", "nap", "energy"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "NAP" in printed and "Energy" in printed


def test_the_densenet_positions_are_the_nap_papers(registered):
    torchvision_densenet = model_named("densenet121").probes
    assert torchvision_densenet.blocks == (
        "features.conv0",
        "features.transition1.conv",
        "features.transition2.conv",
        "features.norm5",
    )
    dice = model_named("densenet_bc").probes
    assert dice.blocks == ("conv1", "trans1.conv1", "trans2.conv1", "relu")
    assert dice.pre_pool == "relu"


def test_vit_token_probes_leave_the_class_token_out(registered):
    probes = model_named("vit_b_16").probes
    assert all(probes.probe(b).layout == "tokens" for b in probes.blocks)
    assert {probes.probe(b).prefix_tokens for b in probes.blocks} == {1}
    assert probes.head == "heads.head" and probes.pre_pool == "encoder.ln"
    assert len(probes.blocks) == 13  # 12 encoder blocks and the final norm


def test_swin_stages_are_channel_last(registered):
    probes = model_named("swin_t").probes
    layouts = [probes.probe(b).layout for b in probes.blocks]
    assert layouts[:4] == ["hwc"] * 4


def test_the_probes_command_prints_the_table_without_extracting(registered, capsys):
    assert cli.main(["probes", "--model", "densenet121"]) == 0
    printed = capsys.readouterr().out
    assert "features.norm5" in printed and "DenseNet" in printed and "✓" in printed


@pytest.mark.parametrize(
    "page",
    ["pages/nap.py", "pages/block_selection.py", "pages/line.py", "pages/heatmaps.py"],
)
@pytest.mark.parametrize("name", ["densenet121", "vit_b_16", "convnext_tiny"])
def test_the_analysis_pages_render_for_densenet_vit_and_convnext(
    registered, name, page
):
    from ood_core.workspace import Workspace, load_workspace

    workspace = Workspace(name, "tiny", ("blobs3",))
    load_workspace(workspace)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=240).run()
    at.session_state["workspace"] = workspace
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if page.endswith("heatmaps.py"):
        assert at.radio(key="heatmap_overlay").value == "Grad-CAM"
        assert at.get("imgs") or at.get("image")  # the gallery drew its overlays


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"factory": "nets/densenet_bc.py:raises"}, "always fails"),
        ({"factory": "nets/densenet_bc.py:NotAModel"}, "not a torch.nn.Module"),
        (
            {"factory": "nets/densenet_bc.py:NoHead", "weights": "families/nohead.pt"},
            "no nn.Linear head",
        ),
        ({"factory": "nets/densenet_bc.py:Missing"}, "no class or function"),
        (
            {"arch": "densenet121", "weights": "families/resnet18/weights.pt"},
            "does not fit",
        ),
        ({"arch": "densenet121", "input_size": 8}, "cannot run on a 3×8×8 input"),
        (
            {
                "arch": "resnet18",
                "num_classes": 7,
                "weights": "families/resnet18/weights.pt",
            },
            "does not fit",
        ),
    ],
)
def test_a_bad_model_is_one_line_and_registers_nothing(
    registered, data_root, entry, reason
):
    before = (data_root / "ood_lab.toml").read_text()
    full = {
        "weights": "families/densenet121/weights.pt",
        "num_classes": CLASSES,
        "input_size": SIZE,
        **entry,
    }
    with pytest.raises(OODLabError, match=reason):
        catalog.add_model("broken", full)
    assert (data_root / "ood_lab.toml").read_text() == before
    assert "broken" not in registry_file.read().models


def test_a_good_model_is_checked_then_registered(registered, data_root):
    loaded = catalog.add_model(
        "again",
        {
            "arch": "resnet18",
            "weights": "families/resnet18/weights.pt",
            "num_classes": CLASSES,
            "input_size": SIZE,
        },
    )
    assert loaded.probes.pre_pool == "layer4.1"
    assert "again" in registry_file.read().models


@pytest.mark.parametrize(
    ("name", "block"), [("vit_b_16", -2), ("swin_t", 0), ("timm_vit", -1)]
)
def test_grad_cam_on_token_and_channel_last_maps_equals_a_hand_computation(
    registered, name, block
):
    from ood_core.inputs.taps import tapped
    from ood_core.pictures.gradcam import grad_cam

    loaded = model_named(name)
    model, probes = loaded.module, loaded.probes
    block = probes.blocks[block]
    probe = probes.probe(block)
    x = _inputs(name, feature_set(name, "tiny", "test"))[:3]
    with tapped(model, probes, [block]) as taps:
        cams = grad_cam(model, taps[block], x)
    kept = {}

    def keep(module, args, output):
        output.retain_grad()
        kept["map"] = output

    handle = model.get_submodule(probe.module).register_forward_hook(keep)
    try:
        logits = model(x)
        logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    finally:
        handle.remove()
    a, g = kept["map"], kept["map"].grad
    if probe.layout == "tokens":  # patch tokens only, on their square grid
        side = int((a.shape[1] - probe.prefix_tokens) ** 0.5)
        a, g = (
            t[:, probe.prefix_tokens :, :]
            .permute(0, 2, 1)
            .reshape(len(x), -1, side, side)
            for t in (a, g)
        )
    else:
        a, g = a.permute(0, 3, 1, 2), g.permute(0, 3, 1, 2)
    weights = g.mean((2, 3), keepdim=True)
    cam = torch.relu((weights * a).sum(1, keepdim=True))
    expected = torch.nn.functional.interpolate(
        cam, size=x.shape[-2:], mode="bilinear", align_corners=False
    )[:, 0]
    np.testing.assert_allclose(cams, expected.detach().numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["vit_b_16", "swin_t", "densenet121", "densenet_bc"])
def test_local_background_reads_the_class_activation_map_of_any_family(
    registered, name
):
    from ood_core.training.background import last_map_background_norms
    from ood_core.training.finetune import last_map_positions

    loaded = model_named(name)
    x = _inputs(name, feature_set(name, "tiny", "test"))[:4]
    positions = last_map_positions(name)
    norms = last_map_background_norms(
        loaded.module, loaded.probes, x, min(2, positions)
    )
    assert norms.shape == (4, min(2, positions)) and np.isfinite(norms).all()


def test_local_background_says_why_a_model_without_a_class_map_cannot_use_it(
    registered,
):
    from ood_core.training.finetune import last_map_positions

    with pytest.raises(
        OODLabError, match="no spatial map whose channels its head weighs"
    ):
        last_map_positions("vgg11")


def test_setup_checks_a_factory_model_shows_its_probes_then_registers_it(
    registered, data_root
):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=240).run()
    at.switch_page("pages/setup.py").run()
    at.radio(key="new_model_source").set_value("your file").run()
    at.text_input(key="new_model_name").set_value("dice_densenet")
    at.text_input(key="new_model_factory").set_value("nets/densenet_bc.py:DenseNet3")
    at.text_area(key="new_model_kwargs").set_value("depth = 22")
    at.text_input(key="new_model_weights").set_value("families/densenet_bc/weights.pt")
    at.number_input(key="new_model_classes").set_value(CLASSES)
    at.button(key="new_model_check").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    probes = [t for t in at.dataframe if "probe" in t.value.columns][-1].value
    assert probes["probe"].tolist() == ["conv1", "trans1.conv1", "trans2.conv1", "relu"]
    assert "dice_densenet" not in registry_file.read().models  # checked, not yet added
    at.button(key="new_model_add").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "dice_densenet" in registry_file.read().models
    at.text_input(key="new_model_name").set_value("broken")
    at.text_input(key="new_model_weights").set_value("families/resnet18/weights.pt")
    at.button(key="new_model_add").click().run()
    assert any("Not added" in e.value for e in at.error)
    assert "broken" not in registry_file.read().models
