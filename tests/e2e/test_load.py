"""Several browser sessions moving sliders on the same cache at once: no errors, memory stays bounded."""

from __future__ import annotations

import streamlit_server
from playwright.sync_api import expect
from test_pages_in_browser import (
    IDLE_TIMEOUT,
    _assert_healthy,
    _open,
    _slider,
    _wait_idle,
)

SESSIONS = 4
# Extra resident memory allowed for 3 more sessions: the cache is memory-mapped once per server process and
# st.cache_data is shared, so each session only adds its widget state and figures.
MAX_GROWTH_MB = 300


def _move_lambda(page, key: str) -> None:
    thumb = _slider(page, "λ")
    thumb.focus()
    page.keyboard.press(key)


def test_four_sessions_move_sliders_concurrently_within_a_memory_bound(
    browser, app_server
):
    server, url = app_server
    contexts = [
        browser.new_context(viewport={"width": 1400, "height": 1400})
        for _ in range(SESSIONS)
    ]
    try:
        pages = []
        for context in contexts:
            page = context.new_page()
            page.console_errors = []
            page.on(
                "console",
                lambda m, page=page: (
                    page.console_errors.append(m.text)
                    if m.type == "error"
                    and "/_stcore/" not in m.location.get("url", "")
                    else None
                ),
            )
            pages.append(page)
        first = pages[0]
        _open(first, url, "nap", "AUROC vs λ")
        _move_lambda(first, "Home")
        _wait_idle(first)
        one_session = streamlit_server.memory_mb(server.pid)
        for page in pages[1:]:
            _open(page, url, "nap", "AUROC vs λ")
        cards = [page.get_by_test_id("stMetricValue").first for page in pages]
        for key in ("End", "Home", "ArrowRight"):
            before = [card.text_content() for card in cards]
            for page in pages:  # fire on every session before waiting for any
                _move_lambda(page, key)
            for page, card, old in zip(pages, cards, before):
                expect(card).not_to_have_text(old, timeout=IDLE_TIMEOUT)
                _wait_idle(page)
                _assert_healthy(page)
        four_sessions = streamlit_server.memory_mb(server.pid)
        print(
            f"server RSS: 1 session {one_session:.0f} MB, {SESSIONS} sessions {four_sessions:.0f} MB"
        )
        assert four_sessions - one_session < MAX_GROWTH_MB
    finally:
        for context in contexts:
            context.close()
