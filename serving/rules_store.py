"""Targeting rules and watchlists, append-only in the SQL store chosen by URL.

Every change (create, update, activate, shadow, approve, disable, expire, restore; a
watchlist or an entry added, changed or removed) is one row of `rule_changes`: who, when,
why, the object's state before and after. The row's `version` is the rule-set version:
the next integer after the largest, assigned inside the appending transaction (serialised
with a transaction-level advisory lock on PostgreSQL; on SQLite the database's single
writer and the primary key refuse a repeated number, and the append is retried), so a
reader that sees version N has every change up to N. The current state of an object is
its latest row; the rule set of version N is every object's latest row at or below N.

Workers read `SELECT max(version)` (the primary key's index) per request and recompile
the rule set only when it moved: a change through any worker or replica reaches all of
them on their next request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from models.rules import (
    ActiveEntry,
    ActiveRule,
    CompiledRuleSet,
    RuleDefinition,
    WatchlistEntryDefinition,
    builtin_rules,
    watchlists_of,
)
from serving.history_store import create_schema, make_engine

RULE_STATUSES = ("draft", "pending_approval", "active", "shadow", "disabled", "expired")
_ADVISORY_LOCK_KEY = 0x15_2026_0001

_metadata = sa.MetaData()
changes_table = sa.Table(
    "rule_changes",
    _metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),  # rule | watchlist | entry
    sa.Column("object_id", sa.String(128), nullable=False),
    sa.Column("object_version", sa.Integer, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("before", sa.Text, nullable=True),
    sa.Column("after", sa.Text, nullable=False),
    sa.UniqueConstraint("kind", "object_id", "object_version", name="uq_rule_changes_object_version"),
    sa.Index("ix_rule_changes_object", "kind", "object_id"),
)


class RuleStoreError(Exception):
    """A refused change; `status` is the HTTP status the service answers with."""

    status = 400


class NotFound(RuleStoreError):
    status = 404


class Conflict(RuleStoreError):
    status = 409


class Forbidden(RuleStoreError):
    status = 403


@dataclass(frozen=True)
class Change:
    version: int
    kind: str
    object_id: str
    object_version: int
    action: str
    actor: str
    reason: str
    created_at: dt.datetime
    before: dict | None
    after: dict

    def as_dict(self) -> dict:
        return {**self.__dict__, "created_at": self.created_at.replace(tzinfo=dt.UTC).isoformat()}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def effective_status(state: dict, at: dt.datetime | None = None) -> str:
    """The stored status, or `expired` once the rule's valid_until has passed."""
    until = _aware(state.get("definition", state).get("valid_until"))
    if state.get("status") in ("active", "shadow", "pending_approval") and until and (at or _now()) >= until:
        return "expired"
    return state["status"]


class RulesStore:
    """Rules, watchlists and entries: append-only changes, current state, compiled rule sets."""

    def __init__(self, url: str, mandatory_red_rules: Sequence[str] = ()) -> None:
        self._engine = make_engine(url)
        create_schema(self._engine, _metadata)  # safe when several workers start at once
        self._lock = threading.Lock()
        self._compiled: CompiledRuleSet | None = None
        for rule_id, definition in builtin_rules(mandatory_red_rules):
            if self._latest("rule", rule_id) is None:
                with contextlib.suppress(Conflict):  # another worker seeded it first
                    self._append(
                        "rule",
                        rule_id,
                        "create",
                        "system",
                        "mandatory rule of the model's inspection policy",
                        lambda _before, d=definition: {
                            "definition": d.model_dump(mode="json"),
                            "status": "active",
                            "builtin": True,
                        },
                        create=True,
                    )

    # -- reading ---------------------------------------------------------------------------
    def current_version(self) -> int:
        """The rule-set version: the latest change's number (0 before any change)."""
        with self._engine.connect() as connection:
            return connection.execute(sa.select(sa.func.max(changes_table.c.version))).scalar() or 0

    def _rows(self, connection, query) -> list[Change]:
        return [
            Change(
                r.version,
                r.kind,
                r.object_id,
                r.object_version,
                r.action,
                r.actor,
                r.reason,
                r.created_at,
                json.loads(r.before) if r.before else None,
                json.loads(r.after),
            )
            for r in connection.execute(query)
        ]

    def _latest(self, kind: str, object_id: str, connection=None) -> Change | None:
        query = (
            sa.select(changes_table)
            .where(changes_table.c.kind == kind, changes_table.c.object_id == object_id)
            .order_by(changes_table.c.object_version.desc())
            .limit(1)
        )
        if connection is None:
            with self._engine.connect() as own:
                rows = self._rows(own, query)
        else:
            rows = self._rows(connection, query)
        return rows[0] if rows else None

    def history(self, kind: str, object_id: str) -> list[Change]:
        """Every change of one object, oldest first."""
        query = (
            sa.select(changes_table)
            .where(changes_table.c.kind == kind, changes_table.c.object_id == object_id)
            .order_by(changes_table.c.object_version)
        )
        with self._engine.connect() as connection:
            rows = self._rows(connection, query)
        if not rows:
            raise NotFound(f"no {kind} {object_id!r}")
        return rows

    def states(self, kind: str, version: int | None = None) -> dict[str, Change]:
        """Latest change per object of `kind` at or below rule-set `version` (default: now)."""
        query = sa.select(changes_table).where(changes_table.c.kind == kind)
        if version is not None:
            query = query.where(changes_table.c.version <= version)
        latest: dict[str, Change] = {}
        with self._engine.connect() as connection:
            for change in self._rows(connection, query.order_by(changes_table.c.version)):
                latest[change.object_id] = change
        return latest

    def rule(self, rule_id: str) -> dict:
        change = self._latest("rule", rule_id)
        if change is None:
            raise NotFound(f"no rule {rule_id!r}")
        return self.describe(change)

    @staticmethod
    def describe(change: Change) -> dict:
        after = change.after
        out = {
            "id": change.object_id,
            "version": change.object_version,
            "rule_set_version": change.version,
            "updated_by": change.actor,
            "updated_at": change.created_at.replace(tzinfo=dt.UTC).isoformat(),
            **after,
        }
        if change.kind == "rule":
            out["status"] = effective_status(after)
        return out

    # -- compiled rule sets --------------------------------------------------------------
    def compiled(self) -> CompiledRuleSet:
        """The current rule set; recompiled only when the rule-set version moved (one indexed read)."""
        version = self.current_version()
        cached = self._compiled
        if cached is not None and cached.version == version:
            return cached
        with self._lock:
            if self._compiled is None or self._compiled.version != version:
                self._compiled = self.load(version)
            return self._compiled

    def load(self, version: int) -> CompiledRuleSet:
        """The rule set as it stood at rule-set `version` (what replay evaluates)."""
        rules_, watchlists, entries = (self.states(k, version) for k in ("rule", "watchlist", "entry"))
        active_lists = {wid for wid, c in watchlists.items() if c.after.get("status") == "active"}
        compiled_rules = []
        for rule_id, change in rules_.items():
            status = change.after["status"]
            if status not in ("active", "shadow"):
                continue
            definition = RuleDefinition.model_validate(change.after["definition"])
            compiled_rules.append(
                ActiveRule(
                    rule_id=rule_id,
                    version=change.object_version,
                    name=definition.name,
                    condition=definition.condition,
                    action=definition.action,
                    precedence=definition.precedence,
                    mode="live" if status == "active" else "shadow",
                    builtin=bool(change.after.get("builtin")),
                    valid_from=definition.valid_from,
                    valid_until=definition.valid_until,
                )
            )
        compiled_entries = []
        for entry_id, change in entries.items():
            after = change.after
            if after.get("status") != "active" or after["watchlist"] not in active_lists:
                continue
            compiled_entries.append(
                ActiveEntry(
                    entry_id=entry_id,
                    version=change.object_version,
                    watchlist=after["watchlist"],
                    entity=after["entity"],
                    value=after["value"],
                    valid_from=_aware(after["valid_from"]),
                    valid_until=_aware(after["valid_until"]),
                )
            )
        return CompiledRuleSet(version, compiled_rules, compiled_entries)

    # -- appending -----------------------------------------------------------------------
    def _append(self, kind, object_id, action, actor, reason, transform, create=False) -> Change:
        """One change in one transaction: read the object's state, transform it, append the result."""
        if not reason or not reason.strip():
            raise RuleStoreError("every change needs a reason ('reason' is empty)")
        for _attempt in range(50):
            try:
                with self._engine.begin() as connection:
                    if connection.dialect.name == "postgresql":
                        connection.execute(
                            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
                        )
                    before = self._latest(kind, object_id, connection)
                    if create and before is not None:
                        raise Conflict(f"{kind} {object_id!r} exists already")
                    if not create and before is None:
                        raise NotFound(f"no {kind} {object_id!r}")
                    after = transform(before.after if before else None)
                    version = (
                        connection.execute(sa.select(sa.func.max(changes_table.c.version))).scalar() or 0
                    ) + 1
                    change = Change(
                        version,
                        kind,
                        object_id,
                        (before.object_version if before else 0) + 1,
                        action,
                        actor,
                        reason.strip(),
                        _now().replace(tzinfo=None),
                        before.after if before else None,
                        after,
                    )
                    connection.execute(
                        sa.insert(changes_table),
                        {
                            **{k: v for k, v in change.__dict__.items() if k not in ("before", "after")},
                            "before": json.dumps(change.before) if change.before is not None else None,
                            "after": json.dumps(after),
                        },
                    )
                return change
            except sa.exc.IntegrityError:  # another writer took this number: read again and retry
                if create and self._latest(kind, object_id) is not None:
                    raise Conflict(f"{kind} {object_id!r} exists already") from None
                continue
            except sa.exc.OperationalError as exc:  # SQLite: "database is locked" beyond the busy wait
                if "locked" not in str(exc):
                    raise
                continue
        raise Conflict(f"{kind} {object_id!r}: too many concurrent changes, try again")

    # -- rules ---------------------------------------------------------------------------
    def _check_watchlists(self, definition: RuleDefinition) -> None:
        known = self.states("watchlist")
        missing = sorted(watchlists_of(definition.condition) - set(known))
        if missing:
            raise RuleStoreError(f"condition names unknown watchlist(s) {missing}; create them first")

    def create_rule(self, definition: RuleDefinition, actor: str, reason: str) -> dict:
        """A new rule, in draft (activate or shadow it to have it evaluated)."""
        self._check_watchlists(definition)
        rule_id = f"R-{uuid.uuid4().hex[:10]}"
        change = self._append(
            "rule",
            rule_id,
            "create",
            actor,
            reason,
            lambda _b: {
                "definition": definition.model_dump(mode="json"),
                "status": "draft",
                "builtin": False,
            },
            create=True,
        )
        return self.describe(change)

    @staticmethod
    def _not_builtin(before: dict, what: str) -> None:
        if before.get("builtin"):
            raise Forbidden(f"built-in mandatory rules cannot be {what}")

    def update_rule(self, rule_id: str, definition: RuleDefinition, actor: str, reason: str) -> dict:
        """A new definition; the rule goes back to draft (it must be activated, and approved, again)."""
        self._check_watchlists(definition)

        def transform(before: dict) -> dict:
            self._not_builtin(before, "changed")
            return {**before, "definition": definition.model_dump(mode="json"), "status": "draft"}

        return self.describe(self._append("rule", rule_id, "update", actor, reason, transform))

    def set_status(self, rule_id: str, target: str, actor: str, reason: str) -> dict:
        """activate / shadow (through approval when the rule requires it), disable, expire."""
        if target not in ("active", "shadow", "disabled", "expired"):
            raise RuleStoreError(f"cannot set status {target!r}")

        def transform(before: dict) -> dict:
            if target in ("disabled", "expired"):
                self._not_builtin(before, target)
                return {**before, "status": target, "requested_by": None, "requested_status": None}
            if before["definition"].get("requires_approval") and not before.get("builtin"):
                return {
                    **before,
                    "status": "pending_approval",
                    "requested_by": actor,
                    "requested_status": target,
                }
            return {**before, "status": target, "requested_by": None, "requested_status": None}

        action = {"active": "activate", "shadow": "shadow", "disabled": "disable", "expired": "expire"}[
            target
        ]
        return self.describe(self._append("rule", rule_id, action, actor, reason, transform))

    def approve(self, rule_id: str, actor: str, reason: str) -> dict:
        """A second officer (not the one who asked) approves a pending activation or shadow."""

        def transform(before: dict) -> dict:
            if before["status"] != "pending_approval":
                raise Conflict(f"rule {rule_id!r} is {before['status']}, not pending_approval")
            if before.get("requested_by") == actor:
                raise Forbidden(
                    f"rule {rule_id!r}: {actor!r} asked for this change; a second officer must approve it"
                )
            return {**before, "status": before["requested_status"], "approved_by": actor}

        return self.describe(self._append("rule", rule_id, "approve", actor, reason, transform))

    def restore(self, rule_id: str, object_version: int, actor: str, reason: str) -> dict:
        """A new version with the definition and status of an earlier one (approval applies again)."""
        old = next((c for c in self.history("rule", rule_id) if c.object_version == object_version), None)
        if old is None:
            raise NotFound(f"rule {rule_id!r} has no version {object_version}")

        def transform(before: dict) -> dict:
            self._not_builtin(before, "restored")
            state = {**old.after, "approved_by": None}
            if state["status"] in ("active", "shadow") and state["definition"].get("requires_approval"):
                state.update(
                    status="pending_approval", requested_by=actor, requested_status=old.after["status"]
                )
            elif state["status"] == "pending_approval":
                state.update(requested_by=actor)
            return state

        return self.describe(
            self._append(
                "rule", rule_id, "restore", actor, f"{reason} (restores v{object_version})", transform
            )
        )

    def rules(self) -> list[dict]:
        return [self.describe(c) for c in self.states("rule").values()]

    # -- watchlists ----------------------------------------------------------------------
    def create_watchlist(self, name: str, description: str, owner: str, actor: str, reason: str) -> dict:
        change = self._append(
            "watchlist",
            name,
            "create",
            actor,
            reason,
            lambda _b: {"name": name, "description": description, "owner": owner, "status": "active"},
            create=True,
        )
        return self.describe(change)

    def set_watchlist_status(self, name: str, status: str, actor: str, reason: str) -> dict:
        if status not in ("active", "disabled"):
            raise RuleStoreError(f"a watchlist is active or disabled, not {status!r}")
        action = "enable" if status == "active" else "disable"
        return self.describe(
            self._append("watchlist", name, action, actor, reason, lambda b: {**b, "status": status})
        )

    def watchlists(self) -> list[dict]:
        return [self.describe(c) for c in self.states("watchlist").values()]

    def add_entry(self, watchlist: str, entry: WatchlistEntryDefinition, actor: str, reason: str) -> dict:
        if self._latest("watchlist", watchlist) is None:
            raise NotFound(f"no watchlist {watchlist!r}")
        entry_id = f"E-{uuid.uuid4().hex[:10]}"
        change = self._append(
            "entry",
            entry_id,
            "create",
            actor,
            reason,
            lambda _b: {"watchlist": watchlist, **entry.model_dump(mode="json"), "status": "active"},
            create=True,
        )
        return self.describe(change)

    def update_entry(self, entry_id: str, entry: WatchlistEntryDefinition, actor: str, reason: str) -> dict:
        return self.describe(
            self._append(
                "entry",
                entry_id,
                "update",
                actor,
                reason,
                lambda b: {**b, **entry.model_dump(mode="json")},
            )
        )

    def remove_entry(self, entry_id: str, actor: str, reason: str) -> dict:
        return self.describe(
            self._append("entry", entry_id, "remove", actor, reason, lambda b: {**b, "status": "removed"})
        )

    def entries(self, watchlist: str | None = None) -> list[dict]:
        return [
            self.describe(c)
            for c in self.states("entry").values()
            if watchlist is None or c.after["watchlist"] == watchlist
        ]

    def add_entries_bulk(
        self, watchlist: str, entries: Sequence[WatchlistEntryDefinition], actor: str, reason: str
    ) -> int:
        """Many entries at once (bench, imports): one change row each, one transaction."""
        with self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
            version = connection.execute(sa.select(sa.func.max(changes_table.c.version))).scalar() or 0
            now = _now().replace(tzinfo=None)
            rows = [
                {
                    "version": version + i + 1,
                    "kind": "entry",
                    "object_id": f"E-{uuid.uuid4().hex[:10]}",
                    "object_version": 1,
                    "action": "create",
                    "actor": actor,
                    "reason": reason,
                    "created_at": now,
                    "before": None,
                    "after": json.dumps(
                        {"watchlist": watchlist, **e.model_dump(mode="json"), "status": "active"}
                    ),
                }
                for i, e in enumerate(entries)
            ]
            connection.execute(sa.insert(changes_table), rows)
        return len(rows)

    def close(self) -> None:
        self._engine.dispose()
