"""Many concurrent callers: every request answered, every decision audited exactly once, decisions replayable."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from serving.audit import AuditStore
from serving.process import running_service
from serving.replay import Replayer
from serving.settings import ServiceSettings

pytestmark = [pytest.mark.integration]
CLIENTS = 20
REQUESTS = 2_000
REPLAY_SAMPLE = REQUESTS  # every decision is replayed


def test_concurrent_clients_are_all_answered_audited_and_replayable(
    tmp_path: Path, trained, small_history: Path, deployment_setup
) -> None:
    config, outcome = trained
    prepared = deployment_setup(tmp_path, config, small_history, REQUESTS, roles=("scorer",))
    history_declarations, history_seizures = prepared.history_declarations, prepared.history_seizures
    records, env, token = prepared.records, prepared.env, prepared.token["scorer"]
    statuses: list[int] = []
    answers: dict[str, dict] = {}
    lock = threading.Lock()

    def client_loop(worker: int) -> None:
        mine = records[worker::CLIENTS]  # each declaration is sent exactly once, by one client
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
            for record in mine:
                response = client.post(f"{base}/score", json={"declarations": [record]})
                with lock:
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        answers[record["declaration_id"]] = response.json()

    with running_service(env, log_path=tmp_path / "service.log") as base:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            list(pool.map(client_loop, range(CLIENTS)))
        elapsed = time.perf_counter() - started
    print(f"{REQUESTS} requests from {CLIENTS} clients in {elapsed:.1f}s ({REQUESTS / elapsed:.0f}/s)")

    assert len(statuses) == REQUESTS
    assert {s: statuses.count(s) for s in set(statuses)} == {200: REQUESTS}
    audit = AuditStore(env["DIVERSION_AUDIT_DB"])
    try:
        assert audit.count() == REQUESTS
        sample = random.Random(7).sample(records, REPLAY_SAMPLE)
        settings = ServiceSettings(
            tracking_uri=config.tracking_uri,
            history_declarations=history_declarations,
            history_seizures=history_seizures,
            history_db=env["DIVERSION_HISTORY_DB"],
            audit_db=env["DIVERSION_AUDIT_DB"],
        )
        replayer = Replayer(settings, audit)
        for record in sample:
            declaration_id = record["declaration_id"]
            decisions = audit.get(declaration_id)
            assert len(decisions) == 1, declaration_id  # one request, one audit row
            answer = answers[declaration_id]
            assert decisions[0].request_id == answer["request_id"]
            assert decisions[0].risk_score == answer["scores"][0]["risk_score"]
            (result,) = replayer.replay(declaration_id)
            assert result.matches and result.declaration_intact, result
            assert result.model_version == outcome.model_version
    finally:
        audit.close()
