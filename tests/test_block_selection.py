"""Jigsaw pseudo-OOD, FeatureNorm and NormRatio against brute-force computations, plus the page and the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from ood_core.engine.cache import FeatureSet
from ood_core.engine.extract import ExtractionSettings, MemorySink, extract
from ood_core.inputs.datasets import ImageSet
from ood_core.inputs.probes import find_probes
from ood_core.inputs.variants import jigsaw, jigsaw_image
from ood_core.scores.block_norm import norm_ratio, select_block

REPO = Path(__file__).resolve().parent.parent


def _tiles(image: np.ndarray, n: int) -> list[bytes]:
    th, tw = image.shape[0] // n, image.shape[1] // n
    return sorted(
        image[i * th : (i + 1) * th, j * tw : (j + 1) * tw].tobytes()
        for i in range(n)
        for j in range(n)
    )


@pytest.mark.parametrize(
    "shape,n", [((32, 32), 4), ((30, 33), 3), ((31, 29, 3), 4), ((9, 9), 3)]
)
def test_jigsaw_permutes_tiles_and_keeps_the_border(shape, n):
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    out = jigsaw(image, n, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == image.dtype
    assert _tiles(out, n) == _tiles(image, n), "same multiset of tiles"
    th, tw = shape[0] // n * n, shape[1] // n * n
    np.testing.assert_array_equal(out[th:], image[th:])
    np.testing.assert_array_equal(out[:, tw:], image[:, tw:])
    assert sorted(out.ravel().tolist()) == sorted(image.ravel().tolist())


def test_jigsaw_is_deterministic_per_seed_and_row():
    image = Image.fromarray(
        np.arange(36 * 36, dtype=np.uint32).reshape(36, 36).astype(np.uint8)
    )
    same = [np.asarray(jigsaw_image(image, 3, seed=0, row=5)) for _ in range(2)]
    np.testing.assert_array_equal(*same)
    assert not np.array_equal(
        same[0], np.asarray(jigsaw_image(image, 3, seed=1, row=5))
    )
    assert not np.array_equal(
        same[0], np.asarray(jigsaw_image(image, 3, seed=0, row=6))
    )


def test_normratio_equals_brute_force_on_full_maps():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(6, 2),
    ).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 12, 12), dtype=np.uint8)
    to_tensor = lambda a: torch.tensor(a, dtype=torch.float32)[None] / 255
    originals = ImageSet(
        lambda r: to_tensor(images[r]),
        np.zeros(6, np.int64),
        [str(i) for i in range(6)],
    )
    base_rows = np.array([0, 2, 3, 5])
    jigsawed_images = [
        np.asarray(jigsaw_image(Image.fromarray(images[r]), 3, 0, int(r)))
        for r in base_rows
    ]
    jigsawed = ImageSet(
        lambda r: to_tensor(jigsawed_images[r]),
        np.zeros(4, np.int64),
        [str(r) for r in base_rows],
    )
    probes = find_probes(model, torch.zeros(1, 1, 12, 12))
    sets = []
    for imageset in (originals, jigsawed):
        sink = MemorySink()
        extract(
            model,
            probes,
            imageset,
            sink,
            ExtractionSettings(batch_size=4, device="cpu"),
        )
        sets.append(
            FeatureSet(
                Path("/x"),
                {"probes": list(probes.blocks), "rows": len(imageset)},
                sink.arrays,
            )
        )
    ratios = norm_ratio(
        sets[0], sets[1], base_rows, np.arange(len(base_rows)), list(probes.blocks)
    )

    def feature_norm(array: np.ndarray, block: str) -> float:
        maps = {}
        handle = model.get_submodule(block).register_forward_hook(
            lambda m, i, o: maps.__setitem__("a", o)
        )
        with torch.no_grad():
            model(to_tensor(array)[None])
        handle.remove()
        a = torch.relu(maps["a"][0]).numpy().astype(np.float64)
        return np.mean([np.sqrt((a[c] ** 2).sum()) for c in range(a.shape[0])])

    for block in probes.blocks:
        expected = np.mean(
            [
                feature_norm(images[r], block) / feature_norm(j, block)
                for r, j in zip(base_rows, jigsawed_images)
            ]
        )
        assert ratios[block] == pytest.approx(expected, rel=1e-5)
    assert select_block(ratios) == ratios.idxmax()


def test_select_block_cli_prints_every_ratio_and_the_choice(demo_model):
    result = subprocess.run(
        [sys.executable, "-m", "ood_core", "select-block", "--grid", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:5]] == [
        "layer1.0",
        "layer2.0",
        "layer3.0",
        "layer4.0",
    ]
    chosen = lines[-1].split()[-1]
    values = {line.split()[0]: float(line.split()[1]) for line in lines[1:5]}
    assert chosen == max(values, key=values.get)


def test_block_selection_page_and_grid_slider(demo_model):
    from ood_core.workspace import Workspace, load_workspace

    load_workspace(Workspace())
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    at.switch_page("pages/block_selection.py").run()
    assert not at.exception, [e.value for e in at.exception]
    ratios_3 = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"]
    at.slider(key="bs_grid").set_value(6).run()
    assert not at.exception, [e.value for e in at.exception]
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert (
        "6×6" in figure["layout"]["title"]["text"]
        and figure["data"][0]["y"] != ratios_3
    )
    at.selectbox(key="bs_block").set_value("layer1.0").run()
    assert (
        not at.exception
        and "layer1.0"
        in json.loads(at.get("plotly_chart")[2].proto.spec)["layout"]["title"]["text"]
    )
