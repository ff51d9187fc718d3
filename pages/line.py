"""LINe: Shapley importance of penultimate neurons, class-wise activation/weight pruning and clipping, live."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from ood_core import tables
from ood_core.scores import get_method
from ood_core.scores.line import LINE, activation_masks, microscope
from ood_core.scores.shaping import REACT
from pages.common import (
    ensure_app_shell,
    entries_key,
    intro,
    metric_cards,
    param_controls,
    require_features,
    workspace,
)

ensure_app_shell()
st.title("LINe — Leveraging Important Neurons")
intro(
    "Not every penultimate neuron matters for every class. LINe measures each neuron's **Shapley importance** for "
    "each class on ID training data, then, for the class a sample is predicted as, keeps only the important "
    "neurons and weights and **clips** large activations. ID samples keep their evidence; OOD samples, whose "
    "activations fall on unimportant neurons, lose theirs.",
    get_method("line"),
)
st.caption(
    "Importance for a linear head: Φ[c,j] = W[c,j]·mean_{y=c} h_j (exact Shapley value with a zero baseline)."
)
features = require_features()
if features.id_train is None:
    st.info("LINe needs the ID train split (class-wise importance).")
    st.stop()
ws = workspace()
phi = features.state(LINE).phi
quantiles = features.state(REACT)
weight, bias = features.id_test["head/weight"], features.id_test["head/bias"]
classes, neurons = phi.shape
max_activation = float(quantiles.quantiles[-1])

st.header("1 · Which neurons matter for which class")
top = np.argsort(-np.abs(phi).max(axis=0))[: min(40, neurons)]
heat = go.Figure(
    go.Heatmap(
        z=phi[:, top],
        x=[f"n{j}" for j in top],
        y=[f"class {c}" for c in range(classes)],
        colorscale="RdBu",
        zmid=0,
        colorbar_title="Φ",
    )
)
heat.update_layout(
    title=f"Importance Φ of the {len(top)} most important neurons",
    height=360,
    margin={"t": 40, "b": 30},
)
st.plotly_chart(heat, width="stretch", key="line_importance")
left, right = st.columns(2)
chosen_class = left.selectbox("Class", list(range(classes)), key="line_class")
k = right.slider(
    "Top-k neurons", 3, min(30, neurons), min(10, neurons), key="line_topk"
)
order = np.argsort(-phi[chosen_class])[:k]
bars = px.bar(
    x=[f"n{j}" for j in order],
    y=phi[chosen_class, order],
    labels={"x": "neuron", "y": "Φ"},
    title=f"Top-{k} neurons of class {chosen_class}",
)
bars.update_layout(height=300, margin={"t": 40, "b": 30})
st.plotly_chart(bars, width="stretch", key="line_topk_bars")

st.header("2 · Prune and clip, live")


@st.cache_data(max_entries=32, show_spinner="Sweeping (p_a, p_w)…")
def cached_sweep(_features, key: str, grid: tuple, tau: float) -> pd.DataFrame:
    return tables.line_sweep(_features, grid, tau)


@st.cache_data(max_entries=32, show_spinner="Computing the accuracy / AUROC trade-off…")
def cached_pareto(_features, key: str, percentiles: tuple, tau: float) -> pd.DataFrame:
    return tables.line_pareto(_features, percentiles, tau)


@st.fragment
def live_section() -> None:
    columns = st.columns(4)
    with columns[0]:
        p_a = param_controls(
            LINE,
            [],
            "line",
            only=("p_a",),
            benchmark=features.benchmark,
            labels={"p_a": "p_a (activation pruning)"},
        )["p_a"]
    with columns[1]:
        p_w = param_controls(
            LINE,
            [],
            "line",
            only=("p_w",),
            benchmark=features.benchmark,
            labels={"p_w": "p_w (weight pruning)"},
        )["p_w"]
    mode = columns[2].radio(
        "τ given as",
        ["absolute", "ID-train percentile"],
        key="line_tau_mode",
        horizontal=True,
    )
    if mode == "absolute":
        with columns[3]:
            tau = param_controls(
                LINE,
                [],
                "line",
                only=("tau",),
                benchmark=features.benchmark,
                labels={"tau": "τ (clip)"},
            )["tau"]
    else:
        pct = columns[3].slider(
            "τ percentile", 50.0, 100.0, 90.0, 0.5, key="line_tau_pct"
        )
        tau = quantiles.threshold(pct)
        columns[3].caption(f"τ = {tau:.3f}")
    params = {"p_a": p_a, "p_w": p_w, "tau": tau}
    method = get_method("line")
    metric_cards(
        tables.all_methods_table(features, [(method, params)]),
        tables.all_methods_table(features, [(get_method("energy"), {})]),
    )
    st.caption("Deltas are against Energy (= LINe with no pruning and no clipping).")
    kept = activation_masks(phi, p_a).sum(axis=1)
    kept_bars = px.bar(
        x=[str(c) for c in range(classes)],
        y=kept,
        labels={"x": "class", "y": "neurons kept"},
        title=f"Neurons each class keeps at p_a = {p_a} (of {neurons})",
    )
    kept_bars.update_layout(height=280, margin={"t": 40, "b": 30})
    st.plotly_chart(kept_bars, width="stretch", key="line_kept")

    st.subheader("One sample under the microscope")
    sets = {"ID": features.id_test, **features.ood}
    left, right = st.columns(2)
    set_name = left.selectbox("Set", list(sets), key="line_sample_set")
    size = len(sets[set_name])
    row = (
        right.slider("Sample", 0, size - 1, 0, key="line_sample_row")
        if size > 1
        else right.number_input(
            "Sample", 0, 0, 0, key="line_sample_only", disabled=True
        )
    )
    sample = microscope(
        sets[set_name].penultimate[row], weight, bias, phi, p_a, p_w, tau
    )
    vector = go.Figure(
        go.Bar(
            x=list(range(neurons)),
            y=sample.clipped,
            marker_color=np.where(sample.kept, "#1f77b4", "#cccccc"),
        )
    )
    vector.update_layout(
        title=f"{set_name} #{row}: clipped activations (grey = pruned for class {sample.predicted})",
        xaxis_title="neuron",
        height=300,
        margin={"t": 40, "b": 30},
    )
    st.plotly_chart(vector, width="stretch", key="line_vector")
    logits = pd.DataFrame(
        {
            "class": list(range(classes)) * 2,
            "logit": np.r_[sample.logits_before, sample.logits_after],
            "head": ["original"] * classes + ["LINe (pruned, clipped)"] * classes,
        }
    )
    st.plotly_chart(
        px.bar(
            logits,
            x="class",
            y="logit",
            color="head",
            barmode="group",
            height=300,
            title="Logits before and after pruning",
        ),
        width="stretch",
        key="line_logits",
    )

    st.header("3 · Sweep (p_a, p_w) at the current τ")
    grid = [0, 15, 30, 45, 60, 75, 90, 99]
    sweep = cached_sweep(features, entries_key(features), tuple(grid), tau)
    table = sweep.pivot(index="p_a", columns="p_w", values="AUROC")
    figure = go.Figure(
        go.Heatmap(
            z=table.values,
            x=[str(v) for v in table.columns],
            y=[str(v) for v in table.index],
            colorscale="Viridis",
            colorbar_title="mean AUROC",
            text=np.round(table.values, 1),
            texttemplate="%{text}",
        )
    )
    defaults = {
        "CIFAR-10 (90, 90)": (90, 90),
        "ImageNet (10, 10)": (15, 15),
        "CIFAR-100 (p_a 10, p_w 90)": (15, 90),
    }
    figure.add_scatter(
        x=[str(v[1]) for v in defaults.values()],
        y=[str(v[0]) for v in defaults.values()],
        mode="markers+text",
        text=list(defaults),
        textposition="top center",
        marker={"symbol": "x", "size": 12, "color": "white"},
        name="paper defaults (nearest cell)",
    )
    figure.update_layout(
        xaxis_title="p_w",
        xaxis_type="category",
        yaxis_type="category",
        yaxis_title="p_a",
        height=430,
        margin={"t": 30, "b": 30},
    )
    st.plotly_chart(figure, width="stretch", key="line_sweep")
    best = sweep.loc[sweep.AUROC.idxmax()]
    st.caption(
        f"Best cell: p_a = {best.p_a:g}, p_w = {best.p_w:g}, mean AUROC {best.AUROC:.2f} (test OOD data — for "
        "exploration, not for choosing hyperparameters honestly)."
    )

    st.header("4 · ID accuracy vs OOD detection as pruning grows")
    pareto = cached_pareto(
        features, entries_key(features), (0, 10, 30, 50, 70, 80, 90, 95, 99), tau
    )
    figure = px.line(
        pareto,
        x="ID accuracy",
        y="AUROC",
        text="p",
        markers=True,
        title="p_a = p_w = p: each point a pruning level",
    )
    figure.update_traces(textposition="top center")
    figure.update_layout(
        height=380,
        margin={"t": 40, "b": 30},
        xaxis_title="ID accuracy of the pruned head (%)",
        yaxis_title="mean AUROC (%)",
    )
    st.plotly_chart(figure, width="stretch", key="line_pareto")


live_section()
