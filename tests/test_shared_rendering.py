"""What pages share across sessions so that a class on one server stays fast (#32): figures built once per inputs,
dataset thumbnails encoded once, and the tables' text cells."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
from PIL import Image
from streamlit.testing.v1 import AppTest

from pages.ui.tables import pivot_with_intervals, with_interval


def _chart_script(builds: str) -> None:
    import plotly.graph_objects as go
    import streamlit as st

    from pages.ui.charts import show_shared

    value = st.slider("value", 0, 3, 1, key="value")

    def build() -> go.Figure:
        with open(builds, "a") as log:
            log.write(f"{value}\n")
        return go.Figure(go.Bar(y=[value]))

    show_shared(build, "shared_chart", ("test_shared_rendering", value))


def _drawn(at: AppTest) -> list:
    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"]


def test_a_shared_figure_is_built_once_per_inputs_for_every_session(tmp_path):
    builds = tmp_path / "builds.txt"
    first = AppTest.from_function(_chart_script, args=(str(builds),)).run()
    second = AppTest.from_function(_chart_script, args=(str(builds),)).run()
    assert _drawn(first) == _drawn(second) == [1]
    second.slider(key="value").set_value(2).run()
    first.slider(key="value").set_value(2).run()
    assert _drawn(first) == _drawn(second) == [2]
    assert builds.read_text().split() == [
        "1",
        "2",
    ]  # two sessions, two values: two builds
    first.query_params["present"] = "1"  # presentation mode restyles: its own figure
    first.run()
    assert builds.read_text().split() == ["1", "2", "2"]
    assert not first.exception and not second.exception


def test_table_cells_are_each_methods_value_with_its_interval():
    table = pd.DataFrame(
        {
            "method": ["A", "A", "B"],
            "ood_set": ["x", "y", "x"],
            "AUROC": [90.0, 80.0, 70.0],
            "AUROC low": [88.0, np.nan, 60.0],
            "AUROC high": [92.0, np.nan, 75.0],
        }
    )
    shown = pivot_with_intervals(table, "AUROC", ["B", "A"], ["x", "y"])
    assert list(shown.index) == ["B", "A"] and list(shown.columns) == ["x", "y"]
    assert shown.loc["A", "x"] == "90.00 ± 2.00"
    assert shown.loc["A", "y"] == "80.00"  # no interval
    assert shown.loc["B", "x"] == "70.00 [60.00, 75.00]"
    assert shown.loc["B", "y"] == ""  # no such row
    without = pivot_with_intervals(
        table[["method", "ood_set", "AUROC"]], "AUROC", ["A"], ["x"]
    )
    assert without.loc["A", "x"] == with_interval(90.0, None, None) == "90.00"


def test_a_thumbnail_is_the_dataset_image(demo_model):
    from ood_core.engine.images import sample_image
    from pages.ui.thumbnails import thumbnail

    image = sample_image("photos", None, 3)
    encoded = thumbnail("photos", None, 3, image.width)
    assert thumbnail("photos", None, 3, image.width) is encoded  # encoded once
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(encoded))), np.asarray(image)
    )
    small = Image.open(io.BytesIO(thumbnail("photos", None, 3, image.width // 2)))
    assert small.width == image.width // 2  # sent at the width it is shown at
