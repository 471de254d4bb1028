"""A scratch deployment of the real service (`bentoml serve`) for the reliability checks.

`prepare_deployment` writes history, token and store settings into a scratch folder;
`ServiceProcess` / `serving` start the service in its own process group, so a check can
kill it like a power cut.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from serving.process import free_port, serve_command, wait_until


@dataclass(frozen=True)
class Deployment:
    """What a service needs to start in a scratch folder: environment, tokens, request records."""

    folder: Path
    env: dict[str, str]
    tokens: dict[str, str]  # role -> bearer token
    records: list[dict]
    tracking_uri: str

    @property
    def audit_url(self) -> str:
        return self.env["DIVERSION_AUDIT_DB"]

    @property
    def audit_path(self) -> Path:
        return Path(self.audit_url.removeprefix("sqlite:///"))

    @property
    def audit_schema(self) -> str | None:
        return self.env.get("DIVERSION_AUDIT_SCHEMA") or None

    @property
    def audit_backend(self) -> str:
        return "PostgreSQL" if self.audit_url.startswith("postgresql") else "SQLite"

    def headers(self, role: str = "scorer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def with_stores(self, name: str, **env: str) -> Deployment:
        """The same deployment with fresh SQLite history and audit stores in `folder/name` (and `env` on top)."""
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        stores = {
            "DIVERSION_HISTORY_DB": f"sqlite:///{folder}/history.db",
            "DIVERSION_AUDIT_DB": f"sqlite:///{folder}/audit.db",
        }
        return Deployment(folder, {**self.env, **stores, **env}, self.tokens, self.records, self.tracking_uri)

    def open_audit_store(self):
        """The deployment's audit store (serving.audit.AuditStore), as the service opens it."""
        from serving.audit import AuditStore

        return AuditStore(self.audit_url, schema=self.audit_schema)


def prepare_deployment(
    folder: Path, tracking_uri: str, declarations: Path, seizures: Path, new: int = 300
) -> Deployment:
    """Scratch history, audit and token files for a service on `tracking_uri`'s @champion."""
    from serving.auth import issue_token
    from serving.demo import split_history

    folder.mkdir(parents=True, exist_ok=True)
    history_declarations, history_seizures, records = split_history(declarations, seizures, new, folder)
    token_file = folder / "tokens.toml"
    tokens = {
        role: issue_token(f"reliability-{role}-{uuid.uuid4().hex[:8]}", [role], token_file)
        for role in ("scorer", "analyst", "auditor")
    }
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "DIVERSION_TOKENS_FILE": str(token_file),
        "DIVERSION_HISTORY_DECLARATIONS": str(history_declarations),
        "DIVERSION_HISTORY_SEIZURES": str(history_seizures),
        "DIVERSION_HISTORY_DB": f"sqlite:///{folder}/history.db",
        "DIVERSION_AUDIT_DB": f"sqlite:///{folder}/audit.db",
    }
    return Deployment(folder, env, tokens, records, tracking_uri)


class ServiceProcess:
    """`bentoml serve` in its own process group, logging (appending) to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        environment = {
            **os.environ,
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DIVERSION_DEMO_MODE": "",
            "PYTHONUNBUFFERED": "1",  # the log file is read while the service runs
            **env,
        }
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            serve_command(self.port),
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches the workers too
        )

    def wait_live(self, timeout: float = 120.0) -> float:
        return wait_until(f"{self.base}/livez", timeout, self.process)

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from process start until /readyz answered 200."""
        wait_until(f"{self.base}/readyz", timeout, self.process)
        return time.perf_counter() - self.started

    def process_groups(self) -> list[int]:
        """Process groups of `bentoml serve` and all its descendants, its own first.

        BentoML's process manager (circus) starts each worker in a session of its own, so
        killing the `bentoml serve` group alone leaves the worker serving as an orphan.
        """
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parent = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
        groups, pending = [], [self.process.pid]
        while pending:
            pid = pending.pop()
            with contextlib.suppress(ProcessLookupError):
                group = os.getpgid(pid)
                if group not in groups:
                    groups.append(group)
            pending.extend(children.get(pid, []))
        return groups

    def kill(self) -> None:
        """SIGKILL every process group of the service: no shutdown hooks, no flushing, like a power cut."""
        groups = self.process_groups()  # before the kill: orphans are re-parented to init
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self._log.close()


@contextlib.contextmanager
def serving(env: dict[str, str], log_path: Path, require_ready: bool = True) -> Iterator[ServiceProcess]:
    """A started service (live, and ready unless `require_ready=False`), stopped on exit."""
    service = ServiceProcess(env, log_path)
    try:
        service.wait_live()
        if require_ready:
            service.wait_ready()
        yield service
    finally:
        service.stop()
