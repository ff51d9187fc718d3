"""Two app replicas behind HAProxy (``deploy/replicas.py``): a new tab is balanced across them, a tab stays with its
replica (the sticky cookie), every session works through the proxy on the shared cache, and stopping stops all."""

from __future__ import annotations

import shutil
import urllib.request

import pytest
import streamlit_server
from streamlit_protocol import Student

REPO = streamlit_server.REPO


@pytest.fixture(scope="module")
def proxy(demo_model, tmp_path_factory):
    from ood_core.workspace import Workspace, load_workspace

    if shutil.which("haproxy") is None:
        pytest.fail(
            "haproxy is missing: install Debian's haproxy (apt-get install -y haproxy), as .ci/run does"
        )
    load_workspace(
        Workspace()
    )  # extracted once, before class; the replicas only read the cache
    replicas = streamlit_server.replicas  # deploy/replicas.py
    port = streamlit_server.free_port()
    processes = replicas.start(
        2, "127.0.0.1", port, tmp_path_factory.mktemp("replicas")
    )
    yield f"http://127.0.0.1:{port}", processes
    replicas.stop(processes)
    assert all(p.poll() is not None for p in processes)


def _sticky(cookie: str) -> str:
    return dict(part.split("=", 1) for part in cookie.split("; ") if part)["OODLAB"]


def test_new_tabs_are_balanced_and_each_stays_on_its_replica(proxy):
    url, _ = proxy
    students = [Student(url, timeout=120) for _ in range(4)]
    try:
        replicas = [_sticky(s.cookie) for s in students]
        assert set(replicas) == {"app1", "app2"}, replicas
        for student in students:
            run = student.open(
                "nap", {"focus": "nap-x"}
            )  # its λ slider exists only once the shared cache is read
            assert not run.errors, run.errors
            slider = next(s for s in run.sliders if s.label == "λ")
            moved = student.move(
                slider, 0.7
            )  # a fragment rerun, on the same websocket and replica
            assert not moved.errors, moved.errors
        request = urllib.request.Request(url, headers={"Cookie": students[0].cookie})
        with urllib.request.urlopen(request, timeout=30) as again:
            assert (
                again.headers.get("Set-Cookie") is None
            )  # a known tab keeps its replica
    finally:
        for student in students:
            student.close()
