"""NAP: the neural activation prior, which layer carries it, and its combination with other scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from ood_core import analysis
from ood_core.pipeline import sample_image
from ood_core.scores import METHODS, get_method
from ood_core.scores.registry import LAST_BLOCK, NAP_BASES
from pages.common import (
    colour,
    ensure_app_shell,
    entries_key,
    histogram_figure,
    intro,
    metric_cards,
    param_controls,
    require_features,
    workspace,
)

ensure_app_shell()
st.title("NAP — Neural Activation Prior")
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


@st.fragment
def prior_section() -> None:
    left, right = st.columns([1, 1])
    block = left.selectbox(
        "Block",
        blocks,
        index=len(blocks) - 1,
        key="nap_prior_block",
        help="Probed block whose post-ReLU map is summarised (paper: the last, before pooling).",
    )
    channels = [
        "all channels (2,000 random pairs per set)",
        *range(features.id_test.stat(block, "max").shape[1]),
    ]
    channel = right.selectbox(
        "Channel",
        channels,
        key="nap_prior_channel",
        help="One point per sample (a channel) or per (sample, channel) pair (all channels).",
    )
    points = analysis.prior_points(
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
        labels={"mean": "mean activation (noise)", "max": "max activation (signal)"},
    )
    figure.update_traces(marker_size=4)
    figure.update_layout(height=430, margin={"t": 40, "b": 30})
    st.plotly_chart(figure, width="stretch", key="nap_prior_scatter")
    method = get_method("nap")
    scores = {"ID": method.score(features.id_test, block=block)}
    scores.update(
        {name: method.score(f, block=block) for name, f in features.ood.items()}
    )
    histogram = analysis.binned({k: np.log10(v + 1e-12) for k, v in scores.items()})
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
sweep = analysis.block_sweep(features)
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
st.dataframe(
    sweep.pivot(index="block", columns="ood_set", values="FPR95")
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
def lambda_curve(_features, key: str, method_name: str, others: tuple) -> pd.DataFrame:
    """AUROC vs λ on 21 values; independent of the λ slider, so cached per (entries, method, other parameters)."""
    lambdas = np.round(np.linspace(0, 1, 21), 2)
    return analysis.parameter_sweep(
        _features, get_method(method_name), dict(others), "lambda", lambdas
    )


@st.fragment
def combination_section() -> None:
    bases = [f"nap-{base}" for base in NAP_BASES]
    method = get_method(
        st.selectbox(
            "Base method X",
            bases,
            format_func=lambda n: METHODS[n].label,
            key="nap_base",
        )
    )
    columns = st.columns(3)
    with columns[0]:
        lam = st.slider(
            "λ",
            0.0,
            1.0,
            float(method.defaults()["lambda"]),
            0.05,
            key="nap_lambda",
            help="Weight of the base score (paper defaults: Energy 0.4, ReAct 0.4, ASH 0.5 on CIFAR-10).",
        )
    with columns[1]:
        eps = st.slider(
            "ε",
            0.01,
            10.0,
            1.0,
            0.01,
            key="nap_eps",
            help="ε in NAP's denominator (paper: 1).",
        )
    with columns[2]:
        extra = param_controls(method, blocks, "nap_x", skip=("lambda", "eps"))
    params = {"lambda": lam, "eps": eps, **extra}
    table = analysis.all_methods_table(features, [(method, params)])
    base = analysis.all_methods_table(features, [(method, {**params, "lambda": 1.0})])
    metric_cards(table, base)
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
    figure.add_annotation(x=0, y=1.04, yref="paper", text="NAP alone", showarrow=False)
    figure.add_annotation(x=1, y=1.04, yref="paper", text="base alone", showarrow=False)
    figure.update_layout(height=380, margin={"t": 50, "b": 30}, xaxis_title="λ")
    st.plotly_chart(figure, width="stretch", key="nap_lambda_curve")

    st.subheader("4 · Gallery by the current score")
    sets = {"ID": features.id_test, **features.ood}
    scores = {
        name: method.score(f, features.train if method.needs_train else None, **params)
        for name, f in sets.items()
    }
    extremes = analysis.extremes(
        scores, {name: np.asarray(f["index"]) for name, f in sets.items()}
    )
    for end, part in extremes.groupby("end", sort=False):
        st.markdown(f"**{end}**")
        images = [
            sample_image(
                ws.id_dataset if row.set == "ID" else row.set, "test", int(row.row)
            )
            for row in part.itertuples()
        ]
        st.image(
            images,
            width=72,
            caption=[f"{row.set} {row.score:.2f}" for row in part.itertuples()],
        )


combination_section()
st.caption(
    f"Block selector default: `{LAST_BLOCK}` = {blocks[-1]}. Every figure has a PNG download in its toolbar."
)
