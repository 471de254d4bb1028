"""Figures of the shared history: the per-request log check, and throughput with several workers.

- `log_check_cost`: p50/p99 of `HistoryStore.head()` (what every `/score` pays to apply
  appends made by other workers and replicas), on SQLite and, when reachable, PostgreSQL.
- `concurrent_throughput`: requests/s (single declarations) and declarations/s
  (1,000-declaration batches) of the real service with `workers` processes, driven by
  `clients` concurrent clients for a fixed time.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import orjson
import sqlalchemy as sa

from serving.process import running_service

POSTGRES_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _head_timings(url: str, calls: int) -> dict[str, float]:
    from features.history import _empty_like_declarations, _empty_like_seizures
    from features.reference import load_reference
    from serving.history_store import HistoryStore, make_engine

    store = HistoryStore(
        make_engine(url), load_reference(), _empty_like_declarations(), _empty_like_seizures()
    )
    try:
        for _ in range(200):
            store.head()
        timings = np.empty(calls)
        for i in range(calls):
            started = time.perf_counter()
            store.current()
            timings[i] = time.perf_counter() - started
    finally:
        store.close()
    micros = timings * 1e6
    return {"p50_us": float(np.percentile(micros, 50)), "p99_us": float(np.percentile(micros, 99))}


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            return True
    except OSError:
        return False


def log_check_cost(calls: int = 3000) -> dict[str, dict[str, float]]:
    """p50/p99 microseconds of the per-request log check (`HistoryStore.current()` with nothing new)."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        results["SQLite (file, WAL)"] = _head_timings(f"sqlite:///{folder}/history.db", calls)
    if _postgres_reachable():
        name = f"bench_{uuid.uuid4().hex}"
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
            results["PostgreSQL (127.0.0.1)"] = _head_timings(url, calls)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return results


def _drive(url: str, bodies: list[bytes], clients: int, seconds: float) -> int:
    """Requests completed by `clients` threads posting `bodies` in turn for `seconds`."""
    done = [0] * clients
    stop = threading.Event()
    headers = {"content-type": "application/json"}

    def client(i: int) -> None:
        with httpx.Client(timeout=120) as http:
            j = i
            while not stop.is_set():
                http.post(url, content=bodies[j % len(bodies)], headers=headers).raise_for_status()
                done[i] += 1
                j += clients

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(done)


def concurrent_throughput(
    env: dict[str, str], records: list[dict], workers: int, out: Path, clients: int = 4, seconds: float = 15.0
) -> dict[str, float]:
    """Single-declaration requests/s and batch declarations/s with `workers` worker processes."""
    singles = [orjson.dumps({"declarations": [r]}) for r in records]
    batches = [
        orjson.dumps({"declarations": records[i : i + 1000]}) for i in range(0, len(records) - 999, 500)
    ]
    for stale in ("history.db", "audit.db"):
        (out / stale).unlink(missing_ok=True)
    with running_service(
        {**env, "DIVERSION_WORKERS": str(workers)}, log_path=out / f"workers-{workers}.log"
    ) as base:
        url = f"{base}/score"
        _drive(url, singles, clients, 3.0)  # warm-up: every worker has answered
        single_rate = _drive(url, singles, clients, seconds) / seconds
        batch_rate = _drive(url, batches, clients, seconds) * 1000 / seconds
    return {"singles_per_s": single_rate, "rows_per_s": batch_rate}
