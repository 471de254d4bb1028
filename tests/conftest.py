"""Shared fixtures: a small synthetic history and a model trained on it in a private MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(scope="session")
def small_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30,000 declarations over two years, written as Parquet in the contract."""
    from training.synthetic import write_history

    folder = tmp_path_factory.mktemp("history")
    write_history(out_dir=folder, rows=30_000, years=2.0, seed=11, fmt="parquet")
    return folder


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, small_history: Path):
    """`training.pipeline.train` on the small history, tracked in a private SQLite MLflow store."""
    from mlflow.tracking import MlflowClient

    from training.config import TrainingConfig
    from training.pipeline import train

    folder = tmp_path_factory.mktemp("mlflow")
    config = TrainingConfig(
        declarations=small_history / "declarations.parquet",
        seizures=small_history / "seizures.parquet",
        output_dir=folder / "outputs",
        tracking_uri=f"sqlite:///{folder}/mlflow.db",
        trials=3,  # a small search: two enqueued settings and one seeded proposal
    )
    # Artifacts beside the store, not in ./mlruns of whatever directory pytest runs in.
    MlflowClient(config.tracking_uri).create_experiment(
        config.experiment, artifact_location=(folder / "artifacts").as_uri()
    )
    outcome = train(config)
    return config, outcome
