"""Page text as a reader sees it: user-supplied text is shown escaped (``pages.ui.text.plain``)."""

from __future__ import annotations

import re


def shown(value: str) -> str:
    """``value`` without Markdown escapes and the zero-width spaces that break shortcodes and links."""
    return re.sub(r"\\(.)", r"\1", value).replace("\u200b", "")
