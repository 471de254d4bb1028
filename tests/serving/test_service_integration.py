"""The real service in a subprocess, called over HTTP: success, each error class, readiness, parity."""

from __future__ import annotations

import json
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pandas as pd
import pytest

from serving.process import running_service

pytestmark = [pytest.mark.integration]
NEW = 300


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, trained, small_history: Path, deployment_setup):
    """Service on the trained model; history = all but the last NEW declarations."""
    config, outcome = trained
    folder = tmp_path_factory.mktemp("service")
    prepared = deployment_setup(folder, config, small_history, NEW)
    token, records = prepared.token, prepared.records
    env = {**prepared.env, "DIVERSION_MAX_BATCH": "400", "DIVERSION_MAX_BODY_BYTES": "2000000"}
    with running_service(env, log_path=folder / "service.log") as base:
        yield {
            "base": base,
            "token": token,
            "records": records,
            "config": config,
            "outcome": outcome,
            "env": env,
        }


def _auth(deployment, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {deployment['token'][role]}"}


def test_ready_and_model_info(deployment) -> None:
    base = deployment["base"]
    assert httpx.get(f"{base}/readyz").status_code == 200
    info = httpx.get(f"{base}/model", headers=_auth(deployment, "scorer")).json()
    assert info["version"] == deployment["outcome"].model_version
    assert info["run_id"] == deployment["outcome"].run_id
    assert info["feature_set"]["version"]
    assert 0 < info["inspection_policy"]["yellow_threshold"] <= info["inspection_policy"]["red_threshold"]
    assert "precision_at_2pct" in info["test_metrics"]
    assert httpx.get(f"{base}/docs.json").status_code == 200


def test_score_with_bentoml_client_returns_every_field_in_request_order(deployment) -> None:
    records = deployment["records"][:25]
    with bentoml.SyncHTTPClient(deployment["base"], token=deployment["token"]["scorer"]) as client:
        response = client.score(declarations=records)
    scores = response["scores"] if isinstance(response, dict) else json.loads(response)["scores"]
    assert [s["declaration_id"] for s in scores] == [r["declaration_id"] for r in records]
    for item in scores:
        assert 0.0 <= item["risk_score"] <= 1.0 and 0.0 <= item["percentile"] <= 100.0
        assert item["channel"] in {"RED", "YELLOW", "GREEN"}
        assert len(item["reasons"]) <= 5
        assert all(r["sentence"] and r["contribution"] > 0 for r in item["reasons"])
        assert item["model"] == {"name": "diversion-risk", "version": deployment["outcome"].model_version}
        assert item["scored_at"]


def test_service_scores_equal_offline_scores(deployment, small_history: Path) -> None:
    """Same declarations, same history: the service equals the offline computation with the registered model.

    The service's history is everything before the new declarations; the request's own rows are
    not history for each other, so the offline history holds the base rows only.
    """
    from features.definitions import compute_features
    from features.history import History
    from features.reference import load_reference
    from features.validation import load_contract_tables
    from training.pipeline import load_scorer

    records = deployment["records"]
    response = httpx.post(
        f"{deployment['base']}/score",
        json={"declarations": records},
        headers=_auth(deployment, "scorer"),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    served = pd.Series({s["declaration_id"]: s["risk_score"] for s in response.json()["scores"]})

    tables = load_contract_tables(small_history / "declarations.parquet", small_history / "seizures.parquet")
    declarations = tables.declarations.sort_values("declared_at", kind="stable").reset_index(drop=True)
    cutoff = declarations["declared_at"].iloc[-NEW]
    known = tables.seizures.loc[tables.seizures["seized_at"] < cutoff]
    reference = load_reference()
    # the service's history holds all but the NEW declarations; /score never adds its own
    # rows, so each is scored against that history alone (not against its batch-mates)
    stored = History.build(declarations.iloc[:-NEW], known, reference)
    features = compute_features(declarations.iloc[-NEW:], stored, reference)
    config, outcome = deployment["config"], deployment["outcome"]
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri)
    scorer = load_scorer(f"models:/{config.registered_model}/{outcome.model_version}")
    offline = pd.Series(scorer.predict_proba(features), index=declarations["declaration_id"].iloc[-NEW:])
    assert len(served) == NEW
    np.testing.assert_allclose(
        served.loc[offline.index].to_numpy(), offline.to_numpy(), rtol=1e-9, atol=1e-12
    )


def test_new_entities_are_scored_not_rejected(deployment) -> None:
    record = dict(deployment["records"][0])
    record.update(
        declaration_id="NEW-ENTITIES-1",
        exporter_id="NEVER-SEEN-EXPORTER",
        consignee_id="NEVER-SEEN-CONSIGNEE",
        destination_country="ZW",
        consignee_country="ZW",
    )
    response = httpx.post(
        f"{deployment['base']}/score", json={"declarations": [record]}, headers=_auth(deployment, "scorer")
    )
    assert response.status_code == 200, response.text
    reasons = {r["feature"] for r in response.json()["scores"][0]["reasons"]}
    assert response.json()["scores"][0]["risk_score"] > 0
    assert reasons  # something explains a never-seen exporter


def test_a_new_seizure_raises_the_exporters_next_shipment_without_retraining(deployment) -> None:
    base, records = deployment["base"], deployment["records"]
    # An exporter the history knows: a seizure report naming it must raise its next shipment.
    record = dict(records[-1])
    record.update(declaration_id="AFTER-SEIZURE-1")
    before = httpx.post(
        f"{base}/score", json={"declarations": [record]}, headers=_auth(deployment, "scorer")
    ).json()
    seized_at = (pd.Timestamp(record["declared_at"]) - pd.Timedelta(hours=1)).isoformat()
    seizures = [
        {
            "seizure_id": f"INTEL-{i}",
            "seized_at": seized_at,
            "exporter_id": record["exporter_id"],
            "country": "IN",
            "substance": "tramadol",
            "agency": "NCB",
        }
        for i in range(3)
    ]
    ack = httpx.post(
        f"{base}/history/seizures", json={"seizures": seizures}, headers=_auth(deployment, "analyst")
    )
    assert ack.status_code == 200, ack.text
    assert ack.json()["accepted"] == 3
    again = httpx.post(
        f"{base}/history/seizures", json={"seizures": seizures}, headers=_auth(deployment, "analyst")
    )
    assert again.json()["accepted"] == 0 and len(again.json()["duplicates"]) == 3
    after = httpx.post(
        f"{base}/score", json={"declarations": [record]}, headers=_auth(deployment, "scorer")
    ).json()
    assert after["scores"][0]["risk_score"] > before["scores"][0]["risk_score"]


def test_recorded_declarations_enter_the_history(deployment) -> None:
    base = deployment["base"]
    record = dict(deployment["records"][5])
    record["declaration_id"] = "RECORDED-1"
    ack = httpx.post(
        f"{base}/history/declarations", json={"declarations": [record]}, headers=_auth(deployment, "analyst")
    )
    assert ack.status_code == 200 and ack.json()["accepted"] == 1
    dup = httpx.post(
        f"{base}/history/declarations", json={"declarations": [record]}, headers=_auth(deployment, "analyst")
    )
    assert dup.json()["duplicates"] == ["RECORDED-1"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.update(quantity=-5), "quantity"),
        (lambda r: r.update(consignee_country="ng"), "consignee_country"),
        (lambda r: r.update(hs_code="30A490"), "hs_code"),
        (lambda r: r.update(transport_mode="TELEPORT"), "transport_mode"),
        (lambda r: r.update(declared_at="not a date"), "declared_at"),
        (lambda r: r.pop("exporter_id"), "exporter_id"),
        (lambda r: r.update(declared_value_usd="NaN"), "declared_value_usd"),
    ],
)
def test_field_errors_are_422_naming_the_declaration_and_field(deployment, mutate, field) -> None:
    good, bad = dict(deployment["records"][0]), dict(deployment["records"][1])
    mutate(bad)
    response = httpx.post(
        f"{deployment['base']}/score", json={"declarations": [good, bad]}, headers=_auth(deployment, "scorer")
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(
        e["field"] == field and e["index"] == 1 and e["declaration_id"] == bad["declaration_id"]
        for e in errors
    )


def test_malformed_json_is_400(deployment) -> None:
    response = httpx.post(
        f"{deployment['base']}/score",
        content=b'{"declarations": [{"declaration_id": ',
        headers={**_auth(deployment, "scorer"), "content-type": "application/json"},
    )
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]


def test_batch_above_the_limit_is_413(deployment) -> None:
    records = (deployment["records"] * 2)[:401]
    response = httpx.post(
        f"{deployment['base']}/score", json={"declarations": records}, headers=_auth(deployment, "scorer")
    )
    assert response.status_code == 413 and "limit is 400" in response.json()["error"]


def test_oversized_body_is_413_and_wrong_content_type_415(deployment) -> None:
    base, headers = deployment["base"], _auth(deployment, "scorer")
    huge = b'{"declarations": [' + b" " * 2_100_000 + b"]}"
    response = httpx.post(
        f"{base}/score", content=huge, headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code == 413
    response = httpx.post(
        f"{base}/score", content=b"a,b\n1,2", headers={**headers, "content-type": "text/csv"}
    )
    assert response.status_code == 415


def test_auth_errors(deployment) -> None:
    base, body = deployment["base"], {"declarations": deployment["records"][:1]}
    assert httpx.post(f"{base}/score", json=body).status_code == 401
    assert httpx.post(f"{base}/score", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.post(f"{base}/score", json=body, headers=_auth(deployment, "auditor")).status_code == 403
    assert (
        httpx.post(
            f"{base}/history/seizures", json={"seizures": []}, headers=_auth(deployment, "scorer")
        ).status_code
        == 403
    )


def test_every_decision_is_audited_and_readable_by_auditors_only(deployment) -> None:
    base = deployment["base"]
    record = dict(deployment["records"][7])
    response = httpx.post(
        f"{base}/score", json={"declarations": [record]}, headers=_auth(deployment, "scorer")
    )
    request_id = response.json()["request_id"]
    decisions = httpx.get(
        f"{base}/audit/decisions/{record['declaration_id']}", headers=_auth(deployment, "auditor")
    )
    assert decisions.status_code == 200
    mine = [d for d in decisions.json() if d["request_id"] == request_id]
    assert len(mine) == 1
    assert mine[0]["caller"] == "test-scorer"
    assert mine[0]["risk_score"] == response.json()["scores"][0]["risk_score"]
    assert len(mine[0]["declaration_sha256"]) == 64
    denied = httpx.get(
        f"{base}/audit/decisions/{record['declaration_id']}", headers=_auth(deployment, "scorer")
    )
    assert denied.status_code == 403
    replayed = httpx.get(
        f"{base}/audit/replay/{record['declaration_id']}", headers=_auth(deployment, "auditor"), timeout=120
    )
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() and all(r["verified"] for r in replayed.json())


def test_missing_model_means_not_ready_and_no_scores(deployment, tmp_path: Path) -> None:
    env = {
        **deployment["env"],
        "DIVERSION_MODEL_NAME": "no-such-model",
        "DIVERSION_AUDIT_DB": f"sqlite:///{tmp_path}/a.db",
    }
    with running_service(env, require_ready=False, log_path=tmp_path / "log") as base:
        assert httpx.get(f"{base}/readyz").status_code == 503
        response = httpx.post(
            f"{base}/score",
            json={"declarations": deployment["records"][:1]},
            headers=_auth(deployment, "scorer"),
        )
        assert response.status_code == 503
    assert "no-such-model" in (tmp_path / "log").read_text()


def test_outcomes_update_history_at_once_and_export_for_retraining(deployment, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    base, records = deployment["base"], deployment["records"]
    target = dict(records[-2])
    target["declaration_id"] = "OUTCOME-PROBE-1"
    headers = _auth(deployment, "scorer")
    earlier = [
        r
        for r in records
        if r["exporter_id"] == target["exporter_id"] and r["declared_at"] < target["declared_at"]
    ]
    inspected = dict(earlier[0] if earlier else records[0])
    inspected.update(declaration_id="INSPECTED-1", exporter_id=target["exporter_id"])
    inspected["declared_at"] = (pd.Timestamp(target["declared_at"]) - pd.Timedelta(days=3)).isoformat()
    ack = httpx.post(
        f"{base}/history/declarations",
        json={"declarations": [inspected]},
        headers=_auth(deployment, "analyst"),
    )
    assert ack.status_code == 200
    before = httpx.post(f"{base}/score", json={"declarations": [target]}, headers=headers).json()["scores"][0]
    inspected_at = (pd.Timestamp(target["declared_at"]) - pd.Timedelta(days=1)).isoformat()
    body = {
        "inspections": [
            {"declaration_id": "INSPECTED-1", "inspected_at": inspected_at, "result": "SEIZURE"},
            {"declaration_id": "INSPECTED-1", "inspected_at": inspected_at[:10], "result": "CLEAN"},
        ]
    }
    response = httpx.post(f"{base}/outcomes", json=body, headers=_auth(deployment, "analyst"))
    assert response.status_code == 200, response.text
    assert response.json()["inspections_accepted"] == 2
    assert httpx.post(f"{base}/outcomes", json=body, headers=headers).status_code == 403
    after = httpx.post(f"{base}/score", json={"declarations": [target]}, headers=headers).json()["scores"][0]
    assert after["risk_score"] > before["risk_score"]
    result = subprocess.run(
        [sys.executable, "-m", "serving", "export-outcomes", "--out", str(tmp_path / "outcomes")],
        env={**os.environ, **deployment["env"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    inspections = pd.read_csv(tmp_path / "outcomes" / "inspections.csv")
    assert set(inspections["result"]) == {"SEIZURE", "CLEAN"}
    from features.validation import load_contract_tables

    tables = load_contract_tables(
        tmp_path / "outcomes" / "declarations.csv",
        tmp_path / "outcomes" / "seizures.csv",
        tmp_path / "outcomes" / "inspections.csv",
    )
    assert "INSPECTED-1" in set(tables.declarations["declaration_id"])
    assert len(tables.inspections) == 2 and tables.report.rows_rejected["inspections"] == 0


def test_an_idle_keep_alive_connection_outlives_the_clients_own_expiry(deployment) -> None:
    # httpx (like uvicorn's default) drops idle connections after 5 s; a server that closed at
    # 5 s too would race clients reusing one at that moment, their request failing unanswered.
    import http.client
    import time
    from urllib.parse import urlsplit

    from serving.process import KEEP_ALIVE_SECONDS

    assert httpx.Limits().keepalive_expiry < KEEP_ALIVE_SECONDS
    where = urlsplit(deployment["base"])
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    try:
        for pause in (0.0, 6.0):
            time.sleep(pause)
            connection.request("GET", "/livez")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("connection", "").lower() != "close"
    finally:
        connection.close()


def test_the_audit_keeps_each_declaration_exactly_as_sent(deployment) -> None:
    base = deployment["base"]
    sent = [dict(record) for record in deployment["records"][11:14]]
    sent[0]["declarant_reference"] = "REF-2024-000117"  # not a contract field: ignored, but received
    sent[1]["quantity"] = 250  # an integer, as many customs systems send it
    response = httpx.post(f"{base}/score", json={"declarations": sent}, headers=_auth(deployment, "scorer"))
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    for record in sent:
        decisions = httpx.get(
            f"{base}/audit/decisions/{record['declaration_id']}", headers=_auth(deployment, "auditor")
        ).json()
        (mine,) = [d for d in decisions if d["request_id"] == request_id]
        assert mine["declaration"] == record


def test_benchmark_floor_validates_with_the_service_schema_and_nothing_more(deployment, tmp_path) -> None:
    """`make bench-serve`'s floor row is only comparable if it accepts and rejects what /score does."""
    from benchmarks.serve import FLOOR_SERVICE

    records = deployment["records"][:7]
    bad = {**records[0], "consignee_country": "XX"}
    with running_service(deployment["env"], log_path=tmp_path / "floor.log", service=FLOOR_SERVICE) as base:
        echoed = httpx.post(f"{base}/score", json={"declarations": records}, timeout=30)
        rejected = httpx.post(f"{base}/score", json={"declarations": [records[1], bad]}, timeout=30)
        too_many = httpx.post(f"{base}/score", json={"declarations": records * 60}, timeout=30)
    assert echoed.status_code == 200
    assert echoed.json() == {"scores": [{"declaration_id": r["declaration_id"]} for r in records]}
    # BentoML's own validation answer (the scoring service's guard rewrites it to a 422)
    assert rejected.status_code == 400
    assert rejected.json()["detail"][0]["loc"] == ["declarations", 1, "consignee_country"]
    assert too_many.status_code == 400  # the service's batch limit (DIVERSION_MAX_BATCH=400) applies too
    scored = httpx.post(
        f"{deployment['base']}/score",
        json={"declarations": [records[1], bad]},
        headers=_auth(deployment, "scorer"),
        timeout=30,
    )
    assert scored.status_code == 422
