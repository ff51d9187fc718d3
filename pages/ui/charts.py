"""Charts: the ID/OOD colour scheme shared by every page, the figures several pages draw, and ``show``, through
which every figure reaches the page (with the presentation template when presenting)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

from .shell import presenting
from .sidebar import workspace

# Read from the back row of a lecture hall: plotly's white template with 18 px ticks and legends, 22 px titles,
# thick lines and big markers. Streamlit's own chart theme would override a template's fonts, so presentation mode
# draws with this template alone.
PRESENTATION = go.layout.Template(pio.templates["plotly_white"])
PRESENTATION.layout.update(
    font={"size": 18},
    title={"font": {"size": 22}},
    legend={"font": {"size": 18}},
    xaxis={"tickfont": {"size": 18}, "title": {"font": {"size": 20}}},
    yaxis={"tickfont": {"size": 18}, "title": {"font": {"size": 20}}},
    coloraxis={"colorbar": {"tickfont": {"size": 18}}},
    annotationdefaults={"font": {"size": 18}},
    hoverlabel={"font": {"size": 18}},
)
PRESENTATION.data.scatter = [go.Scatter(line={"width": 4}, marker={"size": 12})]
PRESENTATION.data.heatmap = [go.Heatmap(colorbar={"tickfont": {"size": 18}})]
PRESENTED_HEIGHT = (
    360,
    440,
)  # a chart and its section's header and controls fit a 1280×720 screen


def show(figure: go.Figure, key: str, where=st) -> None:
    """Draw ``figure`` (full width) in ``where``; in presentation mode with the ``PRESENTATION`` template (larger
    type, lines and markers) at a height that leaves room for its section's header and controls."""
    presented = presenting()
    if presented:
        _present(figure)
    _draw(figure, key, where, presented)


def show_shared(
    build: Callable[[], go.Figure], key: str, inputs: tuple, where=st
) -> None:
    """``show(build(), key, where)``, with the figure built once per ``inputs`` for every session on this server.

    ``inputs`` must name everything the figure depends on (the cache entries, the parameter values): a class that
    moves the same slider to the same values then shares one build, where each build of a plotly figure costs tens of
    milliseconds of the server's one interpreter."""
    presented = presenting()
    _draw(_shared_figure(key, inputs, presented, build), key, where, presented)


@st.cache_resource(max_entries=512, show_spinner=False)
def _shared_figure(
    key: str, inputs: tuple, presented: bool, _build: Callable[[], go.Figure]
) -> go.Figure:
    """One figure per (key, inputs, presentation mode), shared read-only by all sessions."""
    figure = _build()
    if presented:
        _present(figure)
    return figure


def _present(figure: go.Figure) -> None:
    """Restyle ``figure`` for presentation mode, in place."""
    figure.update_layout(template=PRESENTATION)
    figure.update_traces(selector={"type": "scatter"}, line_width=4)
    figure.update_traces(
        selector={"type": "scatter", "mode": "markers"}, marker_size=12
    )
    figure.update_annotations(font_size=18)
    low, high = PRESENTED_HEIGHT
    margin = figure.layout.margin
    figure.update_layout(
        height=min(max(figure.layout.height or high, low), high),
        margin={
            "t": max(margin.t or 0, 60),
            "b": max(margin.b or 0, 60),
            "l": max(margin.l or 0, 70),
            "r": max(margin.r or 0, 30),
        },
    )


def _draw(figure: go.Figure, key: str, where, presented: bool) -> None:
    if not presented:
        where.plotly_chart(figure, width="stretch", key=key)
        return
    where.plotly_chart(  # no mode bar over the title: a lecture does not zoom
        figure, width="stretch", key=key, theme=None, config={"displayModeBar": False}
    )


def axis_type(values: pd.Series) -> str:
    """A log axis for a positive parameter searched over two decades or more (temperatures 0.1 … 100), so that
    neighbouring small values do not sit on one another; linear otherwise."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any() or (numbers <= 0).any() or len(numbers) < 2:
        return "linear"
    return "log" if numbers.max() / numbers.min() >= 100 else "linear"


def reference_line(figure: go.Figure, y: float, text: str) -> None:
    """A dotted horizontal line at ``y`` labelled in the right margin, where the label cannot cover a curve or a
    bar's value."""
    figure.add_hline(y=y, line_dash="dot", line_color="#666666")
    figure.add_annotation(
        x=1, xref="paper", xanchor="left", xshift=4, y=y, text=text, showarrow=False
    )
    figure.update_layout(  # the label has the right margin; the legend goes under the plot
        margin_r=max(figure.layout.margin.r or 0, 16 + 11 * len(text)),
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0},
        margin_b=max(figure.layout.margin.b or 0, 90),
    )


def label_rows(positions: list[float], gap: float) -> list[int]:
    """A row (0 = top) for each label at ``positions`` on an axis, so that two labels closer than ``gap`` never
    share a row: greedy, left to right, each label in the highest row whose last label is ``gap`` away."""
    rows, last = [0] * len(positions), []
    for index in sorted(range(len(positions)), key=positions.__getitem__):
        x = positions[index]
        row = next((r for r, end in enumerate(last) if x - end >= gap), len(last))
        last[row : row + 1] = [x]
        rows[index] = row
    return rows


def mark_values(figure: go.Figure, values: list[float], labels: list[str]) -> None:
    """A dotted vertical line per value with its label above the plot, labels that would collide set on rows."""
    drawn = [float(x) for trace in figure.data if trace.x is not None for x in trace.x]
    drawn += list(values)
    width = (max(drawn) - min(drawn)) or 1.0  # the axis spans the data and the lines
    rows = label_rows(list(values), gap=0.14 * width)
    for value, label, row in zip(values, labels, rows):
        figure.add_vline(x=value, line_dash="dot", line_color="#d62728")
        figure.add_annotation(
            x=value,
            y=1 - 0.09 * row,
            yref="paper",
            yanchor="bottom",
            text=label,
            showarrow=False,
            bgcolor="rgba(255,255,255,0.8)",
        )


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
