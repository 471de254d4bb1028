"""The hardened edge of the real service (a `bentoml serve` subprocess), called over HTTP and raw sockets."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import random
import socket
import string
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from features.contract import SEIZURE_LINK_COLUMNS
from features.validation import load_contract_tables
from serving.auth import issue_token
from serving.auth import main as auth_main
from serving.process import running_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NEW = 60
TIMEOUT_SECONDS = 2
AWKWARD = 'line one\r\nline two\rbare CR, "quoted", comma \u200fRTL\u202e mark\nend'
BARE_CR = "tramadol 100 mg\rstrips of 10"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, trained, small_history: Path, deployment_setup):
    config, _ = trained
    folder = tmp_path_factory.mktemp("hardening")
    prepared = deployment_setup(
        folder, config, small_history, NEW, roles=("scorer", "analyst", "auditor", "monitor")
    )
    env = {
        **prepared.env,
        "DIVERSION_HEADER_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "DIVERSION_BODY_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "DIVERSION_REPLAY_CONCURRENCY": "1",
        "DIVERSION_TOKENS_RELOAD_SECONDS": "0.5",
    }
    with running_service(env, log_path=folder / "service.log") as base:
        yield {
            "base": base,
            "token": prepared.token,
            "records": prepared.records,
            "env": env,
            "folder": folder,
        }


def _auth(service, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {service['token'][role]}"}


def _declaration(records: list[dict], n: int, **changes) -> dict:
    return {**records[0], "declaration_id": f"HARD-{n:04d}", **changes}


# --- timestamps and the contract at the edge --------------------------------------------------

OUT_OF_RANGE = "9999-12-31T23:59:59-14:00"


def test_timestamps_beyond_year_9999_in_utc_are_422_on_every_write(service) -> None:
    base, records = service["base"], service["records"]
    seizure = {
        "seizure_id": "HARD-SZ",
        "seized_at": OUT_OF_RANGE,
        "exporter_id": "IEC1",
        "country": "NG",
        "substance": "x",
    }
    calls = [
        (
            "/score",
            "scorer",
            {"declarations": [_declaration(records, 1, declared_at=OUT_OF_RANGE)]},
            "declared_at",
        ),
        (
            "/history/declarations",
            "analyst",
            {"declarations": [_declaration(records, 2, declared_at=OUT_OF_RANGE)]},
            "declared_at",
        ),
        ("/history/seizures", "analyst", {"seizures": [seizure]}, "seized_at"),
        ("/outcomes", "analyst", {"seizures": [seizure]}, "seizures.0.seized_at"),
        (
            "/outcomes",
            "analyst",
            {"inspections": [{"declaration_id": "X", "inspected_at": OUT_OF_RANGE, "result": "CLEAN"}]},
            "inspected_at",
        ),
    ]
    for path, role, body, field in calls:
        answer = httpx.post(f"{base}{path}", json=body, headers=_auth(service, role), timeout=30)
        assert answer.status_code == 422, (path, answer.status_code, answer.text)
        (error,) = answer.json()["errors"]
        assert error["field"] == field
        assert "outside years 1-9999" in error["message"]


def test_seizures_the_contract_rejects_get_422_naming_field_and_reason(service) -> None:
    base = service["base"]
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
    cases = [
        (
            {"seizure_id": "HARD-S1", "seized_at": "2024-01-01T00:00:00Z", "country": "NG", "substance": "x"},
            "|".join(SEIZURE_LINK_COLUMNS),
            "a seizure must name at least one",
        ),
        (
            {
                "seizure_id": "HARD-S2",
                "seized_at": "1970-01-01T00:00:00Z",
                "exporter_id": "E",
                "country": "NG",
                "substance": "x",
            },
            "seized_at",
            "before 1990-01-01",
        ),
        (
            {
                "seizure_id": "HARD-S3",
                "seized_at": future,
                "exporter_id": "E",
                "country": "NG",
                "substance": "x",
            },
            "seized_at",
            "in the future",
        ),
        (
            {
                "seizure_id": "HARD-S4",
                "seized_at": "2024-01-01T00:00:00Z",
                "exporter_id": "E",
                "country": "NG",
                "substance": "x\x00",
            },
            "substance",
            "NUL character",
        ),
    ]
    for seizure, field, reason in cases:
        answer = httpx.post(
            f"{base}/history/seizures", json={"seizures": [seizure]}, headers=_auth(service, "analyst")
        )
        assert answer.status_code == 422, answer.text
        (error,) = answer.json()["errors"]
        assert (error["field"], error["seizure_id"]) == (field, seizure["seizure_id"])
        assert reason in error["message"]


def test_json_media_type_in_any_case_is_accepted(service) -> None:
    answer = httpx.post(
        f"{service['base']}/score",
        content=httpx.Request("POST", "/", json={"declarations": [service["records"][0]]}).content,
        headers={**_auth(service, "scorer"), "Content-Type": "Application/JSON; Charset=UTF-8"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


# --- the outcome loop: post, export, validate --------------------------------------------------


def test_posted_history_and_outcomes_export_and_validate_with_zero_rejects(service, tmp_path: Path) -> None:
    base, records = service["base"], service["records"]
    declared = "2025-01-02T10:00:00+05:30"
    declarations = [
        _declaration(records, 100, declared_at=declared, goods_description=AWKWARD),
        _declaration(records, 101, declared_at=declared, goods_description=BARE_CR),
    ]
    seizures = [
        {
            "seizure_id": "HARD-SZ-1",
            "seized_at": "2025-02-01T00:00:00Z",
            "declaration_id": "HARD-0100",
            "country": "NG",
            "substance": AWKWARD,
            "agency": BARE_CR,
        },
    ]
    outcome_seizures = [
        {
            "seizure_id": "HARD-SZ-2",
            "seized_at": "2025-02-02T00:00:00Z",
            "consignee_id": 'CONS,"1"',
            "country": "NG",
            "substance": BARE_CR,
            "agency": AWKWARD,
        },
    ]
    inspections = [{"declaration_id": "HARD-0101", "inspected_at": "2025-01-03T00:00:00Z", "result": "CLEAN"}]
    analyst = _auth(service, "analyst")
    assert (
        httpx.post(
            f"{base}/history/declarations", json={"declarations": declarations}, headers=analyst, timeout=30
        ).status_code
        == 200
    )
    assert (
        httpx.post(
            f"{base}/history/seizures", json={"seizures": seizures}, headers=analyst, timeout=30
        ).status_code
        == 200
    )
    answer = httpx.post(
        f"{base}/outcomes",
        json={"inspections": inspections, "seizures": outcome_seizures},
        headers=analyst,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    out = tmp_path / "outcomes"
    subprocess.run(
        [sys.executable, "-m", "serving", "export-outcomes", "--out", str(out)],
        env={**os.environ, **service["env"]},
        check=True,
        capture_output=True,
        timeout=300,
    )
    tables = load_contract_tables(
        out / "declarations.csv",
        out / "seizures.csv",
        out / "inspections.csv",
        rejects_dir=tmp_path / "rejects",
        max_reject_share=0.0,
    )
    assert tables.report.rows_rejected == {"declarations": 0, "seizures": 0, "inspections": 0}
    exported = tables.declarations.set_index("declaration_id")["goods_description"]
    assert exported["HARD-0100"] == AWKWARD and exported["HARD-0101"] == BARE_CR
    substances = tables.seizures.set_index("seizure_id")["substance"]
    assert substances["HARD-SZ-1"] == AWKWARD and substances["HARD-SZ-2"] == BARE_CR


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_need_the_monitor_role_and_stay_bounded_under_random_paths(service) -> None:
    base = service["base"]
    assert httpx.get(f"{base}/metrics").status_code == 401
    assert httpx.get(f"{base}/metrics", headers=_auth(service, "auditor")).status_code == 403
    monitor = _auth(service, "monitor")
    auditor = _auth(service, "auditor")
    with httpx.Client(base_url=base, timeout=30) as client:
        for path in ("/audit/decisions/NEVER-1", "/audit/replay/NEVER-1", "/nothing-here", "/livez"):
            client.get(path, headers=auditor)
        client.get("/metrics", headers=monitor)
        before = len(client.get("/metrics", headers=monitor).content)
        rng = random.Random(16)
        for _ in range(5000):
            word = "".join(rng.choices(string.ascii_letters + string.digits, k=12))
            path = rng.choice([f"/{word}", f"/audit/decisions/{word}", f"/x/{word}/y"])
            client.get(path, headers=auditor)
        started = time.perf_counter()
        after = client.get("/metrics", headers=monitor)
        scrape = time.perf_counter() - started
    print(
        f"/metrics: {before:,} bytes before, {len(after.content):,} after 5,000 random paths; scrape {scrape:.3f} s"
    )
    assert after.status_code == 200
    assert len(after.content) < before * 1.05
    assert "NEVER-1" not in after.text
    assert 'route="/audit/decisions/{declaration_id}"' in after.text


# --- slow clients -------------------------------------------------------------------------------


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=TIMEOUT_SECONDS * 5)


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_slow_headers_get_408_and_the_connection_closed(service) -> None:
    with _connect(service["base"]) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        started = time.perf_counter()
        answer = _read_until_closed(sock)  # returns only when the server closes
        waited = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert TIMEOUT_SECONDS * 0.8 <= waited < TIMEOUT_SECONDS * 4


def test_slow_body_gets_408_and_the_connection_closed(service) -> None:
    token = service["token"]["scorer"]
    head = (
        "POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    with _connect(service["base"]) as sock:
        sock.sendall(head + b'{"declarations": [')  # 19 of the 1,000 bytes promised
        started = time.perf_counter()
        answer = _read_until_closed(sock)
        waited = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert waited < TIMEOUT_SECONDS * 4


def test_a_kept_alive_connection_serves_requests_normally(service) -> None:
    with httpx.Client(base_url=service["base"], timeout=30) as client:
        for _ in range(3):
            assert client.get("/livez").status_code == 200
            time.sleep(TIMEOUT_SECONDS * 0.6)  # idle between requests is the keep-alive timer's business


# --- tokens -------------------------------------------------------------------------------------


def test_a_revoked_token_is_refused_within_seconds_without_a_restart(service) -> None:
    tokens = Path(service["env"]["DIVERSION_TOKENS_FILE"])
    token = issue_token("hardening-desk", ["scorer"], tokens)
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 10
    while httpx.get(f"{service['base']}/model", headers=headers).status_code != 200:
        assert time.monotonic() < deadline, "a newly issued token was not picked up"
        time.sleep(0.2)

    auth_main(["revoke", "--name", "hardening-desk", "--file", str(tokens)])
    revoked_at = time.monotonic()
    while httpx.get(f"{service['base']}/model", headers=headers).status_code != 401:
        assert time.monotonic() - revoked_at < 10, "a revoked token still works"
        time.sleep(0.2)
    print(f"revoked token refused after {time.monotonic() - revoked_at:.1f} s")
    assert httpx.get(f"{service['base']}/model", headers=_auth(service, "scorer")).status_code == 200


# --- audit replay -------------------------------------------------------------------------------


def test_concurrent_replays_beyond_the_limit_get_429_with_retry_after(service) -> None:
    base, records = service["base"], service["records"]
    batch = records[-4:]
    scored = httpx.post(
        f"{base}/score", json={"declarations": batch}, headers=_auth(service, "scorer"), timeout=60
    )
    assert scored.status_code == 200, scored.text

    def replay(declaration_id: str) -> httpx.Response:
        return httpx.get(
            f"{base}/audit/replay/{declaration_id}", headers=_auth(service, "auditor"), timeout=120
        )

    # A replay now reuses the live history index and takes milliseconds: bursts of sixteen at once
    # against the limit of two, until one is refused (the limit itself is unit-tested with a
    # replay that blocks, in tests/serving/test_hardening.py).
    ids = [r["declaration_id"] for r in batch] * 4
    answers: list[httpx.Response] = []
    for _ in range(5):
        with concurrent.futures.ThreadPoolExecutor(len(ids)) as pool:
            answers = list(pool.map(replay, ids))
        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) <= {200, 429}, statuses
        if 429 in statuses:
            break
    assert 200 in statuses and 429 in statuses, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["Retry-After"]) > 0


def _worker(base: str):
    """The process that serves `base` (the one holding its listening socket with the most memory)."""
    import psutil

    port = int(base.rsplit(":", 1)[1])
    holders = set()
    for process in psutil.process_iter():
        try:
            if any(
                c.laddr.port == port and c.status == psutil.CONN_LISTEN
                for c in process.net_connections("tcp")
            ):
                holders.add(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    return max(holders, key=lambda p: p.memory_info().rss)


def test_memory_of_one_audit_replay_is_measured(service) -> None:
    """Peak RSS rise of the serving worker during one replay (the figure in docs/security.md)."""
    import threading

    base, record = service["base"], service["records"][-5]
    assert (
        httpx.post(
            f"{base}/score", json={"declarations": [record]}, headers=_auth(service, "scorer"), timeout=60
        ).status_code
        == 200
    )
    worker = _worker(base)
    idle = worker.memory_info().rss
    peak, done = idle, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, worker.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    answer = httpx.get(
        f"{base}/audit/replay/{record['declaration_id']}", headers=_auth(service, "auditor"), timeout=120
    )
    took = time.perf_counter() - started
    done.set()
    sampler.join()
    assert answer.status_code == 200, answer.text
    print(
        f"one replay: {took:.2f} s, worker RSS {idle / 2**20:,.0f} MiB idle, peak +{(peak - idle) / 2**20:,.0f} MiB"
    )
    assert peak >= idle
