"""The production configuration end to end: the real service with its history and audit stores on PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from serving.audit import AuditStore
from serving.process import running_service

pytestmark = [pytest.mark.postgres, pytest.mark.integration]


def test_service_on_postgresql_scores_audits_records_history_and_replays(
    tmp_path: Path, trained, small_history: Path, deployment_setup, postgres_database: str
) -> None:
    config, _ = trained
    prepared = deployment_setup(tmp_path, config, small_history, 40)
    schema = f"audit_{uuid.uuid4().hex[:12]}"
    env = {
        **prepared.env,
        "DIVERSION_HISTORY_DB": postgres_database,
        "DIVERSION_AUDIT_DB": postgres_database,
        "DIVERSION_AUDIT_SCHEMA": schema,
    }
    auth = {role: {"Authorization": f"Bearer {token}"} for role, token in prepared.token.items()}
    records = prepared.records
    with running_service(env, log_path=tmp_path / "service.log") as base:
        scored = httpx.post(
            f"{base}/score", json={"declarations": records[:10]}, headers=auth["scorer"], timeout=60
        )
        assert scored.status_code == 200, scored.text
        for record in records[10:15]:
            one = httpx.post(
                f"{base}/score", json={"declarations": [record]}, headers=auth["scorer"], timeout=60
            )
            assert one.status_code == 200
        seizure = {
            "seizure_id": "PG-SEIZURE-1",
            "seized_at": records[20]["declared_at"],
            "exporter_id": records[20]["exporter_id"],
            "country": "IN",
            "substance": "tramadol",
        }
        ack = httpx.post(f"{base}/history/seizures", json={"seizures": [seizure]}, headers=auth["analyst"])
        assert ack.status_code == 200 and ack.json()["accepted"] == 1
        replayed = httpx.get(
            f"{base}/audit/replay/{records[3]['declaration_id']}", headers=auth["auditor"], timeout=120
        )
        assert replayed.status_code == 200, replayed.text
        assert all(r["verified"] for r in replayed.json())
    audit = AuditStore(postgres_database, schema=schema)
    try:
        assert audit.count() == 15
    finally:
        audit.close()
    # the appended seizure is durable in PostgreSQL and replayed by a restarted service
    with running_service(env, log_path=tmp_path / "service2.log") as base:
        again = httpx.post(f"{base}/history/seizures", json={"seizures": [seizure]}, headers=auth["analyst"])
        assert again.json()["accepted"] == 0 and again.json()["duplicates"] == ["PG-SEIZURE-1"]
