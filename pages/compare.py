"""Compare: every method on every OOD set, with live hyperparameters, ROC curves and score histograms."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from ood_core import claims, comparisons, tables
from ood_core.metrics import roc_points
from ood_core.scores import METHODS
from ood_core.tuning import described
from pages.ui.boundary import fragment
from pages.ui.cards import first_use_progress, observations
from pages.ui.charts import histogram_figure, reference_line, show_shared
from pages.ui.controls import (
    multiselect,
    param_controls,
    param_defaults,
    param_values,
    segmented,
    selectbox,
    toggle,
)
from pages.ui.sections import prose, section
from pages.ui.shell import presenting, run_page
from pages.ui.sidebar import entries_key, require_features
from pages.ui.state import keep_widget_state, reset_button
from pages.ui.tables import leaderboard


def main() -> None:
    st.title("Compare methods")
    reset_button("compare", ("compare",))
    prose(
        "Every registered detector scored from the same cache: output-based (MSP, MaxLogit, Energy, GEN, Entropy, "
        "KL-Matching, ODIN), feature-space (Mahalanobis, Mahalanobis++, RMDS, KNN, fDBD, NCI, ViM), activation shaping "
        "(ReAct, DICE, ASH, SCALE, OptFS, LINe) and the activation prior and block norms (NAP, NAP-X, FeatureNorm, "
        "multi-block). "
        "Move any hyperparameter: only that method is recomputed from cached arrays — no model call (except ODIN, which "
        "re-runs the model once per (T, ε) and caches the result)."
    )
    with st.expander("Formulas and papers of every method"):
        for method in METHODS.values():
            st.markdown(
                f"**{method.label}** — [{method.paper.title}]({method.paper.url}), {method.paper.venue}"
            )
            st.latex(method.formula)
    features = require_features()
    blocks = features.id_test.blocks
    include_odin = toggle(
        "Include ODIN",
        value=False,
        key="compare_odin",
        help="ODIN perturbs the inputs, so it needs the model again: computed on demand, cached per (T, ε).",
    )
    trained = [
        m
        for m in METHODS.values()
        if m.cost == "training" and features.state(m, fit=False) is not None
    ]
    candidates = [
        m
        for m in METHODS.values()
        if m.cost == "cache" or (include_odin and m.cost == "reinference")
    ] + trained
    if not trained:
        st.caption(
            "The heatmap decoder joins this table once it is trained (Heatmaps page)."
        )

    section("Every method on the same cache", "table")

    @fragment
    def comparison() -> None:
        tunable = [m for m in candidates if m.params and m.cost != "training"]
        keep_widget_state(
            "compare:"
        )  # the sliders this run does not draw keep their values
        with st.expander(
            "Hyperparameters (paper defaults preset; each slider recomputes its method)",
            expanded=not presenting(),  # presenting: the table on the first screen
        ):
            pick, sliders = st.columns([1, 2])
            chosen = selectbox(
                "Method to tune",
                [m.label for m in tunable],
                key="compare_tuned",
                help="One method's sliders at a time, so that a move redraws little; every method keeps its values. "
                "Its row is marked ▶ in the table.",
                where=pick,
            )
            params = {}
            for method in tunable:
                if method.label == chosen:
                    with sliders.container(border=True):
                        params[method.name] = param_controls(
                            method, blocks, "compare", benchmark=features.benchmark
                        )
                else:
                    params[method.name] = param_values(
                        method, blocks, "compare", benchmark=features.benchmark
                    )
            moved = [
                f"{m.label} {described(params[m.name])}"
                for m in tunable
                if params[m.name] != param_defaults(m, blocks, features.benchmark)
            ]
            st.caption(
                "Away from the defaults: " + "; ".join(moved)
                if moved
                else "Every method at its default."
            )
        methods = [(m, params.get(m.name, {})) for m in candidates]
        order = [m.label for m, _ in methods]
        sets = [*features.ood, *(["mean"] if len(features.ood) > 1 else [])]
        with (
            st.container()
        ):  # below the sliders, so that a moved slider and its row share the screen
            with st.spinner("Scoring…"), first_use_progress() as progress:
                table = tables.all_methods_table(features, methods, progress)
            shown = segmented(
                "Metric",
                ["AUROC ↑", "FPR95 ↓", "All metrics"],
                default="AUROC ↑",
                key="compare_metric",
                label_visibility="collapsed",
            )  # one table drawn at a time: a slider move re-sends only that one
            intervals = toggle(
                "Intervals for FPR95 and AUPR (bootstrap)",
                key="compare_bootstrap",
                help="Percentile 95 % intervals from 1,000 stratified bootstrap resamples per method and set, "
                "computed on request (seconds at benchmark size, then cached). AUROC's interval (DeLong) is "
                "always shown.",
            )
            if intervals:
                with st.spinner("Bootstrapping FPR95 and AUPR…"):
                    table = tables.with_bootstrap(features, table, methods)
            if shown == "All metrics":
                st.dataframe(table.round(2), hide_index=True, width="stretch")
            else:
                metric = "FPR95" if shown == "FPR95 ↓" else "AUROC"
                leaders = (
                    comparisons.column_leaders(features, table, methods, metric)
                    if metric == "AUROC" or intervals
                    else {}
                )
                leaderboard(
                    table, metric, order, sets, leaders, "compare_pivot", changed=chosen
                )
            st.caption(
                "Metrics in % with 95 % intervals (AUROC ± its DeLong half-width; FPR95 and AUPR by bootstrap, on "
                "request). Green: the column's best, significantly ahead of the runner-up (paired test, 5 %); "
                "amber: the best two, not clearly apart (a tie). FPR95: lower is better (ID positive, the seed "
                "papers' convention) — see the [Primer](/primer) for both FPR95 conventions and AUPR-In/Out."
            )
            observations(claims.best_methods(features, table, methods), "compare")
            st.download_button(
                "Download table (CSV)",
                lambda: table.to_csv(index=False),  # written when downloaded
                "ood_lab_compare.csv",
                "text/csv",
            )

        st.session_state["_compare_params"] = {m.name: p for m, p in methods}

    @fragment
    def charts() -> None:
        """ROC curves and histograms, redrawn on their own controls (a slider above does not redraw them: they show
        the parameters of their last redraw, named in the caption)."""
        drawn = st.session_state.get("_compare_params", {})
        methods = [(m, drawn.get(m.name, {})) for m in candidates]
        order = [m.label for m, _ in methods]
        key = entries_key(features)
        left, right = st.columns(2)
        with left:
            ood_set = selectbox(
                "ROC curves on", list(features.ood), key="compare_roc_set"
            )
            shown = multiselect(
                "Methods",
                order,
                default=[m for m in ("Energy", "NAP", "NAP-Energy") if m in order],
                key="compare_roc_methods",
            )
            on_roc = [(m, p) for m, p in methods if m.label in shown]
            if on_roc:
                show_shared(
                    lambda: _roc_figure(features, on_roc, ood_set),
                    "compare_roc",
                    (key, ood_set, _settings(on_roc)),
                )
        with right:
            label = selectbox(
                "Score histogram of",
                order,
                index=order.index("NAP") if "NAP" in order else 0,
                key="compare_hist_method",
            )
            method, p = next((m, p) for m, p in methods if m.label == label)
            id_scores, ood_scores = features.scores(method, p)
            show_shared(
                lambda: histogram_figure(
                    tables.binned({"ID": id_scores, **ood_scores}),
                    f"{label}: ID vs OOD scores",
                ),
                "compare_hist",
                (key, _settings([(method, p)])),
            )
        drawn_names = {m.name for m, _ in methods if m.label in (*shown, label)}
        st.caption(
            "Drawn with the hyperparameters of the last redraw"
            + "".join(
                f"; {METHODS[name].label} {described(values)}"
                for name, values in drawn.items()
                if values and name in drawn_names
            )
            + ". ID in blue, each OOD set in its page-wide colour."
        )
        st.button(
            "Redraw with the current sliders",
            key="compare_redraw",
            help="Charts are not redrawn on every slider "
            "move, so that sliders stay fast; this redraws them now.",
        )

    comparison()
    charts()


def _settings(methods: list) -> tuple:
    """A hashable name for (method, parameters) pairs."""
    return tuple(
        (m.name, tuple(sorted((k, str(v)) for k, v in p.items()))) for m, p in methods
    )


def _roc_figure(features, methods: list, ood_set: str) -> go.Figure:
    """ROC curves of ``methods`` (with their parameters), ID vs ``ood_set``."""
    frame = pd.concat(
        roc_points(id_scores, ood_scores[ood_set], max_points=400).assign(
            method=m.label
        )
        for m, p in methods
        for id_scores, ood_scores in [features.scores(m, p)]
    )
    frame[["fpr", "tpr"]] *= 100
    figure = px.line(
        frame,
        x="fpr",
        y="tpr",
        color="method",
        title=f"ROC, ID vs {ood_set}",
        render_mode="svg",
        labels={"fpr": "FPR: OOD accepted (%)", "tpr": "TPR: ID kept (%)"},
    )
    figure.update_layout(height=400, margin={"t": 40, "b": 30})
    reference_line(figure, 95, "TPR 95 %")
    return figure


run_page(main)
