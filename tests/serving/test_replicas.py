"""Many workers and replicas on one history: real `bentoml serve` processes, real PostgreSQL.

Each replica is its own process group on its own port; they share a fresh PostgreSQL
database (history log and audit trail) and the MLflow registry of the trained test model.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from serving.audit import AuditStore
from serving.process import free_port, serve_command, serving_process, wait_until, worker_pids
from serving.replay import Replayer
from serving.settings import ServiceSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NEW = 80


def replica(env: dict[str, str], log_path: Path):
    """One `bentoml serve` process on a free port, ready; yields (base URL, process)."""
    return serving_process(env, log_path=log_path, ready_timeout=180.0)


def _new_exporter_declaration(records: list[dict], suffix: str) -> dict:
    return {
        **records[0],
        "declaration_id": f"REPLICA-DECL-{suffix}",
        "exporter_id": f"REPLICA-EXPORTER-{suffix}",
    }


def _seizures_naming(declaration: dict, prefix: str, n: int = 3) -> list[dict]:
    seized_at = pd.Timestamp(declaration["declared_at"]) - pd.Timedelta(hours=2)
    return [
        {
            "seizure_id": f"{prefix}-{i}",
            "seized_at": seized_at.isoformat(),
            "exporter_id": declaration["exporter_id"],
            "country": "IN",
            "substance": "tramadol",
            "agency": "NCB",
        }
        for i in range(n)
    ]


@pytest.fixture
def shared(tmp_path: Path, trained, small_history: Path, deployment_setup, postgres_database: str):
    """A deployment whose history log and audit trail are one fresh PostgreSQL database."""
    config, outcome = trained
    prepared = deployment_setup(tmp_path, config, small_history, NEW)
    env = {
        **prepared.env,
        "DIVERSION_HISTORY_DB": postgres_database,
        "DIVERSION_AUDIT_DB": postgres_database,
        "DIVERSION_HISTORY_POLL_SECONDS": "60",  # requests must not depend on the background wake-up
        "DIVERSION_MODEL_POLL_SECONDS": "0",
    }
    return prepared, env, config, outcome


def test_a_seizure_acknowledged_by_one_replica_is_in_the_next_score_of_the_other(
    shared, tmp_path: Path
) -> None:
    prepared, env, _, _ = shared
    token = prepared.token
    scorer = {"Authorization": f"Bearer {token['scorer']}"}
    analyst = {"Authorization": f"Bearer {token['analyst']}"}
    target = _new_exporter_declaration(prepared.records, "A")
    with replica(env, tmp_path / "a.log") as (a, _), replica(env, tmp_path / "b.log") as (b, _):
        before = httpx.post(f"{b}/score", json={"declarations": [target]}, headers=scorer, timeout=60).json()
        ack = httpx.post(
            f"{a}/history/seizures",
            json={"seizures": _seizures_naming(target, "REPL-SZ")},
            headers=analyst,
            timeout=60,
        )
        assert ack.status_code == 200 and ack.json()["accepted"] == 3, ack.text
        sequence = ack.json()["history_sequence"]
        after = httpx.post(f"{b}/score", json={"declarations": [target]}, headers=scorer, timeout=60).json()
        assert after["history_sequence"] >= sequence > before["history_sequence"]
        assert after["scores"][0]["risk_score"] > before["scores"][0]["risk_score"]

        # The same new seizure through both replicas at once: one stores it, the other reports a duplicate.
        racing = _seizures_naming(target, "REPL-RACE", n=1)
        barrier = threading.Barrier(2)

        def post(base: str) -> httpx.Response:
            barrier.wait()
            return httpx.post(
                f"{base}/history/seizures", json={"seizures": racing}, headers=analyst, timeout=60
            )

        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(pool.map(post, [a, b]))
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
        bodies = [r.json() for r in answers]
        assert sorted(body["accepted"] for body in bodies) == [0, 1]
        assert sorted(len(body["duplicates"]) for body in bodies) == [0, 1]
        assert [d for body in bodies for d in body["duplicates"]] == ["REPL-RACE-0"]


def test_two_workers_in_one_process_all_reflect_an_acknowledged_seizure(
    tmp_path: Path, trained, small_history: Path, deployment_setup
) -> None:
    config, _ = trained
    prepared = deployment_setup(tmp_path, config, small_history, NEW)
    env = {**prepared.env, "DIVERSION_WORKERS": "2", "DIVERSION_HISTORY_POLL_SECONDS": "60"}
    scorer = {"Authorization": f"Bearer {prepared.token['scorer']}"}
    analyst = {"Authorization": f"Bearer {prepared.token['analyst']}"}
    target = _new_exporter_declaration(prepared.records, "W")

    def sixteen_scores(base: str) -> set[float]:
        # a fresh connection each time, so the two workers share the requests
        return {
            httpx.post(f"{base}/score", json={"declarations": [target]}, headers=scorer, timeout=60).json()[
                "scores"
            ][0]["risk_score"]
            for _ in range(16)
        }

    with replica(env, tmp_path / "workers.log") as (base, process):
        assert len(worker_pids(process)) == 2
        (before,) = sixteen_scores(base)
        ack = httpx.post(
            f"{base}/history/seizures",
            json={"seizures": _seizures_naming(target, "WRK-SZ")},
            headers=analyst,
            timeout=60,
        )
        assert ack.status_code == 200 and ack.json()["accepted"] == 3
        after = sixteen_scores(base)
        assert len(after) == 1 and after.pop() > before


def test_kill_9_of_a_replica_under_load_loses_no_acknowledged_decision(shared, tmp_path: Path) -> None:
    prepared, env, config, outcome = shared
    scorer = {"Authorization": f"Bearer {prepared.token['scorer']}"}
    records = prepared.records
    acknowledged: list[tuple[str, str, float]] = []  # (request_id, declaration_id, risk_score)
    failures_on_b: list[str] = []
    lock = threading.Lock()
    with replica(env, tmp_path / "b.log") as (b, _), replica(env, tmp_path / "a.log") as (a, process_a):
        stop = threading.Event()

        def client(worker: int) -> None:
            rng = random.Random(worker)
            while not stop.is_set():
                record = rng.choice(records)
                for base in (a, b):  # retry on the other replica when the first does not answer
                    try:
                        response = httpx.post(
                            f"{base}/score", json={"declarations": [record]}, headers=scorer, timeout=30
                        )
                    except httpx.HTTPError:
                        continue
                    if response.status_code == 200:
                        body = response.json()
                        with lock:
                            acknowledged.append(
                                (
                                    body["request_id"],
                                    record["declaration_id"],
                                    body["scores"][0]["risk_score"],
                                )
                            )
                        break
                    if base == b:
                        with lock:
                            failures_on_b.append(f"{response.status_code} {response.text[:200]}")
                    break

        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(client, i) for i in range(4)]
            time.sleep(4)
            for pid in [process_a.pid, *worker_pids(process_a)]:  # workers run in sessions of their own
                os.kill(pid, signal.SIGKILL)
            killed_at = len(acknowledged)
            time.sleep(4)
            stop.set()
            for future in futures:
                future.result()
        assert killed_at > 0 and len(acknowledged) > killed_at  # load before and after the kill
        assert not failures_on_b, failures_on_b[:3]

    audit = AuditStore(env["DIVERSION_AUDIT_DB"])
    try:
        for request_id, declaration_id, risk_score in acknowledged:
            rows = audit.by_request(request_id)
            assert [(r.declaration_id, r.risk_score) for r in rows] == [(declaration_id, risk_score)]
        settings = ServiceSettings(
            tracking_uri=config.tracking_uri,
            history_declarations=prepared.history_declarations,
            history_seizures=prepared.history_seizures,
            history_db=env["DIVERSION_HISTORY_DB"],
            audit_db=env["DIVERSION_AUDIT_DB"],
        )
        replayer = Replayer(settings, audit)
        sample = random.Random(3).sample(acknowledged, min(10, len(acknowledged)))
        results = replayer.replay_records(
            [record for request_id, _, _ in sample for record in audit.by_request(request_id)]
        )
        assert results and all(r.verified for r in results), [r for r in results if not r.verified]
        assert {r.model_version for r in results} == {outcome.model_version}
        replayer.store.close()
    finally:
        audit.close()


def _registry_copy(config, folder: Path) -> str:
    """A copy of the trained registry (its artifacts stay where they are): tests may move its alias."""
    source = Path(config.tracking_uri.removeprefix("sqlite:///"))
    target = folder / "registry.db"
    shutil.copyfile(source, target)
    return f"sqlite:///{target}"


def test_moving_the_alias_under_load_switches_versions_without_a_failed_request(
    tmp_path: Path, trained, small_history: Path, deployment_setup
) -> None:
    config, outcome = trained
    prepared = deployment_setup(tmp_path, config, small_history, NEW)
    tracking_uri = _registry_copy(config, tmp_path)
    env = {**prepared.env, "MLFLOW_TRACKING_URI": tracking_uri, "DIVERSION_MODEL_POLL_SECONDS": "0.5"}
    client = MlflowClient(tracking_uri)
    name = config.registered_model
    first = client.get_model_version(name, outcome.model_version)
    scorer = {"Authorization": f"Bearer {prepared.token['scorer']}"}
    answers: list[tuple[int, str, str]] = []  # (status, model version, declaration id)
    stop = threading.Event()

    def load(worker: int) -> None:
        rng = random.Random(worker)
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                record = rng.choice(prepared.records)
                response = http.post(f"{base}/score", json={"declarations": [record]}, headers=scorer)
                version = (
                    response.json()["scores"][0]["model"]["version"] if response.status_code == 200 else ""
                )
                answers.append((response.status_code, version, record["declaration_id"]))

    with replica(env, tmp_path / "service.log") as (base, _), ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(load, i) for i in range(3)]
        try:
            time.sleep(2)
            second = client.create_model_version(name, first.source, run_id=first.run_id, tags=first.tags)
            client.set_registered_model_alias(name, "champion", second.version)
            deadline = time.time() + 90
            while time.time() < deadline and not any(v == str(second.version) for _, v, _ in answers[-20:]):
                time.sleep(0.5)
            # A version whose artifacts do not match their recorded checksum is refused; the old one serves on.
            tampered = client.create_model_version(
                name, first.source, run_id=first.run_id, tags={**first.tags, "sha256.scorer": "0" * 64}
            )
            client.set_registered_model_alias(name, "champion", tampered.version)
            deadline = time.time() + 60
            info: dict = {}
            while time.time() < deadline and str(tampered.version) not in info.get("refused_versions", {}):
                time.sleep(0.5)
                info = httpx.get(f"{base}/model", headers=scorer, timeout=10).json()
            time.sleep(1)
        finally:
            stop.set()
            for future in futures:
                future.result()
    statuses = {status for status, _, _ in answers}
    versions = [v for _, v, _ in answers]
    assert statuses == {200}, statuses
    assert versions[0] == str(first.version) and versions[-1] == str(second.version)
    assert versions.index(str(second.version)) > 0
    assert str(tampered.version) not in versions
    assert "checksum mismatch" in info["refused_versions"][str(tampered.version)]
    assert info["version"] == str(second.version)

    # Replay uses each decision's own version.
    audit = AuditStore(prepared.env["DIVERSION_AUDIT_DB"])
    try:
        settings = ServiceSettings(
            tracking_uri=tracking_uri,
            history_declarations=prepared.history_declarations,
            history_seizures=prepared.history_seizures,
            history_db=prepared.env["DIVERSION_HISTORY_DB"],
            audit_db=prepared.env["DIVERSION_AUDIT_DB"],
        )
        replayer = Replayer(settings, audit)
        picks = {}
        for _, version, declaration_id in answers:
            picks.setdefault(version, declaration_id)
        results = [r for declaration_id in picks.values() for r in replayer.replay(declaration_id)]
        assert {r.model_version for r in results} >= {str(first.version), str(second.version)}
        assert all(r.verified for r in results), [r for r in results if not r.verified]
        replayer.store.close()
    finally:
        audit.close()


def test_bentoml_build_from_a_fresh_clone_needs_no_tokens_and_the_bento_serves(
    tmp_path: Path, trained, small_history: Path, deployment_setup
) -> None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(root), str(clone)], check=True)
    home = tmp_path / "bentoml-home"
    bentoml = Path(serve_command(0)[0])
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DIVERSION_")} | {
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    built = subprocess.run(
        [str(bentoml), "build", "--output", "tag"],
        cwd=clone,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    tag = next(line for line in built.stdout.splitlines() if line.startswith("__tag__:")).removeprefix(
        "__tag__:"
    )
    assert tag.startswith("diversion_risk:")

    config, _ = trained
    prepared = deployment_setup(tmp_path, config, small_history, NEW)
    port = free_port()
    with open(tmp_path / "bento.log", "wb") as log:
        process = subprocess.Popen(
            [str(bentoml), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
            env={**environment, **prepared.env},
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until(f"{base}/readyz", 180, process)
            response = httpx.post(
                f"{base}/score",
                json={"declarations": prepared.records[:2]},
                headers={"Authorization": f"Bearer {prepared.token['scorer']}"},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            assert len(response.json()["scores"]) == 2
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
