"""PNG exports for slides: the contact sheet places every picture, the cards picture has one card per set."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image

from ood_core.pictures.export import (
    CAPTION_HEIGHT,
    CELL,
    LABEL_WIDTH,
    contact_sheet,
    metric_cards,
)


def test_contact_sheet_places_each_picture_in_its_row_and_column():
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    green = np.zeros((8, 8, 3), np.uint8)
    green[..., 1] = 255
    png = contact_sheet([("ID", [red, green], ["a", "b"]), ("OOD", [green], ["c"])])
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert sheet.shape == (2 * (CELL + CAPTION_HEIGHT), LABEL_WIDTH + 2 * CELL, 3)
    centre = CELL // 2
    assert tuple(sheet[centre, LABEL_WIDTH + centre]) == (
        255,
        0,
        0,
    )  # row 0, column 0: red
    assert tuple(sheet[centre, LABEL_WIDTH + CELL + centre]) == (
        0,
        255,
        0,
    )  # row 0, column 1: green
    below = CELL + CAPTION_HEIGHT + centre
    assert tuple(sheet[below, LABEL_WIDTH + centre]) == (
        0,
        255,
        0,
    )  # row 1, column 0: green
    assert tuple(sheet[below, LABEL_WIDTH + CELL + centre]) == (
        255,
        255,
        255,
    )  # row 1 has one picture


def test_metric_cards_picture_has_one_card_per_set():
    table = pd.DataFrame(
        {
            "ood_set": ["letters", "noise", "mean"],
            "AUROC": [91.6, 99.9, 95.7],
            "FPR95": [40.0, 0.0, 20.0],
        }
    )
    picture = Image.open(io.BytesIO(metric_cards(table, "NAP-Energy")))
    assert picture.size == (3 * 190, 160)
    pixels = np.asarray(picture.convert("L"))
    assert (pixels < 128).any() and (
        pixels == 255
    ).mean() > 0.5  # text on a white card row
