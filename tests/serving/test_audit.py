"""The audit trail: round trips, ordering, append-only duplicates, concurrency and durability.

Every behaviour runs on SQLite (a file under tmp_path) and on the PostgreSQL server at
127.0.0.1:5432 in a schema unique to the test run, dropped at the end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pickle
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from serving.audit import AuditRecord, AuditStore, DecisionBatch, DuplicateDecisionError, declaration_hash

POSTGRES_URL = os.environ.get(
    "DIVERSION_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
T0 = dt.datetime(2025, 3, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)


def _postgres_unreachable() -> str | None:
    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        return f"PostgreSQL not reachable at {POSTGRES_URL} (set DIVERSION_TEST_POSTGRES_URL): {exc.orig}"
    finally:
        engine.dispose()
    return None


class Backend:
    """Opens AuditStores on one database; closes them (and drops the PostgreSQL schema) at the end."""

    def __init__(self, url: str, schema: str | None) -> None:
        self.url = url
        self.schema = schema
        self._stores: list[AuditStore] = []

    def open(self) -> AuditStore:
        store = AuditStore(self.url, schema=self.schema)
        self._stores.append(store)
        return store

    def close(self) -> None:
        for store in self._stores:
            store.close()
        if self.schema is not None:
            engine = sa.create_engine(self.url)
            with engine.begin() as connection:
                connection.execute(sa.schema.DropSchema(self.schema, cascade=True, if_exists=True))
            engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        backend = Backend(f"sqlite:///{tmp_path / 'audit.db'}", None)
    else:
        reason = _postgres_unreachable()
        if reason:
            pytest.skip(reason)
        backend = Backend(POSTGRES_URL, f"audit_test_{uuid.uuid4().hex}")
    yield backend
    backend.close()


@pytest.fixture
def store(backend: Backend) -> AuditStore:
    return backend.open()


def make_record(
    request_id: str = "req-1",
    declaration_id: str = "DEC-1",
    scored_at: dt.datetime = T0,
    risk_score: float = 0.8123456789012345,
    **declaration_fields,
) -> AuditRecord:
    declaration = {
        "declaration_id": declaration_id,
        "exporter_id": "EXP-42",
        "hs_code": "300490",
        "destination_country": "NG",
        "quantity_kg": 125.5,
        "lines": [{"product": "tramadol 50mg", "units": 10000}],
        **declaration_fields,
    }
    return AuditRecord(
        request_id=request_id,
        caller="customs-ices",
        declaration_id=declaration_id,
        declaration_sha256=declaration_hash(declaration),
        declaration=declaration,
        model_name="diversion-risk",
        model_version="7",
        feature_set_version="declaration-features-v3",
        risk_score=risk_score,
        channel="red",
        reasons=[
            {"feature": "exporter_seizure_rate_365d", "contribution": 0.31},
            {"feature": "hs_code", "value": "300490"},
        ],
        rule_hits=["controlled-substance", "transit-hub"],
        scored_at=scored_at,
    )


def test_round_trip_returns_exactly_what_was_recorded(store: AuditStore) -> None:
    first = make_record("req-1", "DEC-1")
    other = make_record("req-1", "DEC-2", risk_score=0.05)
    store.record([first, other])

    assert store.count() == 2
    assert store.get("DEC-1") == [first]
    assert store.by_request("req-1") == [first, other]
    assert store.get("DEC-unknown") == []
    assert store.by_request("req-unknown") == []
    stored = store.get("DEC-1")[0]
    assert stored.scored_at.tzinfo is not None and stored.scored_at.utcoffset() == dt.timedelta(0)
    assert declaration_hash(stored.declaration) == stored.declaration_sha256


def test_get_lists_every_decision_for_a_declaration_oldest_first(store: AuditStore) -> None:
    later = make_record("req-b", "DEC-1", scored_at=T0 + dt.timedelta(minutes=5), risk_score=0.2)
    earlier = make_record("req-a", "DEC-1", scored_at=T0, risk_score=0.9)
    store.record([later])
    store.record([earlier])

    assert [r.request_id for r in store.get("DEC-1")] == ["req-a", "req-b"]


def test_scored_at_in_another_zone_is_kept_as_the_same_instant_in_utc(store: AuditStore) -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    store.record([make_record(scored_at=T0.astimezone(paris))])

    (stored,) = store.get("DEC-1")
    assert stored.scored_at == T0
    assert stored.scored_at.tzinfo == dt.UTC


def test_declaration_datetimes_are_stored_as_iso_and_keep_their_hash(store: AuditStore) -> None:
    record = make_record(declared_at=dt.datetime(2025, 2, 28, 23, 0, tzinfo=dt.UTC))
    store.record([record])

    (stored,) = store.get("DEC-1")
    assert stored.declaration["declared_at"] == "2025-02-28T23:00:00+00:00"
    assert declaration_hash(stored.declaration) == record.declaration_sha256


def test_recent_filters_by_time_and_keeps_the_newest_within_the_limit(store: AuditStore) -> None:
    store.record(
        [make_record(f"req-{i}", f"DEC-{i}", scored_at=T0 + dt.timedelta(hours=i)) for i in range(5)]
    )

    assert [r.request_id for r in store.recent()] == [f"req-{i}" for i in range(5)]
    assert [r.request_id for r in store.recent(since=T0 + dt.timedelta(hours=2))] == [
        "req-2",
        "req-3",
        "req-4",
    ]
    assert [r.request_id for r in store.recent(limit=2)] == ["req-3", "req-4"]
    with pytest.raises(ValueError, match="no time zone"):
        store.recent(since=T0.replace(tzinfo=None))


def test_a_recorded_decision_cannot_be_recorded_again(store: AuditStore) -> None:
    store.record([make_record("req-1", "DEC-1")])

    with pytest.raises(DuplicateDecisionError, match="req-1"):
        store.record([make_record("req-1", "DEC-1", risk_score=0.01)])
    assert store.get("DEC-1")[0].risk_score == pytest.approx(0.8123456789012345)


def test_a_batch_with_one_duplicate_writes_nothing(store: AuditStore) -> None:
    store.record([make_record("req-1", "DEC-1")])

    with pytest.raises(DuplicateDecisionError):
        store.record([make_record("req-2", "DEC-2"), make_record("req-1", "DEC-1")])
    assert store.count() == 1
    assert store.by_request("req-2") == []


def test_a_pair_repeated_within_one_batch_is_refused(store: AuditStore) -> None:
    with pytest.raises(DuplicateDecisionError, match="within one batch"):
        store.record([make_record("req-1", "DEC-1"), make_record("req-1", "DEC-1")])
    assert store.count() == 0


def test_same_declaration_in_another_request_is_a_new_decision(store: AuditStore) -> None:
    store.record([make_record("req-1", "DEC-1")])
    store.record([make_record("req-2", "DEC-1")])

    assert store.count() == 2


def test_concurrent_writers_lose_nothing(store: AuditStore) -> None:
    threads, per_thread = 20, 100
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                store.record([make_record(f"req-{worker}-{i}", f"DEC-{worker}-{i}")])
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    workers = [threading.Thread(target=write, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert store.count() == threads * per_thread
    assert len(store.recent(limit=10 * threads * per_thread)) == threads * per_thread
    assert [r.declaration_id for r in store.by_request("req-19-99")] == ["DEC-19-99"]


def test_committed_decisions_survive_a_new_store(backend: Backend) -> None:
    first = backend.open()
    records = [make_record(f"req-{i}", "DEC-1", scored_at=T0 + dt.timedelta(seconds=i)) for i in range(3)]
    first.record(records)
    first.close()

    assert backend.open().get("DEC-1") == records


def test_committed_decisions_survive_a_killed_process(backend: Backend) -> None:
    # The writer dies without closing anything right after record() returns: only a real commit survives.
    record = make_record("req-killed", "DEC-killed")
    script = (
        "import os, pickle, signal, sys\n"
        "from serving.audit import AuditStore\n"
        "store = AuditStore(sys.argv[1], schema=sys.argv[2] or None)\n"
        "store.record([pickle.load(sys.stdin.buffer)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, backend.url, backend.schema or ""],
        input=pickle.dumps(record),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == -9, done.stderr.decode(errors="replace")

    assert backend.open().get("DEC-killed") == [record]


def test_naive_scored_at_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        make_record(scored_at=T0.replace(tzinfo=None))


def test_schema_with_sqlite_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", schema="audit")


def test_store_has_no_way_to_change_or_remove_decisions() -> None:
    public = {name for name in dir(AuditStore) if not name.startswith("_")}
    assert public == {"record", "get", "by_request", "count", "recent", "close"}


def test_declaration_hash_is_canonical_json_sha256() -> None:
    declaration = {"b": [1, 2.5, None], "a": "é", "c": {"y": True, "x": dt.datetime(2025, 1, 2, 3, 4, 5)}}
    canonical = '{"a":"é","b":[1,2.5,null],"c":{"x":"2025-01-02T03:04:05","y":true}}'

    assert declaration_hash(declaration) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_declaration_hash_ignores_key_order_and_sees_every_field() -> None:
    base = make_record().declaration
    reordered = dict(reversed(list(base.items())))
    reordered["lines"] = [dict(reversed(list(line.items()))) for line in base["lines"]]

    assert declaration_hash(reordered) == declaration_hash(base)
    assert declaration_hash({**base, "quantity_kg": 125.6}) != declaration_hash(base)
    assert declaration_hash(
        {**base, "lines": [{"product": "tramadol 50mg", "units": 10001}]}
    ) != declaration_hash(base)
    assert declaration_hash({**base, "extra": None}) != declaration_hash(base)


@given(
    st.dictionaries(
        st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8), st.booleans()), max_size=8
    )
)
def test_declaration_hash_is_stable_under_any_key_order(declaration: dict) -> None:
    assert declaration_hash(dict(reversed(list(declaration.items())))) == declaration_hash(declaration)


def _decision_batch(request_id: str, n: int, scored_at: dt.datetime = T0) -> DecisionBatch:
    declarations = [make_record(request_id, f"DEC-{request_id}-{i}").declaration for i in range(n)]
    return DecisionBatch.build(
        request_id=request_id,
        caller="customs-ices",
        model_name="diversion-risk",
        model_version="7",
        feature_set_version="declaration-features-v3",
        scored_at=scored_at,
        declaration_ids=[d["declaration_id"] for d in declarations],
        declarations=declarations,
        risk_scores=[i / n for i in range(n)],
        channels=["GREEN"] * n,
        reasons=[[{"feature": "exporter_prior_declarations", "value": 3.0}]] * n,
        rule_hits=[[]] * n,
    )


def test_request_batches_are_stored_row_for_row_as_records(store: AuditStore) -> None:
    # decided at a local time: the batch's shared values are converted once, to UTC
    batch = _decision_batch("req-batch", 3, scored_at=T0.astimezone(dt.timezone(dt.timedelta(hours=5))))
    store.record(batch)
    stored = store.by_request("req-batch")
    assert [r.declaration_id for r in stored] == ["DEC-req-batch-0", "DEC-req-batch-1", "DEC-req-batch-2"]
    assert [r.risk_score for r in stored] == [0.0, 1 / 3, 2 / 3]
    assert all(r.scored_at == T0 and r.caller == "customs-ices" and r.model_version == "7" for r in stored)
    assert all(r.scored_at.utcoffset() == dt.timedelta(0) for r in stored)
    assert [r.declaration_id for r in store.recent(since=T0)] == [r.declaration_id for r in stored]
    assert store.recent(since=T0 + dt.timedelta(microseconds=1)) == []
    assert all(declaration_hash(r.declaration) == r.declaration_sha256 for r in stored)


def test_sqlite_commits_leave_the_log_to_a_background_checkpointer_and_lose_nothing(tmp_path: Path) -> None:
    # Commits never checkpoint (wal_autocheckpoint=0): a kill -9 right after record() still
    # loses nothing, however much of the log is not yet copied into the database file.
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    script = (
        "import os, pickle, signal, sys\n"
        "from serving.audit import AuditStore\n"
        "store = AuditStore(sys.argv[1])\n"
        "for batch in pickle.load(sys.stdin.buffer):\n"
        "    store.record(batch)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    batches = [_decision_batch(f"req-{i}", 1500) for i in range(3)]
    done = subprocess.run(
        [sys.executable, "-c", script, url], input=pickle.dumps(batches), capture_output=True, timeout=120
    )
    assert done.returncode == -9, done.stderr.decode(errors="replace")
    reopened = AuditStore(url)
    assert reopened.count() == 4500
    assert [r.declaration_id for r in reopened.by_request("req-2")][-1] == "DEC-req-2-1499"
    reopened.close()


def test_sqlite_log_is_copied_into_the_database_by_the_background_thread(tmp_path: Path) -> None:
    database = tmp_path / "audit.db"
    store = AuditStore(f"sqlite:///{database}")
    try:
        with store._engine.connect() as connection:  # the store's own connections
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        empty = database.stat().st_size
        store.record(_decision_batch("req-big", 2500))  # then idle: the background thread's timer fires
        deadline = time.monotonic() + 20
        while database.stat().st_size <= empty + 1_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert database.stat().st_size > empty + 1_000_000, "the log was never checkpointed"
    finally:
        store.close()
