"""The service's history: the training history plus everything appended since, durable in SQL.

Base: the contract files the model was trained on (validated at start-up). Appended:
declarations and seizures posted to `/history/*`, committed to a SQL store (SQLite by
default, PostgreSQL by URL) *before* they are acknowledged, and replayed at start-up.
In memory the history is a `features.history.History`; appends add a segment and every
`compact_every` appends the index is rebuilt from all rows.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from features.history import History
from features.reference import ReferenceTables
from features.validation import load_contract_tables
from serving.frames import declarations_frame, seizures_frame

_metadata = sa.MetaData()
declarations_table = sa.Table(
    "history_declarations",
    _metadata,
    sa.Column("declaration_id", sa.String(64), primary_key=True),
    sa.Column("declared_at", sa.DateTime, nullable=False, index=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
)
seizures_table = sa.Table(
    "history_seizures",
    _metadata,
    sa.Column("seizure_id", sa.String(64), primary_key=True),
    sa.Column("seized_at", sa.DateTime, nullable=False, index=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
)

inspections_table = sa.Table(
    "outcome_inspections",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("declaration_id", sa.String(64), nullable=False, index=True),
    sa.Column("inspected_at", sa.DateTime, nullable=False),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("declaration_id", "inspected_at", name="uq_outcome_inspection"),
)


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
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

    return engine


@dataclass(frozen=True)
class AppendResult:
    accepted: int
    duplicates: list[str]


class HistoryStore:
    """Point-in-time history for online features, kept current and durable."""

    def __init__(
        self,
        engine: sa.Engine,
        reference: ReferenceTables,
        base_declarations: pd.DataFrame,
        base_seizures: pd.DataFrame,
        compact_every: int = 64,
    ) -> None:
        self._engine = engine
        self._reference = reference
        self._compact_every = compact_every
        self._lock = threading.Lock()
        _metadata.create_all(engine)
        with engine.connect() as connection:
            stored_declarations = [
                json.loads(r.payload)
                for r in connection.execute(
                    sa.select(declarations_table.c.payload).order_by(declarations_table.c.declared_at)
                )
            ]
            stored_seizures = [
                json.loads(r.payload)
                for r in connection.execute(
                    sa.select(seizures_table.c.payload).order_by(seizures_table.c.seized_at)
                )
            ]
        self._declarations = [base_declarations, _decode_declarations(stored_declarations)]
        self._seizures = [base_seizures, _decode_seizures(stored_seizures)]
        self._seizure_ids = set(pd.concat([f["seizure_id"] for f in self._seizures]).astype("str"))
        self._appends = 0
        self.history = self._rebuild()

    @classmethod
    def open(
        cls, url: str, declarations: Path, seizures: Path, reference: ReferenceTables, compact_every: int = 64
    ) -> HistoryStore:
        tables = load_contract_tables(declarations, seizures, None, rejects_dir=None)
        return cls(make_engine(url), reference, tables.declarations, tables.seizures, compact_every)

    def _rebuild(self) -> History:
        declarations = pd.concat(self._declarations, ignore_index=True)
        seizures = pd.concat(self._seizures, ignore_index=True)
        declarations = declarations.sort_values("declared_at", kind="stable", ignore_index=True)
        self._declarations = [declarations]
        self._seizures = [seizures]
        return History.build(declarations, seizures, self._reference)

    def snapshot(self) -> tuple[History, dt.datetime]:
        """The current history and the time it stands for, taken together.

        Appends stamp `received_at` and publish their rows under the same lock, so every
        row received at or before the returned time is in the returned history and none
        received after it: what audit replay relies on.
        """
        with self._lock:
            return self.history, dt.datetime.now(dt.UTC)

    @property
    def declaration_count(self) -> int:
        return self.history.n_declarations

    def add_declarations(self, records: list[dict]) -> AppendResult:
        """Commit new declarations, then make them visible to scoring; known ids are skipped."""
        frame = declarations_frame(records)
        with self._lock:
            known = self.history.knows_declaration(frame["declaration_id"])
            repeated = frame["declaration_id"].duplicated().to_numpy()
            fresh = frame.loc[~known & ~repeated].reset_index(drop=True)
            duplicates = frame.loc[known | repeated, "declaration_id"].astype("str").tolist()
            if len(fresh):
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
                rows = [
                    {
                        "declaration_id": record["declaration_id"],
                        "declared_at": declared_at.to_pydatetime(),
                        "payload": json.dumps(record, default=str),
                        "received_at": now,
                    }
                    for record, declared_at, keep in zip(
                        records, frame["declared_at"], ~known & ~repeated, strict=True
                    )
                    if keep
                ]
                with self._engine.begin() as connection:
                    connection.execute(sa.insert(declarations_table), rows)
                self._declarations.append(fresh)
                self._advance(fresh, None)
        return AppendResult(accepted=len(fresh), duplicates=duplicates)

    def add_seizures(self, records: list[dict]) -> AppendResult:
        """Commit new seizures, then make them visible to scoring; known ids are skipped."""
        frame = seizures_frame(records)
        with self._lock:
            ids = frame["seizure_id"].astype("str")
            keep = (~ids.isin(self._seizure_ids) & ~ids.duplicated()).to_numpy()
            fresh = frame.loc[keep].reset_index(drop=True)
            duplicates = ids[~keep].tolist()
            if len(fresh):
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
                rows = [
                    {
                        "seizure_id": record["seizure_id"],
                        "seized_at": seized_at.to_pydatetime(),
                        "payload": json.dumps(record, default=str),
                        "received_at": now,
                    }
                    for record, seized_at, k in zip(records, frame["seized_at"], keep, strict=True)
                    if k
                ]
                with self._engine.begin() as connection:
                    connection.execute(sa.insert(seizures_table), rows)
                self._seizures.append(fresh)
                self._seizure_ids.update(fresh["seizure_id"].astype("str"))
                self._advance(None, fresh)
        return AppendResult(accepted=len(fresh), duplicates=duplicates)

    def add_inspections(self, records: list[dict]) -> AppendResult:
        """Commit inspection outcomes; a SEIZURE result also enters the history as a seizure."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        rows, seen, duplicates = [], set(), []
        with self._engine.connect() as connection:
            stored = {
                (r.declaration_id, r.inspected_at)
                for r in connection.execute(
                    sa.select(inspections_table.c.declaration_id, inspections_table.c.inspected_at).where(
                        inspections_table.c.declaration_id.in_({r["declaration_id"] for r in records})
                    )
                )
            }
        for record in records:
            at = _utc_naive(record["inspected_at"])
            key = (record["declaration_id"], at)
            if key in stored or key in seen:
                duplicates.append(record["declaration_id"])
                continue
            seen.add(key)
            rows.append(
                {"declaration_id": key[0], "inspected_at": at, "result": record["result"], "received_at": now}
            )
        if rows:
            with self._engine.begin() as connection:
                connection.execute(sa.insert(inspections_table), rows)
        found = [
            {
                "seizure_id": f"INSPECTION-{r['declaration_id']}-{r['inspected_at']:%Y%m%dT%H%M%S}",
                "seized_at": r["inspected_at"],
                "declaration_id": r["declaration_id"],
                "country": "IN",
                "substance": "undetermined",
                "agency": "CUSTOMS-INSPECTION",
            }
            for r in rows
            if r["result"] == "SEIZURE"
        ]
        if found:
            self.add_seizures(found)
        return AppendResult(accepted=len(rows), duplicates=duplicates)

    def export_contract(self, out_dir: Path) -> dict[str, int]:
        """Write the full history (base + appended) and the inspections as contract CSV files.

        Every field is quoted: free text may hold CR, LF, quotes and commas, and a bare CR
        left unquoted would split the row for the reader.
        """
        import csv

        out_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            declarations = pd.concat(self._declarations, ignore_index=True).sort_values(
                "declared_at", kind="stable"
            )
            seizures = pd.concat(self._seizures, ignore_index=True).sort_values("seized_at", kind="stable")
        with self._engine.connect() as connection:
            inspections = pd.read_sql(
                sa.select(
                    inspections_table.c.declaration_id,
                    inspections_table.c.inspected_at,
                    inspections_table.c.result,
                ).order_by(inspections_table.c.inspected_at),
                connection,
            )
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

    def _advance(self, declarations: pd.DataFrame | None, seizures: pd.DataFrame | None) -> None:
        self._appends += 1
        if self._appends % self._compact_every == 0:
            self.history = self._rebuild()
        else:
            self.history = self.history.append(declarations, seizures, self._reference)


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
