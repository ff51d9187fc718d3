"""Charts: the ID/OOD colour scheme shared by every page and the figures several pages draw."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from .sidebar import workspace

ID_COLOUR = "#1f77b4"
PSEUDO_OOD_COLOUR = "#7f7f7f"
OOD_COLOURS = px.colors.qualitative.Set2


def colour(name: str) -> str:
    """Colour of a set label in figures: ID blue, each OOD set its own, anything else (pseudo-OOD) grey."""
    ws = workspace()
    if name in ("ID", ws.id_dataset):
        return ID_COLOUR
    if name in ws.ood_datasets:  # each OOD set keeps its colour on every page
        return OOD_COLOURS[ws.ood_datasets.index(name) % len(OOD_COLOURS)]
    return PSEUDO_OOD_COLOUR


def histogram_figure(
    histogram: pd.DataFrame, title: str, x_title: str = "score"
) -> go.Figure:
    """Overlaid density histograms from server-side bins (``ood_core.tables.binned``)."""
    figure = go.Figure()
    for name, part in histogram.groupby("set", sort=False):
        figure.add_bar(
            x=part["centre"],
            y=part["density"],
            width=part["right"] - part["left"],
            name=name,
            marker_color=colour(name),
            opacity=0.55,
        )
    figure.update_layout(
        barmode="overlay",
        title=title,
        xaxis_title=x_title,
        yaxis_title="density",
        height=330,
        margin={"t": 40, "b": 30},
    )
    return figure
