"""LINe: Shapley importance of penultimate neurons, class-wise activation/weight pruning and clipping, live."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from ood_core import claims, comparisons, tables
from ood_core import observations as notes
from ood_core.scores import get_method
from ood_core.scores.line import LINE, activation_masks, microscope
from ood_core.scores.method import Param
from ood_core.scores.shaping import REACT
from pages.ui.boundary import fragment
from pages.ui.cards import context, intro, metric_cards, observations
from pages.ui.charts import show_shared
from pages.ui.controls import param_controls, radio, selectbox, slider
from pages.ui.sections import section
from pages.ui.shell import run_page
from pages.ui.sidebar import entries_key, require_features, synthetic, workspace
from pages.ui.state import reset_button
from pages.ui.thumbnails import thumbnail

TAU_PERCENTILE = Param(
    "tau percentile",
    90.0,
    50.0,
    100.0,
    0.5,
    "τ as a percentile of the ID train penultimate activations.",
)


def main() -> None:
    st.title("LINe — Leveraging Important Neurons")
    reset_button("line", ("line",))
    intro(
        "Not every penultimate neuron matters for every class. LINe measures each neuron's **Shapley importance** for "
        "each class on ID training data, then, for the class a sample is predicted as, keeps only the important "
        "neurons and weights and **clips** large activations. The paper's claim: ID samples keep their evidence, and "
        "OOD samples, whose activations fall on unimportant neurons, lose theirs — the notes below check it here.",
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
    with st.spinner(
        "Fitting on the ID train split: each neuron's Shapley importance per class and the activation "
        "percentiles (once per workspace, then cached)…"
    ):
        phi = features.state(LINE).phi
        quantiles = features.state(REACT)
    weight, bias = features.id_test["head/weight"], features.id_test["head/bias"]
    classes, neurons = phi.shape

    section("1 · Which neurons matter for which class", "importance")
    key = entries_key(features)
    show_shared(lambda: _importance_figure(phi), "line_importance", (key,))
    left, right = st.columns(2)
    chosen_class = selectbox(
        "Class", list(range(classes)), key="line_class", where=left
    )
    k = slider(
        "Top-k neurons",
        Param("k", min(10, neurons), min(3, neurons), min(30, neurons), 1, kind="int"),
        "line_topk",
        where=right,
    )
    show_shared(
        lambda: _top_neurons_figure(phi, chosen_class, k),
        "line_topk_bars",
        (key, chosen_class, k),
    )

    section("2 · Prune and clip, live", "live")

    @st.cache_data(max_entries=32, show_spinner="Sweeping (p_a, p_w)…")
    def cached_sweep(_features, key: str, grid: tuple, tau: float) -> pd.DataFrame:
        return tables.line_sweep(_features, grid, tau)

    @st.cache_data(
        max_entries=32, show_spinner="Computing the accuracy / AUROC trade-off…"
    )
    def cached_pareto(
        _features, key: str, percentiles: tuple, tau: float
    ) -> pd.DataFrame:
        return tables.line_pareto(_features, percentiles, tau)

    @fragment
    def live_section() -> None:
        columns = st.columns(4)
        chosen = {}
        for column, (name, label) in zip(
            columns, (("p_a", "activation pruning"), ("p_w", "weight pruning"))
        ):
            with column:
                chosen |= param_controls(
                    LINE,
                    [],
                    "line",
                    only=(name,),
                    benchmark=features.benchmark,
                    labels={name: f"{name} ({label})"},
                )
        p_a, p_w = chosen["p_a"], chosen["p_w"]
        mode = radio(
            "τ given as",
            ["absolute", "ID-train percentile"],
            key="line_tau_mode",
            horizontal=True,
            where=columns[2],
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
            pct = slider(
                "τ percentile", TAU_PERCENTILE, "line_tau_pct", where=columns[3]
            )
            tau = quantiles.threshold(pct)
            columns[3].caption(f"τ = {tau:.3f}")
        params = {"p_a": p_a, "p_w": p_w, "tau": tau}
        method = get_method("line")
        line_table = tables.all_methods_table(features, [(method, params)])
        energy_table = tables.all_methods_table(features, [(get_method("energy"), {})])
        metric_cards(
            line_table,
            energy_table,
            "Energy",
            export="line",
            differences=comparisons.per_set_differences(
                features, (method, params), (get_method("energy"), {})
            ),
        )
        st.caption(
            "Deltas are against Energy (= LINe with no pruning and no clipping)."
        )
        observations(claims.line_vs_energy(features, params, context(features)), "line")

        def kept_bars() -> go.Figure:
            kept = activation_masks(phi, p_a)
            positive = np.maximum(phi, 0)
            share = (
                100
                * (positive * kept).sum(axis=1)
                / np.maximum(positive.sum(axis=1), 1e-12)
            )
            figure = go.Figure(go.Bar(x=[str(c) for c in range(classes)], y=share))
            figure.update_layout(
                title=f"Share of each class's positive importance Σ Φ kept at p_a = {p_a} "
                f"({int(kept[0].sum())} of {neurons} neurons per class)",
                xaxis_title="class",
                yaxis_title="% of Σ Φ kept",
                yaxis_range=[0, 100],
            )
            figure.update_layout(height=300, margin={"t": 40, "b": 30, "l": 70})
            return figure

        show_shared(kept_bars, "line_kept", (key, p_a))
        st.caption(
            "Every class keeps the same number of neurons (p_a is a per-class percentile); what differs is how much of "
            "the class's evidence those neurons carry. A low bar: the class's importance is spread thin, and pruning "
            "removes evidence its ID images need."
        )

        section("One sample under the microscope", "microscope", level="subheader")
        sets = {"ID": features.id_test, **features.ood}
        left, right = st.columns(2)
        set_name = selectbox("Set", list(sets), key="line_sample_set", where=left)
        size = len(sets[set_name])
        row = (
            slider(
                "Sample",
                Param("row", 0, 0, size - 1, 1, kind="int"),
                "line_sample_row",
                where=right,
            )
            if size > 1
            else right.number_input(
                "Sample", 0, 0, 0, key="line_sample_only", disabled=True
            )
        )
        sample = microscope(
            sets[set_name].penultimate[row], weight, bias, phi, p_a, p_w, tau
        )
        microscope_inputs = (key, set_name, row, p_a, p_w, tau)

        def vector_figure() -> go.Figure:
            return _activations_figure(sample, neurons, tau, f"{set_name} #{row}")

        def logits_figure() -> go.Figure:
            return _logits_figure(sample, classes)

        picture, chart = st.columns([1, 5])
        if not synthetic(features):
            split = "test" if set_name == "ID" else None
            dataset = ws.id_dataset if set_name == "ID" else set_name
            index = int(np.asarray(sets[set_name]["index"])[row])
            picture.image(
                thumbnail(dataset, split, index, 120),
                width=120,
                caption=f"{set_name} #{row}",
            )
        show_shared(vector_figure, "line_vector", microscope_inputs, where=chart)
        show_shared(logits_figure, "line_logits", microscope_inputs)

        section("3 · Sweep (p_a, p_w) at the current τ", "sweep")
        grid = [0, 10, 30, 50, 70, 90, 95, 99]  # holds the papers' 10 and 90
        sweep = cached_sweep(features, key, tuple(grid), tau)
        show_shared(
            lambda: _sweep_figure(sweep, grid, p_a, p_w),
            "line_sweep",
            (key, tuple(grid), tau, p_a, p_w),
        )
        best = sweep.loc[sweep.AUROC.idxmax()]
        st.caption(
            f"Best cell: p_a = {best.p_a:g}, p_w = {best.p_w:g}, mean AUROC {best.AUROC:.2f} (test OOD data — for "
            "exploration, not for choosing hyperparameters honestly)."
        )

        section("4 · ID accuracy vs OOD detection as pruning grows", "tradeoff")
        pareto = cached_pareto(features, key, (0, 10, 30, 50, 70, 80, 90, 95, 99), tau)
        show_shared(lambda: _pareto_figure(pareto), "line_pareto", (key, tau))
        st.caption(notes.pruning_tradeoff(pareto))

    live_section()


def _importance_figure(phi: np.ndarray) -> go.Figure:
    """Φ of the 40 neurons with the largest |Φ| for any class, per class."""
    classes, neurons = phi.shape
    top = np.argsort(-np.abs(phi).max(axis=0))[: min(40, neurons)]
    figure = go.Figure(
        go.Heatmap(
            z=phi[:, top],
            x=[f"n{j}" for j in top],
            y=[f"class {c}" for c in range(classes)],
            colorscale="RdBu",
            zmid=0,
            colorbar_title="Φ",
        )
    )
    figure.update_layout(
        title=f"Importance Φ of the {len(top)} most important neurons",
        height=360,
        margin={"t": 40, "b": 30},
    )
    return figure


def _top_neurons_figure(phi: np.ndarray, chosen_class: int, k: int) -> go.Figure:
    """The ``k`` most important neurons of ``chosen_class`` and their Φ."""
    order = np.argsort(-phi[chosen_class])[:k]
    figure = px.bar(
        x=[f"n{j}" for j in order],
        y=phi[chosen_class, order],
        labels={"x": "neuron", "y": "Φ"},
        title=f"Top-{k} neurons of class {chosen_class}",
    )
    figure.update_layout(height=300, margin={"t": 40, "b": 30})
    return figure


def _activations_figure(sample, neurons: int, tau: float, name: str) -> go.Figure:
    """One sample's penultimate activations: clipped at τ (bars; grey where pruned) and before clipping (marks)."""
    figure = go.Figure(
        go.Bar(
            x=list(range(neurons)),
            y=sample.clipped,
            marker_color=np.where(sample.kept, "#1f77b4", "#cccccc"),
            name="clipped at τ (grey = pruned)",
        )
    )
    figure.add_scatter(
        x=list(range(neurons)),
        y=sample.activations,
        mode="markers",
        marker={"symbol": "line-ew-open", "size": 8, "color": "#d62728"},
        name="before clipping",
    )
    figure.add_hline(y=tau, line_dash="dot", annotation_text=f"τ = {tau:.2f}")
    figure.update_layout(
        title=f"{name}: activations, clipped and pruned for class {sample.predicted}",
        xaxis_title="neuron",
        height=300,
        margin={"t": 40, "b": 30},
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


def _logits_figure(sample, classes: int) -> go.Figure:
    """One sample's logits from the original head and from LINe's pruned, clipped one (grouped bars)."""
    figure = go.Figure()
    for name, logits in (
        ("original", sample.logits_before),
        ("LINe (pruned, clipped)", sample.logits_after),
    ):
        figure.add_bar(x=list(range(classes)), y=logits, name=name)
    figure.update_layout(
        barmode="group",
        height=300,
        title="Logits before and after pruning",
        xaxis_title="class",
        yaxis_title="logit",
        legend_title="head",
    )
    return figure


def _sweep_figure(
    sweep: pd.DataFrame, grid: list[int], p_a: float, p_w: float
) -> go.Figure:
    """Mean AUROC over the (p_a, p_w) grid, with the papers' defaults and the current sliders marked."""
    table = sweep.pivot(index="p_a", columns="p_w", values="AUROC")
    figure = go.Figure(
        go.Heatmap(  # cells at positions 0, 1, …, labelled with the grid's percentiles
            z=table.values,
            x=list(range(len(table.columns))),
            y=list(range(len(table.index))),
            colorscale="Viridis",
            colorbar_title="mean AUROC",
            text=np.round(table.values, 1),
            texttemplate="%{text}",
        )
    )
    defaults = {  # (p_a, p_w) of the paper per benchmark
        "CIFAR-10": (90, 90),
        "CIFAR-100": (10, 90),
        "ImageNet": (10, 10),
    }
    for (name, (pa, pw)), symbol, tint in zip(
        defaults.items(),
        ("square-open", "diamond-open", "circle-open"),
        ("#d62728", "#ff7f0e", "#e377c2"),
    ):
        figure.add_scatter(
            x=[grid.index(pw)],
            y=[grid.index(pa)],
            mode="markers",
            marker={"symbol": symbol, "size": 34, "color": tint, "line_width": 4},
            name=f"paper default, {name} (p_a {pa}, p_w {pw})",
        )
    figure.add_scatter(  # between cells where the sliders sit between grid values
        x=[np.interp(p_w, grid, range(len(grid)))],
        y=[np.interp(p_a, grid, range(len(grid)))],
        mode="markers",
        marker={"symbol": "x", "size": 18, "color": "#111111"},
        name=f"current (p_a {p_a:g}, p_w {p_w:g})",
    )
    ticks = {"tickvals": list(range(len(grid))), "ticktext": [str(v) for v in grid]}
    figure.update_layout(
        xaxis={"title": "p_w", **ticks},
        yaxis={"title": "p_a", **ticks},
        height=470,
        margin={"t": 30, "b": 30},
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def _pareto_figure(pareto: pd.DataFrame) -> go.Figure:
    """ID accuracy and mean AUROC as pruning grows (p_a = p_w = p)."""
    long = pareto.melt(
        id_vars="p",
        value_vars=["ID accuracy", "AUROC"],
        var_name="quantity",
        value_name="percent",
    ).replace({"quantity": {"AUROC": "mean AUROC"}})
    figure = px.line(
        long,
        x="p",
        y="percent",
        color="quantity",
        markers=True,
        title="As pruning grows (p_a = p_w = p): ID accuracy of the pruned head and mean AUROC",
    )
    figure.update_layout(
        height=380,
        margin={"t": 40, "b": 30},
        xaxis_title="pruning percentile p",
        yaxis_title="%",
    )
    return figure


run_page(main)
