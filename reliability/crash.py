"""Crash and broken dependencies: `kill -9` under load (audit store on SQLite and on
PostgreSQL), a truncated model artifact and an unreachable audit database.

Every acknowledged decision must be in the audit store, the store must be intact, and the
service must be ready again within the recovery target; a broken dependency must leave the
service up, not ready, refusing to score and saying why in its log.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from reliability.checks import CheckResult
from reliability.deployment import Deployment, ServiceProcess, serving

#: Recovery target for a crashed service: restart to /readyz 200.
RECOVERY_TARGET_SECONDS = 10.0


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


# --- broken dependencies ---------------------------------------------------------------


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


# --- crash with the audit store on PostgreSQL ------------------------------------------------


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
