"""Reliability under faults and hostile input: `python -m serving.reliability` (`make reliability`).

Starts the real service (`bentoml serve`) on loopback against a registered model and
checks these groups, one table row per check:

1. crash: `kill -9` of the service's process group under load; every acknowledged
   decision must be in the audit store, the store must be intact, and the service must
   be ready again (recovery time measured against the 10 s target) — with the audit
   store on SQLite, and again on PostgreSQL in a fresh database;
2. broken dependencies: a truncated model artifact (in a copy of the MLflow store) and an
   unreachable audit database must leave the service up, not ready, refusing to score,
   and saying why in its log;
3. hostile input: oversized, deeply nested, non-finite, mistyped and tricky requests must
   get a 4xx (or a 200 for input that is merely odd data), never a 5xx, and neither
   tokens nor declarations may appear in the log;
4. contract fuzzing: schemathesis generates requests from the service's own OpenAPI
   document (/docs.json) for every operation, with each role's token and without one;
   no 5xx, and every answer must match the document (all schemathesis checks);
5. load: 50 concurrent clients for 60 s of mixed single and 100-row scoring with the
   audit trail on: no errors, one audit row per acknowledged declaration, p50/p99;
6. dependency audit: pip-audit on the locked set (requirements.lock); a row whose
   advisory data cannot be reached says so (UNVERIFIED), it never passes;
7. training input: the adversarial contract files of `training.input_faults`, when present.

Nothing is trained here: it needs the model registered by `make train` and its data.
`python -m serving.reliability --only fuzz load` runs some groups (`--help` lists them).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from serving.process import free_port, serve_command, wait_until

#: Recovery target for a crashed service: restart to /readyz 200.
RECOVERY_TARGET_SECONDS = 10.0
#: Marker put into goods descriptions; it must never show up in the service log.
DECLARATION_MARKER = "RELIABILITY-MARKER-7f3c9d"
SQL_INJECTION = "'; DROP TABLE audit_decisions; --"


@dataclass
class CheckResult:
    """One row of the reliability table."""

    test: str
    fault: str
    problems: list[str] = field(default_factory=list)
    figures: str = ""
    #: Why the check could not be decided (e.g. advisory data unreachable): never a pass.
    unverified: str | None = None

    @property
    def passed(self) -> bool:
        return not self.problems and self.unverified is None

    @property
    def verdict(self) -> str:
        if self.problems:
            return "FAIL"
        return "UNVERIFIED" if self.unverified is not None else "PASS"

    def require(self, condition: bool, problem: str) -> None:
        """Record `problem` unless `condition` holds."""
        if not condition:
            self.problems.append(problem)


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


# --- the service process -----------------------------------------------------------------


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


# --- 1. crash ----------------------------------------------------------------------------


def audit_integrity(deployment: Deployment) -> str:
    """'ok', or what is wrong with the audit store as it is now (opened from scratch).

    SQLite: `PRAGMA integrity_check` on the file. PostgreSQL: the store opens (tables
    there or created), counts, and holds no (request_id, declaration_id) pair twice.
    """
    if deployment.audit_backend == "SQLite":
        with contextlib.closing(sqlite3.connect(deployment.audit_path)) as connection:
            return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    import sqlalchemy as sa

    try:
        store = deployment.open_audit_store()
        try:
            store.count()
        finally:
            store.close()
        engine = sa.create_engine(deployment.audit_url)
        table = (
            f'"{deployment.audit_schema}".audit_decisions' if deployment.audit_schema else "audit_decisions"
        )
        try:
            with engine.connect() as connection:
                repeated = connection.execute(
                    sa.text(
                        f"SELECT count(*) FROM (SELECT 1 FROM {table} "
                        "GROUP BY request_id, declaration_id HAVING count(*) > 1) AS repeated"
                    )
                ).scalar_one()
        finally:
            engine.dispose()
    except Exception as exc:  # whatever the database says is the finding
        return f"{type(exc).__name__}: {exc}"
    return "ok" if repeated == 0 else f"{repeated} (request_id, declaration_id) pairs recorded twice"


@dataclass
class CrashRun:
    """What happened around one `kill -9` under load."""

    backend: str  # audit store: "SQLite" or "PostgreSQL"
    acknowledged: list[tuple[str, str]]  # (request_id, declaration_id) of HTTP 200 answers
    acknowledged_before_kill: int
    acknowledged_after_restart: int
    failed_requests: int
    server_errors: list[str]
    lost: list[tuple[str, str]]
    audit_rows: int
    integrity: str
    recovery_seconds: float | None
    ready_again: bool
    restart_error: str | None


def run_crash(deployment: Deployment, clients: int = 4, duration: float = 10.0) -> CrashRun:
    """4 scoring clients for ~`duration` s, `kill -9` in the middle, restart on the same audit DB."""
    log_path = deployment.folder / "crash.log"
    service = ServiceProcess(deployment.env, log_path)
    service.wait_ready()
    url = f"{service.base}/score"
    lock = threading.Lock()
    acknowledged: list[tuple[str, str]] = []
    server_errors: list[str] = []
    failed = 0
    phase = {"name": "before"}
    counts = {"before": 0, "down": 0, "after": 0}
    stop = threading.Event()

    def client(number: int) -> None:
        nonlocal failed
        with httpx.Client(headers=deployment.headers(), timeout=10.0) as http:
            i = number
            while not stop.is_set():
                record = dict(deployment.records[i % len(deployment.records)])
                record["declaration_id"] = f"CRASH-{number}-{i}"
                i += clients
                try:
                    response = http.post(url, json={"declarations": [record]})
                except httpx.HTTPError:
                    with lock:
                        failed += 1
                    time.sleep(0.05)
                    continue
                body = response.json() if response.status_code == 200 else {}
                with lock:
                    if response.status_code == 200 and body.get("request_id"):
                        acknowledged.append((body["request_id"], record["declaration_id"]))
                        counts[phase["name"]] += 1
                    else:
                        failed += 1
                        if response.status_code >= 500 and response.status_code != 503:
                            server_errors.append(f"{response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(duration / 2)
    with lock:
        phase["name"] = "down"
    service.kill()

    # The store as the crash left it (sqlite3 replays or discards the WAL on open).
    integrity = audit_integrity(deployment)

    restart_error = None
    recovery = None
    restarted = ServiceProcess(deployment.env, log_path, port=service.port)
    try:
        recovery = restarted.wait_ready()
        with lock:
            phase["name"] = "after"
    except (TimeoutError, RuntimeError) as exc:
        restart_error = str(exc)
    # Keep the clients going until the whole run lasted `duration` and the restarted
    # service had a moment of load too.
    time.sleep(max(duration - (time.perf_counter() - started), 2.0))
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    ready_again = False
    with contextlib.suppress(httpx.HTTPError):
        ready_again = httpx.get(f"{restarted.base}/readyz", timeout=5).status_code == 200
    restarted.stop()

    store = deployment.open_audit_store()
    try:
        lost = [
            (request_id, declaration_id)
            for request_id, declaration_id in acknowledged
            if [r.declaration_id for r in store.by_request(request_id)] != [declaration_id]
        ]
        audit_rows = store.count()
    finally:
        store.close()
    return CrashRun(
        backend=deployment.audit_backend,
        acknowledged=acknowledged,
        acknowledged_before_kill=counts["before"] + counts["down"],
        acknowledged_after_restart=counts["after"],
        failed_requests=failed,
        server_errors=server_errors,
        lost=lost,
        audit_rows=audit_rows,
        integrity=integrity,
        recovery_seconds=recovery,
        ready_again=ready_again,
        restart_error=restart_error,
    )


def check_crash_durability(run: CrashRun) -> CheckResult:
    """No acknowledged decision may be missing from the audit store after a kill -9."""
    result = CheckResult(
        f"crash ({run.backend}): acknowledged = audited",
        f"kill -9 of the process group under 4 clients, audit store on {run.backend}",
    )
    result.require(run.acknowledged_before_kill > 0, "no request was acknowledged before the kill")
    result.require(not run.lost, f"{len(run.lost)} acknowledged decision(s) missing, e.g. {run.lost[:3]}")
    result.require(run.integrity == "ok", f"audit store after the kill: {run.integrity!r}")
    result.require(run.restart_error is None, f"restart failed: {run.restart_error}")
    result.require(run.ready_again, "service not ready after the restart")
    result.require(run.acknowledged_after_restart > 0, "no request acknowledged after the restart")
    result.require(not run.server_errors, f"5xx answers: {run.server_errors[:3]}")
    result.figures = (
        f"acked {len(run.acknowledged)} ({run.acknowledged_before_kill} before kill, "
        f"{run.acknowledged_after_restart} after restart), rows lost {len(run.lost)}, "
        f"audit rows {run.audit_rows}, failed/refused {run.failed_requests}, integrity {run.integrity}"
    )
    return result


def check_crash_recovery(run: CrashRun) -> CheckResult:
    """Restart to /readyz 200 within the recovery target."""
    result = CheckResult(
        f"crash ({run.backend}): recovery time",
        f"restart after kill -9 (target <= {RECOVERY_TARGET_SECONDS:.0f} s)",
    )
    if run.recovery_seconds is None:
        result.problems.append(f"never ready again: {run.restart_error}")
        result.figures = "not ready"
        return result
    result.require(
        run.recovery_seconds <= RECOVERY_TARGET_SECONDS,
        f"ready after {run.recovery_seconds:.1f} s, target {RECOVERY_TARGET_SECONDS:.0f} s",
    )
    result.figures = f"restart to /readyz 200 in {run.recovery_seconds:.1f} s"
    return result


# --- 2. broken dependencies ---------------------------------------------------------------


def copy_model_store(tracking_uri: str, model_name: str, alias: str, folder: Path) -> tuple[str, Path]:
    """Copy of a SQLite MLflow store whose `model_name@alias` artifacts live in `folder`.

    Only the registered version's artifact folder is copied; the copied database is
    re-pointed at it. Returns the copy's tracking URI and its `artifacts/scorer` folder.
    """
    source_db = Path(tracking_uri.removeprefix("sqlite:///"))
    if not tracking_uri.startswith("sqlite:///") or not source_db.exists():
        raise ValueError(f"tracking URI {tracking_uri!r}: need an existing sqlite:/// MLflow store to copy")
    folder.mkdir(parents=True, exist_ok=True)
    target_db = folder / "mlflow.db"
    with (
        contextlib.closing(sqlite3.connect(source_db)) as source,
        contextlib.closing(sqlite3.connect(target_db)) as target,
    ):
        source.backup(target)  # a consistent copy even if someone writes meanwhile
    with contextlib.closing(sqlite3.connect(target_db)) as connection, connection:
        row = connection.execute(
            "SELECT v.storage_location FROM registered_model_aliases a JOIN model_versions v "
            "ON v.name = a.name AND v.version = a.version WHERE a.name = ? AND a.alias = ?",
            (model_name, alias),
        ).fetchone()
        if row is None:
            raise ValueError(f"{tracking_uri} has no {model_name}@{alias}: run `make train` first")
        original = Path(row[0].removeprefix("file://"))
        copied = folder / "artifacts" / original.parent.name
        shutil.copytree(original, copied)
        connection.execute(
            "UPDATE model_versions SET storage_location = ? WHERE storage_location = ?", (str(copied), row[0])
        )
        connection.execute(
            "UPDATE logged_models SET artifact_location = ? WHERE artifact_location = ?",
            (str(copied), row[0]),
        )
    if copied.resolve() == original.resolve():
        raise RuntimeError(f"copy of the model artifacts resolves to the original {original}")
    return f"sqlite:///{target_db}", copied / "artifacts" / "scorer"


def _refuses_to_score(service: ServiceProcess, deployment: Deployment, result: CheckResult) -> str:
    readyz = httpx.get(f"{service.base}/readyz", timeout=10).status_code
    score = httpx.post(
        f"{service.base}/score",
        json={"declarations": deployment.records[:1]},
        headers=deployment.headers(),
        timeout=30,
    )
    result.require(readyz == 503, f"/readyz answered {readyz}, expected 503")
    result.require(score.status_code == 503, f"/score answered {score.status_code}, expected 503")
    result.require("risk_score" not in score.text, "a score was returned")
    return f"/readyz {readyz}, /score {score.status_code}"


def _not_ready_line(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if "NOT READY" in line]
    return lines[-1] if lines else ""


def check_truncated_model(deployment: Deployment, model_name: str = "diversion-risk") -> CheckResult:
    """A truncated booster in (a copy of) the registry: up, not ready, no scores, 'checksum mismatch' logged."""
    result = CheckResult("broken model artifact", "booster.txt truncated to half in a copy of the store")
    folder = deployment.folder / f"broken-model-{uuid.uuid4().hex[:6]}"
    tracking_uri, scorer_dir = copy_model_store(deployment.tracking_uri, model_name, "champion", folder)
    booster = scorer_dir / "booster.txt"
    if not booster.exists():
        result.problems.append(f"no {booster} in the copied artifacts: the model layout changed")
        return result
    with booster.open("r+b") as handle:
        handle.truncate(booster.stat().st_size // 2)
    env = {
        **deployment.env,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "DIVERSION_AUDIT_DB": f"sqlite:///{folder}/audit.db",
        "DIVERSION_HISTORY_DB": f"sqlite:///{folder}/history.db",
    }
    log_path = folder / "service.log"
    with serving(env, log_path, require_ready=False) as service:
        answers = _refuses_to_score(service, deployment, result)
    line = _not_ready_line(log_path)
    result.require("checksum mismatch" in line, f"log does not say 'checksum mismatch': {line[-200:]!r}")
    result.figures = f"{answers}; log: {line[line.find('NOT READY') :][:110]}"
    return result


def check_unreachable_audit_db(deployment: Deployment) -> CheckResult:
    """Audit database refusing connections at start-up: up, not ready, no scores, reason logged."""
    url = "postgresql+psycopg2://postgres@127.0.0.1:1/none"
    result = CheckResult("unreachable audit database", f"DIVERSION_AUDIT_DB={url}")
    folder = deployment.folder / f"no-audit-db-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    env = {**deployment.env, "DIVERSION_AUDIT_DB": url, "DIVERSION_HISTORY_DB": f"sqlite:///{folder}/h.db"}
    log_path = folder / "service.log"
    with serving(env, log_path, require_ready=False) as service:
        answers = _refuses_to_score(service, deployment, result)
    line = _not_ready_line(log_path)
    result.require(
        "OperationalError" in line and "127.0.0.1" in line and "port 1 " in line,
        f"log does not name the unreachable database: {line[-200:]!r}",
    )
    result.figures = f"{answers}; log: {line[line.find('NOT READY') :][:110]}"
    return result


# --- 3. hostile input ----------------------------------------------------------------------


@dataclass(frozen=True)
class HostileCase:
    """One hostile request and the statuses that count as handling it."""

    name: str
    fault: str
    request: Callable[[Deployment], dict]  # keyword arguments of httpx.Client.request
    allowed: frozenset[int]


def _declaration(deployment: Deployment, **changes: object) -> dict:
    record = dict(deployment.records[0])
    record["declaration_id"] = f"HOSTILE-{uuid.uuid4().hex[:12]}"
    record["goods_description"] = f"{record.get('goods_description', '')} {DECLARATION_MARKER}"
    record.update(changes)
    return record


def _json_post(body: bytes, content_type: str = "application/json") -> dict:
    return {"method": "POST", "url": "/score", "content": body, "headers": {"content-type": content_type}}


def _score(deployment: Deployment, **changes: object) -> dict:
    return {
        "method": "POST",
        "url": "/score",
        "json": {"declarations": [_declaration(deployment, **changes)]},
    }


def _max_body_bytes(deployment: Deployment) -> int:
    from serving.settings import ServiceSettings

    value = deployment.env.get("DIVERSION_MAX_BODY_BYTES")
    return int(value) if value else ServiceSettings().max_body_bytes


def _oversized(deployment: Deployment) -> dict:
    limit = _max_body_bytes(deployment)
    return _json_post(b'{"declarations": [' + b" " * (limit + 1024) + b"]}")


def _oversized_chunked(deployment: Deployment) -> dict:
    limit = _max_body_bytes(deployment)

    def chunks() -> Iterator[bytes]:  # no content-length: the guard must count the bytes itself
        yield b'{"declarations": ['
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536
        yield b"]}"

    return {
        "method": "POST",
        "url": "/score",
        "content": chunks(),
        "headers": {"content-type": "application/json"},
    }


def _nested(depth: int, inside: bool) -> Callable[[Deployment], dict]:
    def build(deployment: Deployment) -> dict:
        nested = b"[" * depth + b"]" * depth
        return _json_post(b'{"declarations": [' + nested + b"]}" if inside else nested)

    return build


def _literal(field_name: str, literal: str) -> Callable[[Deployment], dict]:
    def build(deployment: Deployment) -> dict:
        import orjson

        record = _declaration(deployment, **{field_name: 12345.678})
        body = orjson.dumps({"declarations": [record]}).replace(b"12345.678", literal.encode())
        return _json_post(body)

    return build


def _content_type(content_type: str, body: bytes | None = None) -> Callable[[Deployment], dict]:
    def build(deployment: Deployment) -> dict:
        import orjson

        payload = body if body is not None else orjson.dumps({"declarations": [_declaration(deployment)]})
        return _json_post(payload, content_type)

    return build


def _changes(**changes: object) -> Callable[[Deployment], dict]:
    return lambda deployment: _score(deployment, **changes)


def _sql_everywhere(deployment: Deployment) -> dict:
    tag = uuid.uuid4().hex[:6]
    return _score(
        deployment,
        declaration_id=f"{SQL_INJECTION}{tag}",
        exporter_id=f"{SQL_INJECTION}x",
        consignee_id=f"{SQL_INJECTION}c",
        goods_description=f"{SQL_INJECTION} {DECLARATION_MARKER}",
        customs_broker_id=f"{SQL_INJECTION}b",
        export_authorization_id=f"{SQL_INJECTION}a",
    )


_TEN_MB = 10 * 1024 * 1024
_4XX = frozenset(range(400, 500))
_OK_OR_422 = frozenset({200, 422})
HOSTILE_CASES: tuple[HostileCase, ...] = (
    HostileCase("oversized body", "body 1 KiB above max_body_bytes", _oversized, frozenset({413})),
    HostileCase(
        "oversized chunked body", "same, chunked (no Content-Length)", _oversized_chunked, frozenset({413})
    ),
    HostileCase(
        "nested JSON (inside)", "100,000 nested lists as a declaration", _nested(100_000, True), _4XX
    ),
    HostileCase("nested JSON (top level)", "100,000 nested lists as the body", _nested(100_000, False), _4XX),
    HostileCase(
        "huge goods_description",
        "10 MB string",
        _changes(goods_description="x" * _TEN_MB),
        frozenset({413, 422}),
    ),
    HostileCase("NaN literal", "quantity: NaN", _literal("quantity", "NaN"), _4XX),
    HostileCase(
        "Infinity literal", "declared_value_usd: Infinity", _literal("declared_value_usd", "Infinity"), _4XX
    ),
    HostileCase(
        "-Infinity literal", "gross_weight_kg: -Infinity", _literal("gross_weight_kg", "-Infinity"), _4XX
    ),
    HostileCase(
        "overflowing number", "declared_value_usd: 1e999", _literal("declared_value_usd", "1e999"), _4XX
    ),
    HostileCase("NaN as a string", 'quantity: "NaN"', _changes(quantity="NaN"), _4XX),
    HostileCase("text/plain", "JSON body sent as text/plain", _content_type("text/plain"), _4XX),
    HostileCase(
        "multipart",
        "multipart/form-data body",
        _content_type(
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="declarations"\r\n\r\n[]\r\n--x--\r\n',
        ),
        _4XX,
    ),
    HostileCase(
        "form-urlencoded",
        "application/x-www-form-urlencoded",
        _content_type("application/x-www-form-urlencoded", b"declarations=1"),
        _4XX,
    ),
    HostileCase(
        "UTF-16 JSON",
        "application/json body in UTF-16",
        lambda d: _json_post('{"declarations": []}'.encode("utf-16"), "application/json"),
        _4XX,
    ),
    HostileCase(
        "lone surrogate",
        'declaration_id "\\ud800"',
        lambda d: _json_post(b'{"declarations": [{"declaration_id": "\\ud800"}]}'),
        _4XX,
    ),
    HostileCase(
        "body not an object", "JSON string as the body", lambda d: _json_post(b'"declarations"'), _4XX
    ),
    HostileCase(
        "declarations null", '{"declarations": null}', lambda d: _json_post(b'{"declarations": null}'), _4XX
    ),
    HostileCase("empty body", "zero bytes", lambda d: _json_post(b""), _4XX),
    HostileCase(
        "RTL override in id",
        "U+202E in declaration_id and exporter_id",
        _changes(declaration_id="HOSTILE-\u202eLRT", exporter_id="EXP-\u202e1"),
        _OK_OR_422,
    ),
    HostileCase(
        "zero-width in id",
        "U+200B/U+FEFF in ids",
        _changes(declaration_id="HOSTILE-\u200b\ufeffZW", consignee_id="\u200b"),
        _OK_OR_422,
    ),
    HostileCase(
        "NUL byte in id",
        "\\u0000 in declaration_id",
        _changes(declaration_id="HOSTILE-\u0000-NUL"),
        _OK_OR_422,
    ),
    HostileCase(
        "NUL byte in description",
        "\\u0000 in goods_description",
        _changes(goods_description=f"tablets\u0000{DECLARATION_MARKER}"),
        _OK_OR_422,
    ),
    HostileCase(
        "65-char id", "declaration_id of 65 characters", _changes(declaration_id="H" * 65), _OK_OR_422
    ),
    HostileCase(
        "64 emoji id",
        "declaration_id of 64 four-byte characters",
        _changes(declaration_id="\U0001f4a3" * 64),
        _OK_OR_422,
    ),
    HostileCase("SQL in every text field", SQL_INJECTION, _sql_everywhere, frozenset({200})),
)


def send_hostile(deployment: Deployment, base: str, case: HostileCase) -> tuple[int | str, float, dict]:
    """(status or transport error, seconds, request arguments) for one hostile request."""
    request = case.request(deployment)
    request = {**request, "url": base + request["url"]}
    request["headers"] = {**deployment.headers(), **request.get("headers", {})}
    started = time.perf_counter()
    try:
        with httpx.Client(timeout=60) as http:
            response = http.request(**request)
        outcome: int | str = response.status_code
    except httpx.HTTPError as exc:
        outcome = f"{type(exc).__name__}"
    return outcome, time.perf_counter() - started, request


def check_hostile_case(deployment: Deployment, base: str, case: HostileCase) -> CheckResult:
    """The service answers the hostile request with an allowed status and stays ready."""
    result = CheckResult(f"hostile: {case.name}", case.fault)
    status, seconds, request = send_hostile(deployment, base, case)
    result.require(status in case.allowed, f"answered {status}, expected one of {sorted(case.allowed)[:6]}")
    ready = httpx.get(f"{base}/readyz", timeout=10).status_code
    result.require(ready == 200, f"/readyz {ready} after the request")
    result.figures = f"HTTP {status} in {seconds * 1000:.0f} ms"
    if status == 200 and case.name == "SQL in every text field":
        _check_stored_verbatim(deployment, request["json"]["declarations"][0], result)
    return result


def _check_stored_verbatim(deployment: Deployment, record: dict, result: CheckResult) -> None:
    """The audit table still exists and holds the declaration's text fields exactly as sent."""
    import orjson

    with contextlib.closing(sqlite3.connect(deployment.audit_path)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    result.require("audit_decisions" in tables, f"audit_decisions table gone: {sorted(tables)}")
    store = deployment.open_audit_store()
    try:
        stored = store.get(record["declaration_id"])
        total = store.count()
    finally:
        store.close()
    result.require(len(stored) == 1, f"{len(stored)} audit rows for {record['declaration_id']!r}, expected 1")
    if stored:
        kept = stored[0].declaration
        for name in (
            "declaration_id",
            "exporter_id",
            "consignee_id",
            "goods_description",
            "customs_broker_id",
            "export_authorization_id",
        ):
            result.require(kept.get(name) == record[name], f"{name} stored as {kept.get(name)!r}")
        result.require(
            orjson.loads(orjson.dumps(kept))["declaration_id"] == record["declaration_id"],
            "declaration_id does not round-trip",
        )
    result.figures += f"; stored verbatim, audit table intact ({total} rows)"


def check_log_hygiene(deployment: Deployment, log_path: Path) -> CheckResult:
    """No bearer token and no declaration content in the service log."""
    result = CheckResult("log hygiene", "grep the service log for tokens and a declaration marker")
    text = log_path.read_text(errors="replace")
    leaked = [role for role, token in deployment.tokens.items() if token in text]
    result.require(not leaked, f"token(s) of role(s) {leaked} in {log_path}")
    marker_lines = [line for line in text.splitlines() if DECLARATION_MARKER in line]
    result.require(
        not marker_lines, f"declaration content logged: {marker_lines[0][:160] if marker_lines else ''}"
    )
    server_errors = re.findall(r"path=(\S+?),.*\(status=(5\d\d)", text)
    result.require(not server_errors, f"5xx answers in the access log: {server_errors[:3]}")
    # BentoML logs each rejected body's pydantic error, with the offending (truncated)
    # input value, at ERROR with a traceback: counted here, not a failure of this check.
    rejected = text.count("ValidationError: ")
    result.figures = (
        f"{len(text.splitlines())} log lines; tokens {len(leaked)}, marker lines {len(marker_lines)}, "
        f"5xx {len(server_errors)}; {rejected} validation tracebacks at ERROR (quote the rejected value)"
    )
    return result


def run_hostile(deployment: Deployment) -> list[CheckResult]:
    """Every hostile case against one running service, then the log check."""
    log_path = deployment.folder / "hostile.log"
    with serving(deployment.env, log_path) as service:
        results = [check_hostile_case(deployment, service.base, case) for case in HOSTILE_CASES]
    results.append(check_log_hygiene(deployment, log_path))
    return results


# --- 4. crash with the audit store on PostgreSQL ------------------------------------------------

#: Server and maintenance database used to create (and drop) a scratch database per run.
POSTGRES_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def postgres_unreachable(admin_url: str = POSTGRES_ADMIN_URL) -> str | None:
    """None if `admin_url` accepts a connection, else why not (one line)."""
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except Exception as exc:  # the driver's own words are the most useful answer
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_postgres_database(admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[str]:
    """A new, uniquely named database on `admin_url`'s server (its URL), dropped on exit."""
    import sqlalchemy as sa

    name = f"reliability_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin.url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def run_postgres_crash(
    deployment: Deployment, admin_url: str = POSTGRES_ADMIN_URL, clients: int = 4, duration: float = 10.0
) -> CrashRun:
    """`run_crash` with the audit store in a fresh PostgreSQL database and schema (dropped afterwards)."""
    unreachable = postgres_unreachable(admin_url)
    if unreachable is not None:
        raise ConnectionError(f"PostgreSQL not reachable at {admin_url}: {unreachable}")
    with fresh_postgres_database(admin_url) as url:
        on_postgres = deployment.with_stores(
            "crash-postgres",
            DIVERSION_AUDIT_DB=url,
            DIVERSION_AUDIT_SCHEMA=f"audit_{uuid.uuid4().hex[:8]}",
        )
        return run_crash(on_postgres, clients=clients, duration=duration)


# --- 5. contract fuzzing with schemathesis -------------------------------------------------------

_SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
#: Credentials the contract is fuzzed with: each role's token, then none at all.
FUZZ_CREDENTIALS: tuple[str | None, ...] = ("scorer", "analyst", "auditor", None)
#: Answers that count as rejecting schema-violating data: schemathesis' defaults, plus 413
#: (the guard's documented answer to a batch above `maxItems`).
NEGATIVE_DATA_STATUSES = ("400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429")
#: Operation (path prefix) on which each role must have been granted something.
ROLE_OPERATIONS = {"scorer": ("/score",), "analyst": ("/history/", "/outcomes"), "auditor": ("/audit/",)}
_TOKEN_VARIABLE = "DIVERSION_FUZZ_TOKEN"


@dataclass(frozen=True)
class FuzzSettings:
    """How much schemathesis generates per operation and credential; the seed makes runs repeatable."""

    max_examples: int = 50
    seed: int = 20261123
    phases: tuple[str, ...] = ("examples", "coverage", "fuzzing", "stateful")
    request_timeout: float = 60.0


@dataclass
class FuzzRun:
    """One `schemathesis run` against the service's /docs.json with one credential."""

    credential: str  # a role, or "no token"
    exit_code: int
    seconds: float
    requests: int
    statuses: dict[int, int]
    server_errors: list[str]  # "POST /score -> 500"
    findings: list[str]  # schemathesis check failures: "ST101 Server error: POST /score"
    errors: list[str]  # operations schemathesis could not test
    operations_total: int
    operations_tested: int
    granted: list[str]  # "POST /score" answered 2xx
    granted_without_role: list[str]  # 2xx on an operation this credential may not call
    slowest_seconds: float
    slowest_request: str
    log_path: Path


def _fuzz_config(folder: Path, with_token: bool) -> Path:
    """schemathesis.toml for one run; the token comes from the environment, never the command line."""
    statuses = ", ".join(f'"{status}"' for status in NEGATIVE_DATA_STATUSES)
    lines = []
    if with_token:
        lines.append(f'headers = {{ Authorization = "Bearer ${{{_TOKEN_VARIABLE}}}" }}')
    lines += ["", "[checks.negative_data_rejection]", f"expected-statuses = [{statuses}]", ""]
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines))
    return path


def run_schemathesis(
    base: str, folder: Path, role: str | None, token: str | None, settings: FuzzSettings
) -> FuzzRun:
    """`schemathesis run {base}/docs.json` with every check, one credential; its JSON and HAR reports read back."""
    import orjson

    from serving.auth import route_access
    from serving.middleware import OPENAPI_PATH

    credential = role or "no token"
    folder.mkdir(parents=True, exist_ok=True)
    config = _fuzz_config(folder, with_token=token is not None)
    report, har, log_path = folder / "report.json", folder / "requests.har", folder / "schemathesis.log"
    command = [
        str(_SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{base}{OPENAPI_PATH}",
        "--checks",
        "all",
        "--max-examples",
        str(settings.max_examples),
        "--seed",
        str(settings.seed),
        "--phases",
        ",".join(settings.phases),
        "--continue-on-failure",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        str(settings.request_timeout),
        "--max-response-time",
        str(settings.request_timeout),
        "--no-color",
        "--report",
        "json,har",
        "--report-json-path",
        str(report),
        "--report-har-path",
        str(har),
    ]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SCHEMATHESIS_")}
    if token is not None:
        environment[_TOKEN_VARIABLE] = token
    started = time.perf_counter()
    with log_path.open("wb") as log:
        completed = subprocess.run(
            command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT, timeout=3600
        )
    seconds = time.perf_counter() - started

    document = orjson.loads(report.read_bytes()) if report.exists() else {}
    entries = orjson.loads(har.read_bytes())["log"]["entries"] if har.exists() else []
    statuses: dict[int, int] = {}
    server_errors, granted, granted_without_role = [], set(), set()
    slowest_seconds, slowest_request = 0.0, ""
    for entry in entries:
        status = int(entry["response"]["status"])
        method = entry["request"]["method"]
        path = httpx.URL(entry["request"]["url"]).path
        statuses[status] = statuses.get(status, 0) + 1
        label = f"{method} {path}"
        if status >= 500:
            server_errors.append(f"{label} -> {status}")
        if 200 <= status < 300:
            granted.add(label)
            needs_token, needed_role = route_access(path)
            if needs_token and (role is None or (needed_role is not None and needed_role != role)):
                granted_without_role.add(f"{label} -> {status}")
        if float(entry.get("time", 0.0)) / 1000 > slowest_seconds:
            slowest_seconds, slowest_request = float(entry["time"]) / 1000, label
    findings = [
        f"{failure.get('code')} {failure.get('title')}: {', '.join(failure.get('operations', []))}"
        for failure in document.get("failures", [])
    ]
    errors = [f"{error.get('title')} x{error.get('count')}" for error in document.get("errors", [])]
    operations = document.get("operations", {})
    return FuzzRun(
        credential=credential,
        exit_code=completed.returncode,
        seconds=seconds,
        requests=len(entries),
        statuses=dict(sorted(statuses.items())),
        server_errors=server_errors,
        findings=findings,
        errors=errors,
        operations_total=int(operations.get("total", 0)),
        operations_tested=int(operations.get("tested", 0)),
        granted=sorted(granted),
        granted_without_role=sorted(granted_without_role),
        slowest_seconds=slowest_seconds,
        slowest_request=slowest_request,
        log_path=log_path,
    )


def run_contract_fuzz(
    deployment: Deployment,
    settings: FuzzSettings = FuzzSettings(),  # noqa: B008 - frozen
    credentials: tuple[str | None, ...] = FUZZ_CREDENTIALS,
) -> list[FuzzRun]:
    """One service on fresh stores, fuzzed once per credential (in order; scorer first fills the audit trail)."""
    fuzzed = deployment.with_stores("fuzz")
    with serving(fuzzed.env, fuzzed.folder / "service.log") as service:
        return [
            run_schemathesis(
                service.base,
                fuzzed.folder / (role or "no-token"),
                role,
                deployment.tokens[role] if role else None,
                settings,
            )
            for role in credentials
        ]


def check_contract_fuzz(runs: list[FuzzRun], min_requests: int = 1000) -> CheckResult:
    """No 5xx, no schemathesis finding, every operation tested, roles enforced, enough requests."""
    result = CheckResult(
        "fuzz: OpenAPI contract (schemathesis)",
        "requests generated from /docs.json for every operation, with each role's token and none",
    )
    total = sum(run.requests for run in runs)
    result.require(total >= min_requests, f"{total} requests, fewer than {min_requests}")
    for run in runs:
        who = run.credential
        result.require(
            not run.server_errors, f"{who}: {len(run.server_errors)} 5xx, e.g. {run.server_errors[:3]}"
        )
        result.require(
            not run.findings, f"{who}: schemathesis findings {run.findings[:5]} (see {run.log_path})"
        )
        result.require(
            not run.errors, f"{who}: operations not testable: {run.errors[:3]} (see {run.log_path})"
        )
        result.require(
            run.operations_total > 0 and run.operations_tested == run.operations_total,
            f"{who}: {run.operations_tested}/{run.operations_total} operations tested",
        )
        result.require(
            not run.granted_without_role,
            f"{who}: answered 2xx without the role: {run.granted_without_role[:3]}",
        )
        for prefix in ROLE_OPERATIONS.get(who, ()):
            result.require(
                any(operation.split(" ", 1)[1].startswith(prefix.rstrip("/")) for operation in run.granted),
                f"{who}: no 2xx on {prefix} (token refused?)",
            )
        if run.exit_code != 0 and not (run.findings or run.errors):
            result.problems.append(f"{who}: schemathesis exited {run.exit_code} (see {run.log_path})")
    statuses: dict[int, int] = {}
    for run in runs:
        for status, count in run.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    per_credential = ", ".join(f"{run.credential} {run.requests:,}" for run in runs)
    slowest = max(runs, key=lambda run: run.slowest_seconds, default=None)
    result.figures = (
        f"{total:,} requests ({per_credential}), {max((r.operations_total for r in runs), default=0)} operations; "
        f"5xx {sum(len(r.server_errors) for r in runs)}, schemathesis findings "
        f"{sum(len(r.findings) for r in runs)}; statuses "
        + ", ".join(f"{status}: {count:,}" for status, count in sorted(statuses.items()))
        + (f"; slowest {slowest.slowest_request} {slowest.slowest_seconds:.1f} s" if slowest else "")
    )
    return result


# --- 6. load -----------------------------------------------------------------------------------------


@dataclass
class LoadRun:
    """Concurrent mixed scoring against one service with the audit trail on."""

    clients: int
    duration: float
    batch_rows: int
    seconds: float
    single_latencies_ms: list[float]
    batch_latencies_ms: list[float]
    acknowledged_declarations: int
    errors: list[str]
    audit_rows: int

    @property
    def requests(self) -> int:
        return len(self.single_latencies_ms) + len(self.batch_latencies_ms)


def _percentiles(latencies_ms: list[float]) -> tuple[float, float]:
    import numpy as np

    if not latencies_ms:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.asarray(latencies_ms), [50, 99])
    return float(p50), float(p99)


async def _drive_load(
    base: str,
    headers: dict[str, str],
    records: list[dict],
    clients: int,
    duration: float,
    batch_rows: int,
    batch_every: int,
) -> tuple[list[float], list[float], int, list[str]]:
    """`clients` coroutines posting /score until `duration` has passed: every `batch_every`-th request a batch."""
    import asyncio

    import orjson

    single: list[float] = []
    batch: list[float] = []
    errors: list[str] = []
    acknowledged = 0
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(
        base_url=base,
        headers={**headers, "content-type": "application/json"},
        timeout=httpx.Timeout(120.0),
        limits=limits,
    ) as http:

        async def client(number: int) -> None:
            nonlocal acknowledged
            sequence = 0
            while time.perf_counter() < deadline:
                rows = batch_rows if (sequence + number) % batch_every == 0 else 1
                ids = [f"LOAD-{number}-{sequence}-{row}" for row in range(rows)]
                first = (number * 31 + sequence * rows) % len(records)
                declarations = [
                    {**records[(first + row) % len(records)], "declaration_id": ids[row]}
                    for row in range(rows)
                ]
                body = orjson.dumps({"declarations": declarations})
                sequence += 1
                began = time.perf_counter()
                try:
                    response = await http.post("/score", content=body)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                (batch if rows > 1 else single).append((time.perf_counter() - began) * 1000)
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}: {response.text[:160]}")
                    continue
                answered = [score["declaration_id"] for score in orjson.loads(response.content)["scores"]]
                if answered != ids:
                    errors.append(f"answer lists {len(answered)} declarations, not the {rows} sent in order")
                    continue
                acknowledged += rows

        await asyncio.gather(*(client(number) for number in range(clients)))
    return single, batch, acknowledged, errors


def run_load(
    deployment: Deployment,
    clients: int = 50,
    duration: float = 60.0,
    batch_rows: int = 100,
    batch_every: int = 5,
) -> LoadRun:
    """`clients` concurrent callers for `duration` s (1 in `batch_every` requests a `batch_rows` batch), fresh audit store."""
    import asyncio

    loaded = deployment.with_stores("load")
    with serving(loaded.env, loaded.folder / "service.log") as service:
        started = time.perf_counter()
        single, batch, acknowledged, errors = asyncio.run(
            _drive_load(
                service.base,
                deployment.headers(),
                deployment.records,
                clients,
                duration,
                batch_rows,
                batch_every,
            )
        )
        seconds = time.perf_counter() - started
    store = loaded.open_audit_store()
    try:
        audit_rows = store.count()
    finally:
        store.close()
    return LoadRun(clients, duration, batch_rows, seconds, single, batch, acknowledged, errors, audit_rows)


def check_load(run: LoadRun) -> CheckResult:
    """No error under load, and exactly one audit row per acknowledged declaration."""
    result = CheckResult(
        "load: concurrent scoring",
        f"{run.clients} clients, {run.duration:.0f} s, single + {run.batch_rows}-row batches, audit on",
    )
    result.require(run.requests > 0, "no request was answered")
    result.require(not run.errors, f"{len(run.errors)} errors, e.g. {run.errors[:3]}")
    result.require(
        run.audit_rows == run.acknowledged_declarations,
        f"audit rows {run.audit_rows:,} != acknowledged declarations {run.acknowledged_declarations:,}",
    )
    p50, p99 = _percentiles(run.single_latencies_ms + run.batch_latencies_ms)
    single_p50, single_p99 = _percentiles(run.single_latencies_ms)
    batch_p50, batch_p99 = _percentiles(run.batch_latencies_ms)
    result.figures = (
        f"{run.requests:,} requests ({len(run.single_latencies_ms):,} single, "
        f"{len(run.batch_latencies_ms):,} x {run.batch_rows} rows), "
        f"{run.acknowledged_declarations:,} declarations acknowledged "
        f"({run.acknowledged_declarations / run.seconds:,.0f}/s), errors {len(run.errors)}, "
        f"audit rows {run.audit_rows:,}; latency p50 {p50:.0f} ms, p99 {p99:.0f} ms "
        f"(single {single_p50:.0f}/{single_p99:.0f} ms, batch {batch_p50:.0f}/{batch_p99:.0f} ms)"
    )
    return result


# --- 7. dependency audit ---------------------------------------------------------------------------

LOCK_FILE = Path("requirements.lock")
#: Advisory services pip-audit asks, in order, until one answers for every locked package.
ADVISORY_SERVICES = ("pypi", "osv")
#: Advisories accepted after review, by id, with the reason (repeat it in README "Dependency audit").
ACCEPTED_VULNERABILITIES: dict[str, str] = {}
#: Vendored PyPA advisories for the locked packages (OSV records, provenance in its header): served to
#: pip-audit by a loopback OSV mirror when none of ADVISORY_SERVICES answered for every package.
ADVISORY_SNAPSHOT = Path(__file__).resolve().parent / "advisories" / "pypi-advisories.json"
#: Skip reason for a locked package the snapshot does not cover: never audited, never clean.
NOT_IN_SNAPSHOT = "Not covered by the offline advisory snapshot"


@dataclass
class DependencyAudit:
    """What one pip-audit run against one advisory service could say about the locked set."""

    service: str
    packages: int  # pinned in the lock file
    audited: int  # packages the service had advisory data for
    unaudited: dict[str, str]  # package -> why it could not be audited
    vulnerabilities: list[str]  # "name version: ID (fixed in ...)"
    error: str | None  # pip-audit could not run the audit at all
    seconds: float
    detail: str = ""  # where the advisory data came from and how old it is, when that needs saying


def locked_packages(lock: Path) -> dict[str, str]:
    """Normalised name (PEP 503) -> version of every `name==version` line of a lock file."""
    pins = {}
    for line in lock.read_text().splitlines():
        name, separator, version = line.split("#", 1)[0].strip().partition("==")
        if separator:
            pins[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.strip()
    return pins


def read_pip_audit_report(document: dict, service: str, packages: int, seconds: float) -> DependencyAudit:
    """A DependencyAudit from pip-audit's JSON report (`--format json`)."""
    unaudited, vulnerabilities, audited = {}, [], 0
    for dependency in document.get("dependencies", []):
        if "skip_reason" in dependency:
            unaudited[dependency["name"]] = dependency["skip_reason"]
            continue
        audited += 1
        for vulnerability in dependency.get("vulns", []):
            fixed = ", ".join(vulnerability.get("fix_versions", [])) or "no fixed version"
            vulnerabilities.append(
                f"{dependency['name']} {dependency.get('version')}: {vulnerability.get('id')} (fixed in {fixed})"
            )
    return DependencyAudit(service, packages, audited, unaudited, vulnerabilities, None, seconds)


def run_pip_audit(
    lock: Path,
    service: str,
    folder: Path,
    timeout: int = 15,
    osv_url: str | None = None,
    report_name: str | None = None,
) -> DependencyAudit:
    """`pip-audit -r LOCK --no-deps --disable-pip -s SERVICE`: the pinned set as locked, nothing installed.

    `osv_url` points `-s osv` at another OSV query endpoint (the loopback mirror of the vendored snapshot).
    """
    import orjson

    folder.mkdir(parents=True, exist_ok=True)
    report = folder / f"pip-audit-{report_name or service}.json"
    report.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        str(lock.resolve()),
        "--no-deps",
        "--disable-pip",
        "--vulnerability-service",
        service,
        "--format",
        "json",
        "--output",
        str(report),
        "--progress-spinner",
        "off",
        "--timeout",
        str(timeout),
    ]
    if osv_url is not None:
        command += ["--osv-url", osv_url]
    for vulnerability_id in ACCEPTED_VULNERABILITIES:
        command += ["--ignore-vuln", vulnerability_id]
    # a loopback mirror must be reached directly, whatever proxy the environment names
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    packages = len(locked_packages(lock))
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=1800, env=env)
    seconds = time.perf_counter() - started
    if report.exists() and report.stat().st_size:
        return read_pip_audit_report(orjson.loads(report.read_bytes()), service, packages, seconds)
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"pip-audit exited {completed.returncode} without a report"
    unresolved = re.search(r"Failed to resolve '([^']+)'", reason)
    if unresolved:
        reason = f"{unresolved.group(1)} does not resolve (no route to the advisory service)"
    return DependencyAudit(service, packages, 0, {}, [], reason[:300], seconds)


def run_offline_audit(lock: Path, folder: Path, snapshot: Path = ADVISORY_SNAPSHOT) -> DependencyAudit:
    """pip-audit `-s osv` against a loopback OSV mirror of the vendored snapshot, for the covered packages.

    Locked packages the snapshot does not cover are not sent to pip-audit at all (the mirror would refuse
    them): they come back as unaudited, so the audit is incomplete and the row cannot pass.
    """
    from serving.advisories.osv_mirror import Snapshot, serve

    data = Snapshot.load(snapshot)
    label = f"{data.label} (pip-audit via loopback OSV mirror)"
    detail = (
        f"snapshot built {data.header['built']} from stored copies of "
        f"{', '.join(s['repo'] for s in data.header['sources'] if s.get('used'))}; "
        f"newest advisory record in it modified {data.header['newest_record_modified'][:10]}"
    )
    pins = locked_packages(lock)
    uncovered = {
        name: f"{NOT_IN_SNAPSHOT}: {name} ({version})"
        for name, version in pins.items()
        if name not in data.covered
    }
    covered = {name: version for name, version in pins.items() if name not in uncovered}
    if not covered:
        return DependencyAudit(label, len(pins), 0, uncovered, [], None, 0.0, detail)
    folder.mkdir(parents=True, exist_ok=True)
    covered_lock = folder / "covered-by-snapshot.lock"
    covered_lock.write_text("".join(f"{name}=={version}\n" for name, version in covered.items()))
    with serve(data) as (url, log):
        audit = run_pip_audit(covered_lock, "osv", folder, osv_url=url, report_name="offline-snapshot")
    audit.service, audit.packages, audit.detail = label, len(pins), detail
    audit.unaudited.update(uncovered)
    if audit.error is None and (audit.audited != len(log.answered) or log.refused):
        # every package pip-audit calls audited must have been answered by the mirror, and nothing refused
        audit.error = (
            f"pip-audit reported {audit.audited} packages audited but the mirror answered "
            f"{len(log.answered)} and refused {sorted(log.refused)[:5]}"
        )
    return audit


def run_dependency_audit(
    lock: Path,
    folder: Path,
    services: tuple[str, ...] = ADVISORY_SERVICES,
    snapshot: Path | None = ADVISORY_SNAPSHOT,
) -> list[DependencyAudit]:
    """pip-audit against each service in turn, stopping at the first that covers every locked package;
    when none does, against the vendored advisory snapshot (`snapshot=None` to skip that)."""
    audits = []
    for service in services:
        audit = run_pip_audit(lock, service, folder)
        audits.append(audit)
        if audit.error is None and audit.audited == audit.packages:
            return audits
    if snapshot is not None:
        audits.append(run_offline_audit(lock, folder, snapshot))
    return audits


def _why_unaudited(audit: DependencyAudit) -> str:
    if audit.error is not None:
        return f"{audit.service}: {audit.error}"
    reasons: dict[str, int] = {}
    for reason in audit.unaudited.values():
        kind = reason.split(":", 1)[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    said = "; ".join(f"{count} x '{kind}'" for kind, count in reasons.items())
    return f"{audit.service}: {audit.audited}/{audit.packages} packages checked ({said})"


def check_dependency_audit(audits: list[DependencyAudit], lock: Path = LOCK_FILE) -> CheckResult:
    """PASS only when some advisory source covered every locked package and reported nothing unaccepted."""
    from importlib.metadata import version

    result = CheckResult(
        "dependency audit (pip-audit)",
        f"pip-audit {version('pip-audit')} -r {lock.name} --no-deps (the locked set) vs known advisories",
    )
    for audit in audits:
        result.require(
            not audit.vulnerabilities,
            f"{audit.service}: {len(audit.vulnerabilities)} known vulnerabilities: {audit.vulnerabilities[:5]}",
        )
    complete = [a for a in audits if a.error is None and a.packages and a.audited == a.packages]
    accepted = (
        f"; accepted advisories: {sorted(ACCEPTED_VULNERABILITIES)}" if ACCEPTED_VULNERABILITIES else ""
    )
    if complete:
        audit = complete[0]
        result.figures = (
            f"{audit.audited}/{audit.packages} locked packages checked against {audit.service} in "
            f"{audit.seconds:.0f} s: {len(audit.vulnerabilities)} known vulnerabilities{accepted}"
        )
        if audit.detail:
            result.figures += f" ({audit.detail})"
        before = audits[: audits.index(audit)]
        if before:
            result.figures += "; no verdict from " + " | ".join(_why_unaudited(a) for a in before)
        return result
    result.unverified = "advisory data unreachable: " + " | ".join(_why_unaudited(a) for a in audits)
    packages = audits[0].packages if audits else 0
    checked = max((a.audited for a in audits if a.error is None), default=0)
    result.figures = (
        f"{checked} of {packages} locked packages could be checked; no verdict on vulnerabilities"
    )
    return result


# --- the report ------------------------------------------------------------------------------


def print_table(results: list[CheckResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Reliability under faults and hostile input — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )
    table.add_column("test")
    table.add_column("fault applied")
    table.add_column("result")
    table.add_column("figures")
    colours = {"PASS": "green", "FAIL": "red", "UNVERIFIED": "yellow"}
    for result in results:
        verdict = f"[{colours[result.verdict]}]{result.verdict}[/{colours[result.verdict]}]"
        notes = list(result.problems) + ([result.unverified] if result.unverified else [])
        figures = result.figures + ("\n" + "; ".join(notes) if notes else "")
        table.add_row(result.test, result.fault, verdict, figures)
    Console(width=200).print(table)


def _guarded(group: str, check: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """Run one group of checks; a group that raises is a failed row, not a crashed table."""
    try:
        return check()
    except Exception as exc:  # the row must say what broke, whatever it was
        result = CheckResult(group, "(the check itself raised)")
        result.problems.append(f"{type(exc).__name__}: {exc}")
        return [result]


def _training_input_rows(folder: Path) -> list[CheckResult]:
    """The rows of `training.input_faults` (adversarial training files), or none if that module is absent."""
    try:
        from training.input_faults import run_training_input_faults
    except ModuleNotFoundError as exc:
        if exc.name != "training.input_faults":
            raise
        print("   training/input_faults.py not present: no training-input rows", flush=True)
        return []
    return run_training_input_faults(folder)


def _crash_rows(deployment: Deployment) -> list[CheckResult]:
    run = run_crash(deployment.with_stores("crash"))
    return [check_crash_durability(run), check_crash_recovery(run)]


def _postgres_crash_rows(deployment: Deployment) -> list[CheckResult]:
    try:
        run = run_postgres_crash(deployment)
    except ConnectionError as exc:  # no server: both rows fail, saying so
        rows = [
            CheckResult(
                "crash (PostgreSQL): acknowledged = audited", "kill -9 under 4 clients, audit on PostgreSQL"
            ),
            CheckResult("crash (PostgreSQL): recovery time", "restart after kill -9"),
        ]
        for row in rows:
            row.problems.append(str(exc))
        return rows
    return [check_crash_durability(run), check_crash_recovery(run)]


#: Groups of checks, in the order they run (`--only` picks some).
GROUPS = (
    "crash",
    "crash-postgres",
    "broken-dependencies",
    "hostile",
    "fuzz",
    "load",
    "dependency-audit",
    "training-input",
)
_SERVICE_GROUPS = frozenset(GROUPS) - {"dependency-audit", "training-input"}


def run_reliability(
    tracking_uri: str = "sqlite:///mlflow.db",
    declarations: Path = Path("data/synthetic/declarations.parquet"),
    seizures: Path = Path("data/synthetic/seizures.parquet"),
    only: tuple[str, ...] = GROUPS,
    fuzz: FuzzSettings = FuzzSettings(),  # noqa: B008 - frozen
    load_clients: int = 50,
    load_seconds: float = 60.0,
) -> int:
    """Run the selected groups against the registered @champion; print the table; 1 unless every row passed."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if tracking_uri.startswith("sqlite:///"):
        tracking_uri = f"sqlite:///{Path(tracking_uri.removeprefix('sqlite:///')).resolve()}"
    selected = [group for group in GROUPS if group in only]
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="reliability-") as scratch:
        folder = Path(scratch)
        deployment = None
        if _SERVICE_GROUPS.intersection(selected):
            print("preparing history, tokens and stores ...", flush=True)
            deployment = prepare_deployment(
                folder / "main", tracking_uri, declarations.resolve(), seizures.resolve()
            )
        groups: dict[str, tuple[str, Callable[[], list[CheckResult]]]] = {
            "crash": ("kill -9 under load, audit on SQLite", lambda: _crash_rows(deployment)),
            "crash-postgres": (
                "kill -9 under load, audit on PostgreSQL",
                lambda: _postgres_crash_rows(deployment),
            ),
            "broken-dependencies": (
                "broken model artifact, unreachable audit database",
                lambda: [check_truncated_model(deployment), check_unreachable_audit_db(deployment)],
            ),
            "hostile": ("hostile input", lambda: run_hostile(deployment)),
            "fuzz": (
                f"schemathesis on /docs.json, {len(FUZZ_CREDENTIALS)} credentials",
                lambda: [check_contract_fuzz(run_contract_fuzz(deployment, fuzz))],
            ),
            "load": (
                f"{load_clients} clients for {load_seconds:.0f} s",
                lambda: [check_load(run_load(deployment, clients=load_clients, duration=load_seconds))],
            ),
            "dependency-audit": (
                "pip-audit on requirements.lock",
                lambda: [check_dependency_audit(run_dependency_audit(LOCK_FILE, folder / "pip-audit"))],
            ),
            "training-input": (
                "adversarial training input",
                lambda: _training_input_rows(folder / "training-input"),
            ),
        }
        for number, group in enumerate(selected, start=1):
            what, check = groups[group]
            print(f"{number}/{len(selected)} {group}: {what} ...", flush=True)
            results += _guarded(group, check)
    print_table(results)
    failed = [r.test for r in results if r.problems]
    unverified = [r.test for r in results if not r.problems and r.unverified is not None]
    print(
        f"{len(results) - len(failed) - len(unverified)}/{len(results)} passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + (f"; unverified: {', '.join(unverified)}" if unverified else "")
    )
    return 0 if results and not failed and not unverified else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m serving.reliability [--only GROUP ...]`: the reliability table; 1 unless every row passed."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m serving.reliability", description=main.__doc__)
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS), help="groups to run")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--declarations", type=Path, default=Path("data/synthetic/declarations.parquet"))
    parser.add_argument("--seizures", type=Path, default=Path("data/synthetic/seizures.parquet"))
    args = parser.parse_args(argv)
    return run_reliability(args.tracking_uri, args.declarations, args.seizures, only=tuple(args.only))


if __name__ == "__main__":
    raise SystemExit(main())
