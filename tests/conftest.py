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


def _private_training_config(folder: Path, history: Path, **settings):
    """A `TrainingConfig` on `history` tracked in a private SQLite MLflow store under `folder`.

    Artifacts go beside the store, not to ./mlruns of whatever directory pytest runs in.
    """
    from mlflow.tracking import MlflowClient

    from training.config import TrainingConfig

    config = TrainingConfig(
        declarations=history / "declarations.parquet",
        seizures=history / "seizures.parquet",
        output_dir=folder / "outputs",
        tracking_uri=f"sqlite:///{folder}/mlflow.db",
        **settings,
    )
    MlflowClient(config.tracking_uri).create_experiment(
        config.experiment, artifact_location=(folder / "artifacts").as_uri()
    )
    return config


@pytest.fixture(scope="session")
def private_training_config():
    """`_private_training_config`, as a fixture (test modules cannot import conftest under importlib mode)."""
    return _private_training_config


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, small_history: Path):
    """`training.pipeline.train` on the small history, tracked in a private SQLite MLflow store."""
    from training.pipeline import train

    # a small search: two enqueued settings and one seeded proposal
    config = _private_training_config(tmp_path_factory.mktemp("mlflow"), small_history, trials=3)
    outcome = train(config)
    return config, outcome
