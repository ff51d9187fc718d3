"""Local Background features: fine-tune the classifier to shrink background features, then compare before/after."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

from dataclasses import replace

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from ood_core import observations as notes
from ood_core.scores import get_method
from ood_core.scores.method import Param
from ood_core.tables import background_runs, paired_before_after, seed_deltas
from ood_core.training import finetune
from ood_core.training.background import BackgroundSettings
from ood_core.workspace import Workspace, load_workspace
from pages.ui.cards import observations
from pages.ui.charts import colour, show
from pages.ui.controls import slider
from pages.ui.sections import about, section
from pages.ui.shell import run_page
from pages.ui.sidebar import needs_images, require_features, workspace
from pages.ui.state import reset_button

COMPARED = ("energy", "nap", "featurenorm")
ALPHA = Param(
    "alpha",
    BackgroundSettings().alpha,
    0.0,
    2.0,
    0.05,
    "Weight of the mean background-feature norm in the loss; α = 0 is plain fine-tuning (a control).",
)
EPOCHS = Param("epochs", BackgroundSettings().epochs, 1, 10, 1, kind="int")


def main() -> None:
    st.title("Local Background features")
    reset_button("background", ("bg_alpha", "bg_k", "bg_epochs"))
    with about():
        st.markdown(
            "OOD images often share *background* with ID images — sky, texture, empty paper. If the network's local "
            "features at background positions of ID images are pushed towards zero norm during training, the same "
            "background in an OOD image contributes little, and (the paper's claim) the model grows less confident on it. "
            "Fine-tune the current model here and compare Energy, NAP and FeatureNorm before and after, and against plain "
            "fine-tuning with α = 0 (the control)."
        )
        st.latex(
            r"\mathcal{L}=\mathrm{CE}(f(x),y)+\alpha\cdot\frac{1}{k}\sum_{(i,j)\in \mathrm{low}_k(\mathrm{CAM})}"
            r"\lVert f_{ij}\rVert_2,\qquad \mathrm{CAM}_{ij}=w_{\hat y}^\top f_{ij}"
        )
        st.caption(
            "Paper: [Local Background Features Matter in Out-of-Distribution Detection]"
            "(https://arxiv.org/abs/2510.12259) (2025). **Our interpretation of an abstract-only paper:** background "
            "positions = the k lowest class-activation positions of the last feature map; the paper's exact choice "
            "may differ. Scores: higher = more ID."
        )
    features = require_features()
    needs_images(features, "fine-tuning", stop=True)
    ws = workspace()
    base = ws.model
    last_map = features.id_test.blocks[-1]
    if features.id_train is None:
        st.info("Fine-tuning needs the ID train split; this ID dataset has none.")
        st.stop()

    section("1 · Fine-tune", "fine-tune")
    columns = st.columns(3)
    alpha = slider("α (background weight)", ALPHA, "bg_alpha", where=columns[0])
    positions = finetune.last_map_positions(base)
    k = slider(
        "k (background positions per image)",
        Param(
            "k",
            min(BackgroundSettings().k, positions),
            1,
            min(32, positions),
            1,
            f"How many of the lowest-CAM positions of {last_map}'s map ({positions} positions) count as "
            "background.",
            kind="int",
        ),
        "bg_k",
        where=columns[1],
    )
    epochs = slider("Epochs", EPOCHS, "bg_epochs", where=columns[2])
    settings = BackgroundSettings(alpha=alpha, k=k, epochs=epochs)
    seeds = finetune.SEEDS

    def names_of(chosen: BackgroundSettings) -> list[str]:
        return [
            finetune.background_model_name(base, replace(chosen, seed=seed))
            for seed in seeds
        ]

    def fine_tune_and_extract(chosen: BackgroundSettings) -> list:
        """Fine-tune the base model with ``chosen`` settings once per seed (each registered as a model) and extract
        its features, with progress; the loaded workspaces."""
        loaded = []
        for seed, model in zip(seeds, names_of(chosen)):
            with st.status(
                f"Seed {seed}: fine-tuning {base} into {model} …", expanded=True
            ) as status:
                bar = st.progress(0.0)
                finetune.background_fine_tune(
                    base,
                    ws.id_dataset,
                    replace(chosen, seed=seed),
                    lambda step, steps, loss, bar=bar: bar.progress(
                        step / steps, f"step {step}/{steps} · loss {loss:.3f}"
                    ),
                )
                status.update(label=f"Seed {seed}: extracting features of {model} …")
                loaded.append(
                    load_workspace(
                        Workspace(model, ws.id_dataset, ws.ood_datasets),
                        progress=lambda label, done, total, bar=bar: bar.progress(
                            done / total, f"{label} — {done}/{total}"
                        ),
                    )
                )
                status.update(label=f"Seed {seed}: {model} is ready", state="complete")
        return loaded

    with st.spinner(f"Reading the fine-tuned models' features ({len(seeds)} seeds)…"):
        afters = background_runs(features, settings)
    if afters is None:
        st.info(
            f"The fine-tune is repeated over {len(seeds)} seeds, so that what α changes can be told from what "
            "chance changes (demo: ≈ 15 s per seed to fine-tune and extract)."
        )
        if not st.button(
            f"Fine-tune and extract ({len(seeds)} seeds)",
            type="primary",
            key="bg_train",
        ):
            st.stop()
        afters = fine_tune_and_extract(settings)

    names = names_of(settings)
    reports = [finetune.report(model) for model in names]
    st.caption(
        f"`{names[0]}` and its other seeds: fine-tuned for {epochs} epochs in "
        f"{sum(r['seconds'] for r in reports):.1f} s in all. Each is a model like any other: pick it in the "
        "sidebar to explore it on every page."
    )

    section("2 · Before and after", "before-after")
    accuracies = np.array([a.accuracy for a in afters])
    cards = st.columns(3)
    cards[0].metric(
        "ID accuracy after",
        f"{accuracies.mean():.1f} %",
        f"{accuracies.mean() - features.accuracy:+.1f} vs before (sd {accuracies.std(ddof=1):.1f} over seeds)",
        delta_color="off",
    )
    cards[1].metric(
        "Cross-entropy (last epoch)",
        f"{np.mean([r['cross_entropy'][-1] for r in reports]):.3f}",
    )
    cards[2].metric(
        "Background norm (last epoch)",
        f"{np.mean([r['background_norm'][-1] for r in reports]):.3f}",
    )

    control_settings = BackgroundSettings(alpha=0.0, k=k, epochs=epochs)
    with st.spinner(
        f"Scoring {len(COMPARED)} methods before and after, on every seed's model and its control…"
    ):
        controls = background_runs(features, control_settings) if alpha > 0 else None
        methods = [get_method(m) for m in COMPARED]
        table = paired_before_after(features, afters, methods, controls or ())
        deltas = seed_deltas(features, afters, methods)
    observations(
        notes.background(
            alpha,
            deltas,
            seed_deltas(features, controls, methods) if controls else None,
        ),
        "background",
    )
    if (
        alpha > 0
        and controls is None
        and st.button(
            f"Train the α = 0 control (k = {k}, {epochs} epochs, {len(seeds)} seeds)",
            key="bg_control",
        )
    ):
        fine_tune_and_extract(control_settings)
        st.rerun()
    st.dataframe(
        table.style.format(precision=1),
        hide_index=True,
        width="stretch",
        key="bg_table",
    )
    st.caption(
        f"AUROC (%) per method and OOD set, paired: before → after fine-tuning with α, the mean over {len(seeds)} "
        "seeds with its standard deviation and each seed's change"
        + (
            ", and against the α = 0 control (plain fine-tuning with the same k, epochs and seeds)."
            if controls
            else "."
        )
    )
    spread = pd.DataFrame(
        [
            {"method": label, "run": f"α = {alpha:g}", "seed": seed, "Δ mean AUROC": v}
            for label, values in deltas.items()
            for seed, v in zip(seeds, values)
        ]
        + (
            [
                {
                    "method": label,
                    "run": "α = 0 control",
                    "seed": seed,
                    "Δ mean AUROC": v,
                }
                for label, values in seed_deltas(features, controls, methods).items()
                for seed, v in zip(seeds, values)
            ]
            if controls
            else []
        )
    )
    strip = px.strip(
        spread,
        x="method",
        y="Δ mean AUROC",
        color="run",
        hover_data=["seed"],
        title="Change of the mean AUROC, one point per seed",
    )
    strip.add_hline(y=0, line_dash="dot")
    strip.update_layout(height=320, margin={"t": 40, "b": 30})
    show(strip, key="bg_seeds")
    st.download_button(
        "Download metrics (CSV)", table.to_csv(index=False), "background_metrics.csv"
    )
    name = names[0]

    @st.cache_data(show_spinner="Measuring background-feature norms …", max_entries=8)
    def norms(base: str, name: str, sets_key: str, k: int) -> pd.DataFrame:
        sets = {"ID": features.id_test, **features.ood}
        frame = finetune.background_norm_frame([base, name], sets, k)
        return frame.replace({"model": {base: "before", name: "after"}})

    frame = norms(base, name, "|".join(features.ood), k)
    figure = px.box(
        frame,
        x="set",
        y="norm",
        color="model",
        points=False,
        title=f"Mean norm of the {k} lowest-CAM local features of {last_map} (≤ 256 images per set)",
        color_discrete_map={"before": "#9e9e9e", "after": colour("ID")},
    )
    figure.update_layout(height=380, margin={"t": 50, "b": 30})
    show(figure, key="bg_norms")


run_page(main)
