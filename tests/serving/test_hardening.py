"""Hardening of the service's edge, without a model: media types, slow bodies, metrics, replay
slots, tokens that change or expire, and the export that training reads back."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import string
import threading
from pathlib import Path

import pandas as pd
import pytest
from fastapi import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.auth import (
    AuthMiddleware,
    Caller,
    TokenRegistry,
    hash_token,
    issue_token,
    list_tokens,
    main,
    parse_expiry,
)
from serving.limits import ConcurrencyLimit, Saturated
from serving.metrics import MetricsEndpoint, RouteMetrics, ServiceMetrics, route_template
from serving.middleware import RequestGuard

# --- media type ---------------------------------------------------------------------------


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def _guarded(**options) -> TestClient:
    routes = [Route(p, _ok, methods=["POST"]) for p in ("/score", "/outcomes", "/history/seizures")]
    return TestClient(RequestGuard(Starlette(routes=routes), **options))


@pytest.mark.parametrize(
    "content_type",
    [
        "Application/JSON",
        "APPLICATION/JSON; charset=UTF-8",
        "application/json;charset=utf-8",
        "application/Json",
    ],
)
def test_json_media_type_is_matched_case_insensitively_with_parameters(content_type: str) -> None:
    response = _guarded().post(
        "/score", content=b'{"declarations": []}', headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text


def test_other_media_types_still_get_415() -> None:
    response = _guarded().post("/score", content=b"{}", headers={"content-type": "text/plain"})
    assert response.status_code == 415


# --- slow body ----------------------------------------------------------------------------


def test_a_body_that_does_not_arrive_in_time_gets_408_and_connection_close() -> None:
    async def never_called(scope, receive, send):  # pragma: no cover - the guard answers first
        raise AssertionError("the app must not run")

    guard = RequestGuard(never_called, body_timeout=0.2)
    sent: list[dict] = []

    async def receive() -> dict:
        await asyncio.sleep(3600)  # a client that sent its headers and then nothing
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/score", "headers": [(b"content-length", b"100")]}
    asyncio.run(asyncio.wait_for(guard(scope, receive, send), timeout=5))

    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]


# --- metrics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/score", "/score"),
        ("/audit/replay/SB0000123", "/audit/replay/{declaration_id}"),
        ("/audit/decisions/SB0000123", "/audit/decisions/{declaration_id}"),
        ("/audit/decisions/a/b", "other"),
        ("/no/such/path", "other"),
        ("/metrics", "/metrics"),
    ],
)
def test_route_template(path: str, template: str) -> None:
    assert route_template(path) == template


MONITOR, SCORER = "monitor-token-" + "m" * 30, "scorer-token-" + "s" * 30


def _metrics_app(monkeypatch: pytest.MonkeyPatch) -> tuple[TestClient, ServiceMetrics]:
    """The service's order: metrics outermost, then auth, then the /metrics endpoint, then the app."""
    monkeypatch.delenv("DIVERSION_TOKENS_FILE", raising=False)
    monkeypatch.setenv(
        "DIVERSION_TOKENS", f"prometheus:monitor:{hash_token(MONITOR)},ices:scorer:{hash_token(SCORER)}"
    )
    registry = TokenRegistry.from_env()
    metrics = ServiceMetrics()
    routes = [Route("/score", _ok, methods=["POST"]), Route("/audit/{rest:path}", _ok)]
    app = MetricsEndpoint(Starlette(routes=routes), metrics)
    return TestClient(RouteMetrics(AuthMiddleware(app, registry), metrics)), metrics


def test_metrics_need_the_monitor_role(monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = _metrics_app(monkeypatch)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {SCORER}"}).status_code == 403
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {MONITOR}"})
    assert answer.status_code == 200
    assert "diversion_http_requests_total" in answer.text


def test_metrics_stay_bounded_under_random_paths_and_never_name_a_declaration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _ = _metrics_app(monkeypatch)
    monitor = {"Authorization": f"Bearer {MONITOR}"}
    auditor_like = {"Authorization": f"Bearer {SCORER}"}
    # one request of each kind first: the series that exist after them are all there will be
    for path in ("/audit/replay/SB0000001", "/audit/decisions/SB0000001", "/no/such", "/score"):
        client.get(path, headers=auditor_like)
    client.get("/metrics", headers=monitor)
    before = len(client.get("/metrics", headers=monitor).content)

    rng = random.Random(16)
    for _ in range(5000):
        word = "".join(rng.choices(string.ascii_letters + string.digits, k=12))
        path = rng.choice([f"/{word}", f"/audit/replay/{word}", f"/audit/decisions/{word}", f"/x/{word}/y"])
        client.get(path, headers=auditor_like)
    after = client.get("/metrics", headers=monitor)

    assert after.status_code == 200
    assert len(after.content) < before * 1.05, (before, len(after.content))  # counts grow a digit or two
    assert "SB0000001" not in after.text
    assert 'route="/audit/replay/{declaration_id}"' in after.text


# --- audit replay slots -------------------------------------------------------------------


def test_concurrency_limit_refuses_beyond_its_slots_and_frees_them() -> None:
    limit = ConcurrencyLimit(2, retry_after=3)
    with limit.slot(), limit.slot():
        with pytest.raises(Saturated) as refused, limit.slot():
            pass  # pragma: no cover
        assert refused.value.retry_after == 3
    with limit.slot():
        pass


def test_audit_replay_answers_429_with_retry_after_when_saturated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIVERSION_DEMO_MODE", "true")
    monkeypatch.delenv("DIVERSION_TOKENS_FILE", raising=False)
    monkeypatch.delenv("DIVERSION_TOKENS", raising=False)
    import serving.replay
    from serving.service import DiversionRiskService
    from serving.settings import ServiceSettings

    release, running = threading.Event(), threading.Semaphore(0)

    def slow_replay(declaration_id, settings, audit, store=None, models=(), rules=None):
        running.release()
        release.wait(10)
        return []

    monkeypatch.setattr(serving.replay, "replay_decision", slow_replay)

    class Audit:
        def get(self, declaration_id):
            return ["a decision"]

    class Service:
        settings = ServiceSettings(replay_concurrency=2)
        audit = Audit()
        load_error = None
        engine = None  # replay then opens its own history store (here: the stand-in replay)
        rules = None
        replays = ConcurrencyLimit(2)

    service = Service()
    replay = DiversionRiskService.inner.audit_replay  # the plain function FastAPI routes to
    threads = [threading.Thread(target=replay, args=(service, f"SB{n}")) for n in range(2)]
    for thread in threads:
        thread.start()
    assert running.acquire(timeout=5) and running.acquire(timeout=5)
    try:
        with pytest.raises(HTTPException) as refused:
            replay(service, "SB3")
    finally:
        release.set()
        for thread in threads:
            thread.join(5)
    assert refused.value.status_code == 429
    assert int(refused.value.headers["Retry-After"]) > 0
    assert replay(service, "SB4") == []  # a slot is free again


# --- tokens that change or expire ---------------------------------------------------------


def _touch_later(path: Path) -> None:
    """Make sure the file's stamp differs even on coarse-grained clocks."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_a_revoked_token_stops_working_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    kept = issue_token("customs-ices", ["scorer"], path)
    revoked = issue_token("old-desk", ["analyst"], path)
    registry = TokenRegistry.from_file(path, reload_seconds=0)
    assert registry.authenticate(revoked) == Caller("old-desk", frozenset({"analyst"}))

    main(["revoke", "--name", "old-desk", "--file", str(path)])
    _touch_later(path)

    assert registry.authenticate(revoked) is None
    assert registry.authenticate(kept) == Caller("customs-ices", frozenset({"scorer"}))
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_token_added_to_the_file_works_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    issue_token("customs-ices", ["scorer"], path)
    registry = TokenRegistry.from_file(path, reload_seconds=0)
    added = issue_token("new-desk", ["auditor"], path)
    _touch_later(path)
    assert registry.authenticate(added) == Caller("new-desk", frozenset({"auditor"}))


def test_the_file_is_looked_at_no_more_often_than_the_reload_interval(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    issue_token("customs-ices", ["scorer"], path)
    revoked = issue_token("old-desk", ["analyst"], path)
    registry = TokenRegistry.from_file(path, reload_seconds=3600)
    main(["revoke", "--name", "old-desk", "--file", str(path)])
    assert registry.authenticate(revoked) is not None  # not looked at yet: an hour has not passed


def test_a_broken_tokens_file_keeps_the_last_good_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    token = issue_token("customs-ices", ["scorer"], path)
    registry = TokenRegistry.from_file(path, reload_seconds=0)
    path.write_text("[[tokens]\n", encoding="utf-8")
    _touch_later(path)
    assert registry.authenticate(token) == Caller("customs-ices", frozenset({"scorer"}))


def test_an_expired_token_is_refused_with_401(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    expired = issue_token("old-desk", ["scorer"], path, expires_at=past)
    current = issue_token("customs-ices", ["scorer"], path, expires_at=parse_expiry("30d"))
    registry = TokenRegistry.from_file(path)
    client = TestClient(AuthMiddleware(Starlette(routes=[Route("/score", _ok, methods=["POST"])]), registry))

    refused = client.post("/score", headers={"Authorization": f"Bearer {expired}"})
    assert refused.status_code == 401
    assert refused.json()["error"] == "token expired"
    assert client.post("/score", headers={"Authorization": f"Bearer {current}"}).status_code == 200
    assert registry.authenticate(expired) is None
    assert "expires_at = 2020-01-01T00:00:00Z" in path.read_text()


def test_expiry_is_a_duration_or_a_date_time() -> None:
    now = dt.datetime(2026, 12, 3, 7, 0, tzinfo=dt.UTC)
    assert parse_expiry("90d", now) == dt.datetime(2027, 3, 3, 7, 0, tzinfo=dt.UTC)
    assert parse_expiry("12h", now) == dt.datetime(2026, 12, 3, 19, 0, tzinfo=dt.UTC)
    assert parse_expiry("2027-01-01", now) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert parse_expiry("2027-01-01T05:30:00+05:30", now) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def test_cli_issues_with_expiry_lists_and_revokes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "tokens.toml"
    main(
        [
            "issue",
            "--name",
            "risk-desk",
            "--roles",
            "analyst",
            "auditor",
            "--expires",
            "2020-06-01",
            "--file",
            str(path),
        ]
    )
    main(["--name", "customs-ices", "--roles", "scorer", "--file", str(path)])  # the old form still issues
    capsys.readouterr()

    main(["list", "--file", str(path)])
    listed = capsys.readouterr().out
    assert "risk-desk\tanalyst+auditor\t2020-06-01T00:00:00Z\texpired" in listed
    assert "customs-ices\tscorer\tnever expires\tactive" in listed
    assert hash_token("x")[:8] not in listed and "sha256" not in listed

    main(["revoke", "--name", "risk-desk", "--file", str(path)])
    assert [t["name"] for t in list_tokens(path)] == ["customs-ices"]
    with pytest.raises(SystemExit) as unknown:
        main(["revoke", "--name", "nobody", "--file", str(path)])
    assert unknown.value.code == 2
    assert "no token named 'nobody'" in capsys.readouterr().err


# --- the export training reads back ---------------------------------------------------------

AWKWARD = 'line one\r\nline two\rbare CR, "quoted", comma \u200fRTL\u202e mark\nend'
#: Nothing but a carriage return that needs quoting: the field a minimal-quoting writer leaves bare.
BARE_CR = "tramadol 100 mg\rstrips of 10"


def test_export_round_trips_awkward_text_through_the_validator(tmp_path: Path) -> None:
    from features.contract import (
        DECLARATION_COLUMNS,
        EXAMPLE_DECLARATION,
        EXAMPLE_INSPECTION,
        SEIZURE_COLUMNS,
    )
    from features.reference import load_reference
    from features.validation import load_contract_tables
    from serving.frames import declarations_frame, seizures_frame
    from serving.history_store import HistoryStore, make_engine
    from serving.schemas import Declaration, Inspection, Seizure

    declaration = Declaration.model_validate({**EXAMPLE_DECLARATION, "goods_description": BARE_CR})
    seizure = Seizure.model_validate(
        {
            "seizure_id": "SZ0001",
            "seized_at": "2024-03-01T08:00:00Z",
            "declaration_id": "SB0000001",
            "country": "NG",
            "substance": AWKWARD,
            "agency": BARE_CR,
        }
    )
    inspection = Inspection.model_validate(dict(EXAMPLE_INSPECTION))
    empty_declarations = declarations_frame([]).iloc[:0]
    empty_seizures = seizures_frame([]).iloc[:0]
    store = HistoryStore(
        make_engine(f"sqlite:///{tmp_path}/history.db"), load_reference(), empty_declarations, empty_seizures
    )
    store.add_declarations([declaration.model_dump()])
    store.add_seizures([seizure.model_dump()])
    store.add_inspections([inspection.model_dump()])

    counts = store.export_contract(tmp_path / "out")
    tables = load_contract_tables(
        tmp_path / "out" / "declarations.csv",
        tmp_path / "out" / "seizures.csv",
        tmp_path / "out" / "inspections.csv",
        rejects_dir=tmp_path / "rejects",
        max_reject_share=0.0,
    )

    assert counts == {"declarations": 1, "seizures": 1, "inspections": 1}
    assert tables.report.rows_rejected == {"declarations": 0, "seizures": 0, "inspections": 0}
    assert tables.declarations["goods_description"].tolist() == [BARE_CR]
    assert tables.seizures[["substance", "agency"]].iloc[0].tolist() == [AWKWARD, BARE_CR]
    assert [c.name for c in DECLARATION_COLUMNS] == list(tables.declarations.columns)
    assert [c.name for c in SEIZURE_COLUMNS] == list(tables.seizures.columns)
    assert isinstance(tables.inspections, pd.DataFrame) and len(tables.inspections) == 1
