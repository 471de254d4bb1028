"""Start and stop the real service in a subprocess (demo, benchmarks, integration tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

_BENTOML = Path(sys.executable).with_name("bentoml")
#: Seconds an idle keep-alive connection stays open. Longer than common clients' own idle
#: expiry (httpx 5 s, the server's default too): a server that closes first races a client
#: reusing the connection at that moment, and the client sees its request fail unanswered.
KEEP_ALIVE_SECONDS = 75


#: The scoring service, as `bentoml serve` names it.
SCORING_SERVICE = "serving.service:DiversionRiskService"


def serve_command(port: int, service: str = SCORING_SERVICE) -> list[str]:
    """`bentoml serve` of `service` (default: the scoring service) on loopback at `port`."""
    return [
        str(_BENTOML),
        "serve",
        service,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout-keep-alive",
        str(KEEP_ALIVE_SECONDS),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(url: str, timeout: float, process: subprocess.Popen | None = None, status: int = 200) -> float:
    """Seconds until `url` answers `status`; raises TimeoutError (or if the process died)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"service exited with code {process.returncode} before {url} answered")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == status:
                return time.perf_counter() - started
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {status} within {timeout:.0f}s")


@contextlib.contextmanager
def running_service(
    env: dict[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
    ready_timeout: float = 120.0,
    require_ready: bool = True,
    service: str = SCORING_SERVICE,
) -> Iterator[str]:
    """`bentoml serve` of `service` (default: the scoring service) on loopback; yields its base URL."""
    with serving_process(env, port, log_path, ready_timeout, require_ready, service) as (base, _):
        yield base


def worker_pids(process: subprocess.Popen) -> list[int]:
    """The worker processes of a `bentoml serve` process (its children; each in a session of its own)."""
    found = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]


@contextlib.contextmanager
def serving_process(
    env: dict[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
    ready_timeout: float = 120.0,
    require_ready: bool = True,
    service: str = SCORING_SERVICE,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`running_service`, yielding the base URL and the server process (to signal it)."""
    port = port or free_port()
    environment = {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **(env or {}),
    }
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        serve_command(port, service),
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(f"{base}/livez", ready_timeout, process)
        if require_ready:
            wait_until(f"{base}/readyz", ready_timeout, process)
        yield base, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if log_path:
            log.close()
