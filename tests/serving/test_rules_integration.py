"""Rules and watchlists through the real service: lifecycle, RED by watchlist, shadow, backtest, roles, replay."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from serving.auth import issue_token
from serving.process import running_service

pytestmark = [pytest.mark.integration]
NEW = 200


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, trained, small_history: Path, deployment_setup):
    """Service on the trained model with a rule store; two risk officers; model channels of the new rows."""
    config, _ = trained
    folder = tmp_path_factory.mktemp("rules")
    prepared = deployment_setup(
        folder, config, small_history, NEW, roles=("scorer", "analyst", "auditor", "risk_officer")
    )
    token = dict(prepared.token)
    token["officer_b"] = issue_token(
        "test-officer-b", ["risk_officer"], Path(prepared.env["DIVERSION_TOKENS_FILE"])
    )
    env = {**prepared.env, "DIVERSION_RULES_DB": f"sqlite:///{folder}/rules.db"}
    with running_service(env, log_path=folder / "service.log") as base:
        client = httpx.Client(base_url=base, timeout=120)
        baseline = client.post(
            "/score", json={"declarations": prepared.records}, headers=_bearer(token["scorer"])
        ).json()["scores"]
        yield {
            "client": client,
            "token": token,
            "records": prepared.records,
            "model_channel": {s["declaration_id"]: s["channel"] for s in baseline},
            "env": env,
            "history_declarations": prepared.history_declarations,
            "history_seizures": prepared.history_seizures,
            "config": config,
        }
        client.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _as(deployment, who: str) -> dict[str, str]:
    return _bearer(deployment["token"][who])


def _ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def _score(deployment, record: dict) -> dict:
    response = deployment["client"].post(
        "/score", json={"declarations": [record]}, headers=_as(deployment, "scorer")
    )
    return _ok(response)["scores"][0]


def _green(deployment, used: set[str] = set()) -> dict:  # noqa: B006 - shared on purpose: one record per test
    for record in deployment["records"]:
        if (
            deployment["model_channel"][record["declaration_id"]] == "GREEN"
            and record["declaration_id"] not in used
        ):
            used.add(record["declaration_id"])
            return record
    raise AssertionError("no GREEN declaration left")


def _watchlisted_rule(deployment, record: dict, requires_approval: bool) -> tuple[str, str, str]:
    client = deployment["client"]
    officer = _as(deployment, "risk_officer")
    name = f"front-{uuid.uuid4().hex[:6]}"
    _ok(
        client.post(
            "/watchlists", json={"name": name, "owner": "ncb", "reason": "NCB report 42"}, headers=officer
        )
    )
    now = dt.datetime.now(dt.UTC)
    entry = _ok(
        client.post(
            f"/watchlists/{name}/entries",
            json={
                "entity": "consignee",
                "value": record["consignee_id"],
                "reason": "front company",
                "source": "NCB ref 42",
                "owner": "officer-a",
                "valid_from": (now - dt.timedelta(days=1)).isoformat(),
                "valid_until": (now + dt.timedelta(days=30)).isoformat(),
            },
            headers=officer,
        )
    )
    rule = _ok(
        client.post(
            "/rules",
            json={
                "name": "front-company consignee",
                "condition": {"on_watchlist": name, "entity": "consignee"},
                "action": "RED",
                "requires_approval": requires_approval,
                "reason": "NCB report 42",
            },
            headers=officer,
        )
    )
    return name, entry["id"], rule["id"]


def test_roles_are_enforced(deployment) -> None:
    client = deployment["client"]
    body = {
        "name": "x",
        "condition": {"field": "transport_mode", "op": "eq", "value": "SEA"},
        "action": "RED",
    }
    assert (
        client.post("/rules", json={**body, "reason": "r"}, headers=_as(deployment, "scorer")).status_code
        == 403
    )
    assert client.get("/rules", headers=_as(deployment, "analyst")).status_code == 403
    assert client.get("/watchlists").status_code == 401
    rules = _ok(client.get("/rules", headers=_as(deployment, "risk_officer")))
    builtin = [r for r in rules["rules"] if r["id"] == "builtin:controlled_without_authorisation"]
    assert builtin and builtin[0]["status"] == "active"
    refused = client.post(
        "/rules/builtin:controlled_without_authorisation/disable",
        json={"reason": "try"},
        headers=_as(deployment, "risk_officer"),
    )
    assert refused.status_code == 403
    assert (
        client.post(
            "/score",
            json={"declarations": deployment["records"][:1]},
            headers=_as(deployment, "risk_officer"),
        ).status_code
        == 403
    )


def test_bad_conditions_answer_422_naming_the_field(deployment) -> None:
    client, officer = deployment["client"], _as(deployment, "risk_officer")
    cases = [
        ({"field": "consignee_name", "op": "eq", "value": "x"}, "consignee_name"),
        ({"field": "transport_mode", "op": "eq", "value": "TELEPORT"}, "TELEPORT"),
        ({"field": "quantity", "op": "lt", "value": "ten"}, "quantity"),
        ({"eval": "__import__('os')"}, "condition"),
    ]
    for condition, named in cases:
        response = client.post(
            "/rules",
            json={"name": "x", "condition": condition, "action": "RED", "reason": "r"},
            headers=officer,
        )
        assert response.status_code == 422, response.text
        assert named in response.text
    unknown_list = client.post(
        "/rules",
        json={
            "name": "x",
            "condition": {"on_watchlist": "nope", "entity": "consignee"},
            "action": "RED",
            "reason": "r",
        },
        headers=officer,
    )
    assert unknown_list.status_code == 400 and "nope" in unknown_list.text


def test_create_approve_activate_expire_restore_and_replay(deployment) -> None:
    """A watchlisted consignee goes RED with the rule named, after a second officer's approval."""
    client = deployment["client"]
    record = _green(deployment)
    _, entry_id, rule_id = _watchlisted_rule(deployment, record, requires_approval=True)
    a, b = _as(deployment, "risk_officer"), _as(deployment, "officer_b")

    assert _score(deployment, record)["channel"] == "GREEN"  # draft: not evaluated
    pending = _ok(client.post(f"/rules/{rule_id}/activate", json={"reason": "go"}, headers=a))
    assert pending["status"] == "pending_approval"
    assert _score(deployment, record)["channel"] == "GREEN"
    assert client.post(f"/rules/{rule_id}/approve", json={"reason": "me"}, headers=a).status_code == 403
    active = _ok(client.post(f"/rules/{rule_id}/approve", json={"reason": "checked"}, headers=b))
    assert active["status"] == "active" and active["approved_by"] == "test-officer-b"

    scored = _score(deployment, record)
    assert scored["channel"] == "RED"
    [hit] = [h for h in scored["rules"] if h["rule_id"] == rule_id]
    assert hit["version"] == active["version"] and hit["action"] == "RED"
    assert [e["entry_id"] for e in hit["watchlist_entries"]] == [entry_id]
    red_version = scored["rule_set_version"]

    decisions = _ok(
        client.get(f"/audit/decisions/{record['declaration_id']}", headers=_as(deployment, "auditor"))
    )
    recorded = decisions[-1]
    assert recorded["rule_set_version"] == red_version and recorded["channel"] == "RED"
    assert f"rule:{rule_id}@v{active['version']}:RED" in recorded["rule_hits"]
    assert f"watchlist:{entry_id}@v1" in recorded["rule_hits"]

    expired = _ok(client.post(f"/rules/{rule_id}/expire", json={"reason": "intel withdrawn"}, headers=a))
    assert expired["status"] == "expired"
    after_expiry = _score(deployment, record)
    assert after_expiry["channel"] == "GREEN" and after_expiry["rule_set_version"] > red_version

    restored = _ok(
        client.post(
            f"/rules/{rule_id}/restore", json={"version": active["version"], "reason": "renewed"}, headers=a
        )
    )
    assert restored["status"] == "pending_approval" and restored["version"] > expired["version"]
    _ok(client.post(f"/rules/{rule_id}/approve", json={"reason": "ok"}, headers=b))
    assert _score(deployment, record)["channel"] == "RED"
    versions = _ok(client.get(f"/rules/{rule_id}/versions", headers=a))
    assert [v["action"] for v in versions] == [
        "create",
        "activate",
        "approve",
        "expire",
        "restore",
        "approve",
    ]
    assert all(v["actor"].startswith("test-") and v["reason"] for v in versions)
    assert versions[3]["before"]["status"] == "active" and versions[3]["after"]["status"] == "expired"

    # Replay of the decision made under the older rule-set version reproduces its hits.
    _replay_reproduces(deployment, recorded)
    # and the auditor's replay verifies every decision, the rule-driven RED one included
    replays = _ok(client.get(f"/audit/replay/{record['declaration_id']}", headers=_as(deployment, "auditor")))
    by_request = {r["request_id"]: r for r in replays}
    assert by_request[recorded["request_id"]]["replayed_channel"] == "RED"
    assert all(r["verified"] for r in replays), [r for r in replays if not r["verified"]]


def _replay_reproduces(deployment, recorded: dict) -> None:
    from features.definitions import compute_features
    from features.history import History
    from features.reference import load_reference
    from features.validation import load_contract_tables
    from serving.frames import declarations_frame
    from serving.rules_api import replay_rules
    from serving.rules_store import RulesStore
    from serving.schemas import Declaration

    tables = load_contract_tables(
        deployment["history_declarations"], deployment["history_seizures"], None, rejects_dir=None
    )
    reference = load_reference()
    history = History.build(tables.declarations, tables.seizures, reference)
    declaration = Declaration.model_validate(recorded["declaration"])
    features = compute_features(declarations_frame([declaration.model_dump()]), history, reference)
    store = RulesStore(deployment["env"]["DIVERSION_RULES_DB"])
    try:
        replayed = replay_rules(
            store,
            recorded["rule_set_version"],
            recorded["declaration"],
            features,
            recorded["risk_score"],
            "GREEN",  # the model's channel for this declaration (it was chosen GREEN)
            dt.datetime.fromisoformat(recorded["scored_at"]),
        )
        current = store.current_version()
    finally:
        store.close()
    assert current > recorded["rule_set_version"]
    assert replayed["channel"] == recorded["channel"] == "RED"
    model_hits = [h for h in recorded["rule_hits"] if "@v" not in h]
    assert model_hits + replayed["rule_hits"] == recorded["rule_hits"]


def test_shadow_rule_changes_nothing_but_is_recorded(deployment) -> None:
    client, officer = deployment["client"], _as(deployment, "risk_officer")
    record = _green(deployment)
    rule = _ok(
        client.post(
            "/rules",
            json={
                "name": "consignee shadow",
                "condition": {"field": "consignee_id", "op": "eq", "value": record["consignee_id"]},
                "action": "RED",
                "reason": "trial",
            },
            headers=officer,
        )
    )
    shadowed = _ok(
        client.post(f"/rules/{rule['id']}/shadow", json={"reason": "trial first"}, headers=officer)
    )
    assert shadowed["status"] == "shadow"
    scored = _score(deployment, record)
    assert scored["channel"] == "GREEN" and all(h["rule_id"] != rule["id"] for h in scored["rules"])
    [recorded] = _ok(
        client.get(f"/audit/decisions/{record['declaration_id']}", headers=_as(deployment, "auditor"))
    )[-1:]
    assert recorded["channel"] == "GREEN"
    assert f"shadow:{rule['id']}@v{shadowed['version']}:RED" in recorded["rule_hits"]
    report = _ok(client.get("/rules/shadow-report", headers=officer))
    [line] = [r for r in report["rules"] if r["rule_id"] == rule["id"]]
    assert line["hits"] >= 1 and line["would_change_channel"] >= 1


def test_backtest_counts_equal_a_direct_count(deployment) -> None:
    client, officer = deployment["client"], _as(deployment, "risk_officer")
    declarations = pd.read_parquet(deployment["history_declarations"])
    seizures = pd.read_parquet(deployment["history_seizures"])
    end = declarations["declared_at"].max()
    start = end - pd.Timedelta(days=120)
    window = declarations.loc[(declarations["declared_at"] >= start) & (declarations["declared_at"] < end)]
    mode = window["transport_mode"].value_counts().index[0]
    picked = window.loc[
        (window["transport_mode"] == mode) & window["hs_code"].astype(str).str.startswith("30")
    ]
    # a few of them inspected (two with a finding), one outside the selection
    inspected = picked["declaration_id"].head(3).tolist()
    other = window.loc[window["transport_mode"] != mode, "declaration_id"].head(1).tolist()
    results = ["SEIZURE", "DISCREPANCY", "CLEAN"]
    _ok(
        client.post(
            "/outcomes",
            json={
                "inspections": [
                    {"declaration_id": d, "inspected_at": "2026-01-05T00:00:00Z", "result": r}
                    for d, r in zip(inspected + other, [*results, "SEIZURE"], strict=True)
                ]
            },
            headers=_as(deployment, "analyst"),
        )
    )
    rule = _ok(
        client.post(
            "/rules",
            json={
                "name": "mode + chapter 30",
                "condition": {
                    "all": [
                        {"field": "transport_mode", "op": "eq", "value": mode},
                        {"field": "hs_code", "op": "startswith", "value": "30"},
                    ]
                },
                "action": "RED",
                "reason": "backtest first",
            },
            headers=officer,
        )
    )
    answer = _ok(
        client.post(
            f"/rules/{rule['id']}/backtest",
            json={"start": start.isoformat() + "Z", "end": end.isoformat() + "Z"},
            headers=officer,
        )
    )
    # the backtest runs over the whole history: the base files and what was appended through the API
    from serving.history_store import read_log

    appended = read_log(deployment["env"]["DIVERSION_HISTORY_DB"])
    if appended.declarations is not None:
        declarations = pd.concat([declarations, appended.declarations], ignore_index=True)
        window = declarations.loc[
            (declarations["declared_at"] >= start) & (declarations["declared_at"] < end)
        ]
        picked = window.loc[
            (window["transport_mode"] == mode) & window["hs_code"].astype(str).str.startswith("30")
        ]
    if appended.seizures is not None:
        seizures = pd.concat([seizures, appended.seizures], ignore_index=True)
    seized_ids = seizures.loc[seizures["declaration_id"].notna()].merge(
        picked[["declaration_id", "declared_at"]], on="declaration_id"
    )
    later_seized = seized_ids.loc[
        seized_ids["seized_at"] >= seized_ids["declared_at"], "declaration_id"
    ].nunique()
    assert answer["declarations"] == len(window)
    assert answer["selected"] == len(picked) > 0
    assert answer["traffic_share"] == pytest.approx(len(picked) / len(window))
    assert answer["later_seized"] == later_seized
    assert answer["inspected"] == 3 and answer["found_in_inspection"] == 2
    assert answer["precision_among_inspected"] == pytest.approx(2 / 3)
    assert answer["model_scored"] and answer["model_red"] + answer["model_yellow"] <= answer["selected"]
    assert answer["red_rate_with_rule"] >= answer["red_rate_model"]
    assert 0 < answer["red_budget"] < 1
    assert "inspected" in answer["note"]
    assert rule["status"] == "draft"  # a backtest changes nothing

    # The command line gives the same counts (without the model: no RED/YELLOW figures).
    command = [
        sys.executable,
        "-m",
        "serving.rules_cli",
        "backtest",
        "--rule",
        rule["id"],
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        "--no-model",
    ]
    done = subprocess.run(
        command,
        env={**os.environ, **deployment["env"]},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    offline = json.loads(done.stdout)
    for key in ("declarations", "selected", "later_seized", "inspected", "found_in_inspection"):
        assert offline[key] == answer[key], key
    assert offline["model_scored"] is False and offline["red_rate_model"] is None


def test_effectiveness_counts_hits_inspections_and_findings(deployment) -> None:
    client, officer = deployment["client"], _as(deployment, "risk_officer")
    record = _green(deployment)
    _, entry_id, rule_id = _watchlisted_rule(deployment, record, requires_approval=False)
    _ok(client.post(f"/rules/{rule_id}/activate", json={"reason": "go"}, headers=officer))
    assert _score(deployment, record)["channel"] == "RED"
    # the filed declaration is recorded, then its inspection outcome
    _ok(
        client.post(
            "/history/declarations", json={"declarations": [record]}, headers=_as(deployment, "analyst")
        )
    )
    _ok(
        client.post(
            "/outcomes",
            json={
                "inspections": [
                    {
                        "declaration_id": record["declaration_id"],
                        "inspected_at": "2026-12-01T00:00:00Z",
                        "result": "SEIZURE",
                    }
                ]
            },
            headers=_as(deployment, "analyst"),
        )
    )
    report = _ok(client.get("/rules/effectiveness", params={"stale_days": 3650}, headers=officer))
    [rule] = [r for r in report["rules"] if r["id"] == rule_id]
    assert (rule["hits"], rule["inspected"], rule["found"], rule["precision"]) == (1, 1, 1, 1.0)
    assert rule["stale"] is False
    [entry] = [e for e in report["watchlist_entries"] if e["id"] == entry_id]
    assert entry["hits"] == 1 and entry["found"] == 1
    strict = _ok(client.get("/rules/effectiveness", params={"stale_days": 0}, headers=officer))
    assert [r for r in strict["rules"] if r["id"] == rule_id][0]["stale"] is True
    assert np.isfinite(rule["hits"])
