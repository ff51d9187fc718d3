"""One error boundary for every page: no traceback reaches a user.

An exception on a page, in one of its fragments or in a widget callback becomes one line that says what to do, with
the details in a collapsed expander and in the server log. ``OODLabError`` messages are the library's own one-line
explanations and are shown as they are.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import streamlit as st

from ood_core.errors import OODLabError

from .text import plain

log = logging.getLogger("ood_lab.pages")
CALLBACK_ERROR = "_callback_error"
ADVICE = "Press ↺ Reset to paper defaults or reload the page; if it happens again, copy the details below into an issue."


def show_error(exc: Exception) -> None:
    """One line on what went wrong and what to do; the traceback in a collapsed expander and the server log."""
    if isinstance(exc, OODLabError):
        log.warning("page error: %s", exc)
        st.error(plain(exc, limit=600), icon=":material/error:")
        return
    log.error("unexpected error on a page", exc_info=exc)
    st.error(
        f"Something went wrong here ({plain(type(exc).__name__)}: {plain(exc, 200)}). {ADVICE}",
        icon=":material/error:",
    )
    with st.expander("Details"):
        st.code(
            "".join(traceback.format_exception(exc)), language=None, wrap_lines=True
        )


@contextmanager
def error_boundary() -> Iterator[None]:
    """Show any exception raised inside as ``show_error`` does; Streamlit's own control flow (``st.stop``,
    ``st.rerun``, ``st.switch_page``: ``BaseException`` subclasses) passes through."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the boundary: every error becomes a message
        show_error(exc)


def guarded(fn: Callable) -> Callable:
    """``fn`` inside the error boundary (for code that runs on its own: fragments)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with error_boundary():
            return fn(*args, **kwargs)

    return wrapper


def fragment(fn: Callable) -> Callable:
    """``st.fragment`` with the error boundary inside it: a fragment that reruns alone shows its errors in place."""
    return st.fragment(guarded(fn))


def callback(fn: Callable) -> Callable:
    """A widget callback whose error is shown at the top of the next run (callbacks run before the page)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - shown by report_callback_error()
            st.session_state[CALLBACK_ERROR] = exc

    return wrapper


def report_callback_error() -> None:
    """Show the error of a callback that ran before this run, if one failed."""
    failed = st.session_state.pop(CALLBACK_ERROR, None)
    if failed is not None:
        show_error(failed)
