"""The @challenger model in shadow, through the real service: never answered, recorded, reported."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from models.pyfunc import DiversionRiskModel, directory_digest
from serving.audit import AuditStore
from serving.challenger import ChallengerStore
from serving.engine import PACKAGED_REFERENCE_DIR
from serving.process import running_service

pytestmark = [pytest.mark.integration]
NEW = 120
SCORED = 100


def register_challenger(config, outcome, *, yellow_is_red: bool = True, tamper: bool = False) -> str:
    """A new version of the registered model: the champion's scorer, its YELLOW band sent to RED.

    Same features and scores, other channels, so an answer leaking the challenger would show.
    `tamper`: the recorded checksum does not match the artifacts (the service must refuse it).
    """
    from training.pipeline import load_scorer

    mlflow.set_tracking_uri(config.tracking_uri)
    name = config.registered_model
    scorer = load_scorer(f"models:/{name}/{outcome.model_version}")
    if yellow_is_red:
        policy = dataclasses.replace(scorer.policy, red_threshold=scorer.policy.yellow_threshold)
        scorer = dataclasses.replace(scorer, policy=policy)
    experiment = MlflowClient().get_experiment_by_name(config.experiment)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=experiment.experiment_id):
        scorer_dir = Path(tmp) / "scorer"
        scorer.save(scorer_dir)
        digest = directory_digest(scorer_dir)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DiversionRiskModel(),
            artifacts={"scorer": str(scorer_dir), "reference": str(PACKAGED_REFERENCE_DIR)},
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_model_version_tag(name, version, "sha256.scorer", "0" * 64 if tamper else digest)
    client.set_model_version_tag(name, version, "sha256.reference", directory_digest(PACKAGED_REFERENCE_DIR))
    return version


@pytest.fixture(scope="module")
def shadow(tmp_path_factory: pytest.TempPathFactory, trained, small_history: Path, deployment_setup):
    """Service following a private challenger alias (other test modules never see it)."""
    config, outcome = trained
    folder = tmp_path_factory.mktemp("challenger")
    prepared = deployment_setup(folder, config, small_history, NEW)
    alias = f"shadow{uuid.uuid4().hex[:8]}"
    env = {
        **prepared.env,
        "DIVERSION_RULES_DB": f"sqlite:///{folder}/rules.db",
        "DIVERSION_CHALLENGER_ALIAS": alias,
        "DIVERSION_MODEL_POLL_SECONDS": "0.5",
    }
    with running_service(env, log_path=folder / "service.log") as base:
        client = httpx.Client(base_url=base, timeout=120)
        yield {
            "client": client,
            "token": prepared.token,
            "records": prepared.records,
            "env": env,
            "alias": alias,
            "config": config,
            "outcome": outcome,
        }
        client.close()
        MlflowClient(config.tracking_uri).delete_registered_model_alias(config.registered_model, alias)


def _as(shadow, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {shadow['token'][role]}"}


def _score(shadow, records: list[dict]) -> dict:
    response = shadow["client"].post("/score", json={"declarations": records}, headers=_as(shadow, "scorer"))
    assert response.status_code == 200, response.text
    return response.json()


def _without_time(scores: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "scored_at"} for s in scores]


def _wait_for_challenger(shadow, until) -> dict:
    deadline = time.time() + 90
    info: dict = {}
    while time.time() < deadline:
        info = shadow["client"].get("/model", headers=_as(shadow, "scorer")).json()["challenger"]
        if until(info):
            return info
        time.sleep(0.3)
    raise AssertionError(f"challenger state not reached in 90 s: {info}")


def _shadow_rows(shadow):
    audit = AuditStore(shadow["env"]["DIVERSION_AUDIT_DB"])
    try:
        return ChallengerStore(audit).rows()
    finally:
        audit.close()


def test_challenger_scores_in_shadow_never_answered_and_reported(shadow) -> None:
    client, config, outcome = shadow["client"], shadow["config"], shadow["outcome"]
    records = shadow["records"][:SCORED]
    info = client.get("/model", headers=_as(shadow, "scorer")).json()
    assert info["challenger"]["version"] is None
    champion = info["version"]
    without = _score(shadow, records)
    assert len(_shadow_rows(shadow)) == 0

    version = register_challenger(config, outcome)
    MlflowClient(config.tracking_uri).set_registered_model_alias(
        config.registered_model, shadow["alias"], version
    )
    _wait_for_challenger(shadow, lambda c: c["version"] == version)

    with_challenger = _score(shadow, records)
    # The answer is the champion's, byte for byte apart from the request id and the time.
    assert _without_time(with_challenger["scores"]) == _without_time(without["scores"])
    assert {s["model"]["version"] for s in with_challenger["scores"]} == {champion}

    rows = _shadow_rows(shadow)
    rows = rows[rows["request_id"] == with_challenger["request_id"]]
    assert len(rows) == SCORED
    assert set(rows["challenger_version"]) == {version}
    assert set(rows["champion_version"]) == {champion}
    answered = {s["declaration_id"]: s for s in with_challenger["scores"]}
    for row in rows.itertuples():
        live = answered[row.declaration_id]
        # no targeting rules beyond the built-in ones here: the answered channel is the model's
        assert row.champion_channel == live["channel"]
        assert row.champion_risk_score == pytest.approx(live["risk_score"])
        # same features, same scores; the challenger's policy sends YELLOW to RED
        assert row.challenger_risk_score == pytest.approx(live["risk_score"])
        expected = "RED" if live["channel"] in ("RED", "YELLOW") else "GREEN"
        assert row.challenger_channel == expected

    # outcomes for some of them: inspected clean, and found
    channel = np.array([answered[r["declaration_id"]]["channel"] for r in records])
    inspected_ids = [r["declaration_id"] for r in records[:40]]
    found_ids = set(inspected_ids[::3])
    analyst = _as(shadow, "analyst")
    assert client.post(
        "/history/declarations", json={"declarations": records[:40]}, headers=analyst
    ).is_success
    response = client.post(
        "/outcomes",
        json={
            "inspections": [
                {
                    "declaration_id": i,
                    "inspected_at": "2026-12-01T00:00:00Z",
                    "result": "SEIZURE" if i in found_ids else "CLEAN",
                }
                for i in inspected_ids
            ]
        },
        headers=analyst,
    )
    assert response.is_success, response.text

    report = client.get("/audit/challenger-report", headers=_as(shadow, "auditor")).json()
    [pair] = [p for p in report["comparisons"] if p["challenger_version"] == version]
    ids = [r["declaration_id"] for r in records]
    is_found = np.array([i in found_ids for i in ids])
    assert pair["declarations"] == SCORED
    assert pair["channel_agreement"] == int(np.isin(channel, ["RED", "GREEN"]).sum())
    assert pair["champion"]["red"] == int((channel == "RED").sum())
    assert pair["champion"]["yellow"] == int((channel == "YELLOW").sum())
    assert pair["challenger"]["red"] == int(np.isin(channel, ["RED", "YELLOW"]).sum())
    assert pair["challenger"]["yellow"] == 0
    assert pair["red_budget"] == int((channel == "RED").sum())
    assert pair["rank_correlation"] == pytest.approx(1.0)
    assert pair["with_outcome"] == 40 and pair["found"] == len(found_ids)
    assert pair["champion"]["red_found"] == int(((channel == "RED") & is_found).sum())
    assert pair["challenger"]["red_found"] == int((np.isin(channel, ["RED", "YELLOW"]) & is_found).sum())
    scores = np.array([answered[i]["risk_score"] for i in ids])
    top = np.lexsort((np.arange(len(ids)), -scores))[: pair["red_budget"]]
    assert pair["champion"]["top_budget_found"] == int(is_found[top].sum())

    # scorers and analysts do not read it
    assert client.get("/audit/challenger-report", headers=_as(shadow, "scorer")).status_code == 403
    # the command line prints the same comparison from the stores
    env = {**os.environ, **shadow["env"]}
    printed = subprocess.run(
        [sys.executable, "-m", "serving.challenger"], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(printed.stdout)["comparisons"] == report["comparisons"]


def test_a_broken_challenger_does_not_break_scoring(shadow) -> None:
    config, outcome = shadow["config"], shadow["outcome"]
    records = shadow["records"][SCORED:]
    before = _score(shadow, records)
    broken = register_challenger(config, outcome, tamper=True)
    MlflowClient(config.tracking_uri).set_registered_model_alias(
        config.registered_model, shadow["alias"], broken
    )
    info = _wait_for_challenger(shadow, lambda c: broken in c["refused_versions"])
    assert "checksum mismatch" in info["refused_versions"][broken]
    assert info["version"] is None
    after = _score(shadow, records)
    assert _without_time(after["scores"]) == _without_time(before["scores"])
    rows = _shadow_rows(shadow)
    assert (rows["request_id"] == after["request_id"]).sum() == 0


# --- in-process: one feature computation per request; a failing challenger is counted ---------


@pytest.fixture
def in_process(shadow, tmp_path, monkeypatch):
    """The service class itself on the same stores, with an active rule that reads a feature."""
    from features.definitions import FEATURE_SET
    from models.rules import Compare, RuleDefinition

    for key, value in shadow["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DIVERSION_RULES_DB", f"sqlite:///{tmp_path}/rules.db")
    monkeypatch.setenv("DIVERSION_MODEL_POLL_SECONDS", "0")
    from serving.service import DiversionRiskService

    service = DiversionRiskService()
    assert service.engine is not None, service.load_error
    feature = FEATURE_SET.columns[0]
    rule = service.rules.create_rule(
        RuleDefinition(
            name="reads a feature",
            condition=Compare(field=f"feature.{feature}", op="ge", value=-1e12),
            action="FLAG",
        ),
        "test",
        "needs the feature frame",
    )
    service.rules.set_status(rule["id"], "active", "test", "go")
    yield service
    service.engine.close()
    service.audit.close()


def _call_score(service, records: list[dict]) -> dict:
    from types import SimpleNamespace

    import orjson

    from serving.schemas import Declaration

    declarations = [Declaration.model_validate(r) for r in records]
    context = SimpleNamespace(request=SimpleNamespace(scope={}))
    return orjson.loads(service.score(declarations, context).body)


def test_features_are_computed_once_per_request(in_process, shadow, monkeypatch) -> None:
    import serving.engine as engine_module

    service = in_process
    service.engine.challenger = service.engine.model  # a challenger in shadow (here: the same model)
    calls: list[int] = []
    compute = engine_module.compute_online_features

    def counted(declarations, *args, **kwargs):
        calls.append(len(declarations["declaration_id"]))
        return compute(declarations, *args, **kwargs)

    monkeypatch.setattr(engine_module, "compute_online_features", counted)
    answer = _call_score(service, shadow["records"][:10])
    assert calls == [10]  # champion, the feature-reading rule and the challenger shared one frame
    assert all(any(r["name"] == "reads a feature" for r in s["rules"]) for s in answer["scores"])
    rows = _shadow_rows(shadow)
    assert (rows["request_id"] == answer["request_id"]).sum() == 10


def test_an_exception_in_the_challenger_is_counted_and_the_champion_answers(in_process, shadow) -> None:
    service = in_process
    records = shadow["records"][:5]
    service.engine.challenger = None
    expected = _call_score(service, records)

    class Exploding:
        def score(self, *args, **kwargs):
            raise RuntimeError("challenger exploded")

    service.engine.challenger = dataclasses.replace(service.engine.model, scorer=Exploding(), version="999")
    answer = _call_score(service, records)
    assert _without_time(answer["scores"]) == _without_time(expected["scores"])
    info = service.engine.challenger_info()
    assert info["shadow_failures"] == 1
    assert "challenger exploded" in info["last_error"] and "v999" in info["last_error"]
    assert service.audit.by_request(answer["request_id"])  # the decision itself is audited
