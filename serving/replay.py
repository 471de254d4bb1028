"""Replay recorded scoring decisions: same model version, same history sequence number.

An auditor asks: "would the model that decided this declaration decide it the same way
today, from what it knew then?" Each recorded decision (`serving.audit.AuditStore`) names
its model version and the history log's sequence number it was scored at. Replay loads
that version from the registry, rebuilds the history at that number (base contract files
plus the log rows up to it: `HistoryStore.history_at`, which reuses the live index where
it can), computes the online features and scores them. Features are a pure function of the
declaration and that history, so a decision replays identically on any worker or replica,
whatever was appended since. The stored declaration is also re-hashed against the hash
recorded with the decision.

Decisions recorded before sequence numbers existed (no `history_seq`) are replayed at the
latest append received at or before their decision time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from features.definitions import compute_online_features
from features.reference import load_reference
from serving.audit import AuditRecord, AuditStore, declaration_hash
from serving.engine import LoadedModel, ModelLoadError, load_model
from serving.frames import declaration_columns
from serving.history_store import HistoryStore, log_table
from serving.rules_store import RulesStore
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
    history_seq: int
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


class Replayer:
    """Replays decisions against a history store, loading each model version once.

    In the service, `store` is the worker's live store and `models` its loaded model(s);
    the command line opens its own store from the settings.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        audit: AuditStore,
        store: HistoryStore | None = None,
        models: Iterable[LoadedModel] = (),
        rules: RulesStore | None = None,
    ) -> None:
        self.settings = settings
        self.audit = audit
        self._store = store
        self._rules = rules
        self._models: dict[tuple[str, str], LoadedModel] = {(m.name, m.version): m for m in models}

    @property
    def store(self) -> HistoryStore:
        """The history store (opened from the settings on first use when none was given)."""
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    def replay(self, declaration_id: str) -> list[ReplayResult]:
        """Every recorded decision about one declaration, replayed; oldest first."""
        return self.replay_records(self.audit.get(declaration_id))

    def replay_records(self, decisions: Iterable[AuditRecord]) -> list[ReplayResult]:
        """Replay the given recorded decisions, grouped by model version and history sequence."""
        decisions = list(decisions)
        groups: dict[tuple[str, str, int], list[AuditRecord]] = {}
        for decision in decisions:
            key = (decision.model_name, decision.model_version, self._sequence_of(decision))
            groups.setdefault(key, []).append(decision)
        replayed: dict[tuple[str, str], tuple[float, str, int]] = {}
        for (name, version, sequence), records in groups.items():
            model = self._model(name, version)
            history = self.store.history_at(sequence)
            rows = [Declaration.model_validate(r.declaration).model_dump() for r in records]
            features = compute_online_features(declaration_columns(rows), history, model.reference)
            batch = model.scorer.score(features, explain=False)
            for i, (record, score, channel) in enumerate(
                zip(records, batch.risk_score, batch.channel, strict=True)
            ):
                if record.rule_set_version is not None:  # the targeting rules in force then, on top
                    channel = self._rules_channel(
                        record, features.iloc[[i]], float(score), str(channel), model
                    )
                replayed[record.request_id, record.declaration_id] = (float(score), str(channel), sequence)
        results = []
        for decision in decisions:
            score, channel, sequence = replayed[decision.request_id, decision.declaration_id]
            results.append(
                ReplayResult(
                    request_id=decision.request_id,
                    declaration_id=decision.declaration_id,
                    scored_at=decision.scored_at,
                    model_version=decision.model_version,
                    history_seq=sequence,
                    recorded_score=decision.risk_score,
                    recorded_channel=decision.channel,
                    replayed_score=score,
                    replayed_channel=channel,
                    matches=abs(score - decision.risk_score) <= SCORE_TOLERANCE
                    and channel == decision.channel,
                    declaration_intact=declaration_hash(decision.declaration) == decision.declaration_sha256,
                )
            )
        return results

    def _rules_channel(
        self, record: AuditRecord, features, score: float, model_channel: str, model: LoadedModel
    ) -> str:
        """The channel after the decision's rule-set version, evaluated as at its decision time."""
        from serving.rules_api import replay_rules

        if self._rules is None:
            self._rules = RulesStore(self.settings.rules_db, model.scorer.policy.mandatory_red_rules)
        outcome = replay_rules(
            self._rules,
            record.rule_set_version,
            record.declaration,
            features,
            score,
            model_channel,
            record.scored_at,
        )
        return str(outcome["channel"])

    def _sequence_of(self, decision: AuditRecord) -> int:
        if decision.history_seq is not None:
            return decision.history_seq
        cutoff = decision.scored_at.astimezone(dt.UTC).replace(tzinfo=None)
        with self.store._engine.connect() as connection:
            found = connection.execute(
                sa.select(sa.func.max(log_table.c.seq)).where(log_table.c.received_at <= cutoff)
            ).scalar_one()
        return int(found or 0)

    def _model(self, name: str, version: str) -> LoadedModel:
        key = (name, version)
        if key not in self._models:
            pinned = self.settings.model_copy(update={"model_name": name, "model_version": version})
            self._models[key] = load_model(pinned)
        return self._models[key]


def open_store(settings: ServiceSettings) -> HistoryStore:
    """The history store the settings name (base files + SQL log), for replay outside the service."""
    return HistoryStore.open(
        settings.history_db, settings.history_declarations, settings.history_seizures, load_reference()
    )


def replay_decision(
    declaration_id: str,
    settings: ServiceSettings,
    audit: AuditStore,
    store: HistoryStore | None = None,
    models: Iterable[LoadedModel] = (),
    rules: RulesStore | None = None,
) -> list[ReplayResult]:
    """Replay every recorded decision about `declaration_id` (oldest first); empty if none was recorded.

    `settings` says where the registry, the base history files and the history DB are;
    the model version and history sequence come from each decision, not from the settings.
    """
    own = store is None
    store = store or open_store(settings)
    try:
        return Replayer(settings, audit, store, models, rules).replay(declaration_id)
    finally:
        if own:
            store.close()


def replay_table(declaration_id: str, results: list[ReplayResult]) -> Table:
    """The replay of one declaration's decisions as a rich table."""
    table = Table(title=f"replay of the decisions about declaration {declaration_id}")
    for column in (
        "request",
        "scored at (UTC)",
        "model",
        "history seq",
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
            str(r.history_seq),
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
