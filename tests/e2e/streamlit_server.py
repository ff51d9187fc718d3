"""Start and stop `streamlit run app.py` on a free localhost port; read its memory use (browser tests, benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy"))
import replicas  # deploy/replicas.py: the app command, its health check

free_port = replicas.free_port


CHROMIUM = "/usr/bin/chromium"  # Debian's (apt-get install -y chromium), never `playwright install`


def launch_chromium(playwright):
    """Headless Debian Chromium for Playwright (browser tests and benchmarks)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )


def start(
    log: Path, timeout: float = 90, options: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, str]:
    """The server process and its URL, once ``/_stcore/health`` answers (RuntimeError if it never does);
    ``options`` are extra ``streamlit run`` flags (``--server.disconnectedSessionTTL``, …)."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as output:
        server = subprocess.Popen(
            replicas.app_command(port, *options),
            cwd=REPO,
            env=os.environ.copy(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://localhost:{port}"
    try:
        replicas.wait_healthy(url, server, timeout)
    except RuntimeError:
        server.kill()
        raise RuntimeError(
            f"streamlit did not become healthy on {url}; see {log}"
        ) from None
    return server, url


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of a process, in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {field}")
