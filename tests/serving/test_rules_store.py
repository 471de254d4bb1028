"""The rule store: append-only versions, approval by a second officer, restore, compiled sets per version."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.rules import RuleDefinition, WatchlistEntryDefinition
from serving.rules_store import Conflict, Forbidden, NotFound, RulesStore, RuleStoreError

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> RulesStore:
    opened = RulesStore(f"sqlite:///{tmp_path}/rules.db", ("controlled_without_authorisation",))
    yield opened
    opened.close()


def _rule(**overrides) -> RuleDefinition:
    document = {
        "name": "front companies by courier",
        "condition": {
            "all": [
                {"on_watchlist": "front", "entity": "consignee"},
                {"field": "transport_mode", "op": "eq", "value": "COURIER"},
            ]
        },
        "action": "RED",
    }
    return RuleDefinition.model_validate({**document, **overrides})


def _entry(value: str = "CN1") -> WatchlistEntryDefinition:
    return WatchlistEntryDefinition(
        entity="consignee",
        value=value,
        reason="front company",
        source="NCB ref 42",
        owner="officer-a",
        valid_from=NOW - dt.timedelta(days=1),
        valid_until=NOW + dt.timedelta(days=30),
    )


def test_builtin_rule_is_seeded_once_and_cannot_be_disabled(tmp_path: Path, store: RulesStore) -> None:
    again = RulesStore(f"sqlite:///{tmp_path}/rules.db", ("controlled_without_authorisation",))
    assert [r["id"] for r in again.rules()] == ["builtin:controlled_without_authorisation"]
    assert again.current_version() == 1
    with pytest.raises(Forbidden):
        store.set_status("builtin:controlled_without_authorisation", "disabled", "a", "no")
    with pytest.raises(Forbidden):
        store.update_rule(
            "builtin:controlled_without_authorisation",
            _rule(condition={"field": "transport_mode", "op": "eq", "value": "SEA"}),
            "a",
            "no",
        )
    assert store.compiled().rules[0].builtin


def test_lifecycle_with_approval_restore_and_versions(store: RulesStore) -> None:
    with pytest.raises(RuleStoreError, match="unknown watchlist"):
        store.create_rule(_rule(), "officer-a", "intel")
    store.create_watchlist("front", "front companies", "officer-a", "officer-a", "NCB report")
    store.add_entry("front", _entry(), "officer-a", "NCB report 42")
    created = store.create_rule(_rule(requires_approval=True), "officer-a", "NCB report 42")
    rule_id = created["id"]
    assert created["status"] == "draft" and created["version"] == 1
    assert not store.compiled().rules[1:]  # drafts are not evaluated

    pending = store.set_status(rule_id, "active", "officer-a", "go live")
    assert pending["status"] == "pending_approval"
    with pytest.raises(Forbidden, match="second officer"):
        store.approve(rule_id, "officer-a", "self approval")
    active = store.approve(rule_id, "officer-b", "checked")
    assert active["status"] == "active" and active["approved_by"] == "officer-b"
    compiled = store.compiled()
    assert [r.rule_id for r in compiled.rules] == ["builtin:controlled_without_authorisation", rule_id]
    assert compiled.version == store.current_version() == active["rule_set_version"]
    assert store.compiled() is compiled  # not reloaded while the version stands

    with pytest.raises(Conflict):
        store.approve(rule_id, "officer-c", "again")
    store.update_rule(rule_id, _rule(action="YELLOW", requires_approval=True), "officer-a", "milder")
    assert store.rule(rule_id)["status"] == "draft"
    restored = store.restore(rule_id, 3, "officer-a", "back to RED")
    assert restored["version"] == 5 and restored["definition"]["action"] == "RED"
    assert restored["status"] == "pending_approval"  # restoring an approved version needs approval again
    store.approve(rule_id, "officer-b", "ok")
    history = store.history("rule", rule_id)
    assert [c.action for c in history] == ["create", "activate", "approve", "update", "restore", "approve"]
    assert (
        history[3].before["definition"]["action"] == "RED"
        and history[3].after["definition"]["action"] == "YELLOW"
    )
    assert all(c.actor and c.reason and c.created_at for c in history)
    versions = [c.version for c in history]
    assert versions == sorted(versions)
    with pytest.raises(NotFound):
        store.restore(rule_id, 99, "officer-a", "x")


def test_expiry_and_older_versions_compile_as_they_stood(store: RulesStore) -> None:
    store.create_watchlist("front", "", "o", "officer-a", "r")
    entry = store.add_entry("front", _entry(), "officer-a", "r")
    rule_id = store.create_rule(_rule(), "officer-a", "r")["id"]
    first = store.set_status(rule_id, "active", "officer-a", "go")["rule_set_version"]
    expired = store.set_status(rule_id, "expired", "officer-a", "intel withdrawn")
    assert expired["status"] == "expired"
    assert [r.rule_id for r in store.compiled().rules] == ["builtin:controlled_without_authorisation"]
    old = store.load(first)
    assert [r.rule_id for r in old.rules][1:] == [rule_id] and old.entries[0].entry_id == entry["id"]
    columns = {
        "declaration_id": np.array(["D1"], dtype=object),
        "consignee_id": np.array(["CN1"], dtype=object),
        "transport_mode": np.array(["COURIER"], dtype=object),
    }
    features = pd.DataFrame({"controlled_without_authorisation": [0.0]})
    assert old.apply(columns, features, None, ["GREEN"], NOW).channel == ["RED"]
    assert store.compiled().apply(columns, features, None, ["GREEN"], NOW).channel == ["GREEN"]


def test_rule_past_valid_until_reads_expired(store: RulesStore) -> None:
    rule = _rule(
        condition={"field": "transport_mode", "op": "eq", "value": "COURIER"},
        valid_until=(NOW + dt.timedelta(seconds=1)).isoformat(),
    )
    rule_id = store.create_rule(rule, "a", "r")["id"]
    store.set_status(rule_id, "active", "a", "r")
    later = NOW + dt.timedelta(seconds=2)
    from serving.rules_store import effective_status

    assert effective_status(store.states("rule")[rule_id].after, later) == "expired"


def test_a_change_through_one_worker_reaches_another(tmp_path: Path, store: RulesStore) -> None:
    """Two stores on one database (two workers): the other sees the change at its next compiled()."""
    other = RulesStore(f"sqlite:///{tmp_path}/rules.db", ("controlled_without_authorisation",))
    try:
        before = other.compiled()
        rule = _rule(condition={"field": "transport_mode", "op": "eq", "value": "COURIER"})
        rule_id = store.create_rule(rule, "a", "r")["id"]
        store.set_status(rule_id, "active", "a", "r")
        after = other.compiled()
        assert after is not before and after.version == store.current_version()
        assert rule_id in [r.rule_id for r in after.rules]
    finally:
        other.close()


def _postgres_url() -> str | None:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            return "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    except OSError:
        return None


@pytest.mark.postgres
def test_concurrent_changes_on_postgres_get_consecutive_versions() -> None:
    """Many threads appending at once on PostgreSQL: versions 1..N with no gap and no repeat."""
    import threading
    import uuid

    import sqlalchemy as sa

    admin_url = _postgres_url()
    if admin_url is None:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    name = f"rules_{uuid.uuid4().hex}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        stores = [RulesStore(url, ("controlled_without_authorisation",)) for _ in range(4)]
        errors: list[Exception] = []

        def work(store: RulesStore, k: int) -> None:
            try:
                for i in range(5):
                    store.create_watchlist(f"w{k}-{i}", "", "o", f"officer-{k}", "r")
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s, k)) for k, s in enumerate(stores)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        with stores[0]._engine.connect() as connection:
            versions = [
                r[0] for r in connection.execute(sa.text("SELECT version FROM rule_changes ORDER BY version"))
            ]
        assert versions == list(range(1, 22))  # the built-in rule, then 20 watchlists
        assert all(s.compiled().version == 21 for s in stores)
        for s in stores:
            s.close()
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_apply_rules_names_the_builtin_rule_from_the_models_hits(store: RulesStore) -> None:
    from serving.rules_api import apply_rules

    columns = {
        "declaration_id": np.array(["D1", "D2"], dtype=object),
        "transport_mode": np.array(["SEA", "SEA"], dtype=object),
    }
    results = [
        {
            "declaration_id": "D1",
            "risk_score": 0.01,
            "channel": "RED",
            "rule_hits": ["controlled_without_authorisation"],
        },
        {"declaration_id": "D2", "risk_score": 0.01, "channel": "GREEN", "rule_hits": []},
    ]
    applied = apply_rules(store.compiled(), columns, results, NOW, features=lambda: pytest.fail("not needed"))
    assert [r["channel"] for r in results] == ["RED", "GREEN"]
    assert [h["rule_id"] for h in results[0]["rules"]] == ["builtin:controlled_without_authorisation"]
    assert results[1]["rules"] == [] and results[1]["rule_set_version"] == applied.rule_set_version == 1
    assert applied.audit_rule_hits == [
        ["controlled_without_authorisation", "rule:builtin:controlled_without_authorisation@v1:RED"],
        [],
    ]
