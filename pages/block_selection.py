"""Block Selection: FeatureNorm per block and the NormRatio on jigsaw pseudo-OOD that picks the block."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ood_core import claims, tables
from ood_core import observations as notes
from ood_core.engine.features import cached_feature_set, feature_set
from ood_core.engine.images import sample_image
from ood_core.inputs.variants import jigsaw_base_rows, jigsaw_image, jigsaw_name
from ood_core.pictures.export import png
from ood_core.scores import get_method
from ood_core.scores.block_norm import select_block
from ood_core.scores.method import Param
from pages.ui.boundary import fragment
from pages.ui.cards import context, intro, metric_cards, observations
from pages.ui.charts import histogram_figure, reference_line, show_shared
from pages.ui.controls import selectbox, slider
from pages.ui.sections import charts_and_notes, section
from pages.ui.shell import run_page
from pages.ui.sidebar import entries_key, needs_images, require_features, workspace
from pages.ui.state import reset_button
from pages.ui.thumbnails import thumbnail

GRID = Param(
    "n",
    3,
    2,
    8,
    1,
    "n×n tiles per image (paper: 3). A new n is extracted once, then cached.",
    kind="int",
)


def main() -> None:
    st.title("Block Selection — FeatureNorm and NormRatio")
    reset_button("block_selection", ("bs_",))
    intro(
        "The L2 norm of a block's feature map (**FeatureNorm**) is often larger for ID than for OOD inputs — but the last "
        "block is not always the best place to measure it. Without any real OOD data, the paper scrambles ID training "
        "images into **jigsaw puzzles** (pseudo-OOD) and picks the block whose FeatureNorm drops most: the largest "
        "**NormRatio**. Here you can check that choice against the true AUROC on real OOD sets.",
        get_method("featurenorm"),
        r"NR(b)=\frac{1}{N}\sum_{i=1}^{N}\frac{FN_b(x_i)}{FN_b(\mathrm{jigsaw}(x_i))}",
    )
    features = require_features()
    needs_images(
        features,
        "block selection (its jigsaw pseudo-OOD is made from images)",
        stop=True,
    )
    ws = workspace()
    if features.jigsaw is None:
        st.info(
            f"Block selection needs a train split of the ID set `{ws.id_dataset}` (none is registered)."
        )
        st.stop()
    blocks = features.id_test.blocks

    def jigsaw_features(n: int):
        """The jigsaw set for grid size n: cached, or extracted now with a progress bar."""
        name = jigsaw_name(ws.id_dataset, n)
        cached = cached_feature_set(ws.model, name, "train")
        if cached is not None:
            return cached
        bar = st.progress(0.0, text=f"extracting the {n}×{n} jigsaw set…")
        result = feature_set(
            ws.model,
            name,
            "train",
            progress=lambda done, total: bar.progress(
                done / total, text=f"jigsaw {n}×{n}: {done}/{total}"
            ),
        )
        bar.empty()
        return result

    section("NormRatio's pick against the real OOD sets", "normratio")

    @st.cache_resource(max_entries=32, show_spinner=False)
    def jigsaw_pictures(dataset: str, rows: tuple[int, ...], n: int) -> list[bytes]:
        """PNGs of the ID train images at ``rows`` as jigsaw ``n``×``n`` puzzles (drawn once per server)."""
        return [
            png(jigsaw_image(sample_image(dataset, "train", r), n, 0, r), 72)
            for r in rows
        ]

    @fragment
    def normratio_section() -> None:
        n = slider("Jigsaw grid size n", GRID, "bs_grid")
        jigsaw = features.jigsaw if n == 3 else jigsaw_features(n)
        ratios = features.normratio(jigsaw)
        chosen = select_block(ratios)
        table, rho = tables.block_selection_table(features, ratios)
        per_block = notes.mean_auroc_per_block(table)
        best = str(per_block.idxmax())
        cards = st.columns(3)
        cards[0].metric("NormRatio choice", chosen, help="argmax_b NR(b)")
        cards[1].metric(
            "Best block on the real OOD sets",
            best,
            help="Highest mean FeatureNorm AUROC (uses test OOD data).",
        )
        cards[2].metric(
            "Rank correlation NR ↔ AUROC",
            f"{rho:+.2f}",
            help="Spearman ρ across blocks, mean AUROC.",
        )
        charts, notes_here = charts_and_notes()
        with notes_here:
            observations(
                claims.block_selection(features, ratios, context(features), table, rho),
                "block_selection",
            )
        left, right = charts.columns(2)
        key = (entries_key(features), n)
        show_shared(
            lambda: _normratio_bars(ratios, chosen, n), "bs_nr_bars", key, where=left
        )
        show_shared(lambda: _auroc_heat(table), "bs_auroc_heat", key, where=right)
        st.dataframe(table.round(3), hide_index=True, width="stretch")
        st.download_button(
            "Download table (CSV)",
            lambda: table.to_csv(index=False),  # written when downloaded
            "block_selection.csv",
            "text/csv",
        )

        st.subheader("What the jigsaw pseudo-OOD looks like")
        rows = jigsaw_base_rows(features.jigsaw.meta["dataset"])[:8]
        st.image(
            [thumbnail(ws.id_dataset, "train", int(r), 72) for r in rows],
            width=72,
            caption=["ID"] * len(rows),
        )
        st.image(
            jigsaw_pictures(ws.id_dataset, tuple(int(r) for r in rows), n),
            width=72,
            caption=[f"jigsaw {n}×{n}"] * len(rows),
        )

        st.subheader("FeatureNorm of any block")
        block = selectbox(
            "Block",
            blocks,
            index=blocks.index(chosen),
            key="bs_block",
            help="Defaults to the NormRatio choice; pick any block to score with it.",
        )
        method = get_method("featurenorm")
        id_scores, ood_scores = features.scores(method, {"block": block})
        metric_cards(
            tables.all_methods_table(features, [(method, {"block": block})]),
            export="featurenorm",
        )

        def featurenorm_histogram():
            histogram = tables.binned(
                {
                    "ID": id_scores,
                    f"jigsaw {n}×{n}": features.score_set(
                        method, jigsaw, {"block": block}
                    ),
                    **ood_scores,
                }
            )
            return histogram_figure(
                histogram, f"FeatureNorm of {block}: ID vs jigsaw vs OOD", "FN_b(x)"
            )

        show_shared(
            featurenorm_histogram, "bs_fn_hist", (entries_key(features), n, block)
        )
        st.caption(
            "ID in blue, the jigsaw pseudo-OOD in grey, each OOD set in its page-wide colour."
        )

    normratio_section()


def _normratio_bars(ratios: pd.Series, chosen: str, n: int) -> go.Figure:
    """NormRatio per block, the chosen block in red, with the NR = 1 line."""
    bars = go.Figure(
        go.Bar(
            x=ratios.index,
            y=ratios.values,
            text=[f"{v:.3f}" for v in ratios.values],
            textposition="outside",  # above the bar: clear of the NR = 1 line inside it
            cliponaxis=False,
            marker_color=[
                "#d62728" if b == chosen else "#9aa9bd" for b in ratios.index
            ],
        )
    )
    bars.update_layout(
        title=f"NormRatio per block (jigsaw {n}×{n}; selected in red)",
        yaxis_title="NR",
        height=360,
        margin={"t": 40, "b": 30},
    )
    reference_line(bars, 1.0, "NR = 1")
    return bars


def _auroc_heat(table: pd.DataFrame) -> go.Figure:
    """True FeatureNorm AUROC per block (columns) and OOD set (rows)."""
    heat = table.set_index("block").filter(like="AUROC ")
    figure = go.Figure(
        go.Heatmap(  # blocks left to right, as in the NormRatio bars beside it
            z=heat.values.T,
            x=list(heat.index),
            y=[c.removeprefix("AUROC ") for c in heat.columns],
            text=np.round(heat.values.T, 1),
            texttemplate="%{text}",
            colorscale="Cividis",  # colour-blind safe
            zmin=0,
            zmax=100,
            colorbar_title="AUROC",
        )
    )
    figure.update_yaxes(
        autorange="reversed"
    )  # OOD sets top to bottom in workspace order, mean last
    figure.update_layout(
        title="True FeatureNorm AUROC per block and OOD set",
        height=360,
        margin={"t": 40, "b": 30},
    )
    return figure


run_page(main)
