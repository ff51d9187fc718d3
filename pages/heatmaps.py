"""Heatmaps: the Heatmap-based OOD decoder, Grad-CAM and NAP's channel peaks over ID and OOD images."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from ood_core import observations as notes
from ood_core import tables
from ood_core.inputs.variants import JIGSAW_DEFAULT_N, jigsaw_name
from ood_core.pictures.export import contact_sheet, png
from ood_core.pictures.gallery import OVERLAYS, OverlayMaps, image_maps
from ood_core.pictures.overlays import colour_scale
from ood_core.scores import get_method
from ood_core.scores.heatmap import DEFAULT_OUTLIERS, HEATMAP, SEEDS
from pages.ui.boundary import fragment
from pages.ui.cards import observations
from pages.ui.charts import histogram_figure, show
from pages.ui.controls import OPACITY, param_controls, radio, selectbox, slider
from pages.ui.sections import about, section
from pages.ui.shell import run_page
from pages.ui.sidebar import entries_key, needs_images, require_features, workspace
from pages.ui.state import reset_button

COMPARED = ("msp", "energy", "nap", "knn", "mahalanobis")


GALLERY_WIDTH = 112  # px per gallery picture (drawn at 128, sent at this width)


def main() -> None:
    st.title("Heatmaps — where an image looks OOD")
    reset_button(
        "heatmaps",
        (
            "heatmap_oe",
            "heatmap:",
            "heatmap_overlay",
            "heatmap_block",
            "heatmap_opacity",
            "heatmap_order",
        ),
    )
    with about():
        st.markdown(
            "A small **decoder** learns to paint a heatmap from the classifier's penultimate features and its prediction: "
            "nothing for ID images, and for outliers the difference to the nearest ID training image of the same class. "
            "The heatmap's strength is the OOD score, and its shape shows *which regions* look foreign. Beside it: "
            "Grad-CAM (where the predicted class's evidence sits) and the peaks that NAP's max/mean ratio reads."
        )
        st.latex(
            r"h=\tanh G\big([z',\,\mathrm{onehot}(\hat y)]\big),\quad "
            r"\mathcal{L}=\overline{(1+5|t|)\,(x+h-t)^2},\quad "
            r"S(x)=-\frac{1}{HW}\sum_{i,j}\max_c |h_{c,ij}|"
        )
        st.caption(
            "Paper: [Heatmap-based Out-of-Distribution Detection](https://arxiv.org/abs/2211.08115) (WACV 2023). "
            "z′ = penultimate features divided by their ID-train maximum; target t = x for ID images, the nearest "
            "same-class ID image (Euclidean on z) for outlier-exposure images. Scores: higher = more ID."
        )
    features = require_features()
    needs_images(
        features, "the decoder (it trains on images) and its galleries", stop=True
    )
    ws = workspace()
    sets = {"ID": features.id_test, **features.ood}

    section("1 · Train the decoder", "decoder")
    jigsaw = jigsaw_name(ws.id_dataset, JIGSAW_DEFAULT_N)
    left, right = st.columns([2, 1])
    outlier_set = selectbox(
        "Outlier-exposure set",
        [jigsaw, *features.ood],
        key="heatmap_oe",
        help="Images the decoder learns to paint. The default, jigsaw-shuffled ID training images, is disjoint "
        "from every test OOD set; an OOD set chosen here is left out of the evaluation below.",
        where=left,
    )
    with right:
        epochs = param_controls(
            HEATMAP,
            [],
            "heatmap",
            only=("epochs",),
            labels={"epochs": "Epochs (at most)"},
        )["epochs"]
    if features.id_train is None:
        st.info("The decoder trains on the ID train split; this ID dataset has none.")
        st.stop()
    params = {
        "outliers": DEFAULT_OUTLIERS if outlier_set == jigsaw else outlier_set,
        "epochs": epochs,
    }
    runs = [{**params, "seed": seed} for seed in SEEDS]
    states = [features.state(HEATMAP, run, fit=False) for run in runs]
    if any(state is None for state in states):
        notice = st.empty()
        notice.info(
            f"The decoder is trained {len(SEEDS)} times (seeds {', '.join(map(str, SEEDS))}), so that its score can "
            "be told from the luck of one training run (demo: ≈ 25 s each on 2 CPU cores). Until then, the gallery "
            "below shows Grad-CAM and NAP peaks, sorted by the Energy score."
        )
        if st.button(
            f"Train the decoder ({len(SEEDS)} seeds)",
            type="primary",
            key="heatmap_train",
        ):
            notice.empty()
            for index, run in enumerate(runs):
                if states[index] is not None:
                    continue
                with st.status(
                    f"Training the heatmap decoder, seed {run['seed']} …", expanded=True
                ) as status:
                    bar, chart = st.progress(0.0), st.empty()
                    curve: list[dict] = []

                    def report_epoch(
                        epoch,
                        total,
                        train_loss,
                        val_loss,
                        bar=bar,
                        chart=chart,
                        curve=curve,
                    ):
                        bar.progress(epoch / total, f"epoch {epoch}/{total}")
                        curve.extend(
                            [
                                {"epoch": epoch, "loss": train_loss, "split": "train"},
                                {"epoch": epoch, "loss": val_loss, "split": "held out"},
                            ]
                        )
                        chart.line_chart(
                            pd.DataFrame(curve), x="epoch", y="loss", color="split"
                        )

                    states[index] = features.state(HEATMAP, run, progress=report_epoch)
                    status.update(
                        label=f"Decoder (seed {run['seed']}) trained and cached",
                        state="complete",
                    )
    state = states[0] if all(s is not None for s in states) else None
    params = runs[0]

    if (
        state is None
    ):  # the gallery still shows Grad-CAM and NAP peaks, ranked by Energy
        decoder, score_name = None, "Energy score"
        id_scores, ood_scores = features.scores(get_method("energy"))
        scores_by_set = {"ID": id_scores, **ood_scores}
    else:
        decoder, score_name = state.trained, "heatmap score"
        history = state.history
        st.caption(
            f"Trained on {history['id_samples']:,} ID and {history['oe_samples']:,} outlier-exposure images from "
            f"**{outlier_set}**; best held-out loss at epoch {history['best_epoch']} of {history['epochs_run']} "
            f"({history['seconds']:.1f} s)."
        )
        loss = pd.DataFrame(
            {
                "epoch": np.arange(1, history["epochs_run"] + 1),
                "train": history["train_loss"],
                "held out": history["validation_loss"],
            }
        ).melt("epoch", var_name="split", value_name="loss")
        figure = px.line(loss, x="epoch", y="loss", color="split", title="Decoder loss")
        figure.update_layout(height=280, margin={"t": 40, "b": 30})
        show(figure, key="heatmap_loss")

        section("2 · The heatmap score next to the others", "score")
        evaluated = {name: f for name, f in features.ood.items() if name != outlier_set}
        if len(evaluated) < len(features.ood):
            st.caption(
                f"**{outlier_set}** is the outlier-exposure set, so it is not scored."
            )
        id_scores, ood_scores = features.scores(HEATMAP, params)
        scores_by_set = {"ID": id_scores, **ood_scores}
        compared = [(HEATMAP, params), *[(get_method(name), {}) for name in COMPARED]]
        table = tables.comparison_without(features, compared, outlier_set)
        seeds = tables.seed_table(features, HEATMAP, runs, outlier_set)
        auroc = table.pivot(index="method", columns="ood_set", values="AUROC")
        columns = [*evaluated, "mean"] if len(evaluated) > 1 else list(evaluated)
        auroc = auroc[columns].loc[table["method"].unique()]
        shown = auroc.map(lambda v: f"{v:.1f}")
        shown.loc[HEATMAP.label] = [
            f"{seeds.loc['mean', c]:.1f} ± {seeds.loc['sd', c]:.1f}" for c in columns
        ]
        st.dataframe(shown, width="stretch")
        st.caption(
            f"AUROC (%). {HEATMAP.label}: mean ± sd over {len(SEEDS)} training runs (seeds "
            + ", ".join(
                f"{s}: {seeds.loc[f'seed {s}', columns[-1]]:.1f}" for s in SEEDS
            )
            + f" {'mean' if len(columns) > 1 else columns[0]} AUROC); the gallery uses seed {SEEDS[0]}'s decoder."
        )
        observations(notes.best_methods(table), "heatmaps")
        histogram = tables.binned(
            {name: scores_by_set[name] for name in ["ID", *evaluated]}
        )
        show(
            histogram_figure(
                histogram, "Heatmap score per set", "S(x) = −mean max_c |h|"
            ),
            key="heatmap_histogram",
        )
        st.download_button(
            "Download metrics (CSV)",
            table.to_csv(index=False),
            "heatmap_metrics.csv",
            key="heatmap_csv",
        )

    @st.cache_resource(max_entries=64, show_spinner="Computing the heat maps…")
    def maps(
        key: str,
        name: str,
        rows: tuple[int, ...],
        kind: str,
        block: str,
        decoder_id: int,
        _features,
        _decoder,
    ) -> OverlayMaps:
        """One gallery row's maps (Grad-CAM, peaks, decoder heat), once per server for every opacity."""
        return image_maps(_features, rows, kind, block=block, decoder=_decoder)

    @st.cache_resource(max_entries=256, show_spinner=False)
    def overlay_pictures(
        key: str,
        name: str,
        rows: tuple[int, ...],
        kind: str,
        opacity: float,
        block: str,
        decoder_id: int,
        _features,
        _decoder,
    ) -> list[bytes]:
        """PNGs of one gallery row at ``opacity``, drawn once per server for each setting (every student's gallery)."""
        if not rows:
            return []
        drawn = maps(key, name, rows, kind, block, decoder_id, _features, _decoder)
        return [png(picture, GALLERY_WIDTH) for picture in drawn.draw(opacity)]

    @fragment
    def gallery() -> None:
        section(f"{3 if decoder is not None else 2} · Gallery", "gallery")
        columns = st.columns(4)
        kind = radio(
            "Overlay",
            OVERLAYS if decoder is not None else OVERLAYS[1:],
            key="heatmap_overlay",
            help="Decoder heatmap: |h| on a fixed scale. Grad-CAM: predicted class, scaled per image. "
            "NAP peaks: where the 8 most peaked channels of the block fire.",
            where=columns[0],
        )
        blocks = features.id_test.blocks
        block = selectbox(
            "Block (Grad-CAM, NAP peaks)",
            blocks,
            index=len(blocks) - 1,
            key="heatmap_block",
            where=columns[1],
        )
        opacity = slider("Opacity", OPACITY, "heatmap_opacity", where=columns[2])
        order = radio(
            f"Sort by {score_name}",
            ("most OOD-like first", "most ID-like first"),
            key="heatmap_order",
            where=columns[3],
        )
        count = 6
        key = entries_key(features)
        sheet = []
        for name, f in sets.items():
            scores = scores_by_set[name]
            ranked = np.argsort(scores, kind="stable")
            rows = (ranked if order.startswith("most OOD") else ranked[::-1])[:count]
            pictures = overlay_pictures(
                key,
                name,
                tuple(int(r) for r in rows),
                kind,
                opacity,
                block,
                id(decoder),
                f,
                decoder,
            )
            label = ws.id_dataset if name == "ID" else name
            st.markdown(f"**{label}**")
            captions = [f"S = {scores[r]:.3f}" for r in rows]
            st.image(
                pictures, width=GALLERY_WIDTH, caption=captions, output_format="PNG"
            )
            sheet.append((label, pictures, captions))
        st.download_button(
            "Gallery (PNG)",
            lambda: contact_sheet(sheet),  # drawn when downloaded, not on every move
            f"gallery_{kind.replace(' ', '_')}.png",
            "image/png",
            key="export_heatmap_gallery",
        )
        if kind in SCALES:
            colormap, meaning = SCALES[kind]
            st.image(colour_scale(colormap), width=256, output_format="PNG")
            st.caption(meaning)

    SCALES = {
        "decoder heatmap": (
            "inferno",
            (
                "Colour scale of the decoder overlay: max_c |h| from 0 (left: the image shows untouched) to 1 (right), "
                "the same fixed scale for every image."
            ),
        ),
        "Grad-CAM": (
            "jet",
            "Colour scale of Grad-CAM: 0 (left) to the image's own maximum (right); each image is scaled separately.",
        ),
    }

    gallery()


run_page(main)
