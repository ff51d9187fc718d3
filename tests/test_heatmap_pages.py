"""AppTest of the Heatmaps and Local Background pages: train from the page, overlays for every set, sliders."""

import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from ood_core.workspace import Workspace, load_workspace

APP = str(Path(__file__).resolve().parent.parent / "app.py")
EPOCHS = "heatmap:heatmap:epochs"
SETS = ("digits", "letters", "textures", "photos", "faces", "noise")


@pytest.fixture(scope="module")
def extracted(demo_model):
    load_workspace(Workspace())


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _galleries(at: AppTest) -> dict[str, list[str]]:
    """Set name → the media URLs (content hashes) of its overlay pictures."""
    labels = [m.value.strip("*") for m in at.markdown if m.value.strip("*") in SETS]
    images = at.get("image")
    assert len(images) in (len(labels), len(labels) + 1)  # + the overlay's colour scale
    return {label: image.value for label, image in zip(labels, images)}


def test_heatmaps_page_trains_the_decoder_and_overlays_id_and_ood_images(extracted):
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("pages/heatmaps.py").run()
    _no_errors(at)
    # before the decoder exists: Grad-CAM galleries (ranked by Energy) and their colour scale, no decoder overlay
    assert "decoder heatmap" not in at.radio(key="heatmap_overlay").options
    assert len(at.get("image")) == len(SETS) + 1
    at.slider(key=EPOCHS).set_value(2).run()
    at.button(key="heatmap_train").click().run()
    _no_errors(at)
    galleries = _galleries(at)
    assert set(galleries) == set(SETS)
    assert all(len(urls) == 6 for urls in galleries.values())
    table = at.dataframe[0].value
    assert "Heatmap (decoder)" in table.index
    assert list(table.columns) == [*SETS[1:], "mean"]
    # the decoder's row: mean ± sd of the three seeds' mean AUROC, which the caption lists
    caption = next(c.value for c in at.caption if "training runs (seeds" in c.value)
    per_seed = [float(v) for v in re.findall(r"\d: (\d+\.\d)", caption)]
    assert len(per_seed) == 3
    mean, sd = (float(v) for v in table.loc["Heatmap (decoder)", "mean"].split(" ± "))
    assert mean == pytest.approx(np.mean(per_seed), abs=0.06)
    assert sd == pytest.approx(np.std(per_seed, ddof=1), abs=0.1)

    at.slider(key="heatmap_opacity").set_value(0.0).run()
    _no_errors(at)
    faded = _galleries(at)
    assert faded["noise"] != galleries["noise"]  # the overlay changed the pictures

    for overlay in ("Grad-CAM", "NAP peaks"):
        at.radio(key="heatmap_overlay").set_value(overlay).run()
        _no_errors(at)
        at.slider(key="heatmap_opacity").set_value(0.8).run()
        _no_errors(at)
        assert set(_galleries(at)) == set(SETS)

    # Rerunning (a new session) finds the cached decoder: no button, same table.
    again = AppTest.from_file(APP, default_timeout=300).run()
    again.session_state[EPOCHS] = 2
    again.switch_page("pages/heatmaps.py").run()
    _no_errors(again)
    assert again.dataframe[0].value.equals(table)


def test_outlier_exposure_set_is_left_out_of_the_evaluation(extracted):
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.session_state[EPOCHS] = 1
    at.session_state["heatmap_oe"] = "noise"
    at.switch_page("pages/heatmaps.py").run()
    if any(
        b.key == "heatmap_train" for b in at.button
    ):  # the CLI test may have trained it
        at.button(key="heatmap_train").click().run()
    _no_errors(at)
    assert "noise" not in at.dataframe[0].value.columns
    assert any("outlier-exposure set" in c.value for c in at.caption)


def test_background_page_fine_tunes_and_compares_before_and_after(extracted):
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("pages/background.py").run()
    _no_errors(at)
    at.slider(key="bg_epochs").set_value(1).run()
    at.slider(key="bg_alpha").set_value(1.0).run()
    at.button(key="bg_train").click().run()
    _no_errors(at)
    labels = [m.label for m in at.metric]
    assert labels[0] == "ID accuracy after"
    table = at.dataframe[0].value  # paired per (method, OOD set): before, after, Δ
    assert table["method"].unique().tolist() == ["Energy", "NAP", "FeatureNorm"]
    assert list(table.columns[:5]) == ["method", "ood_set", "before", "after", "Δ"]
    assert (table["Δ"] - (table["after"] - table["before"])).abs().max() < 1e-9
    assert table["Δ per seed"].str.count(",").eq(2).all()  # three seeds
    assert not table["before"].equals(table["after"])
    notes = " ".join(m.value for m in at.markdown)
    assert (
        "Train the α = 0 control" in notes
    )  # no control yet: the observation asks for it
    # The fine-tuned model is now a model in the sidebar (from the next rerun on).
    at.run()
    assert {"demo-bg-a1-k8-e1", "demo-bg-a1-k8-e1-s1", "demo-bg-a1-k8-e1-s2"} <= set(
        at.sidebar.selectbox[0].options
    )
