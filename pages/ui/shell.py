"""The shell every page runs in: app.py's navigation, the error boundary, deep links and presentation mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from . import links
from .boundary import error_boundary, report_callback_error
from .sidebar import sidebar_workspace


def run_page(body: Callable[[], None]) -> None:
    """Run a page: inside app.py's shell, in the error boundary, then report ignored deep-link values."""
    with error_boundary():
        ensure_app_shell()
        report_callback_error()
        try:
            body()
        finally:
            links.report()


def ensure_app_shell() -> None:
    """Run pages only inside app.py's shell (sidebar + ``st.navigation``).

    Streamlit treats a ``pages/`` folder beside the entry script as its legacy auto-navigation until some session
    calls ``st.navigation``; a deep link (e.g. ``/nap``) opened first on a fresh server then runs the page file alone.
    That legacy navigation registers the entry script itself as a page, which ours never does: if so, switch the
    legacy mode off and rerun, so app.py runs and resolves the same URL. Under AppTest (which re-enters the legacy
    mode before every run and runs only the page) the sidebar is drawn in place, so tests see the real workspace.
    """
    from streamlit import config
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    pages = ctx.pages_manager.get_pages().values() if ctx else []
    if not any(
        Path(str(page.get("script_path", ""))).name == "app.py" for page in pages
    ):
        return  # app.py's navigation is in charge
    if config.get_option("global.appTest"):
        sidebar_workspace()  # a rerun would drop a clicked button's value in AppTest
        return
    PagesManager.uses_pages_directory = False
    st.rerun()


# --- presentation mode ----------------------------------------------------------------------------------------------


def presenting() -> bool:
    """Whether presentation mode is on (the sidebar toggle, or ``?present=1`` in the link)."""
    links.presentation_link()
    return bool(st.session_state.get("present"))


PRESENTATION_CSS = """
<style>
html { font-size: 18px; }
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stMainMenu"],
[data-testid="stToolbarActions"], [data-testid="stAppDeployButton"], [data-testid="stDecoration"],
[data-testid="stElementToolbar"] { display: none !important; }
.stMainBlockContainer { max-width: 100% !important; padding: 3.5rem 1.5rem 1rem !important; }
[data-testid="stImage"] img { min-width: 96px; image-rendering: pixelated; }
h1 { font-size: 2.1rem !important; }
</style>
"""


def presentation_style() -> None:
    """Large type and thumbnails, no sidebar or toolbars, the full width of a 1280×720 screen."""
    # A constant style sheet: no user data reaches the browser as HTML.
    st.html(PRESENTATION_CSS)
