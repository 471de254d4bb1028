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
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import orjson
import sqlalchemy as sa

from serving.history_store import create_schema, make_engine

log = logging.getLogger(__name__)

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
    # The history log was applied up to this append when the decision was made (replay rebuilds it).
    sa.Column("history_seq", sa.BigInteger, nullable=True),
    # The targeting rule set (serving.rules_store) the decision was made under; None before rules.
    sa.Column("rule_set_version", sa.Integer, nullable=True),
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
    history_seq: int | None = None  # history log sequence number the decision was scored at
    rule_set_version: int | None = None

    def __post_init__(self) -> None:
        _require_aware(
            self.scored_at, f"AuditRecord for declaration {self.declaration_id!r}", self.request_id
        )


def _require_aware(scored_at: dt.datetime, what: str, request_id: str) -> None:
    # A naive time in an audit trail is ambiguous forever after: refuse it here.
    if scored_at.tzinfo is None or scored_at.utcoffset() is None:
        raise ValueError(
            f"{what} (request {request_id!r}): "
            f"scored_at {scored_at.isoformat()} has no time zone; pass datetime.now(datetime.UTC)"
        )


@dataclass(frozen=True)
class DecisionBatch:
    """The decisions of one request, already in their stored form: what `AuditStore.record` writes.

    All decisions of a request share request id, caller, model, feature set and decision
    time, so those are held once; each decision's declaration is encoded once, and that
    one canonical text is both stored and hashed. Recording a batch writes exactly the rows
    the equivalent `AuditRecord`s would, without one object and two encodings per decision.
    Build it with `DecisionBatch.build`.
    """

    request_id: str
    caller: str
    model_name: str
    model_version: str
    feature_set_version: str
    scored_at: dt.datetime  # timezone-aware
    history_seq: int | None
    #: Per decision: (declaration_id, declaration_sha256, declaration canonical JSON,
    #: risk_score, channel, reasons canonical JSON, rule_hits canonical JSON).
    decisions: tuple[tuple[str, str, str, float, str, str, str], ...]
    rule_set_version: int | None = None

    def __post_init__(self) -> None:
        _require_aware(self.scored_at, "DecisionBatch", self.request_id)

    @classmethod
    def build(
        cls,
        request_id: str,
        caller: str,
        model_name: str,
        model_version: str,
        feature_set_version: str,
        scored_at: dt.datetime,
        declaration_ids: Sequence[str],
        declarations: Sequence[dict],
        risk_scores: Sequence[float],
        channels: Sequence[str],
        reasons: Sequence[list[dict]],
        rule_hits: Sequence[list[str]],
        history_seq: int | None = None,
        rule_set_version: int | None = None,
    ) -> DecisionBatch:
        """One decision per position of the sequences (all of the same length)."""
        sha256 = hashlib.sha256
        decisions = []
        for declaration_id, declaration, risk_score, channel, why, hits in zip(
            declaration_ids, declarations, risk_scores, channels, reasons, rule_hits, strict=True
        ):
            text = _canonical_bytes(declaration)
            decisions.append(
                (
                    declaration_id,
                    sha256(text).hexdigest(),
                    text.decode(),
                    float(risk_score),
                    channel,
                    canonical_json(why),
                    canonical_json(hits) if hits else "[]",
                )
            )
        return cls(
            request_id,
            caller,
            model_name,
            model_version,
            feature_set_version,
            scored_at,
            history_seq,
            tuple(decisions),
            rule_set_version,
        )

    def __len__(self) -> int:
        return len(self.decisions)


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
    return _canonical_bytes(value).decode()


_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def _canonical_bytes(value: object) -> bytes:
    """`canonical_json(value)` encoded as UTF-8."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS, default=_json_default)
    except TypeError:  # integers beyond 64 bits and other rarities: the standard library's exact text
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
        ).encode("utf-8")


def declaration_hash(declaration: dict) -> str:
    """SHA-256 (hex) of the declaration's canonical JSON (UTF-8); independent of key order."""
    return hashlib.sha256(_canonical_bytes(declaration)).hexdigest()


class AuditStore:
    """Append-only store of scoring decisions (SQLite or PostgreSQL); safe to share between threads."""

    def __init__(self, url: str = DEFAULT_AUDIT_URL, schema: str | None = None) -> None:
        engine = make_engine(url)
        if engine.dialect.name == "sqlite":  # before the first connection: see _WalCheckpointer
            sa.event.listen(engine, "connect", _no_autocheckpoint)
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
        # SQLite: the write-ahead log is copied into the database file by a background
        # thread, not by whichever request's commit crosses SQLite's checkpoint threshold.
        self._checkpointer = _WalCheckpointer(engine) if engine.dialect.name == "sqlite" else None
        create_schema(engine, _metadata)
        _add_missing_columns(engine, decisions_table)
        # SQLite: rows go straight to the driver's executemany (one prepared INSERT, the
        # statement SQLAlchemy itself would run), with the columns' own bind conversions
        # applied here; that skips SQLAlchemy's per-row parameter processing. Other
        # databases keep SQLAlchemy's executemany, which batches rows into multi-row INSERTs.
        dialect = engine.dialect
        self._driver_insert: str | None = None
        self._bind_processors: list[tuple[int, object]] = []
        if dialect.name == "sqlite" and dialect.paramstyle == "qmark":
            compiled = sa.insert(decisions_table).compile(dialect=dialect, column_keys=list(_COLUMNS))
            if tuple(compiled.positiontup or ()) == _COLUMNS:
                self._driver_insert = str(compiled)
                for i, name in enumerate(_COLUMNS):
                    processor = decisions_table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                    if processor is not None:
                        self._bind_processors.append((i, processor))
        # A batch's rows can be built bound when only the columns its decisions share convert.
        # (risk_score's conversion is float(), which `DecisionBatch.build` has applied already.)
        self._constant_binds = all(
            _COLUMNS[i] in _SHARED_COLUMNS or _COLUMNS[i] == "risk_score" for i, _ in self._bind_processors
        )

    def record(self, records: Sequence[AuditRecord] | DecisionBatch) -> None:
        """Write all records in one transaction; returns only after the commit.

        `records` is a list of `AuditRecord`s or the `DecisionBatch` of one request (the
        same rows, prepared once). Raises `DuplicateDecisionError` (and writes none of
        them) if a (request_id, declaration_id) pair is repeated in the batch or was
        already recorded.
        """
        if not records:
            return
        if isinstance(records, DecisionBatch):
            pairs = [(records.request_id, decision[0]) for decision in records.decisions]
        else:
            pairs = [(r.request_id, r.declaration_id) for r in records]
        if len(set(pairs)) != len(pairs):
            repeated = sorted(pair for pair, n in Counter(pairs).items() if n > 1)
            raise DuplicateDecisionError(
                f"(request_id, declaration_id) repeated within one batch: {repeated[:5]}"
            )
        bound = False
        if isinstance(records, DecisionBatch) and self._driver_insert is not None and self._constant_binds:
            rows, bound = _batch_rows(records, self._bound_constants(records)), True
        elif isinstance(records, DecisionBatch):
            rows = _batch_rows(records)
        else:
            rows = [_to_row(r) for r in records]
        try:
            if self._write_lock is None:
                self._insert(rows, bound)
            else:
                with self._write_lock:
                    self._insert(rows, bound)
                    self._checkpointer.committed(len(rows))
        except sa.exc.IntegrityError as exc:
            known = self._recorded_pairs(pairs)
            if known:
                raise DuplicateDecisionError(
                    f"{len(known)} decision(s) already recorded for (request_id, declaration_id) "
                    f"{known[:5]}; the audit trail is append-only and nothing of this batch was written"
                ) from exc
            raise

    def _bound_constants(self, batch: DecisionBatch) -> dict[str, object]:
        """The values a batch's decisions share, bind conversions applied (once, not per row)."""
        values = _batch_constants(batch)
        for i, processor in self._bind_processors:
            if _COLUMNS[i] in values:
                values[_COLUMNS[i]] = processor(values[_COLUMNS[i]])
        return values

    def _insert(self, rows: list[tuple], bound: bool = False) -> None:
        """Rows as tuples in `_COLUMNS` order (`bound`: conversions already applied); one transaction."""
        if self._driver_insert is not None:
            if self._bind_processors and not bound:
                rows = self._bind(rows)
            with self._engine.begin() as connection:
                connection.exec_driver_sql(self._driver_insert, rows)
        else:
            with self._engine.begin() as connection:
                connection.execute(
                    sa.insert(decisions_table), [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
                )

    def _bind(self, rows: list[tuple]) -> list[tuple]:
        """Apply the columns' bind conversions (the UTC datetime's), once per distinct value."""
        for i, processor in self._bind_processors:
            converted: dict = {}

            def convert(value: object, processor=processor, converted=converted) -> object:
                try:
                    return converted[value]
                except KeyError:
                    result = converted[value] = processor(value)
                    return result
                except TypeError:  # unhashable: convert directly
                    return processor(value)

            rows = [(*row[:i], convert(row[i]), *row[i + 1 :]) for row in rows]
        return rows

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
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._engine.dispose()

    def _select(self, query: sa.Select) -> list[AuditRecord]:
        with self._engine.connect() as connection:
            return [_from_row(row) for row in connection.execute(query)]


_COLUMNS = (
    "request_id",
    "caller",
    "declaration_id",
    "declaration_sha256",
    "declaration",
    "model_name",
    "model_version",
    "feature_set_version",
    "risk_score",
    "channel",
    "reasons",
    "rule_hits",
    "scored_at",
    "history_seq",
    "rule_set_version",
)


def _to_row(record: AuditRecord) -> tuple:
    return (
        record.request_id,
        record.caller,
        record.declaration_id,
        record.declaration_sha256,
        # Canonical text, so the stored declaration re-hashes to declaration_sha256.
        canonical_json(record.declaration),
        record.model_name,
        record.model_version,
        record.feature_set_version,
        float(record.risk_score),
        record.channel,
        canonical_json(record.reasons),
        canonical_json(record.rule_hits),
        record.scored_at,
        record.history_seq,
        record.rule_set_version,
    )


class _WalCheckpointer:
    """Checkpoints a SQLite database's write-ahead log from a background thread.

    The store's connections run with `wal_autocheckpoint=0` (`_no_autocheckpoint`), so no commit pays for copying
    the log into the database file; this thread does it (PASSIVE: it never blocks a writer)
    after every `every_rows` recorded decisions or `idle_seconds`, whichever comes first,
    and truncates the log when the store is closed. Durability is unchanged: a commit is
    durable once its log frames are synced, checkpointed or not.
    """

    #: Decisions between checkpoints under sustained load (the `idle_seconds` timer also
    #: fires while busy). Fewer checkpoints copy pages that several batches modify, such as
    #: index pages, fewer times: with 20,000 instead of 2,000, 1,000-declaration requests took
    #: about 6 ms (5 %) less on a 2-core host (two pairs of alternating runs), and restart
    #: after kill -9 under load measured the same (14.7 s against 14.0 s, side by side).
    EVERY_ROWS = 20_000

    def __init__(self, engine: sa.Engine, every_rows: int = EVERY_ROWS, idle_seconds: float = 2.0) -> None:
        self._engine = engine
        self._every_rows = every_rows
        self._idle_seconds = idle_seconds
        self._pending = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-wal-checkpoint", daemon=True)
        self._thread.start()

    def committed(self, rows: int) -> None:
        """Count decisions just committed (called under the store's write lock)."""
        self._pending += rows
        if self._pending >= self._every_rows:
            self._pending = 0
            self._wake.set()

    def _checkpoint(self, mode: str) -> None:
        try:
            with self._engine.connect() as connection:
                connection.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})")
        except sa.exc.SQLAlchemyError as exc:  # the next round retries; the log only grows meanwhile
            log.warning("audit log checkpoint (%s) failed: %s", mode, exc)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._idle_seconds)
            self._wake.clear()
            if not self._stopping.is_set():
                self._checkpoint("PASSIVE")

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self._checkpoint("TRUNCATE")


def _no_autocheckpoint(connection, _record) -> None:  # pragma: no cover - driver callback
    cursor = connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


#: Columns whose value is the same for every decision of one request.
_SHARED_COLUMNS = frozenset(
    {
        "request_id",
        "caller",
        "model_name",
        "model_version",
        "feature_set_version",
        "scored_at",
        "history_seq",
        "rule_set_version",
    }
)


def _batch_constants(batch: DecisionBatch) -> dict[str, object]:
    return {
        "request_id": batch.request_id,
        "caller": batch.caller,
        "model_name": batch.model_name,
        "model_version": batch.model_version,
        "feature_set_version": batch.feature_set_version,
        "scored_at": batch.scored_at,
        "history_seq": batch.history_seq,
        "rule_set_version": batch.rule_set_version,
    }


def _batch_rows(batch: DecisionBatch, shared: dict[str, object] | None = None) -> list[tuple]:
    """The batch's rows in `_COLUMNS` order; `shared` may pass its shared values already bound."""
    shared = _batch_constants(batch) if shared is None else shared
    request_id, caller, scored_at = shared["request_id"], shared["caller"], shared["scored_at"]
    model_name, model_version = shared["model_name"], shared["model_version"]
    feature_set, history_seq = shared["feature_set_version"], shared["history_seq"]
    rule_set_version = shared["rule_set_version"]
    return [
        (
            request_id,
            caller,
            declaration_id,
            sha256,
            declaration,
            model_name,
            model_version,
            feature_set,
            risk_score,
            channel,
            reasons,
            rule_hits,
            scored_at,
            history_seq,
            rule_set_version,
        )
        for declaration_id, sha256, declaration, risk_score, channel, reasons, rule_hits in batch.decisions
    ]


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
        history_seq=row.history_seq,
        rule_set_version=row.rule_set_version,
    )


def _add_missing_columns(engine: sa.Engine, table: sa.Table) -> None:
    """Add nullable columns a store created by an earlier release lacks (additive migration)."""
    inspector = sa.inspect(engine)
    schema = engine.get_execution_options().get("schema_translate_map", {}).get(None)
    present = {c["name"] for c in inspector.get_columns(table.name, schema=schema)}
    for column in table.columns:
        if column.name not in present and column.nullable:
            kind = column.type.compile(engine.dialect)
            name = f'"{schema}".{table.name}' if schema else table.name
            try:
                with engine.begin() as connection:
                    connection.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {column.name} {kind}")
            except sa.exc.DBAPIError:  # another worker added it at the same moment
                pass
