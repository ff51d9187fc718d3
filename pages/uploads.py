"""Try your own images: score uploads with every method and see where they fall among ID and OOD."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

from collections.abc import Iterator

import pandas as pd
import streamlit as st
import torch
from streamlit.runtime.scriptrunner import get_script_run_ctx

from ood_core import tables
from ood_core.engine.features import in_memory_features, model_named
from ood_core.inputs.uploads import (
    KEEP_SIDE,
    MAX_FILE_MIB,
    MAX_IMAGES,
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_FILES,
    read_uploads,
)
from ood_core.pictures.gallery import OVERLAYS, overlay_inputs
from ood_core.scores import METHODS
from ood_core.scores.heatmap import HEATMAP
from ood_core.system import trim_memory
from ood_core.tables import FLAG_PERCENTILE, placement
from pages.ui.boundary import fragment
from pages.ui.charts import histogram_figure, mark_values, show
from pages.ui.controls import OPACITY, radio, selectbox, slider
from pages.ui.sections import prose, section
from pages.ui.shell import run_page
from pages.ui.sidebar import needs_images, require_features, workspace
from pages.ui.state import reset_button


def taken(files: list) -> Iterator[tuple[str, bytes]]:
    """Each uploaded file's name and bytes, one at a time; once read, a file is dropped from Streamlit's upload
    store (which would otherwise keep its bytes for the whole session)."""
    ctx = get_script_run_ctx()
    for file in files:
        yield file.name, file.getvalue()
        if ctx is not None:
            ctx.uploaded_file_mgr.remove_file(ctx.session_id, file.file_id)
        file.close()


def main() -> None:
    st.title("Try your own images")
    reset_button("uploads", ("upload_method", "upload_overlay", "upload_opacity"))
    prose(
        "Upload a few images and see how every detector judges them against the current ID set: each score is placed "
        f"among the ID test scores (its **ID percentile**); below the {FLAG_PERCENTILE:g}th percentile — the threshold "
        "that keeps 95% of ID images — an image is flagged **OOD-like**. Images go through the model's own transform "
        "(grayscale, colour, transparency and any size are handled)."
    )
    st.caption(
        f"PNG or JPEG files, or a zip of them: at most {MAX_UPLOAD_FILES} files and {MAX_UPLOAD_BYTES / 2**20:.0f} MB "
        f"per upload, {MAX_FILE_MIB} MB per file, {MAX_IMAGES} images and {MAX_PIXELS / 1e6:.0f} megapixels per image "
        f"(kept shrunk to {KEEP_SIDE} px). Each file is read once and freed right away; the images stay in memory "
        "until you clear them or close the tab, and nothing is written to disk."
    )
    features = require_features()
    needs_images(features, "scoring uploads (the model itself is synthetic)", stop=True)
    ws = workspace()
    model = model_named(ws.model)

    generation = st.session_state.get("_upload_generation", 0)
    files = st.file_uploader(
        "Images",
        type=["png", "jpg", "jpeg", "zip"],
        accept_multiple_files=True,
        key=f"_uploader_{generation}",  # a new, empty widget once the files are read
        max_upload_size=MAX_FILE_MIB,
    )
    if files:
        st.session_state.pop("_upload_images", None)  # the previous upload goes first
        st.session_state.pop("_upload_scored", None)
        st.session_state["_upload_images"] = read_uploads(taken(files))
        st.session_state["_upload_generation"] = generation + 1
        del files
        trim_memory()
        st.rerun()
    uploads = st.session_state.get("_upload_images")
    if uploads is None:
        st.info("Drop PNG/JPEG images or a zip here to score them.")
        return  # (not st.stop: a stopped run keeps stale widget state, here the read files)
    if st.button("Clear the uploaded images", key="upload_clear"):
        st.session_state.pop("_upload_images", None)
        st.session_state.pop("_upload_scored", None)
        trim_memory()
        st.rerun()
    if uploads.rejected:
        st.warning(f"{len(uploads.rejected)} file(s) were not used:")
        st.dataframe(
            pd.DataFrame(uploads.rejected, columns=["file", "reason"]),
            hide_index=True,
            width="stretch",
        )
    if not uploads.images:
        return
    scored_for = st.session_state.get("_upload_scored")
    if scored_for is None or scored_for[0] != ws.model:
        scored_for = (ws.model, in_memory_features(model, uploads.images))
        st.session_state["_upload_scored"] = scored_for  # scored once per model
    scored = scored_for[1]

    methods = [m for m in METHODS.values() if m.cost == "cache"]
    table = placement(features, scored, list(uploads.images), methods)

    section("1 · Every method's verdict", "verdicts")
    percentiles = table.pivot(index="method", columns="image", values="ID percentile")
    percentiles = percentiles.loc[[m.label for m in methods], list(uploads.images)]
    flagged = (percentiles < FLAG_PERCENTILE).sum()
    st.dataframe(
        pd.DataFrame(
            {
                "image": flagged.index,
                "flagged OOD-like by": [
                    f"{n} of {len(methods)} methods" for n in flagged
                ],
                "median ID percentile": percentiles.median().round(0).to_numpy(),
            }
        ),
        hide_index=True,
        width="stretch",
        key="upload_summary",
    )
    st.dataframe(
        percentiles.style.format("{:.0f}").highlight_between(
            right=FLAG_PERCENTILE, props="background-color: #f8d7da"
        ),
        width="stretch",
        height=min(35 * (len(methods) + 1) + 3, 460),
        key="upload_verdicts",
    )
    st.caption(
        "ID percentile of each image (columns) under each method (rows, default parameters); red = OOD-like. "
        "ODIN is left out: it re-runs the model with perturbed inputs."
    )
    st.download_button(
        "Download scores (CSV)", table.to_csv(index=False), "upload_scores.csv"
    )

    @fragment
    def placement_section() -> None:
        section("2 · Where they fall", "placement")
        labels = {m.label: m for m in methods}
        method = labels[
            selectbox(
                "Method",
                list(labels),
                index=list(labels).index("NAP"),
                key="upload_method",
            )
        ]
        id_scores, ood_scores = features.scores(method)
        figure = histogram_figure(
            tables.binned({"ID": id_scores, **ood_scores}), f"{method.label} scores"
        )
        ours = table[table["method"] == method.label]
        mark_values(figure, list(ours["score"]), [name[:18] for name in ours["image"]])
        show(figure, key="upload_histogram")

    @fragment
    def overlay_section() -> None:
        section("3 · Overlays", "overlays")
        columns = st.columns(3)
        state = (
            features.state(HEATMAP, fit=False)
            if features.id_train is not None
            else None
        )
        decoder = state.trained if state is not None else None
        kinds = [k for k in OVERLAYS if decoder is not None or k != "decoder heatmap"]
        kind = radio(
            "Overlay",
            kinds,
            key="upload_overlay",
            help="The decoder heatmap appears once a decoder with default settings is trained on the Heatmaps page.",
            where=columns[0],
        )
        blocks = list(model.probes.blocks)
        block = selectbox(
            "Block", blocks, index=len(blocks) - 1, key="upload_block", where=columns[1]
        )
        opacity = slider("Opacity", OPACITY, "upload_opacity", where=columns[2])
        inputs = torch.stack(
            [model.transform(image) for image in uploads.images.values()]
        )
        pictures = overlay_inputs(
            model,
            inputs,
            scored.penultimate,
            scored.logits,
            kind,
            opacity=opacity,
            block=block,
            decoder=decoder,
        )
        predicted = scored.logits.argmax(1)
        st.image(
            pictures,
            width=128,
            caption=[
                f"{name[:20]} · class {c}" for name, c in zip(uploads.images, predicted)
            ],
            output_format="PNG",
        )

    placement_section()
    overlay_section()


run_page(main)
