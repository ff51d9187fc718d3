"""NAP: the neural activation prior, which layer carries it, and its combination with other scores."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from ood_core import claims, comparisons, tables
from ood_core.pictures.export import contact_sheet
from ood_core.scores import get_method
from ood_core.scores.method import LAST_BLOCK
from ood_core.scores.nap import NAP_X
from pages.ui.boundary import fragment
from pages.ui.cards import context, intro, metric_cards, observations
from pages.ui.charts import colour, histogram_figure, show_shared
from pages.ui.controls import param_controls, selectbox
from pages.ui.sections import charts_and_notes, prose, section
from pages.ui.shell import run_page
from pages.ui.sidebar import entries_key, needs_images, require_features, workspace
from pages.ui.state import reset_button
from pages.ui.thumbnails import thumbnail


def main() -> None:
    st.title("NAP — Neural Activation Prior")
    reset_button("nap", ("nap_",))
    intro(
        "A channel of a well-trained network fires **strongly at a few positions** when it sees a pattern it learned on "
        "ID data; on OOD data it tends to respond weakly everywhere. Global pooling averages that difference away, so "
        "NAP reads each channel's **max / mean** ratio *before* pooling. Below: the prior itself, which layer carries "
        "it, and how it combines with existing scores.",
        get_method("nap"),
    )
    features = require_features()
    ws = workspace()
    blocks = features.id_test.blocks
    colours = {name: colour(name) for name in ["ID", *features.ood]}

    section("1 · The prior: per-channel max vs mean", "prior")

    @fragment
    def prior_section() -> None:
        left, right = st.columns([1, 1])
        block = selectbox(
            "Block",
            blocks,
            index=len(blocks) - 1,
            key="nap_prior_block",
            help="Probed block whose post-ReLU map is summarised (paper: the last, before pooling).",
            where=left,
        )
        channels = [
            "all channels (2,000 random pairs per set)",
            *range(features.id_test.stat(block, "max").shape[1]),
        ]
        channel = selectbox(
            "Channel",
            channels,
            key="nap_prior_channel",
            help="One point per sample (a channel) or per (sample, channel) pair (all channels).",
            where=right,
        )
        key = (entries_key(features), block)
        chosen = None if isinstance(channel, str) else int(channel)
        show_shared(
            lambda: _prior_scatter(
                tables.prior_points(features, block, chosen), block, colours
            ),
            "nap_prior_scatter",
            (*key, chosen),
        )

        def nap_histogram() -> go.Figure:
            id_scores, ood_scores = features.scores(get_method("nap"), {"block": block})
            scores = {"ID": id_scores, **ood_scores}
            histogram = tables.binned(
                {k: np.log10(v + 1e-12) for k, v in scores.items()}
            )
            return histogram_figure(
                histogram, f"S_NAP on {block} (ε = 1)", "log10 S_NAP"
            )

        show_shared(nap_histogram, "nap_prior_hist", key)

    prior_section()

    section("2 · Which layer carries the prior?", "depth")
    prose(
        "NAP on every probed block, per OOD set. The paper finds the last block (before global pooling) best. "
        "A marker on the axis is a bar of height 0: every OOD sample scored above every ID sample."
    )
    sweep = tables.block_sweep(features)
    show_shared(
        lambda: depth_bars(sweep[sweep.ood_set != "mean"], colours),
        "nap_depth_bars",
        (entries_key(features),),
    )
    observations([claims.nap_depth(features, context(features), sweep)], "nap_depth")
    st.dataframe(
        tables.per_set(sweep, "block", "AUROC", list(features.ood))
        .round(1)
        .rename_axis("AUROC ↑ (the bars)"),
        width="stretch",
    )

    section("3 · Combine with a base method: NAP-X", "nap-x")
    prose(
        "NAP-X multiplies powers of the two scores, $S = g(S_X)^{\\lambda}\\,S_{NAP}^{1-\\lambda}$: λ = 1 is the base "
        "method X alone, λ = 0 NAP alone. Scores that can be ≤ 0 (energy family, −KNN distance) go through "
        "$g = \\operatorname{softplus}$ first (strictly increasing, so rankings are kept); MSP is used as is."
    )

    @st.cache_data(max_entries=64, show_spinner="Computing the λ curve…")
    def lambda_curve(
        _features, key: str, method_name: str, others: tuple
    ) -> pd.DataFrame:
        """AUROC vs λ on 21 values; independent of the λ slider, so cached per (entries, method, other parameters)."""
        lambdas = np.round(np.linspace(0, 1, 21), 2)
        return tables.parameter_sweep(
            _features, get_method(method_name), dict(others), "lambda", lambdas
        )

    @fragment
    def combination_section() -> None:
        labels = {m.label: m for m in NAP_X}
        row = st.columns(1 + max(len(m.params) for m in NAP_X))  # one line of controls
        method = labels[
            selectbox("Base method X", list(labels), key="nap_base", where=row[0])
        ]
        names = ["lambda", "eps"]
        names += [p.name for p in method.params if p.name not in names]
        params = {}
        for column, name in zip(row[1:], names):
            with column:
                params.update(
                    param_controls(
                        method,
                        blocks,
                        "nap_x",
                        only=(name,),
                        benchmark=features.benchmark,
                    )
                )
        lam = params["lambda"]
        st.caption(
            "Paper λ (CIFAR-10 / CIFAR-100 / ImageNet): "
            + (
                " / ".join(f"{v:g}" for v in method.param("lambda").paper.values())
                or "not given for this base"
            )
        )
        charts, notes_here = charts_and_notes()
        table = tables.all_methods_table(features, [(method, params)])
        base = tables.all_methods_table(features, [(method, {**params, "lambda": 1.0})])
        as_base = {**params, "lambda": 1.0}
        with notes_here:
            metric_cards(
                table,
                base,
                "base",
                export="nap_x",
                differences=comparisons.per_set_differences(
                    features, (method, params), (method, as_base)
                ),
            )
            observations(
                [claims.combination(features, method, params)], "nap_combination"
            )
        others = tuple(sorted((k, v) for k, v in params.items() if k != "lambda"))
        key = entries_key(features)

        def lambda_figure() -> go.Figure:
            figure = px.line(
                lambda_curve(features, key, method.name, others),
                x="value",
                y="AUROC",
                color="ood_set",
                markers=True,
                color_discrete_map={**colours, "mean": "#333333"},
                title=f"{method.label}: AUROC vs λ",
            )
            figure.add_vline(x=lam, line_dash="dot", annotation_text=f"λ = {lam:.2f}")
            figure.add_annotation(
                x=0, y=1.04, yref="paper", text="NAP alone", showarrow=False
            )
            figure.add_annotation(
                x=1, y=1.04, yref="paper", text="base alone", showarrow=False
            )
            figure.update_layout(height=380, margin={"t": 50, "b": 30}, xaxis_title="λ")
            return figure

        show_shared(
            lambda_figure,
            "nap_lambda_curve",
            (key, method.name, others, lam),
            where=charts,
        )

        section("4 · Gallery by the current score", "gallery", level="subheader")
        if not needs_images(features, "the gallery"):
            return
        sets = {"ID": features.id_test, **features.ood}
        scores = {
            name: features.score_set(method, f, params) for name, f in sets.items()
        }
        extremes = tables.extremes(
            scores, {name: np.asarray(f["index"]) for name, f in sets.items()}
        )
        sheet = []
        for end, part in extremes.groupby("end", sort=False):
            st.markdown(f"**{end}**")
            images = [
                thumbnail(ws.id_dataset, "test", int(row.row), 72)
                if row.set == "ID"
                else thumbnail(row.set, None, int(row.row), 72)
                for row in part.itertuples()
            ]
            captions = [f"{row.set} {row.score:.2f}" for row in part.itertuples()]
            st.image(images, width=72, caption=captions)
            sheet.append((end, images, captions))
        st.download_button(
            "Gallery (PNG)",
            lambda: contact_sheet(sheet),  # drawn when downloaded, not on every move
            f"{method.name}_gallery.png",
            "image/png",
            key="export_nap_gallery",
        )

    combination_section()
    st.caption(
        f"Block selector default: `{LAST_BLOCK}` = {blocks[-1]}. Every figure has a PNG download in its toolbar."
    )


def _prior_scatter(
    points: pd.DataFrame, block: str, colours: dict[str, str]
) -> go.Figure:
    """Max vs mean activation per (sample, channel), coloured by set."""
    figure = px.scatter(
        points,
        x="mean",
        y="max",
        color="set",
        color_discrete_map=colours,
        opacity=0.35,
        render_mode="webgl",
        title=f"{block}: max vs mean activation per channel",
        labels={
            "mean": "mean activation (noise)",
            "max": "max activation (signal)",
        },
    )
    figure.update_traces(marker_size=4)
    figure.update_layout(height=430, margin={"t": 40, "b": 30})
    return figure


def depth_bars(per_set: pd.DataFrame, colours: dict[str, str]) -> go.Figure:
    """AUROC of NAP per block and OOD set as grouped bars labelled with their values; a bar of height 0 keeps its
    outline and its "0", so that it reads as a result, not as missing data."""
    figure = px.bar(
        per_set,
        x="block",
        y="AUROC",
        color="ood_set",
        barmode="group",
        color_discrete_map=colours,
        title="AUROC of NAP per block (dotted: chance)",
        range_y=[0, 112],
        text="AUROC",
    )
    figure.update_traces(
        texttemplate="%{y:.0f}",
        textposition="outside",
        textfont_size=12,
        cliponaxis=False,
    )
    for trace in figure.data:
        trace.marker.line = {"width": 3, "color": trace.marker.color}
    figure.add_hline(y=50, line_dash="dot", line_color="#888888")
    figure.update_layout(
        height=380, margin={"t": 40, "b": 30}, yaxis={"tickvals": [0, 25, 50, 75, 100]}
    )
    return figure


run_page(main)
