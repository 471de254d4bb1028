"""Train, register and serve through a shared MLflow tracking server on PostgreSQL (artifacts proxied)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from serving.process import free_port, running_service, wait_until
from training.tracking_server import TrackingServer, ensure_database

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]


def test_training_and_the_service_share_a_tracking_server(
    tmp_path: Path, small_history: Path, postgres_database: str, deployment_setup
) -> None:
    from mlflow.tracking import MlflowClient

    from training.config import TrainingConfig
    from training.pipeline import train

    assert ensure_database(postgres_database) is False  # exists already: left as it is
    port = free_port()
    server = TrackingServer(postgres_database, tmp_path / "artifacts", port=port, workers=1)
    environment = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with open(tmp_path / "mlflow-server.log", "wb") as log:
        process = subprocess.Popen(
            server.command(), env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        tracking_uri = f"http://127.0.0.1:{port}"
        wait_until(f"{tracking_uri}/health", 120, process)
        config = TrainingConfig(
            declarations=small_history / "declarations.parquet",
            seizures=small_history / "seizures.parquet",
            output_dir=tmp_path / "outputs",
            tracking_uri=tracking_uri,
        )
        outcome = train(config)
        client = MlflowClient(tracking_uri)
        champion = client.get_model_version_by_alias(config.registered_model, "champion")
        assert champion.version == outcome.model_version
        # the artifacts went through the server into its store, the runs into PostgreSQL
        assert any((tmp_path / "artifacts").rglob("MLmodel"))
        engine = sa.create_engine(postgres_database)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM model_versions")).scalar_one() == 1
        engine.dispose()

        prepared = deployment_setup(tmp_path / "service", config, small_history, 20)
        env = {**prepared.env, "MLFLOW_TRACKING_URI": tracking_uri}
        with running_service(env, log_path=tmp_path / "service.log") as base:
            response = httpx.post(
                f"{base}/score",
                json={"declarations": prepared.records[:3]},
                headers={"Authorization": f"Bearer {prepared.token['scorer']}"},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            assert {s["model"]["version"] for s in response.json()["scores"]} == {str(outcome.model_version)}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
