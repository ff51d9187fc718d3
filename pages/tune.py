"""Tune: choose hyperparameters on validation data, then see what the choice costs on the test OOD sets."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

import json
import tempfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ood_core import tuning
from ood_core.errors import OODLabError
from ood_core.inputs import catalog
from ood_core.inputs.variants import PSEUDO_OOD
from ood_core.scores import METHODS
from ood_core.scores.method import Param
from pages.ui.charts import axis_type, show
from pages.ui.controls import (
    hand_over,
    multiselect,
    number_input,
    radio,
    selectbox,
    slider,
)
from pages.ui.sections import prose, section
from pages.ui.shell import run_page
from pages.ui.sidebar import require_features, synthetic
from pages.ui.state import reset_button
from pages.ui.text import plain

FRACTION = Param("fraction", 0.2, 0.05, 0.5, 0.05)
SEED = Param("seed", 0, 0, 10_000, 1, kind="int")
POINTS = Param("points", 11, 3, 21, 1, kind="int")


def hand_to_compare(values: dict[str, dict], blocks: list[str]) -> None:
    """Set Compare's sliders to tuned ``{method: {param: value}}`` (each converted to what its control shows; a
    value a control cannot take is refused in one line), show the first method's, and go there."""
    refused = hand_over(values, METHODS, blocks, "compare")
    if refused:
        st.error("Not handed over: " + "; ".join(map(plain, refused)))
        return
    if values:
        st.session_state["compare_tuned"] = METHODS[next(iter(values))].label
    st.switch_page("pages/compare.py")


GIVEN_UP = 5.0  # AUROC points one test set may lose against the defaults before the page says so
# The choice first, then what it costs on the test sets, then how the search went.
LEADERBOARD_COLUMNS = (
    "method",
    "tuned",
    "AUROC default",
    "AUROC tuned",
    "AUROC test-best",
    "regret",
    "worst set Δ",
    "worst set",
    "test-best at",
    "default kept",
    "proxy agreement",
    "rank corr",
    "FPR95 default",
    "FPR95 tuned",
    "search",
    "points",
    "seconds",
)


def main() -> None:
    st.title("Tune hyperparameters honestly")
    reset_button(
        "tune",
        (
            "tune_pseudo",
            "tune_sets",
            "tune_id_source",
            "tune_fraction",
            "tune_seed",
            "tune_objective",
            "tune_floor",
            "tune_points",
            "tune_method",
        ),
    )
    prose(
        "Every other page shows metrics on the **test** OOD sets: good for exploring, not for choosing. Here a search "
        "picks each method's parameters on **validation** data only: validation ID images held out of the ID split, and "
        "validation OOD: the benchmark's own validation set where it has one (OpenOOD's val_tin, the demo's val-images: "
        "the default), pseudo-OOD made from ID *training* images, or a set you registered. The test sets are "
        "used afterwards, to show what the choice costs: **regret** = test-best AUROC (what an oracle peeking at the "
        "test sets would pick) minus the test AUROC of the tuned values. The rank correlation says how well the "
        "validation proxy orders the candidates the way the test sets do."
    )
    features = require_features()
    tunable = [
        m for m in METHODS.values() if tuning.tunable(m) and not features.unavailable(m)
    ]
    labels = {m.label: m for m in tunable}
    fitted_only = [
        m.label
        for m in METHODS.values()
        if m.cost == "cache" and not tuning.tunable(m) and not features.unavailable(m)
    ]
    if fitted_only:
        st.info(
            "**Nothing to tune on OOD data:** "
            + ", ".join(fitted_only)
            + ". Whatever these methods learn comes from the ID training set alone, so their numbers on every page are "
            "already honest. **OptFS** is the notable one: its feature-shaping function, the part ReAct, ASH and "
            "SCALE tune by hand with a percentile, is fitted in closed form from ID data alone.",
            icon="✅",
        )

    with st.container(border=True):
        left, middle, right = st.columns(3)
        with left:
            has_images = not synthetic(features)
            defaults, fallback = tuning.default_sets(features)
            benchmark_sets = list(defaults)
            if st.session_state.get("_tune_defaults_for") != benchmark_sets:
                # another workspace: its own default protocol, not the last one's choices
                st.session_state["_tune_defaults_for"] = benchmark_sets
                for key in ("tune_pseudo", "tune_sets"):
                    st.session_state.pop(key, None)
            if fallback:
                st.caption(fallback)
            pseudo = multiselect(
                "Pseudo-OOD from ID training images",
                PSEUDO_OOD if has_images else [],
                default=list(PSEUDO_OOD) if has_images and not benchmark_sets else [],
                key="tune_pseudo",
                help="jigsaw3: 3×3 tiles shuffled; blur: strong Gaussian blur; permute4: pixels permuted inside 4×4 "
                "patches; noise: high-frequency noise; invert: colours and contrast inverted; mix: two images of "
                "different classes blended. Each is a cached dataset variant of a seeded subset of ID train. All "
                "six by default where the benchmark has no validation OOD set: no single kind of pseudo-OOD stands "
                "for real OOD data.",
            )
            if not has_images:
                st.caption(
                    "A synthetic workspace has no images to corrupt: use a validation set."
                )
            candidates = [
                name
                for name, spec in catalog.datasets().items()
                if name != features.id_dataset
                and name not in features.ood
                and "@" not in name
                and spec.has_images == has_images
            ]
            sets = multiselect(
                "Validation OOD sets (not test sets)",
                candidates,
                default=[s for s in benchmark_sets if s in candidates],
                key="tune_sets",
                help="Registered datasets that are not a test OOD set of this workspace (checked by file identity). "
                "Where the ID set's benchmark has a validation OOD set (OpenOOD's val_tin, the demo's val-images) "
                "it is the default, alone, as in OpenOOD; pseudo-OOD is for models without one.",
            )
        with middle:
            id_source = radio(
                "Validation ID held out of",
                ["test", "train"],
                horizontal=True,
                key="tune_id_source",
                help="test (OpenOOD's convention): those rows leave the test ID set. train: the fits saw them.",
            )
            fraction = slider("Share held out", FRACTION, "tune_fraction")
            seed = int(number_input("Seed", SEED, "tune_seed"))
        with right:
            objective = radio(
                "Objective",
                list(tuning.OBJECTIVES),
                format_func=tuning.OBJECTIVE_LABELS.get,
                key="tune_objective",
                help="Whatever the objective, the best point replaces the paper default only when its gain on the "
                "validation data is significant (a paired test on the same validation images, 5 %). The default, "
                "'never below the default on any validation set', keeps a candidate only if no validation set says it "
                "is worse.",
            )
            floor = (
                slider(
                    "ID accuracy floor (%)",
                    Param(
                        "floor",
                        max(0.0, round(features.accuracy - 1.0)),
                        0.0,
                        100.0,
                        0.5,
                        "Candidates that leave the classifier less accurate are rejected (LINe prunes it).",
                    ),
                    "tune_floor",
                )
                if objective == "auroc@acc"
                else 0.0
            )
            points = slider("Values per numeric parameter", POINTS, "tune_points")

    if not pseudo and not sets:
        st.info(
            "Choose at least one validation OOD source above: a pseudo-OOD variant or a validation set."
        )
        st.stop()
    try:
        protocol = tuning.protocol(
            pseudo=tuple(pseudo),
            sets=tuple(sets),
            id_source=id_source,
            id_fraction=fraction,
            seed=seed,
        )
        with st.spinner("Preparing validation data (extracted once, then cached)…"):
            found = tuning.split(features, protocol)
    except OODLabError as exc:
        st.error(plain(exc, limit=1000))
        st.stop()

    settings = (protocol, objective, floor, points)
    store = st.session_state.setdefault("_tune_results", {})
    results: dict[str, tuning.SearchResult] = store.setdefault(repr(settings), {})
    st.caption(
        f"Protocol: {plain(protocol.describe(), limit=600)}. Validation: {len(found.validation.id_test)} ID images, "
        + ", ".join(f"{name} ({len(f)})" for name, f in found.validation.ood.items())
        + "."
    )

    def run(methods: list) -> None:
        """Search each method (already tuned ones are kept); any click on the page cancels between two points."""
        slot = st.empty()
        running = slot.container()
        bar = running.progress(0.0, text="Searching…")
        running.caption(
            "Press *Stop* (or any control) to cancel; methods already tuned are kept."
        )
        running.button("Stop", key="tune_stop")
        for index, method in enumerate(methods):

            def progress(done: int, total: int, index=index, method=method) -> None:
                bar.progress(
                    min(1.0, (index + done / max(total, 1)) / len(methods)),
                    text=f"{method.label}: {done}/{total} points",
                )

            results[method.name] = tuning.search(
                found.validation, method, objective, floor, points, progress
            )
        slot.empty()

    chosen_label = selectbox("Method", list(labels), key="tune_method")
    method = labels[chosen_label]
    one, every = st.columns(2)
    if one.button(f"Tune {method.label}", type="primary", key="tune_one"):
        run([method])
    if every.button(
        "Tune all methods (leaderboard)",
        key="tune_all",
        help="Every tunable method on the same validation data.",
    ):
        run([m for m in tunable if m.name not in results])

    result = results.get(method.name)
    if result is None:
        st.info(f"Press **Tune {method.label}** to search its parameters.")
    else:
        verdict = st.success if not result.kept_default else st.info
        verdict(
            f"**{method.label}**: "
            + ("kept the paper default. " if result.kept_default else "")
            + plain(result.reason, limit=600)
        )
        if result.unreliable:
            st.warning(
                f"The validation sets disagree on how to rank {method.label}'s candidates (proxy agreement "
                f"{result.agreement:+.2f}, rank correlation between sets): the proxy is unreliable for this "
                "method, whatever it picks."
            )
        elif result.agreement == result.agreement:  # not NaN
            st.caption(
                f"Proxy agreement {result.agreement:+.2f}: the validation sets rank the candidates alike (no test "
                "data needed to see this)."
            )
        else:
            st.caption(
                "Proxy agreement needs two validation sets or more: with one there is nothing to compare its ranking "
                "with. Add pseudo-OOD variants to see whether they agree with it."
            )
        with st.spinner(f"Scoring {method.label}'s candidates on the test sets…"):
            table = tuning.points_table(found, method, result)
        shown = "FPR95" if objective == "fpr95" else "AUROC"
        test_column = f"test {shown}"
        best_frame = (
            table.loc[[table["test AUROC"].idxmax()]] if test_column in table else None
        )

        def marks(frame: pd.DataFrame, name: str, values: dict) -> pd.DataFrame:
            return frame[frame[name] == values[name]]

        section(
            f"{method.label}: validation and test along each parameter",
            "profile",
            level="subheader",
        )
        st.caption(
            "Each curve varies one parameter with the others at their tuned values. ★ tuned (validation best), "
            "◆ default, ✕ test-best (the oracle: never used for the choice)."
        )
        columns = st.columns(max(1, len(result.chosen)))
        for column, name in zip(columns, result.chosen):
            others = [k for k in result.chosen if k != name]
            along = table
            for other in others:
                along = along[along[other] == result.chosen[other]]
            along = along.sort_values(name)
            figure = go.Figure()
            figure.add_scatter(
                x=along[name],
                y=along["validation"],
                name=f"validation {shown}",
                mode="lines+markers",
                line={"color": "#1f77b4"},
            )
            if test_column in along:
                figure.add_scatter(
                    x=along[name],
                    y=along[test_column],
                    name=f"test {shown}",
                    mode="lines+markers",
                    line={"color": "#ff7f0e", "dash": "dot"},
                )
            for label, row, y, symbol, size, colour in (
                ("tuned", marks(along, name, result.chosen), "validation", "star", 16, "#2ca02c"),
                ("default", marks(along, name, result.default), "validation", "diamond", 12, "#7f7f7f"),
                ("test-best", best_frame, test_column, "x", 13, "#d62728"),
            ):  # fmt: skip
                if row is not None and y in row:
                    figure.add_scatter(
                        x=row[name],
                        y=row[y],
                        name=label,
                        mode="markers",
                        marker={"symbol": symbol, "size": size, "color": colour},
                    )
            figure.update_layout(
                title=name,
                height=330,
                margin={"t": 40, "b": 30},
                xaxis_title=name,
                xaxis_type=axis_type(along[name]),
                yaxis_title=f"mean {shown} (%)",
            )
            show(figure, key=f"tune_profile_{name}", where=column)
        if test_column in table:
            scatter = go.Figure(
                go.Scatter(
                    x=table["validation"],
                    y=table["test AUROC"],
                    mode="markers",
                    text=[
                        tuning.described(row[list(result.chosen)].to_dict())
                        for _, row in table.iterrows()
                    ],
                    name="candidates",
                )
            )
            scatter.update_layout(
                title="Every candidate: validation objective vs test AUROC",
                xaxis_title=f"validation {objective}",
                yaxis_title="test mean AUROC (%)",
                height=330,
                margin={"t": 40, "b": 30},
            )
            show(scatter, key="tune_scatter")

    if results:
        section("Leaderboard of tuned methods", "leaderboard", level="subheader")
        if found.test is None:
            st.caption(
                "This workspace has no test OOD sets, so there is nothing to measure the regret on."
            )
        with st.spinner(
            f"Measuring {len(results)} tuned choice{'s' * (len(results) > 1)} on the test sets (regret)…"
        ):
            leaderboard = tuning.regret_table(found, list(results.values()))
        st.dataframe(
            leaderboard.round(2),
            hide_index=True,
            width="stretch",
            height="content",
            column_order=[c for c in LEADERBOARD_COLUMNS if c in leaderboard],
            column_config={
                "method": st.column_config.TextColumn(pinned=True, width="medium"),
                "tuned": st.column_config.TextColumn(width="large"),
                "test-best at": st.column_config.TextColumn(width="large"),
                "search": st.column_config.TextColumn(width="medium"),
            },
            key="tune_leaderboard",
        )
        if "regret" in leaderboard:
            count = len(leaderboard)
            st.caption(
                f"Mean regret {leaderboard['regret'].mean():.2f} AUROC points over {count} "
                f"method{'s' * (count > 1)}; "
                f"median validation↔test rank correlation {leaderboard['rank corr'].median():.2f}. Test metrics are "
                "on the ID test rows left after holding out the validation rows. **worst set Δ**: the test set the "
                "tuned values lower most against the defaults, and by how much."
            )
            given_up = leaderboard[leaderboard["worst set Δ"] < -GIVEN_UP]
            if len(given_up):
                st.warning(
                    f"The mean hides {len(given_up)} method{'s' * (len(given_up) > 1)} whose tuned values lose more "
                    f"than {GIVEN_UP:g} AUROC points on one test set: "
                    + ", ".join(
                        f"{row['method']} ({row['worst set']} {row['worst set Δ']:+.1f})"
                        for _, row in given_up.iterrows()
                    )
                    + ". One validation set carries one kind of shift. Adding pseudo-OOD variants to it, under "
                    "'never below the default on any validation set', guards each kind (on the demo: no method "
                    "loses more than 5 points on a test set, at a mean regret of 6.3 instead of 1.0)."
                )
        with tempfile.TemporaryDirectory() as folder:
            path = tuning.save(
                Path(folder) / "tuned.json", features, protocol, list(results.values())
            )
            document = path.read_text()
        download, apply = st.columns(2)
        download.download_button(
            "Download tuned.json",
            document,
            "tuned.json",
            "application/json",
            key="tune_download",
            help="Reuse with: python -m ood_core evaluate … --config tuned.json",
        )
        if apply.button("Use the tuned values on Compare", key="tune_apply"):
            hand_to_compare(
                {name: r.chosen for name, r in results.items()}, features.blocks
            )

    with st.expander("Load a tuned.json (from the CLI or another session)"):
        upload = st.file_uploader("tuned.json", type=["json"], key="tune_upload")
        if upload is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "tuned.json"
                path.write_bytes(upload.getvalue())
                try:
                    loaded = tuning.load(path, features)
                except OODLabError as exc:
                    st.error(plain(exc, limit=1000))
                else:
                    st.markdown(
                        "Tuned under: "
                        + plain(loaded.protocol.describe(), limit=600)
                        + f"; objective {loaded.objective}."
                    )
                    st.code(json.dumps(loaded.values, indent=1), language="json")
                    if st.button(
                        "Use these values on Compare", key="tune_apply_loaded"
                    ):
                        hand_to_compare(loaded.values, features.blocks)


run_page(main)
