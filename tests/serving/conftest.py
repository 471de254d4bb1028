"""Shared set-up of a real service deployment for the serving tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from serving.auth import issue_token
from serving.demo import split_history


@dataclass(frozen=True)
class Deployment:
    """Environment of a service on the trained test model, and the declarations kept back as new."""

    env: dict[str, str]
    token: dict[str, str]
    records: list[dict]
    history_declarations: Path
    history_seizures: Path


def prepare_deployment(
    folder: Path,
    config,
    small_history: Path,
    new: int,
    roles: tuple[str, ...] = ("scorer", "analyst", "auditor"),
) -> Deployment:
    """History = all but the last `new` declarations; one token per role; SQLite stores in `folder`."""
    history_declarations, history_seizures, records = split_history(
        small_history / "declarations.parquet", small_history / "seizures.parquet", new, folder
    )
    tokens = folder / "tokens.toml"
    token = {role: issue_token(f"test-{role}", [role], tokens) for role in roles}
    env = {
        "MLFLOW_TRACKING_URI": config.tracking_uri,
        "DIVERSION_TOKENS_FILE": str(tokens),
        "DIVERSION_HISTORY_DECLARATIONS": str(history_declarations),
        "DIVERSION_HISTORY_SEIZURES": str(history_seizures),
        "DIVERSION_HISTORY_DB": f"sqlite:///{folder}/history.db",
        "DIVERSION_AUDIT_DB": f"sqlite:///{folder}/audit.db",
    }
    return Deployment(env, token, records, history_declarations, history_seizures)


@pytest.fixture(scope="session")
def deployment_setup():
    """`prepare_deployment`, as a fixture (test modules cannot import conftest under importlib mode)."""
    return prepare_deployment


POSTGRES_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_database():
    """A fresh PostgreSQL database on 127.0.0.1:5432 for one test (URL), dropped afterwards."""
    import socket
    import uuid

    import sqlalchemy as sa

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            pass
    except OSError as exc:
        pytest.skip(f"PostgreSQL not reachable on 127.0.0.1:5432 ({exc})")
    name = f"replicas_{uuid.uuid4().hex}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
