"""User-supplied text shown as text: file names, tuned.json fields and error messages never render as Markdown."""

from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$&])")
ZERO_WIDTH_SPACE = "\u200b"


def plain(text: object, limit: int = 300) -> str:
    """``text`` as one line of literal Markdown: every Markdown character escaped, emoji and icon shortcodes
    (``:train:``) and URLs broken with a zero-width space after each colon, at most ``limit`` characters."""
    line = " ".join(str(text).split())
    if len(line) > limit:
        line = line[: limit - 1] + "…"
    return _PUNCTUATION.sub(r"\\\1", line).replace(":", ":" + ZERO_WIDTH_SPACE)
