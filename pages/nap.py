"""NAP: the neural activation prior, which layer carries it, and its combination with other scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from ood_core import claims, comparisons, tables
from ood_core.engine.images import sample_image
from ood_core.pictures.export import contact_sheet
from ood_core.scores import get_method
from ood_core.scores.method import LAST_BLOCK
from ood_core.scores.nap import NAP_X
from pages.ui.boundary import fragment
from pages.ui.cards import context, intro, metric_cards, observations
from pages.ui.charts import colour, histogram_figure
from pages.ui.controls import param_controls, selectbox
from pages.ui.shell import run_page
from pages.ui.sidebar import entries_key, needs_images, require_features, workspace
from pages.ui.state import reset_button


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

    st.header("1 · The prior: per-channel max vs mean")

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
        points = tables.prior_points(
            features, block, None if isinstance(channel, str) else int(channel)
        )
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
        st.plotly_chart(figure, width="stretch", key="nap_prior_scatter")
        id_scores, ood_scores = features.scores(get_method("nap"), {"block": block})
        scores = {"ID": id_scores, **ood_scores}
        histogram = tables.binned({k: np.log10(v + 1e-12) for k, v in scores.items()})
        st.plotly_chart(
            histogram_figure(histogram, f"S_NAP on {block} (ε = 1)", "log10 S_NAP"),
            width="stretch",
            key="nap_prior_hist",
        )

    prior_section()

    st.header("2 · Which layer carries the prior?")
    st.markdown(
        "NAP on every probed block, per OOD set. The paper finds the last block (before global pooling) best."
    )
    sweep = tables.block_sweep(features)
    per_set = sweep[sweep.ood_set != "mean"]
    figure = px.bar(
        per_set,
        x="block",
        y="AUROC",
        color="ood_set",
        barmode="group",
        color_discrete_map=colours,
        title="AUROC of NAP per block",
        range_y=[0, 100],
    )
    figure.update_layout(height=360, margin={"t": 40, "b": 30})
    st.plotly_chart(figure, width="stretch", key="nap_depth_bars")
    observations([claims.nap_depth(features, context(features), sweep)], "nap_depth")
    st.dataframe(
        tables.per_set(sweep, "block", "FPR95", list(features.ood))
        .round(2)
        .rename_axis("FPR95 ↓"),
        width="stretch",
    )

    st.header("3 · Combine with a base method: NAP-X")
    st.markdown(
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
        method = labels[selectbox("Base method X", list(labels), key="nap_base")]
        columns = st.columns(4)
        with columns[0]:
            lam = param_controls(
                method,
                blocks,
                "nap_x",
                only=("lambda",),
                benchmark=features.benchmark,
                labels={"lambda": "λ"},
            )["lambda"]
        with columns[1]:
            eps = param_controls(
                method,
                blocks,
                "nap_x",
                only=("eps",),
                benchmark=features.benchmark,
                labels={"eps": "ε"},
            )["eps"]
        with columns[2]:
            extra = param_controls(
                method,
                blocks,
                "nap_x",
                skip=("lambda", "eps"),
                benchmark=features.benchmark,
            )
        params = {"lambda": lam, "eps": eps, **extra}
        columns[3].caption(
            "Paper λ (CIFAR-10 / CIFAR-100 / ImageNet): "
            + (
                " / ".join(f"{v:g}" for v in method.param("lambda").paper.values())
                or "not given for this base"
            )
        )
        table = tables.all_methods_table(features, [(method, params)])
        base = tables.all_methods_table(features, [(method, {**params, "lambda": 1.0})])
        as_base = {**params, "lambda": 1.0}
        metric_cards(
            table,
            base,
            "base",
            export="nap_x",
            differences=comparisons.per_set_differences(
                features, (method, params), (method, as_base)
            ),
        )
        observations([claims.combination(features, method, params)], "nap_combination")
        others = tuple(sorted((k, v) for k, v in params.items() if k != "lambda"))
        curve = lambda_curve(features, entries_key(features), method.name, others)
        figure = px.line(
            curve,
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
        st.plotly_chart(figure, width="stretch", key="nap_lambda_curve")

        st.subheader("4 · Gallery by the current score")
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
                sample_image(ws.id_dataset, "test", int(row.row))
                if row.set == "ID"
                else sample_image(row.set, None, int(row.row))
                for row in part.itertuples()
            ]
            captions = [f"{row.set} {row.score:.2f}" for row in part.itertuples()]
            st.image(images, width=72, caption=captions)
            sheet.append((end, images, captions))
        st.download_button(
            "Gallery (PNG)",
            contact_sheet(sheet),
            f"{method.name}_gallery.png",
            "image/png",
            key="export_nap_gallery",
        )

    combination_section()
    st.caption(
        f"Block selector default: `{LAST_BLOCK}` = {blocks[-1]}. Every figure has a PNG download in its toolbar."
    )


run_page(main)
