"""Widget values that outlive their page: kept when the user leaves a page and comes back, reset to the papers'
defaults on request, and never trusted blindly (a stale or handed-over value that its widget cannot show is dropped
so the widget falls back to its default)."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from .boundary import callback

# Widgets whose values a page keeps when the user leaves it and comes back (Streamlit forgets a widget's state
# when a run does not draw it): every key of these pages' prefixes and every parameter slider ("page:method:param"),
# except the action widgets (buttons, uploads, downloads), whose values cannot be set.
KEPT_PREFIXES = (
    "nap_",
    "bs_",
    "line_",
    "heatmap_",
    "bg_",
    "compare",
    "tune_",
    "upload_",
    "primer_",
    "ab_",
    "lecture_",
)
ACTIONS = {
    "bg_train",
    "bg_control",
    "compare_redraw",
    "heatmap_train",
    "heatmap_csv",
    "tune_all",
    "tune_apply",
    "tune_apply_loaded",
    "tune_download",
    "tune_one",
    "tune_stop",
    "tune_upload",
    "upload_clear",
    "lecture_previous",
    "lecture_next",
}


def kept(key: object) -> bool:
    """Whether ``key`` is a value widget whose state survives leaving its page (see ``KEPT_PREFIXES``)."""
    return (
        isinstance(key, str)
        and (key.startswith(KEPT_PREFIXES) or key.count(":") == 2)
        and key not in ACTIONS
        and not key.startswith("reset_")
    )


def keep_widget_state(prefix: str = "") -> None:
    """Re-assign every kept widget value (those whose key starts with ``prefix``), so that Streamlit keeps it while
    its page, or the part of a page that draws it, is not shown."""
    for key in [k for k in st.session_state if kept(k) and k.startswith(prefix)]:
        st.session_state[key] = st.session_state[key]


def forget(prefixes: tuple[str, ...]) -> None:
    """Drop every widget state whose key starts with one of ``prefixes`` (the widgets return to their defaults)."""
    for key in [
        k for k in st.session_state if isinstance(k, str) and k.startswith(prefixes)
    ]:
        del st.session_state[key]


def reset_button(
    page: str, prefixes: tuple[str, ...], label: str = "↺ Reset to paper defaults"
) -> None:
    """A button that puts the page's widgets back to their defaults (the papers' for the workspace's benchmark)."""
    st.button(
        label,
        key=f"reset_{page}",
        on_click=callback(forget),
        args=(prefixes,),
        help="Every control of this page back to its default: the paper's value for this benchmark where the paper "
        "gives one (λ follows the chosen base method), OOD Lab's otherwise.",
    )


def drop_unfit(key: str, fits: Callable[[object], bool]) -> None:
    """Forget ``key``'s kept value if its widget cannot show it (``fits(value)`` is false), e.g. a block of another
    model, a value outside a slider's range, or a value handed over from another page in the wrong shape."""
    if key in st.session_state and not fits(st.session_state[key]):
        del st.session_state[key]
