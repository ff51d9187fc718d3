"""Serve OOD Lab to a class from several app processes behind HAProxy, with sticky sessions.

One ``streamlit run app.py`` runs every session's script in one Python interpreter, so it uses about one core however
many the server has. This starts ``--replicas`` app processes on local ports and HAProxy (Debian: ``apt-get install
haproxy``) in front of them on ``--port``. HAProxy keeps each browser on the replica it first reached (a cookie,
``OODLAB``): a Streamlit session lives in one process, and so do the images and downloads it serves. The replicas
share the feature cache (``OOD_LAB_CACHE_DIR``), the data root and the registry, and one cookie secret, so the
replicas accept each other's upload tokens.

Extract the features once before class (``python -m ood_core extract``, or *Prepare features* on Setup): the
replicas then only read the cache.

Usage: python deploy/replicas.py [--replicas 2] [--port 8500] [--host 0.0.0.0]
Stop with Ctrl-C (or SIGTERM): HAProxy and every replica stop with it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEALTH = "/_stcore/health"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_command(port: int, *options: str) -> list[str]:
    """``streamlit run app.py`` on ``port`` (headless) with extra ``streamlit run`` flags."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        *options,
    ]


def haproxy_config(host: str, port: int, replicas: list[int]) -> str:
    """HAProxy's configuration: round-robin for a new browser, then the ``OODLAB`` cookie pins it to its replica;
    websockets (Streamlit's one connection per tab) may stay open for a whole lecture."""
    servers = "\n".join(
        f"    server app{i} 127.0.0.1:{p} check cookie app{i}"
        for i, p in enumerate(replicas, 1)
    )
    return f"""global
    maxconn 4096

defaults
    mode http
    option http-server-close
    timeout connect 5s
    timeout client 2h
    timeout server 2h
    timeout tunnel 2h

frontend ood_lab
    bind {host}:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    cookie OODLAB insert indirect nocache
    option httpchk GET {HEALTH}
{servers}
"""


def wait_healthy(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + HEALTH, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{url} did not become healthy")
        time.sleep(0.5)


def start(
    replicas: int, host: str, port: int, logs: Path, timeout: float = 120
) -> list[subprocess.Popen]:
    """The replicas and HAProxy (last), once every replica answers its health check and HAProxy listens."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        raise SystemExit(
            "HAProxy is not installed: apt-get install haproxy (Debian/Ubuntu)"
        )
    logs.mkdir(parents=True, exist_ok=True)
    env = os.environ.copy()
    env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(16))
    ports = [free_port() for _ in range(replicas)]
    processes = []
    try:
        for i, replica_port in enumerate(ports, 1):
            command = app_command(replica_port, "--server.address", "127.0.0.1")
            with open(logs / f"replica-{i}.log", "w") as log:
                processes.append(
                    subprocess.Popen(
                        command,
                        cwd=REPO,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        for process, replica_port in zip(processes, ports):
            wait_healthy(f"http://127.0.0.1:{replica_port}", process, timeout)
        config = logs / "haproxy.cfg"
        config.write_text(haproxy_config(host, port, ports))
        with open(logs / "haproxy.log", "w") as log:
            processes.append(
                subprocess.Popen(
                    [haproxy, "-db", "-f", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_healthy(f"http://127.0.0.1:{port}", processes[-1], timeout)
    except BaseException:
        stop(processes)
        raise
    return processes


def stop(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--replicas", type=int, default=2, help="app processes (about one per core)"
    )
    parser.add_argument(
        "--port", type=int, default=8500, help="the port the class opens"
    )
    parser.add_argument(
        "--host", default="0.0.0.0", help="the address HAProxy listens on"
    )
    parser.add_argument(
        "--logs", type=Path, help="folder for the replicas' and HAProxy's logs"
    )
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="ood-lab-replicas-"))
    processes = start(args.replicas, args.host, args.port, logs)
    print(
        f"OOD Lab on http://{args.host}:{args.port} — {args.replicas} replicas behind HAProxy; logs in {logs}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Ctrl-C also when started in the background, where the shell's `&` leaves SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(1)
        print("a replica or HAProxy stopped; stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        stop(processes)


if __name__ == "__main__":
    main()
