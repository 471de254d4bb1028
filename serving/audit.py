"""Append-only audit trail of scoring decisions, durable in SQL before the response is sent.

Every score the service returns is an administrative decision about a declaration. Each
one is written as a row (who asked, what was declared, which model and feature set, what
was decided and why) in one transaction that commits before `AuditStore.record` returns.
The store has no update or delete: a decision, once recorded, stays as it was.

SQLite by default (WAL, full fsync, via `serving.history_store.make_engine`), PostgreSQL
by URL. JSON fields are stored as text so both back ends hold the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import orjson
import sqlalchemy as sa

from serving.history_store import make_engine

DEFAULT_AUDIT_URL = "sqlite:///outputs/service/audit.db"


class _UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes in Python, naive UTC in the database (SQLite keeps no offset)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


_metadata = sa.MetaData()
decisions_table = sa.Table(
    "audit_decisions",
    _metadata,
    # Integer (not BigInteger) so SQLite makes it the rowid alias and autoincrements it.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("caller", sa.String(128), nullable=False),
    sa.Column("declaration_id", sa.String(64), nullable=False, index=True),
    sa.Column("declaration_sha256", sa.String(64), nullable=False),
    sa.Column("declaration", sa.Text, nullable=False),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("feature_set_version", sa.String(64), nullable=False),
    sa.Column("risk_score", sa.Double, nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("rule_hits", sa.Text, nullable=False),
    sa.Column("scored_at", _UTCDateTime, nullable=False, index=True),
    sa.UniqueConstraint("request_id", "declaration_id", name="uq_audit_decisions_request_declaration"),
)


@dataclass(frozen=True)
class AuditRecord:
    """One scoring decision about one declaration, as it was made."""

    request_id: str
    caller: str
    declaration_id: str
    declaration_sha256: str
    declaration: dict  # the declaration as received; JSON-able (datetimes become ISO strings when stored)
    model_name: str
    model_version: str
    feature_set_version: str
    risk_score: float
    channel: str
    reasons: list[dict]
    rule_hits: list[str]
    scored_at: dt.datetime  # timezone-aware; stored and returned in UTC

    def __post_init__(self) -> None:
        # A naive time in an audit trail is ambiguous forever after: refuse it here.
        if self.scored_at.tzinfo is None or self.scored_at.utcoffset() is None:
            raise ValueError(
                f"AuditRecord for declaration {self.declaration_id!r} (request {self.request_id!r}): "
                f"scored_at {self.scored_at.isoformat()} has no time zone; pass datetime.now(datetime.UTC)"
            )


class DuplicateDecisionError(ValueError):
    """A (request_id, declaration_id) pair was already recorded; nothing of the batch was written."""


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(
        f"{type(value).__name__} value {value!r} is not JSON-serialisable; convert it before auditing"
    )


def canonical_json(value: object) -> str:
    """JSON with sorted keys, no whitespace, datetimes as ISO 8601: the same value gives the same text.

    The canonical form is orjson's (about 10x faster than the standard library here):
    sorted keys, UTF-8, shortest round-trip floats. It matches `json.dumps(sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)` except for float exponents (`1e-5` vs
    `1e-05`); hashes are only ever recomputed with this function.
    """
    try:
        return orjson.dumps(
            value, option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME, default=_json_default
        ).decode()
    except TypeError:  # integers beyond 64 bits and other rarities: the standard library's exact text
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
        )


def declaration_hash(declaration: dict) -> str:
    """SHA-256 (hex) of the declaration's canonical JSON (UTF-8); independent of key order."""
    return hashlib.sha256(canonical_json(declaration).encode("utf-8")).hexdigest()


class AuditStore:
    """Append-only store of scoring decisions (SQLite or PostgreSQL); safe to share between threads."""

    def __init__(self, url: str = DEFAULT_AUDIT_URL, schema: str | None = None) -> None:
        engine = make_engine(url)
        if schema is not None:
            if engine.dialect.name == "sqlite":
                engine.dispose()
                raise ValueError(
                    f"audit schema {schema!r}: schemas need PostgreSQL; SQLite URL {url!r} has none"
                )
            with engine.begin() as connection:
                connection.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            engine = engine.execution_options(schema_translate_map={None: schema})
        self._engine = engine
        self.schema = schema
        # SQLite has one writer at a time anyway; queueing writers here rather than in
        # its busy handler keeps many threads from timing out on the database lock.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        _metadata.create_all(engine)

    def record(self, records: list[AuditRecord]) -> None:
        """Write all records in one transaction; returns only after the commit.

        Raises `DuplicateDecisionError` (and writes none of them) if a (request_id,
        declaration_id) pair is repeated in the batch or was already recorded.
        """
        if not records:
            return
        pairs = [(r.request_id, r.declaration_id) for r in records]
        repeated = sorted(pair for pair, n in Counter(pairs).items() if n > 1)
        if repeated:
            raise DuplicateDecisionError(
                f"(request_id, declaration_id) repeated within one batch: {repeated[:5]}"
            )
        rows = [_to_row(r) for r in records]
        try:
            if self._write_lock is None:
                self._insert(rows)
            else:
                with self._write_lock:
                    self._insert(rows)
        except sa.exc.IntegrityError as exc:
            known = self._recorded_pairs(pairs)
            if known:
                raise DuplicateDecisionError(
                    f"{len(known)} decision(s) already recorded for (request_id, declaration_id) "
                    f"{known[:5]}; the audit trail is append-only and nothing of this batch was written"
                ) from exc
            raise

    def _insert(self, rows: list[dict]) -> None:
        with self._engine.begin() as connection:
            connection.execute(sa.insert(decisions_table), rows)

    def _recorded_pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        request_ids = sorted({request_id for request_id, _ in pairs})
        query = sa.select(decisions_table.c.request_id, decisions_table.c.declaration_id).where(
            decisions_table.c.request_id.in_(request_ids)
        )
        with self._engine.connect() as connection:
            stored = {(r.request_id, r.declaration_id) for r in connection.execute(query)}
        return sorted(stored.intersection(pairs))

    def get(self, declaration_id: str) -> list[AuditRecord]:
        """Every decision recorded for a declaration, oldest first."""
        query = (
            sa.select(decisions_table)
            .where(decisions_table.c.declaration_id == declaration_id)
            .order_by(decisions_table.c.scored_at, decisions_table.c.id)
        )
        return self._select(query)

    def by_request(self, request_id: str) -> list[AuditRecord]:
        """The decisions of one request, in the order they were recorded."""
        query = (
            sa.select(decisions_table)
            .where(decisions_table.c.request_id == request_id)
            .order_by(decisions_table.c.id)
        )
        return self._select(query)

    def count(self) -> int:
        """Number of recorded decisions."""
        with self._engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(decisions_table)).scalar_one()

    def recent(self, since: dt.datetime | None = None, limit: int = 10000) -> list[AuditRecord]:
        """The latest `limit` decisions scored at or after `since` (aware), returned oldest first."""
        query = sa.select(decisions_table)
        if since is not None:
            if since.tzinfo is None or since.utcoffset() is None:
                raise ValueError(f"since={since.isoformat()} has no time zone; pass an aware datetime (UTC)")
            query = query.where(decisions_table.c.scored_at >= since)
        newest = query.order_by(decisions_table.c.scored_at.desc(), decisions_table.c.id.desc()).limit(limit)
        return self._select(newest)[::-1]

    def close(self) -> None:
        """Release the store's database connections."""
        self._engine.dispose()

    def _select(self, query: sa.Select) -> list[AuditRecord]:
        with self._engine.connect() as connection:
            return [_from_row(row) for row in connection.execute(query)]


def _to_row(record: AuditRecord) -> dict:
    return {
        "request_id": record.request_id,
        "caller": record.caller,
        "declaration_id": record.declaration_id,
        "declaration_sha256": record.declaration_sha256,
        # Canonical text, so the stored declaration re-hashes to declaration_sha256.
        "declaration": canonical_json(record.declaration),
        "model_name": record.model_name,
        "model_version": record.model_version,
        "feature_set_version": record.feature_set_version,
        "risk_score": float(record.risk_score),
        "channel": record.channel,
        "reasons": canonical_json(record.reasons),
        "rule_hits": canonical_json(record.rule_hits),
        "scored_at": record.scored_at,
    }


def _from_row(row: sa.Row) -> AuditRecord:
    return AuditRecord(
        request_id=row.request_id,
        caller=row.caller,
        declaration_id=row.declaration_id,
        declaration_sha256=row.declaration_sha256,
        declaration=json.loads(row.declaration),
        model_name=row.model_name,
        model_version=row.model_version,
        feature_set_version=row.feature_set_version,
        risk_score=row.risk_score,
        channel=row.channel,
        reasons=json.loads(row.reasons),
        rule_hits=json.loads(row.rule_hits),
        scored_at=row.scored_at,
    )
