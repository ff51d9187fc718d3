"""A/B: two settings of one method side by side (two λ values, two blocks, a model before and after fine-tuning),
with paired metrics per OOD set and the difference."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

import pandas as pd
import streamlit as st

from ood_core import comparisons
from ood_core.inputs import catalog
from ood_core.scores import METHODS
from ood_core.tables import all_methods_table
from ood_core.workspace import Workspace, cached_workspace
from pages.ui.controls import param_controls, selectbox
from pages.ui.sections import prose
from pages.ui.shell import run_page
from pages.ui.sidebar import require_features, workspace
from pages.ui.state import reset_button


def main() -> None:
    st.title("A/B — two settings of one method")
    reset_button("ab", ("ab_",))
    prose(
        "Pick a method, then set each side: its model (e.g. a fine-tuned one against its base, or α = 0 against "
        "α > 0 on Local Background) and its parameters. Both sides are scored on the same ID and OOD sets; the table "
        "pairs them per set."
    )
    require_features()
    ws = workspace()
    methods = {m.label: m for m in METHODS.values() if m.cost == "cache"}
    method = methods[
        selectbox(
            "Method",
            list(methods),
            index=list(methods).index("NAP-Energy"),
            key="ab_method",
        )
    ]
    models = [
        name
        for name, spec in catalog.models().items()
        if name == ws.model or spec.default_id in (None, ws.id_dataset)
    ]
    sides = {}
    for side, column in zip(("A", "B"), st.columns(2)):
        with column.container(border=True):
            st.subheader(side)
            model = selectbox(
                "Model", models, index=models.index(ws.model), key=f"ab_{side}_model"
            )
            side_features = cached_workspace(
                Workspace(model, ws.id_dataset, ws.ood_datasets)
            )
            if side_features is None or not side_features.ood:
                st.info(
                    f"`{model}` has no cached features for this workspace: extract them on Setup."
                )
                st.stop()
            reason = side_features.unavailable(method)
            if reason:
                st.info(f"{method.label} cannot score `{model}`: {reason}.")
                st.stop()
            params = param_controls(
                method,
                side_features.id_test.blocks,
                f"ab_{side.lower()}",
                benchmark=side_features.benchmark,
            )
            sides[side] = (side_features, params)

    def auroc_fpr(side: str) -> pd.DataFrame:
        side_features, params = sides[side]
        table = all_methods_table(side_features, [(method, params)])
        return table.set_index("ood_set")[["AUROC", "FPR95"]].add_suffix(f" {side}")

    paired = pd.concat([auroc_fpr("A"), auroc_fpr("B")], axis=1)
    scored = {
        side: side_features.scores(method, params)
        for side, (side_features, params) in sides.items()
    }
    tests = {
        name: comparisons.difference(
            scored["B"], scored["A"], "AUROC", None if name == "mean" else [name]
        )
        for name in paired.index
    }
    paired["Δ AUROC (B − A)"] = [tests[name].delta for name in paired.index]
    paired["Δ 95 % CI"] = [
        f"{tests[n].low:+.2f} to {tests[n].high:+.2f}" for n in paired.index
    ]
    paired["p (paired DeLong)"] = [tests[name].p for name in paired.index]
    paired["Δ FPR95 (B − A)"] = paired["FPR95 B"] - paired["FPR95 A"]
    columns = [
        "AUROC A",
        "AUROC B",
        "Δ AUROC (B − A)",
        "Δ 95 % CI",
        "p (paired DeLong)",
        "FPR95 A",
        "FPR95 B",
        "Δ FPR95 (B − A)",
    ]
    st.dataframe(
        paired[columns]
        .rename_axis("OOD set")
        .style.format("{:+.2f}", subset=["Δ AUROC (B − A)", "Δ FPR95 (B − A)"])
        .format("{:.3f}", subset=["p (paired DeLong)"])
        .format("{:.2f}", subset=["AUROC A", "AUROC B", "FPR95 A", "FPR95 B"]),
        width="stretch",
        key="ab_table",
    )
    overall = tests["mean"] if "mean" in tests else next(iter(tests.values()))
    st.markdown(ab_verdict(overall, paired))
    st.caption(
        "A and B score the same ID and OOD images, so they are compared paired (DeLong's test on the AUROC). Both "
        "sides use test OOD sets: a difference here is for understanding, not for choosing (use Tune)."
    )


def ab_verdict(overall, paired: pd.DataFrame) -> str:
    """One sentence: a tie, no clear difference, or which side is ahead (mean AUROC)."""
    row = paired.loc["mean"] if "mean" in paired.index else paired.iloc[0]
    means = f"Mean AUROC: A {row['AUROC A']:.1f}, B {row['AUROC B']:.1f}"
    if (
        round(overall.delta, 1) == 0
    ):  # a difference that rounds to 0.0 is no lead, whatever its p
        return f"{means}: **A and B tie** (Δ {overall.delta:+.2f})."
    if not overall.significant:
        return f"{means}: **no clear difference** (B − A: Δ {overall.describe()}, p = {overall.p:.2f})."
    leader, sign = ("B", 1) if overall.delta > 0 else ("A", -1)
    return (
        f"{means}: **{leader}** is ahead by {sign * overall.delta:.1f} points (95 % CI "
        f"{sign * (overall.low if sign > 0 else overall.high):.1f} to "
        f"{sign * (overall.high if sign > 0 else overall.low):.1f}; paired DeLong p = {overall.p:.3f})."
    )


run_page(main)
