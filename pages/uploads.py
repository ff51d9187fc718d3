"""Try your own images: score uploads with every method and see where they fall among ID and OOD."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from ood_core import tables
from ood_core.engine.features import in_memory_features, model_named
from ood_core.errors import OODLabError
from ood_core.inputs.uploads import (
    KEEP_SIDE,
    MAX_FILE_BYTES,
    MAX_IMAGES,
    MAX_PIXELS,
    read_uploads,
)
from ood_core.pictures.gallery import OVERLAYS, overlay_inputs
from ood_core.scores import METHODS
from ood_core.scores.heatmap import HEATMAP
from ood_core.tables import FLAG_PERCENTILE, placement
from pages.common import (
    ensure_app_shell,
    histogram_figure,
    needs_images,
    require_features,
    reset_button,
    workspace,
)

ensure_app_shell()
st.title("Try your own images")
reset_button("uploads", ("upload_method", "upload_overlay", "upload_opacity"))
st.markdown(
    "Upload a few images and see how every detector judges them against the current ID set: each score is placed "
    f"among the ID test scores (its **ID percentile**); below the {FLAG_PERCENTILE:g}th percentile — the threshold "
    "that keeps 95% of ID images — an image is flagged **OOD-like**. Images go through the model's own transform "
    "(grayscale, colour, transparency and any size are handled)."
)
st.caption(
    f"PNG or JPEG files, or a zip of them: at most {MAX_IMAGES} images, {MAX_FILE_BYTES / 2**20:.0f} MiB per file "
    f"and {MAX_PIXELS / 1e6:.0f} megapixels per image (larger images are shrunk to {KEEP_SIDE} px after decoding). "
    "Uploads stay in memory, are decoded once, and are freed when you remove them; nothing is written to disk."
)
features = require_features()
needs_images(features, "scoring uploads (the model itself is synthetic)", stop=True)
ws = workspace()
model = model_named(ws.model)

files = st.file_uploader(
    "Images",
    type=["png", "jpg", "jpeg", "zip"],
    accept_multiple_files=True,
    key="upload_files",
)
if not files:
    st.session_state.pop("upload_decoded", None)  # removed uploads free their pixels
    st.info("Drop PNG/JPEG images or a zip here to score them.")
    st.stop()
upload_key = (ws.model, *((f.file_id, f.name, f.size) for f in files))
decoded = st.session_state.get("upload_decoded")
if decoded is None or decoded[0] != upload_key:
    st.session_state.pop(
        "upload_decoded", None
    )  # drop the previous upload before decoding the new one
    uploads = read_uploads([(f.name, f.getvalue()) for f in files])
    try:
        scored = in_memory_features(model, uploads.images) if uploads.images else None
    except OODLabError as exc:
        st.error(str(exc))
        st.stop()
    st.session_state["upload_decoded"] = (
        upload_key,
        uploads,
        scored,
    )  # decoded once, not on every rerun
_, uploads, scored = st.session_state["upload_decoded"]
if uploads.rejected:
    st.warning(f"{len(uploads.rejected)} file(s) were not used:")
    st.dataframe(
        pd.DataFrame(uploads.rejected, columns=["file", "reason"]),
        hide_index=True,
        width="stretch",
    )
if not uploads.images:
    st.stop()

methods = [m for m in METHODS.values() if m.cost == "cache"]
table = placement(features, scored, list(uploads.images), methods)

st.header("1 · Every method's verdict")
percentiles = table.pivot(index="method", columns="image", values="ID percentile")
percentiles = percentiles.loc[[m.label for m in methods], list(uploads.images)]
flagged = (percentiles < FLAG_PERCENTILE).sum()
st.dataframe(
    pd.DataFrame(
        {
            "image": flagged.index,
            "flagged OOD-like by": [f"{n} of {len(methods)} methods" for n in flagged],
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


@st.fragment
def placement_section() -> None:
    st.header("2 · Where they fall")
    labels = {m.label: m for m in methods}
    method = labels[
        st.selectbox(
            "Method", list(labels), index=list(labels).index("NAP"), key="upload_method"
        )
    ]
    id_scores, ood_scores = features.scores(method)
    figure = histogram_figure(
        tables.binned({"ID": id_scores, **ood_scores}), f"{method.label} scores"
    )
    for row in table[table["method"] == method.label].itertuples():
        figure.add_vline(x=row.score, line_dash="dot", line_color="#d62728")
        figure.add_annotation(
            x=row.score, y=1, yref="paper", text=row.image[:18], showarrow=False
        )
    st.plotly_chart(figure, width="stretch", key="upload_histogram")


@st.fragment
def overlay_section() -> None:
    st.header("3 · Overlays")
    columns = st.columns(3)
    state = (
        features.state(HEATMAP, fit=False) if features.id_train is not None else None
    )
    decoder = state.trained if state is not None else None
    kinds = [k for k in OVERLAYS if decoder is not None or k != "decoder heatmap"]
    kind = columns[0].radio(
        "Overlay",
        kinds,
        key="upload_overlay",
        help="The decoder heatmap appears once a decoder with default settings is trained on the Heatmaps page.",
    )
    blocks = list(model.probes.blocks)
    block = columns[1].selectbox(
        "Block", blocks, index=len(blocks) - 1, key="upload_block"
    )
    opacity = columns[2].slider("Opacity", 0.0, 1.0, 0.6, 0.05, key="upload_opacity")
    inputs = torch.stack([model.transform(image) for image in uploads.images.values()])
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
