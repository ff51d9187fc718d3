"""Deep links: ``/nap?nap_base=NAP-ReAct&nap_x:nap-react:lambda=0.8`` opens a page in a given state.

A link's workspace keys (``model``, ``id``, ``ood``) set the sidebar; every other key waits until the page draws the
widget of that key, which checks the value the way the widget itself would (``controls``: a slider's range and
step, a select box's options). A value that does not fit, or a key that names no widget of the page, is ignored with
one line that says so; nothing from a link reaches session state unchecked.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from ood_core.errors import OODLabError

from .text import plain

WORKSPACE_KEYS = ("model", "id", "ood")
FOCUS = "focus"  # the section a link lands on (``sections.section``), not a widget
MAX_KEYS = 40
MAX_VALUE = 500  # characters; a longer value is refused before it is parsed
_PENDING, _APPLIED, _IGNORED = "_link_pending", "_link_applied", "_link_ignored"
_FOCUS = "_link_focus"


def capture() -> dict[str, str]:
    """Read a new link once (the same link clicked again later applies again): its widget values wait for their
    widgets; returns its workspace keys for the sidebar."""
    params = st.query_params
    link = tuple(sorted((k, params.get(k, "")) for k in params if k != "present"))
    if not link:
        st.session_state[_APPLIED] = None
        return {}
    if st.session_state.get(_APPLIED) == link:
        return {}
    st.session_state[_APPLIED] = link
    ignored = []
    pending = {}
    for key, value in link:
        if len(value) > MAX_VALUE:
            ignored.append(f"{key}: a value of {len(value):,} characters")
        elif key == FOCUS:
            st.session_state[_FOCUS] = value
        elif key not in WORKSPACE_KEYS:
            pending[key] = value
    if len(pending) > MAX_KEYS:
        ignored.append(f"{len(pending) - MAX_KEYS} keys beyond the first {MAX_KEYS}")
        pending = dict(list(pending.items())[:MAX_KEYS])
    st.session_state[_PENDING] = pending
    st.session_state[_IGNORED] = ignored
    return {k: v for k, v in link if k in WORKSPACE_KEYS and len(v) <= MAX_VALUE}


def presentation_link() -> None:
    """A link with ``?present=1`` turns presentation mode on for the session (before its toggle is drawn; the
    toggle turns it off again)."""
    if st.query_params.get("present") == "1" and "present" not in st.session_state:
        st.session_state["present"] = True


def take(key: str, parse: Callable[[str], object]) -> None:
    """Give the widget ``key`` the link's value for it, if the link has one: ``parse(text)`` returns the widget's
    value or raises ``OODLabError`` (then the value is ignored, with a note)."""
    pending = st.session_state.get(_PENDING)
    if not pending or key not in pending:
        return
    text = pending.pop(key)
    try:
        st.session_state[key] = parse(text)
    except OODLabError as exc:
        st.session_state.setdefault(_IGNORED, []).append(f"{key}={text}: {exc}")


def focused(anchor: str) -> bool:
    """Whether the link asked to land on the section ``anchor`` (answered once per link)."""
    if st.session_state.get(_FOCUS) != anchor:
        return False
    del st.session_state[_FOCUS]
    return True


def report() -> None:
    """After the page is drawn: say which link values were ignored, and why (once)."""
    pending = st.session_state.pop(_PENDING, None) or {}
    ignored = st.session_state.pop(_IGNORED, None) or []
    ignored += [f"{key}: no such control on this page" for key in pending]
    # A section not drawn (e.g. results before training) is no error: the page simply opens at its top.
    st.session_state.pop(_FOCUS, None)
    if ignored:
        st.warning(
            "Some values of the link were ignored: " + "; ".join(map(plain, ignored))
        )


def number(text: str) -> float:
    """A link's number (``0.4``, ``3``); anything else is refused in one line."""
    try:
        return float(text)
    except ValueError:
        raise OODLabError(f"{text[:40]!r} is not a number") from None


def flag(text: str) -> bool:
    """A link's on/off value."""
    if text.lower() in ("1", "true", "on", "yes"):
        return True
    if text.lower() in ("0", "false", "off", "no"):
        return False
    raise OODLabError(f"{text[:40]!r} is not 1 or 0")


def one_of(options: list, text: str) -> object:
    """The option whose text is ``text`` (options may be numbers or names)."""
    for option in options:
        if str(option) == text:
            return option
    shown = ", ".join(map(str, options[:8])) + (" …" if len(options) > 8 else "")
    raise OODLabError(f"not one of the choices ({shown})")


def some_of(options: list, text: str, separators: str = "|+") -> list:
    """Options named in ``text``, separated by ``|`` or ``+`` (a block set)."""
    for separator in separators[1:]:
        text = text.replace(separator, separators[0])
    return [one_of(options, part) for part in text.split(separators[0]) if part]
