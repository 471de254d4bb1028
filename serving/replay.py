"""Replay recorded scoring decisions: same model version, same history as of the decision.

An auditor asks: "would the model that decided this declaration decide it the same way
today, from what it knew then?" For each recorded decision (`serving.audit.AuditStore`)
the replay loads the recorded model version from the registry, rebuilds the history the
service held when it scored: the base contract files plus the rows appended through
`/history/*` whose `received_at` is not later than the decision's `scored_at`, computes
the online features (`features.definitions.compute_online_features`) and scores them.

A decision made in a batch saw the other declarations of its batch, so the whole recorded
request is re-scored together, in the recorded order. The stored declaration is also
re-hashed against the hash recorded with the decision.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from features.definitions import compute_online_features
from features.history import History
from features.reference import ReferenceTables
from features.validation import load_contract_tables
from serving.audit import AuditRecord, AuditStore, declaration_hash
from serving.engine import LoadedModel, ModelLoadError, load_model
from serving.frames import declaration_columns, declarations_frame, seizures_frame
from serving.history_store import declarations_table, make_engine, seizures_table
from serving.schemas import Declaration
from serving.settings import ServiceSettings

#: Largest absolute difference between a recorded and a replayed score that still matches.
SCORE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ReplayResult:
    """One recorded decision next to its replay."""

    request_id: str
    declaration_id: str
    scored_at: dt.datetime
    model_version: str
    recorded_score: float
    recorded_channel: str
    replayed_score: float
    replayed_channel: str
    matches: bool  # |recorded - replayed| <= SCORE_TOLERANCE and the same channel
    declaration_intact: bool  # the stored declaration still hashes to the recorded declaration_sha256

    @property
    def score_difference(self) -> float:
        return self.replayed_score - self.recorded_score

    @property
    def verified(self) -> bool:
        """The decision replays identically and its declaration is unaltered."""
        return self.matches and self.declaration_intact


@dataclass(frozen=True)
class _Appended:
    """Rows appended through `/history/*`, oldest receipt first."""

    declarations: pd.DataFrame
    declarations_received: pd.Series  # naive UTC, aligned with `declarations`
    seizures: pd.DataFrame
    seizures_received: pd.Series


class Replayer:
    """Replays decisions, loading each model version, the base history and the appended rows once."""

    def __init__(self, settings: ServiceSettings, audit: AuditStore) -> None:
        self.settings = settings
        self.audit = audit
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self._base: tuple[pd.DataFrame, pd.DataFrame] | None = None
        self._appended: _Appended | None = None
        self._histories: dict[tuple[int, int], History] = {}

    def replay(self, declaration_id: str) -> list[ReplayResult]:
        """Every recorded decision about one declaration, replayed; oldest first."""
        return self.replay_records(self.audit.get(declaration_id))

    def replay_records(self, decisions: Iterable[AuditRecord]) -> list[ReplayResult]:
        """Replay the given recorded decisions (each with the whole request it was part of)."""
        by_request: dict[str, dict[str, tuple[float, str]]] = {}
        results = []
        for decision in decisions:
            if decision.request_id not in by_request:
                by_request[decision.request_id] = self._replay_request(decision.request_id)
            replayed_score, replayed_channel = by_request[decision.request_id][decision.declaration_id]
            results.append(
                ReplayResult(
                    request_id=decision.request_id,
                    declaration_id=decision.declaration_id,
                    scored_at=decision.scored_at,
                    model_version=decision.model_version,
                    recorded_score=decision.risk_score,
                    recorded_channel=decision.channel,
                    replayed_score=replayed_score,
                    replayed_channel=replayed_channel,
                    matches=abs(replayed_score - decision.risk_score) <= SCORE_TOLERANCE
                    and replayed_channel == decision.channel,
                    declaration_intact=declaration_hash(decision.declaration) == decision.declaration_sha256,
                )
            )
        return results

    def _replay_request(self, request_id: str) -> dict[str, tuple[float, str]]:
        """Re-score every declaration of one recorded request together; {declaration_id: (score, channel)}."""
        records = self.audit.by_request(request_id)
        first = records[0]
        model = self._model(first.model_name, first.model_version)
        history = self._history_at(first.scored_at, model.reference)
        declarations = [Declaration.model_validate(r.declaration).model_dump() for r in records]
        features = compute_online_features(declaration_columns(declarations), history, model.reference)
        batch = model.scorer.score(features, explain=False)
        return {
            record.declaration_id: (float(score), str(channel))
            for record, score, channel in zip(records, batch.risk_score, batch.channel, strict=True)
        }

    def _model(self, name: str, version: str) -> LoadedModel:
        key = (name, version)
        if key not in self._models:
            pinned = self.settings.model_copy(update={"model_name": name, "model_version": version})
            self._models[key] = load_model(pinned)
        return self._models[key]

    def _history_at(self, scored_at: dt.datetime, reference: ReferenceTables) -> History:
        """Base history plus the appended rows received at or before `scored_at`."""
        base_declarations, base_seizures = self._base_tables()
        appended = self._appended_rows()
        cutoff = pd.Timestamp(scored_at.astimezone(dt.UTC).replace(tzinfo=None))
        # Rows are sorted by receipt time, so what the service knew is a prefix of each table.
        n_declarations = int((appended.declarations_received <= cutoff).sum())
        n_seizures = int((appended.seizures_received <= cutoff).sum())
        key = (n_declarations, n_seizures)
        if key not in self._histories:
            declarations = pd.concat(
                [base_declarations, appended.declarations.iloc[:n_declarations]], ignore_index=True
            ).sort_values("declared_at", kind="stable", ignore_index=True)
            seizures = pd.concat([base_seizures, appended.seizures.iloc[:n_seizures]], ignore_index=True)
            self._histories[key] = History.build(declarations, seizures, reference)
        return self._histories[key]

    def _base_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if self._base is None:
            tables = load_contract_tables(
                self.settings.history_declarations, self.settings.history_seizures, None, rejects_dir=None
            )
            self._base = (tables.declarations, tables.seizures)
        return self._base

    def _appended_rows(self) -> _Appended:
        if self._appended is None:
            self._appended = _read_appended(self.settings.history_db)
        return self._appended


def _read_appended(url: str) -> _Appended:
    """Appended declarations and seizures with their receipt times, straight from the history DB."""
    engine = make_engine(url)
    try:
        names = set(sa.inspect(engine).get_table_names())
        with engine.connect() as connection:
            declaration_rows = (
                list(
                    connection.execute(
                        sa.select(declarations_table.c.payload, declarations_table.c.received_at).order_by(
                            declarations_table.c.received_at, declarations_table.c.declared_at
                        )
                    )
                )
                if declarations_table.name in names
                else []
            )
            seizure_rows = (
                list(
                    connection.execute(
                        sa.select(seizures_table.c.payload, seizures_table.c.received_at).order_by(
                            seizures_table.c.received_at, seizures_table.c.seized_at
                        )
                    )
                )
                if seizures_table.name in names
                else []
            )
    finally:
        engine.dispose()
    return _Appended(
        declarations=declarations_frame([_decoded(row.payload, "declared_at") for row in declaration_rows]),
        declarations_received=pd.Series(
            [row.received_at for row in declaration_rows], dtype="datetime64[us]"
        ),
        seizures=seizures_frame([_decoded(row.payload, "seized_at") for row in seizure_rows]),
        seizures_received=pd.Series([row.received_at for row in seizure_rows], dtype="datetime64[us]"),
    )


def _decoded(payload: str, time_field: str) -> dict:
    # Payloads are `json.dumps(model_dump(), default=str)`: the event time is str(datetime).
    record = json.loads(payload)
    record[time_field] = dt.datetime.fromisoformat(record[time_field])
    return record


def replay_decision(declaration_id: str, settings: ServiceSettings, audit: AuditStore) -> list[ReplayResult]:
    """Replay every recorded decision about `declaration_id` (oldest first); empty if none was recorded.

    `settings` says where the registry, the base history files and the history DB are;
    the model version comes from each decision, not from the settings.
    """
    return Replayer(settings, audit).replay(declaration_id)


def replay_table(declaration_id: str, results: list[ReplayResult]) -> Table:
    """The replay of one declaration's decisions as a rich table."""
    table = Table(title=f"replay of the decisions about declaration {declaration_id}")
    for column in (
        "request",
        "scored at (UTC)",
        "model",
        "recorded",
        "replayed",
        "difference",
        "declaration",
        "result",
    ):
        table.add_column(
            column, justify="right" if column in {"recorded", "replayed", "difference"} else "left"
        )
    for r in results:
        table.add_row(
            r.request_id,
            r.scored_at.astimezone(dt.UTC).isoformat(timespec="milliseconds"),
            f"v{r.model_version}",
            f"{r.recorded_score:.12f} {r.recorded_channel}",
            f"{r.replayed_score:.12f} {r.replayed_channel}",
            f"{r.score_difference:+.2e}",
            "[green]intact[/]" if r.declaration_intact else "[red]HASH MISMATCH[/]",
            "[green]match[/]" if r.matches else "[red]MISMATCH[/]",
        )
    return table


def replay_cli(declaration_id: str) -> int:
    """Replay a declaration's decisions with the service's settings (`DIVERSION_*`); print a table.

    Exit code 0 when every decision replays to the same score and channel and its stored
    declaration is intact; 1 otherwise (including when no decision is recorded).
    """
    console = Console(width=None if Console().is_terminal else 150)
    settings = ServiceSettings.from_env()
    audit = AuditStore(settings.audit_db, schema=settings.audit_schema)
    try:
        results = replay_decision(declaration_id, settings, audit)
    except ModelLoadError as exc:
        console.print(f"[red]cannot replay declaration {declaration_id}: {exc}[/]")
        return 1
    finally:
        audit.close()
    if not results:
        console.print(f"[red]no decision recorded for declaration {declaration_id!r}[/]")
        return 1
    console.print(replay_table(declaration_id, results))
    failed = [r for r in results if not r.verified]
    if failed:
        console.print(f"[red]{len(failed)} of {len(results)} decision(s) do not replay identically[/]")
        return 1
    console.print(f"[green]all {len(results)} decision(s) replay identically[/]")
    return 0
