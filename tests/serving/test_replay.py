"""Replaying recorded decisions against the real service's audit trail, and the model review report."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from serving.audit import AuditStore
from serving.process import running_service
from serving.replay import Replayer, replay_cli, replay_decision
from serving.settings import ServiceSettings

pytestmark = [pytest.mark.integration]
NEW = 60
SINGLES = 5
BATCH = slice(5, 25)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, trained, small_history: Path, deployment_setup):
    """Decisions made by the real service (singles, a batch, a re-score after new history); service stopped."""
    config, outcome = trained
    folder = tmp_path_factory.mktemp("replay")
    prepared = deployment_setup(folder, config, small_history, NEW)
    history_declarations, history_seizures = prepared.history_declarations, prepared.history_seizures
    token, records, env = prepared.token, prepared.records, prepared.env
    # A shipment of an exporter never seen before: the history appended later changes its features a lot.
    target = {**records[0], "declaration_id": "REPLAY-TARGET-1", "exporter_id": "REPLAY-EXPORTER-1"}
    responses: dict[str, list[dict]] = {}
    with (
        running_service(env, log_path=folder / "service.log") as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):

        def post(path: str, role: str, payload: dict) -> dict:
            response = client.post(path, json=payload, headers={"Authorization": f"Bearer {token[role]}"})
            assert response.status_code == 200, response.text
            return response.json()

        def score(declarations: list[dict]) -> None:
            for item in post("/score", "scorer", {"declarations": declarations})["scores"]:
                responses.setdefault(item["declaration_id"], []).append(item)

        for record in [target, *records[:SINGLES]]:
            score([record])
        score(records[BATCH])
        # New history after those decisions: seizures naming the target's exporter and a late-filed
        # declaration of the same exporter, both dated before the target's filing time.
        declared_at = pd.Timestamp(target["declared_at"])
        seizures = [
            {
                "seizure_id": f"REPLAY-SZ-{i}",
                "seized_at": (declared_at - pd.Timedelta(hours=2)).isoformat(),
                "exporter_id": target["exporter_id"],
                "country": "IN",
                "substance": "tramadol",
                "agency": "NCB",
            }
            for i in range(3)
        ]
        assert post("/history/seizures", "analyst", {"seizures": seizures})["accepted"] == 3
        late = {
            **target,
            "declaration_id": "REPLAY-LATE-1",
            "declared_at": (declared_at - pd.Timedelta(days=1)).isoformat(),
        }
        assert post("/history/declarations", "analyst", {"declarations": [late]})["accepted"] == 1
        score([target])  # the second decision about the target, on the new history
        score(records[25:30])
        audited = client.get(
            f"/audit/decisions/{target['declaration_id']}",
            headers={"Authorization": f"Bearer {token['auditor']}"},
        )
        assert audited.status_code == 200 and len(audited.json()) == 2
    settings = ServiceSettings(
        tracking_uri=config.tracking_uri,
        history_declarations=history_declarations,
        history_seizures=history_seizures,
        history_db=env["DIVERSION_HISTORY_DB"],
        audit_db=env["DIVERSION_AUDIT_DB"],
    )
    return {
        "settings": settings,
        "env": env,
        "records": records,
        "target": target["declaration_id"],
        "responses": responses,
        "folder": folder,
        "config": config,
        "outcome": outcome,
    }


@pytest.fixture
def audit(recorded):
    store = AuditStore(recorded["settings"].audit_db)
    yield store
    store.close()


@pytest.fixture
def tampered(recorded, tmp_path: Path):
    """A copy of the recorded audit DB that the test may alter with raw SQL."""
    source = sqlite3.connect(recorded["folder"] / "audit.db")
    copy = sqlite3.connect(tmp_path / "audit.db")
    source.backup(copy)
    source.close()
    copy.close()
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore(url)
    yield url, store
    store.close()


def test_single_batched_and_rescored_decisions_replay_identically(recorded, audit) -> None:
    records, responses, target = recorded["records"], recorded["responses"], recorded["target"]
    results = replay_decision(target, recorded["settings"], audit)
    assert len(results) == 2
    first, second = results
    # The seizures and the late declaration arrived between the two decisions: the score moved,
    # and each decision replays against the history it actually had.
    assert abs(second.recorded_score - first.recorded_score) > 1e-6
    assert [r.recorded_score for r in results] == [s["risk_score"] for s in responses[target]]
    assert all(r.matches and r.declaration_intact and r.verified for r in results), results
    assert all(abs(r.score_difference) <= 1e-9 for r in results)

    batch_member = records[BATCH][7]["declaration_id"]
    (batched,) = replay_decision(batch_member, recorded["settings"], audit)
    assert batched.matches and batched.declaration_intact
    assert batched.request_id == audit.get(records[BATCH][0]["declaration_id"])[0].request_id


def test_every_recorded_decision_replays_identically(recorded, audit) -> None:
    replayer = Replayer(recorded["settings"], audit)
    ids = [recorded["target"], *(r["declaration_id"] for r in recorded["records"][:30])]
    results = [result for declaration_id in ids for result in replayer.replay(declaration_id)]
    assert len(results) == audit.count() == 32
    mismatched = [r for r in results if not r.verified]
    assert not mismatched, mismatched
    assert {r.model_version for r in results} == {recorded["outcome"].model_version}


def test_batch_members_score_as_if_alone(recorded, audit) -> None:
    """A batch's members are not history for each other: each member's features equal its features alone."""
    from features.definitions import compute_online_features
    from serving.frames import declaration_columns
    from serving.schemas import Declaration

    replayer = Replayer(recorded["settings"], audit)
    batch = audit.by_request(audit.get(recorded["records"][BATCH][0]["declaration_id"])[0].request_id)
    assert [r.declaration_id for r in batch] == [r["declaration_id"] for r in recorded["records"][BATCH]]
    assert all(r.matches for r in replayer.replay_records(batch))
    model = replayer._model(batch[0].model_name, batch[0].model_version)
    history = replayer._history_at(batch[0].scored_at, model.reference)
    declarations = [Declaration.model_validate(r.declaration).model_dump() for r in batch]
    together = compute_online_features(declaration_columns(declarations), history, model.reference)
    alone = pd.concat(
        [compute_online_features(declaration_columns([d]), history, model.reference) for d in declarations],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(together, alone, check_exact=True)


def test_a_tampered_score_is_reported_as_a_mismatch(recorded, tampered) -> None:
    url, store = tampered
    target = recorded["records"][1]["declaration_id"]
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE audit_decisions SET risk_score = risk_score + 0.001 WHERE declaration_id = :id"),
            {"id": target},
        )
    engine.dispose()
    (result,) = replay_decision(target, recorded["settings"], store)
    assert not result.matches and not result.verified
    assert result.declaration_intact
    assert result.score_difference == pytest.approx(-0.001, abs=1e-12)


def test_a_tampered_declaration_fails_its_hash(recorded, tampered) -> None:
    url, store = tampered
    target = recorded["records"][2]["declaration_id"]
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                'UPDATE audit_decisions SET declaration = replace(declaration, \'"goods_description":"\', '
                '\'"goods_description":"(amended) \') WHERE declaration_id = :id'
            ),
            {"id": target},
        )
    engine.dispose()
    (result,) = replay_decision(target, recorded["settings"], store)
    assert not result.declaration_intact and not result.verified


def test_replay_cli_exit_codes(recorded, tampered, monkeypatch, capsys) -> None:
    for key, value in recorded["env"].items():
        monkeypatch.setenv(key, value)
    target = recorded["target"]
    assert replay_cli(target) == 0
    output = capsys.readouterr().out
    assert "all 2 decision(s) replay identically" in output and "match" in output

    assert replay_cli("NEVER-SCORED") == 1
    assert "no decision recorded" in capsys.readouterr().out

    url, _ = tampered
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE audit_decisions SET risk_score = 1.0 - risk_score WHERE declaration_id = :id"),
            {"id": target},
        )
    engine.dispose()
    monkeypatch.setenv("DIVERSION_AUDIT_DB", url)
    assert replay_cli(target) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_model_report_is_self_contained_and_logged_to_the_run(recorded, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from training.audit_report import REPORT_ARTIFACT, model_report

    config, outcome = recorded["config"], recorded["outcome"]
    path = model_report(
        outcome.model_version,
        config.registered_model,
        tracking_uri=config.tracking_uri,
        out=tmp_path / "review.html",
    )
    assert path == tmp_path / "review.html"
    html = path.read_text(encoding="utf-8")
    assert 'id="metrics-table"' in html
    for label in (
        "precision @1%",
        "recall @2%",
        "precision @5%",
        "precision @10%",
        "baseline: random",
        "PR-AUC",
    ):
        assert label in html, label
    precision = f"{outcome.metrics['precision_at_2pct']:.3f}"
    assert precision in html  # the logged metric itself, not a placeholder
    lineage_rows = [f">{name}<" for name in ("train", "validation", "test", "seizures")]
    assert all(row in html for row in lineage_rows)
    assert "validation_from" in html and "test_to" in html
    assert html.count("data:image/png;base64,iVBORw0KGgo") >= 2  # PNG signature, base64
    assert "<script" not in html and 'src="http' not in html  # self-contained
    assert outcome.promotion_reason in html
    assert "seizures implicating the exporter known before filing" in html  # features with their meaning

    client = MlflowClient(tracking_uri=config.tracking_uri)
    tags = client.get_run(outcome.run_id).data.tags
    assert tags["git_commit"] in html and f"<th>lightgbm</th><td>{tags['library.lightgbm']}</td>" in html
    artifacts = [a.path for a in client.list_artifacts(outcome.run_id)]
    assert REPORT_ARTIFACT in artifacts
    logged = Path(client.download_artifacts(outcome.run_id, REPORT_ARTIFACT, str(tmp_path)))
    assert logged.read_text(encoding="utf-8") == html
