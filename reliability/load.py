"""Load: concurrent clients of mixed single and 100-row scoring with the audit trail on; no
errors, one audit row per acknowledged declaration, p50/p99 latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from reliability.checks import CheckResult
from reliability.deployment import Deployment, serving


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
