"""Every module a page imports, imported once per server before any page runs (``app.py`` imports this first).

Streamlit runs each session's script in its own thread. When a class opens a freshly started server at once, two
sessions may import the same part of ``ood_core`` concurrently; where modules import each other in a cycle, Python's
per-module import locks then hand one thread a partially initialised module (seen as ``AttributeError: partially
initialized module 'ood_core.scores.line' has no attribute 'METHODS'`` with two sessions). Importing everything here
serialises it: a second session waits on this module's own import lock until the first has finished.

``app.py`` and every page script import this module first: until one session has run ``app.py`` (and with it
``st.navigation``), Streamlit takes the ``pages/`` folder for an old-style multipage app and runs a deep-linked page
script on its own, so the page must not rely on ``app.py`` having imported anything.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

PAGES = Path(__file__).resolve().parents[1]


def page_imports() -> list[str]:
    """The absolute module names that the page scripts (``pages/*.py``) import, sorted."""
    names = set()
    for script in PAGES.glob("*.py"):
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
    return sorted(names)


for module in page_imports():
    importlib.import_module(module)
