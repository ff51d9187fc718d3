"""Sections a link can land on, and section prose that presentation mode folds away.

``section`` draws a header with an anchor; when the link that opened the page names it (``?focus=depth``), the page
scrolls it to the top of the screen once drawn, so a lecture step opens on its chart rather than on the page's title.
"""

from __future__ import annotations

import json

import streamlit as st

from . import links
from .shell import presenting

# Scrolls the anchor under the app's top bar and keeps it there while the charts above it finish drawing (their
# height changes the position), until the user scrolls, clicks or types. Runs in the page: st.html, not an iframe.
_SCROLL = """<script>
(() => {
  const id = %s;
  let tries = 0;
  const stop = () => { tries = 1e9; };
  for (const name of ["wheel", "touchstart", "keydown", "mousedown"])
    window.addEventListener(name, stop, { once: true, capture: true });
  const timer = setInterval(() => {
    const target = document.getElementById(id);
    if (target) {
      target.style.scrollMarginTop = "4.5rem";
      target.scrollIntoView({ block: "start" });
    }
    if (++tries > 24) clearInterval(timer);
  }, 250);
})();
</script>"""


def section(title: str, anchor: str, *, level: str = "header") -> None:
    """A header (``level``: header or subheader) with ``anchor``; scrolled into view if the link asked for it."""
    getattr(st, level)(title, anchor=anchor)
    if links.focused(anchor):
        # A constant script; the anchor is one of our own names, written as a JSON string.
        st.html(_SCROLL % json.dumps(anchor), unsafe_allow_javascript=True)


def about():
    """Where a page's opening (its story, formula and paper) goes: in place, or in presentation mode folded under
    "About this page", so that the first screen shows a chart."""
    return st.expander("About this page") if presenting() else st.container()


def prose(markdown: str) -> None:
    """A section's explanation: in place, or, in presentation mode, folded under "About this section" so that the
    section's chart is on the first screen."""
    if presenting():
        with st.expander("About this section"):
            st.markdown(markdown)
    else:
        st.markdown(markdown)


def charts_and_notes():
    """Two containers, ``(charts, notes)``: the notes (cards, observations) above the charts as usual, but below them
    in presentation mode, so that a section's chart is on the first screen."""
    first, second = st.container(), st.container()
    return (first, second) if presenting() else (second, first)
