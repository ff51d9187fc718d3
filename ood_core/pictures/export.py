"""PNG exports for slides: a gallery as one contact sheet, a row of metric cards as one picture."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

CELL = 128  # thumbnail size in the contact sheet (px)
LABEL_WIDTH = 160
CAPTION_HEIGHT = 22


def _font(size: int) -> ImageFont.ImageFont:
    """matplotlib's DejaVu Sans (always installed with it), else PIL's default."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except (ImportError, OSError):
        return ImageFont.load_default()


def png(image: Image.Image | np.ndarray, width: int | None = None) -> bytes:
    """``image`` (PIL, or a uint8 array) encoded as PNG; first scaled down (bilinear, as Streamlit would on every
    draw) to ``width`` pixels where it is wider."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, np.uint8))
    if width is not None and image.width > width:
        height = int(image.height * width / image.width)
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def contact_sheet(
    rows: Sequence[
        tuple[str, Sequence[np.ndarray | Image.Image | bytes], Sequence[str]]
    ],
) -> bytes:
    """One PNG of gallery rows: each ``(label, pictures, captions)`` becomes a labelled row of thumbnails (arrays,
    PIL images or encoded image bytes)."""
    columns = max((len(pictures) for _, pictures, _ in rows), default=0)
    height = CELL + CAPTION_HEIGHT
    sheet = Image.new(
        "RGB", (LABEL_WIDTH + columns * CELL, max(1, len(rows)) * height), "white"
    )
    draw = ImageDraw.Draw(sheet)
    label_font, caption_font = _font(16), _font(12)
    for r, (label, pictures, captions) in enumerate(rows):
        top = r * height
        draw.text((8, top + CELL // 2 - 8), label, fill="black", font=label_font)
        for c, (picture, caption) in enumerate(zip(pictures, captions)):
            if isinstance(picture, bytes):  # encoded (PNG)
                image = Image.open(io.BytesIO(picture))
            elif isinstance(picture, Image.Image):
                image = picture
            else:
                image = Image.fromarray(np.asarray(picture, np.uint8))
            left = LABEL_WIDTH + c * CELL
            sheet.paste(
                image.convert("RGB").resize((CELL - 4, CELL - 4), Image.NEAREST),
                (left + 2, top + 2),
            )
            draw.text(
                (left + 4, top + CELL), caption, fill="#333333", font=caption_font
            )
    return png(sheet)


def metric_cards(table: pd.DataFrame, title: str) -> bytes:
    """One PNG of AUROC/FPR95 cards, one per row of ``table`` (columns ``ood_set``, ``AUROC``, ``FPR95``)."""
    width, height = 190, 120
    picture = Image.new("RGB", (max(1, len(table)) * width, height + 40), "white")
    draw = ImageDraw.Draw(picture)
    draw.text((10, 8), title, fill="black", font=_font(18))
    big, small = _font(30), _font(14)
    for i, row in enumerate(table.itertuples()):
        left = i * width
        draw.rectangle(
            (left + 6, 40, left + width - 6, height + 34), outline="#cccccc", width=2
        )
        draw.text((left + 16, 48), f"AUROC · {row.ood_set}", fill="#555555", font=small)
        draw.text((left + 16, 70), f"{row.AUROC:.2f}", fill="black", font=big)
        draw.text(
            (left + 16, 110), f"FPR95 {row.FPR95:.2f} %", fill="#555555", font=small
        )
    return png(picture)
