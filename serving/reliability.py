"""Reliability under faults and hostile input: `python -m serving.reliability` (`make reliability`).

Starts the real service (`bentoml serve`) on loopback against a registered model and
checks three groups, one table row per check:

1. crash: `kill -9` of the service's process group under load; every acknowledged
   decision must be in the audit store, the SQLite file must be intact, and the service
   must be ready again (recovery time measured against the 10 s target);
2. broken dependencies: a truncated model artifact (in a copy of the MLflow store) and an
   unreachable audit database must leave the service up, not ready, refusing to score,
   and saying why in its log;
3. hostile input: oversized, deeply nested, non-finite, mistyped and tricky requests must
   get a 4xx (or a 200 for input that is merely odd data), never a 5xx, and neither
   tokens nor declarations may appear in the log.

Nothing is trained here: it needs the model registered by `make train` and its data.
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

from serving.process import free_port, wait_until

_BENTOML = Path(sys.executable).with_name("bentoml")
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

    @property
    def passed(self) -> bool:
        return not self.problems

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

    def headers(self, role: str = "scorer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


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
            [
                str(_BENTOML),
                "serve",
                "serving.service:DiversionRiskService",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
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


@dataclass
class CrashRun:
    """What happened around one `kill -9` under load."""

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
    from serving.audit import AuditStore

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

    # The file as the crash left it (sqlite3 replays or discards the WAL on open).
    with contextlib.closing(sqlite3.connect(deployment.audit_path)) as connection:
        integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]

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

    store = AuditStore(deployment.audit_url)
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
    result = CheckResult("crash: acknowledged = audited", "kill -9 of the process group under 4 clients")
    result.require(run.acknowledged_before_kill > 0, "no request was acknowledged before the kill")
    result.require(not run.lost, f"{len(run.lost)} acknowledged decision(s) missing, e.g. {run.lost[:3]}")
    result.require(run.integrity == "ok", f"PRAGMA integrity_check after the kill: {run.integrity!r}")
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
        "crash: recovery time", f"restart after kill -9 (target <= {RECOVERY_TARGET_SECONDS:.0f} s)"
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

    from serving.audit import AuditStore

    with contextlib.closing(sqlite3.connect(deployment.audit_path)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    result.require("audit_decisions" in tables, f"audit_decisions table gone: {sorted(tables)}")
    store = AuditStore(deployment.audit_url)
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
    for result in results:
        verdict = "[green]PASS[/green]" if result.passed else "[red]FAIL[/red]"
        figures = result.figures + ("" if result.passed else "\n" + "; ".join(result.problems))
        table.add_row(result.test, result.fault, verdict, figures)
    Console(width=200).print(table)


def run_reliability(
    tracking_uri: str = "sqlite:///mlflow.db",
    declarations: Path = Path("data/synthetic/declarations.parquet"),
    seizures: Path = Path("data/synthetic/seizures.parquet"),
) -> int:
    """Run every check against the registered @champion; print the table; 1 if any check failed."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if tracking_uri.startswith("sqlite:///"):
        tracking_uri = f"sqlite:///{Path(tracking_uri.removeprefix('sqlite:///')).resolve()}"
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="reliability-") as scratch:
        folder = Path(scratch)
        print("preparing history, tokens and audit store ...", flush=True)
        crash_deployment = prepare_deployment(
            folder / "crash", tracking_uri, declarations.resolve(), seizures.resolve()
        )
        print("1/3 crash: kill -9 under load ...", flush=True)
        run = run_crash(crash_deployment)
        results += [check_crash_durability(run), check_crash_recovery(run)]
        deployment = prepare_deployment(
            folder / "main", tracking_uri, declarations.resolve(), seizures.resolve()
        )
        print("2/3 broken model artifact, unreachable audit database ...", flush=True)
        results += [check_truncated_model(deployment), check_unreachable_audit_db(deployment)]
        print("3/3 hostile input ...", flush=True)
        results += run_hostile(deployment)
    print_table(results)
    failed = [r.test for r in results if not r.passed]
    print(
        f"{len(results) - len(failed)}/{len(results)} passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run_reliability())
