"""The service's history: an append-only log in SQL with a sequence number, indexed in memory.

The authoritative history is the base contract files (what the model was trained on,
identical on every worker and replica) plus the `history_log` table of the SQL store chosen
by URL (SQLite by default, PostgreSQL in production). Every append (declarations, seizures,
inspection outcomes) is one transaction that takes the next sequence number from the
one-row `history_head` table: the `UPDATE ... RETURNING` that increments it holds the row
lock until commit, so appends are serialised and commit in sequence order. A reader that
fetches "rows after my last number up to the committed head" therefore never skips a row,
whichever database it runs on. Duplicates are refused by the log's primary key
`(kind, record_id)` (checked under that lock) and reported as duplicates.

Each worker holds an immutable `features.history.History` built from the base files and
the log up to a known sequence number. Before it scores, a worker reads the committed head
(one primary-key lookup) and applies any newer rows as one more segment; a background
thread does the same on a timer so that idle workers stay current, and compacts the
segments now and then. Because features are a pure function of the rows (not of how they
were segmented or in which order they arrived), every worker at the same sequence number
gives the same answer, and replay rebuilds the history at any recorded number.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from features.history import History
from features.reference import ReferenceTables
from features.validation import load_contract_tables
from serving.frames import declarations_frame, seizures_frame

log = logging.getLogger(__name__)

DECLARATION, SEIZURE, INSPECTION = "declaration", "seizure", "inspection"
#: Log rows that record a one-off import (not history): see `HistoryStore._import_legacy_tables`.
MIGRATION = "migration"
LEGACY_MARKER = "legacy-tables-v1"

_metadata = sa.MetaData()
log_table = sa.Table(
    "history_log",
    _metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("record_id", sa.String(160), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False, index=True),
    sa.Column("event_at", sa.DateTime, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
)
head_table = sa.Table(
    "history_head",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    # digest of the base files the log extends: every worker and replica must start from the same
    sa.Column("base_digest", sa.String(64), nullable=True),
)

#: Ids per `IN (...)` list when looking up known records (well under every driver's limit).
_ID_CHUNK = 900
#: PostgreSQL advisory lock key that serialises schema creation between starting workers.
_SCHEMA_LOCK_KEY = 0x44525349  # "DRSI"


def make_engine(url: str) -> sa.Engine:
    """SQLAlchemy engine; SQLite gets WAL mode and full fsync so acknowledged writes survive."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # Pre-ping finds connections a database server dropped; a SQLite file has no server, and
    # the ping would cost every audited request a query.
    engine = sa.create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection, _record) -> None:  # pragma: no cover - driver callback
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def create_schema(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """`metadata.create_all`, safe when several workers start at once on one database."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
            metadata.create_all(connection)
    else:
        for attempt in range(5):
            try:
                metadata.create_all(engine)
                return
            except sa.exc.OperationalError:  # another process created it at the same moment
                if attempt == 4:
                    raise
                time.sleep(0.2)


class BaseHistoryMismatchError(RuntimeError):
    """The base history files differ from the ones this database's log was written on top of."""


def base_digest(declarations: pd.DataFrame, seizures: pd.DataFrame) -> str:
    """SHA-256 of the base history's content (row values, not file format or path)."""
    digest = hashlib.sha256()
    for frame in (declarations, seizures):
        digest.update(",".join(frame.columns).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


class UnknownDeclarationError(ValueError):
    """Inspection outcomes name declarations that are not in the history; nothing was written."""

    def __init__(self, declaration_ids: list[str]) -> None:
        self.declaration_ids = declaration_ids
        self.reason = (
            "declaration not in the history: record it with POST /history/declarations first "
            "(nothing of this request was stored)"
        )
        shown = ", ".join(repr(d) for d in declaration_ids[:5])
        more = f" and {len(declaration_ids) - 5} more" if len(declaration_ids) > 5 else ""
        super().__init__(
            f"inspections[].declaration_id: {shown}{more} not in the history; record the declaration "
            "with POST /history/declarations first (nothing of this request was stored)"
        )


@dataclass(frozen=True)
class AppendResult:
    """What one append stored: counts, the ids refused as duplicates, and its sequence number."""

    accepted: int
    duplicates: list[str]
    sequence: int | None = None  # None when nothing new was stored
    seizures_accepted: int = 0  # outcomes: seizures stored (reported and derived from inspections)
    inspections_accepted: int = 0


@dataclass(frozen=True)
class HistoryView:
    """The indexed history as of one sequence number (immutable; shared between threads)."""

    history: History
    sequence: int
    segments_since_compaction: int = 0


@dataclass
class _Pending:
    """Rows of one append, by kind: (record_id, event time, payload text)."""

    rows: dict[str, list[tuple[str, dt.datetime, str]]] = field(
        default_factory=lambda: {DECLARATION: [], SEIZURE: [], INSPECTION: []}
    )


def inspection_seizure_id(declaration_id: str, inspected_at: dt.datetime) -> str:
    """Id of the seizure an inspection with result SEIZURE adds (deterministic, at most 64 characters)."""
    digest = hashlib.sha256(f"{declaration_id}|{inspected_at.isoformat()}".encode()).hexdigest()
    return f"INSPECTION-{digest[:40]}"


def inspection_record_id(declaration_id: str, inspected_at: dt.datetime) -> str:
    return f"{declaration_id}|{inspected_at.isoformat()}"


class HistoryStore:
    """Point-in-time history for online features: the SQL log, applied in sequence order."""

    def __init__(
        self,
        engine: sa.Engine,
        reference: ReferenceTables,
        base_declarations: pd.DataFrame,
        base_seizures: pd.DataFrame,
        compact_every: int = 64,
        poll_seconds: float | None = None,
    ) -> None:
        self._engine = engine
        self._reference = reference
        self._compact_every = compact_every
        self._base_declarations = base_declarations
        self._base_seizures = base_seizures
        self._base_seizure_ids = frozenset(base_seizures["seizure_id"].astype("str"))
        self._apply_lock = threading.Lock()
        self._local = threading.local()
        create_schema(engine, _metadata)
        self.base_digest = base_digest(base_declarations, base_seizures)
        self._ensure_head()
        self._import_legacy_tables()
        self._head_sql = str(
            sa.select(head_table.c.seq)
            .where(head_table.c.id == 1)
            .compile(engine, compile_kwargs={"literal_binds": True})
        )
        #: The base files alone, indexed once; every other view is this plus log segments.
        self.base = History.build(base_declarations, base_seizures, reference)
        self._view = HistoryView(self.base, 0)
        self._compacted = self._view  # base + log rows up to its sequence, as one appended segment
        self._compact(self.head())
        self._stopping = threading.Event()
        self._follower: threading.Thread | None = None
        if poll_seconds:
            self._follower = threading.Thread(
                target=self._follow, args=(poll_seconds,), name="history-follower", daemon=True
            )
            self._follower.start()

    @classmethod
    def open(
        cls,
        url: str,
        declarations: Path,
        seizures: Path,
        reference: ReferenceTables,
        compact_every: int = 64,
        poll_seconds: float | None = None,
    ) -> HistoryStore:
        tables = load_contract_tables(declarations, seizures, None, rejects_dir=None)
        return cls(
            make_engine(url), reference, tables.declarations, tables.seizures, compact_every, poll_seconds
        )

    # ---- reading ---------------------------------------------------------------------------

    def head(self) -> int:
        """The committed head of the log: the sequence number of the latest append (0: none).

        One primary-key read on a connection this thread keeps for the purpose, in autocommit
        (no pool checkout, no pre-ping, no transaction): the per-request cost of consistency.
        """
        local = self._local
        for attempt in (1, 2):
            connection = getattr(local, "connection", None)
            try:
                if connection is None:
                    connection = local.connection = self._head_connection()
                cursor = connection.cursor()
                try:
                    cursor.execute(self._head_sql)
                    return int(cursor.fetchone()[0])
                finally:
                    cursor.close()
            except self._engine.dialect.loaded_dbapi.Error:
                local.connection = None  # dropped by the server: reconnect once
                with contextlib.suppress(Exception):
                    connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _head_connection(self):
        """A driver connection of its own, in autocommit, for `head` (kept per thread)."""
        proxied = self._engine.raw_connection()
        connection = proxied.driver_connection
        proxied.detach()  # out of the pool: this thread keeps it
        if self._engine.dialect.name == "sqlite":
            connection.isolation_level = None
        else:
            connection.autocommit = True
        return connection

    def current(self) -> HistoryView:
        """The history with every append committed before this call applied (what /score uses)."""
        head = self.head()
        view = self._view
        if head <= view.sequence:
            return view
        return self._apply_until(head)

    @property
    def history(self) -> History:
        """The latest applied history (without checking the log; `current()` does)."""
        return self._view.history

    @property
    def sequence(self) -> int:
        return self._view.sequence

    def snapshot(self) -> tuple[History, int]:
        """`current()` as (history, sequence number)."""
        view = self.current()
        return view.history, view.sequence

    @property
    def declaration_count(self) -> int:
        return self._view.history.n_declarations

    def history_at(self, sequence: int) -> History:
        """The history as it stood at `sequence` (audit replay): base files + log rows up to it.

        Reuses the live index where it can: the view at exactly that number, else the latest
        compaction at or below it plus the log rows after it; only older numbers rebuild the
        log segment from the base (cost proportional to the log, not to the base files).
        """
        view = self._view
        if sequence == view.sequence:
            return view.history
        compacted = self._compacted
        start = compacted if compacted.sequence <= sequence else HistoryView(self.base, 0)
        if start.sequence == sequence:
            return start.history
        return self._extended(start.history, start.sequence, sequence)

    def _extended(self, history: History, after: int, until: int) -> History:
        """`history` plus the log's declarations and seizures with after < seq <= until."""
        declarations, seizures = self._read_rows(after, until)
        if declarations is None and seizures is None:  # inspections alone change no feature
            return history
        return history.append(declarations, seizures, self._reference)

    def _apply_until(self, head: int) -> HistoryView:
        with self._apply_lock:
            view = self._view
            if head > view.sequence:
                history = self._extended(view.history, view.sequence, head)
                view = self._view = HistoryView(history, head, view.segments_since_compaction + 1)
            return view

    def _compact(self, head: int) -> None:
        """Re-index base + all log rows up to `head` as one log segment; then catch up."""
        compacted = HistoryView(self._extended(self.base, 0, head), head)
        with self._apply_lock:
            self._compacted = compacted
            if self._view.sequence <= head:
                self._view = compacted
        latest = self.head()
        if latest > head:
            self._apply_until(latest)

    def _follow(self, poll_seconds: float) -> None:
        """Background wake-up: apply new appends while idle; compact when segments pile up."""
        while not self._stopping.wait(poll_seconds):
            try:
                view = self.current()
                if view.segments_since_compaction >= self._compact_every:
                    self._compact(view.sequence)
            except Exception as exc:  # the database may be briefly unreachable; requests re-check
                log.warning("history follower: %s", exc)

    def close(self) -> None:
        self._stopping.set()
        if self._follower is not None:
            self._follower.join(timeout=5)
        self._engine.dispose()

    def _read_rows(self, after: int, until: int) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        """Declarations and seizures of the log with after < seq <= until (None when none)."""
        if until <= after:
            return None, None
        query = (
            sa.select(log_table.c.kind, log_table.c.payload)
            .where(
                log_table.c.seq > after,
                log_table.c.seq <= until,
                log_table.c.kind.in_([DECLARATION, SEIZURE]),
            )
            .order_by(log_table.c.seq, log_table.c.kind, log_table.c.record_id)
        )
        declarations, seizures = [], []
        with self._engine.connect() as connection:
            for kind, payload in connection.execute(query):
                (declarations if kind == DECLARATION else seizures).append(json.loads(payload))
        return (
            _decode_declarations(declarations) if declarations else None,
            _decode_seizures(seizures) if seizures else None,
        )

    # ---- appending -------------------------------------------------------------------------

    def add_declarations(self, records: list[dict]) -> AppendResult:
        """Record filed declarations (one transaction); ids already in the history are duplicates."""
        return self.append(declarations=records)

    def add_seizures(self, records: list[dict]) -> AppendResult:
        """Record seizures (one transaction): they raise the risk of what they name from `seized_at` on."""
        result = self.append(seizures=records)
        return AppendResult(
            result.seizures_accepted, result.duplicates, result.sequence, result.seizures_accepted
        )

    def add_inspections(self, records: list[dict]) -> AppendResult:
        """Record inspection outcomes (one transaction); a SEIZURE result also adds a seizure."""
        result = self.append(inspections=records)
        return AppendResult(
            result.inspections_accepted,
            result.duplicates,
            result.sequence,
            result.seizures_accepted,
            result.inspections_accepted,
        )

    def record_outcomes(self, inspections: list[dict], seizures: list[dict]) -> AppendResult:
        """Inspections and seizure reports of one request, all or nothing."""
        return self.append(seizures=seizures, inspections=inspections)

    def append(
        self,
        declarations: Sequence[dict] = (),
        seizures: Sequence[dict] = (),
        inspections: Sequence[dict] = (),
    ) -> AppendResult:
        """Store rows as one transaction with the next sequence number; all or nothing.

        Rows already stored (by any worker or replica), already in the base files, or
        repeated within the request are reported in `duplicates` and not stored again.
        Raises `UnknownDeclarationError` (storing nothing) when an inspection names a
        declaration the history does not hold.
        """
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        pending, duplicates = _Pending(), []
        seen: dict[str, set[str]] = {DECLARATION: set(), SEIZURE: set(), INSPECTION: set()}

        def take(kind: str, record_id: str, at: dt.datetime, record: dict, shown: str) -> None:
            if record_id in seen[kind]:
                duplicates.append(shown)
                return
            seen[kind].add(record_id)
            pending.rows[kind].append((record_id, at, json.dumps(record, default=str)))

        base_known = (
            self.base.knows_declaration(pd.Series([r["declaration_id"] for r in declarations], dtype=object))
            if declarations
            else []
        )
        for record, in_base in zip(declarations, base_known, strict=True):
            if in_base:
                duplicates.append(record["declaration_id"])
            else:
                take(
                    DECLARATION,
                    record["declaration_id"],
                    _utc_naive(record["declared_at"]),
                    record,
                    record["declaration_id"],
                )
        for record in seizures:
            if record["seizure_id"] in self._base_seizure_ids:
                duplicates.append(record["seizure_id"])
            else:
                take(
                    SEIZURE,
                    record["seizure_id"],
                    _utc_naive(record["seized_at"]),
                    record,
                    record["seizure_id"],
                )
        inspected: list[str] = []
        derived: set[str] = set()
        for record in inspections:
            at = _utc_naive(record["inspected_at"])
            row = {"declaration_id": record["declaration_id"], "inspected_at": at, "result": record["result"]}
            take(
                INSPECTION,
                inspection_record_id(record["declaration_id"], at),
                at,
                row,
                record["declaration_id"],
            )
            inspected.append(record["declaration_id"])
            if record["result"] == "SEIZURE":
                found = {
                    "seizure_id": inspection_seizure_id(record["declaration_id"], at),
                    "seized_at": at,
                    "declaration_id": record["declaration_id"],
                    "exporter_id": None,
                    "consignee_id": None,
                    "country": "IN",
                    "substance": "undetermined",
                    "quantity_kg": None,
                    "agency": "CUSTOMS-INSPECTION",
                }
                if found["seizure_id"] not in seen[SEIZURE]:  # its inspection is reported as the duplicate
                    seen[SEIZURE].add(found["seizure_id"])
                    derived.add(found["seizure_id"])
                    pending.rows[SEIZURE].append((found["seizure_id"], at, json.dumps(found, default=str)))

        return self._commit(pending, duplicates, inspected, derived, now)

    def _commit(
        self,
        pending: _Pending,
        duplicates: list[str],
        inspected: list[str],
        derived: set[str],
        now: dt.datetime,
        apply: bool = True,
    ) -> AppendResult:
        """Store the pending rows not stored yet as one transaction with the next sequence number."""
        with self._engine.connect() as connection:
            try:
                # Taking the next number locks the head row until commit: appends are serialised.
                sequence = int(
                    connection.execute(
                        sa.update(head_table)
                        .where(head_table.c.id == 1)
                        .values(seq=head_table.c.seq + 1)
                        .returning(head_table.c.seq)
                    ).scalar_one()
                )
                stored = {
                    kind: self._stored_ids(connection, kind, [row[0] for row in rows])
                    for kind, rows in pending.rows.items()
                }
                unknown = self._unknown_declarations(connection, inspected, pending)
                if unknown:
                    raise UnknownDeclarationError(unknown)
                fresh: list[dict] = []
                counts = dict.fromkeys(pending.rows, 0)
                for kind, rows in pending.rows.items():
                    for record_id, at, payload in rows:
                        if record_id in stored[kind]:
                            if kind == INSPECTION:
                                duplicates.append(record_id.split("|", 1)[0])
                            elif not (kind == SEIZURE and record_id in derived):
                                duplicates.append(record_id)  # a derived one is its inspection's duplicate
                            continue
                        counts[kind] += 1
                        fresh.append(
                            {
                                "kind": kind,
                                "record_id": record_id,
                                "seq": sequence,
                                "event_at": at,
                                "payload": payload,
                                "received_at": now,
                            }
                        )
                if not fresh:
                    connection.rollback()  # nothing new: no sequence number consumed
                    return AppendResult(0, duplicates, None)
                connection.execute(sa.insert(log_table), fresh)
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
        if apply:
            self._apply_until(sequence)
        return AppendResult(
            accepted=counts[DECLARATION],
            duplicates=duplicates,
            sequence=sequence,
            seizures_accepted=counts[SEIZURE],
            inspections_accepted=counts[INSPECTION],
        )

    def _import_legacy_tables(self) -> None:
        """Bring the history of a store written by the earlier release (one table per kind) into the log.

        Runs once per database (a `migration` row marks it done); the rows become one append.
        Seizures that inspections added there are already among its seizures: none is derived again.
        """
        names = set(sa.inspect(self._engine).get_table_names())
        legacy = {"history_declarations", "history_seizures", "outcome_inspections"} & names
        if not legacy:
            return
        pending = _Pending()
        pending.rows[MIGRATION] = [(LEGACY_MARKER, dt.datetime(1970, 1, 1), "{}")]
        with self._engine.connect() as connection:
            if self._stored_ids(connection, MIGRATION, [LEGACY_MARKER]):
                return
            if "history_declarations" in legacy:
                for record_id, at, payload in connection.exec_driver_sql(
                    "SELECT declaration_id, declared_at, payload FROM history_declarations"
                ):
                    pending.rows[DECLARATION].append((record_id, _as_datetime(at), payload))
            if "history_seizures" in legacy:
                for record_id, at, payload in connection.exec_driver_sql(
                    "SELECT seizure_id, seized_at, payload FROM history_seizures"
                ):
                    pending.rows[SEIZURE].append((record_id, _as_datetime(at), payload))
            if "outcome_inspections" in legacy:
                for declaration_id, at, result in connection.exec_driver_sql(
                    "SELECT declaration_id, inspected_at, result FROM outcome_inspections"
                ):
                    at = _as_datetime(at)
                    row = {"declaration_id": declaration_id, "inspected_at": at, "result": result}
                    pending.rows[INSPECTION].append(
                        (inspection_record_id(declaration_id, at), at, json.dumps(row, default=str))
                    )
        imported = self._commit(
            pending, [], [], set(), dt.datetime.now(dt.UTC).replace(tzinfo=None), apply=False
        )
        log.warning(
            "imported the earlier release's history tables into the log as append %s (%d declarations, "
            "%d seizures, %d inspections); the old tables are left as they were",
            imported.sequence,
            imported.accepted,
            imported.seizures_accepted,
            imported.inspections_accepted,
        )

    def _ensure_head(self) -> None:
        """Create the head row on first use; refuse base files other than those the log extends."""
        with self._engine.begin() as connection:
            if connection.execute(sa.select(head_table.c.seq).where(head_table.c.id == 1)).first() is None:
                try:
                    with connection.begin_nested():
                        connection.execute(
                            sa.insert(head_table).values(id=1, seq=0, base_digest=self.base_digest)
                        )
                except sa.exc.IntegrityError:  # another worker inserted it first
                    pass
            recorded = connection.execute(
                sa.select(head_table.c.base_digest).where(head_table.c.id == 1)
            ).scalar_one()
        if recorded is not None and recorded != self.base_digest:
            raise BaseHistoryMismatchError(
                f"the history log in this database extends base files with digest {recorded[:12]}..., "
                f"but DIVERSION_HISTORY_DECLARATIONS / DIVERSION_HISTORY_SEIZURES have digest "
                f"{self.base_digest[:12]}...: every worker and replica must start from the same base files "
                "(or use a new history database for a new base)"
            )

    @staticmethod
    def _stored_ids(connection: sa.Connection, kind: str, record_ids: list[str]) -> set[str]:
        stored: set[str] = set()
        for start in range(0, len(record_ids), _ID_CHUNK):
            chunk = record_ids[start : start + _ID_CHUNK]
            stored.update(
                connection.execute(
                    sa.select(log_table.c.record_id).where(
                        log_table.c.kind == kind, log_table.c.record_id.in_(chunk)
                    )
                ).scalars()
            )
        return stored

    def _unknown_declarations(
        self, connection: sa.Connection, declaration_ids: list[str], pending: _Pending
    ) -> list[str]:
        """Inspected declarations neither in the base files, nor in the log, nor in this append."""
        if not declaration_ids:
            return []
        wanted = list(dict.fromkeys(declaration_ids))
        in_base = self.base.knows_declaration(pd.Series(wanted, dtype=object))
        missing = [d for d, known in zip(wanted, in_base, strict=True) if not known]
        missing = [d for d in missing if d not in {r[0] for r in pending.rows[DECLARATION]}]
        if not missing:
            return []
        stored = self._stored_ids(connection, DECLARATION, missing)
        return [d for d in missing if d not in stored]

    # ---- export ----------------------------------------------------------------------------

    def export_contract(self, out_dir: Path) -> dict[str, int]:
        """Write the full history (base + log) and the inspections as contract CSV files.

        Every field is quoted: free text may hold CR, LF, quotes and commas, and a bare CR
        left unquoted would split the row for the reader.
        """
        out_dir.mkdir(parents=True, exist_ok=True)
        head = self.head()
        appended_declarations, appended_seizures = self._read_rows(0, head)
        declarations = pd.concat(
            [f for f in (self._base_declarations, appended_declarations) if f is not None], ignore_index=True
        ).sort_values("declared_at", kind="stable")
        seizures = pd.concat(
            [f for f in (self._base_seizures, appended_seizures) if f is not None], ignore_index=True
        ).sort_values("seized_at", kind="stable")
        with self._engine.connect() as connection:
            rows = [
                json.loads(payload)
                for payload in connection.execute(
                    sa.select(log_table.c.payload)
                    .where(log_table.c.kind == INSPECTION, log_table.c.seq <= head)
                    .order_by(log_table.c.event_at, log_table.c.record_id)
                ).scalars()
            ]
        inspections = pd.DataFrame(rows, columns=["declaration_id", "inspected_at", "result"])
        for name, frame in (
            ("declarations", declarations),
            ("seizures", seizures),
            ("inspections", inspections),
        ):
            frame.to_csv(
                out_dir / f"{name}.csv",
                index=False,
                date_format="%Y-%m-%dT%H:%M:%S",
                quoting=csv.QUOTE_ALL,
                encoding="utf-8",
            )
        return {"declarations": len(declarations), "seizures": len(seizures), "inspections": len(inspections)}

    def log_rows(self, kinds: Iterable[str] = (DECLARATION, SEIZURE, INSPECTION)) -> int:
        """Number of rows in the log of the given kinds."""
        with self._engine.connect() as connection:
            return int(
                connection.execute(
                    sa.select(sa.func.count()).select_from(log_table).where(log_table.c.kind.in_(list(kinds)))
                ).scalar_one()
            )


@dataclass(frozen=True)
class LogTables:
    """Everything appended to a history log, as contract frames (None: no such rows)."""

    declarations: pd.DataFrame | None
    seizures: pd.DataFrame | None
    inspections: pd.DataFrame  # declaration_id, inspected_at (naive UTC), result


def read_log(url: str) -> LogTables:
    """The rows appended to the history log at `url` (without the base files), for backtests and reports."""
    engine = make_engine(url)
    declarations, seizures, inspections = [], [], []
    try:
        if log_table.name in sa.inspect(engine).get_table_names():
            with engine.connect() as connection:
                for kind, payload in connection.execute(
                    sa.select(log_table.c.kind, log_table.c.payload).order_by(
                        log_table.c.seq, log_table.c.kind, log_table.c.record_id
                    )
                ):
                    {DECLARATION: declarations, SEIZURE: seizures, INSPECTION: inspections}.get(
                        kind, []
                    ).append(json.loads(payload))
    finally:
        engine.dispose()
    frame = pd.DataFrame(inspections, columns=["declaration_id", "inspected_at", "result"])
    frame["inspected_at"] = pd.to_datetime(frame["inspected_at"]).astype("datetime64[us]")
    return LogTables(
        _decode_declarations(declarations) if declarations else None,
        _decode_seizures(seizures) if seizures else None,
        frame,
    )


def _as_datetime(value: dt.datetime | str) -> dt.datetime:
    """A naive UTC datetime as a driver returns it (SQLite returns text)."""
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def _utc_naive(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def _decode_declarations(records: list[dict]) -> pd.DataFrame:
    for record in records:
        record["declared_at"] = dt.datetime.fromisoformat(record["declared_at"])
    return declarations_frame(records)


def _decode_seizures(records: list[dict]) -> pd.DataFrame:
    for record in records:
        record["seized_at"] = dt.datetime.fromisoformat(record["seized_at"])
    return seizures_frame(records)
