"""Dataset images as PNG bytes, encoded once per server: galleries redraw on every slider move, for every student."""

from __future__ import annotations

import streamlit as st

from ood_core.engine.features import dataset_images
from ood_core.pictures.export import png


def thumbnail(dataset: str, split: str | None, row: int, width: int) -> bytes:
    """PNG bytes of the untransformed image of ``dataset:split`` at dataset row ``row``, at most ``width`` pixels
    wide (the width it is shown at, so that Streamlit sends it as it is)."""
    images, _ = dataset_images(dataset, split)
    return _encoded(dataset, split, row, width, id(images), images)


@st.cache_resource(max_entries=4096, show_spinner=False)
def _encoded(
    dataset: str, split: str | None, row: int, width: int, listing: int, _images
) -> bytes:
    """Keyed by the listing's identity as well: a dataset listed again (files changed) is encoded again."""
    return png(_images.image(row), width)
