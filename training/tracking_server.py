"""A shared MLflow tracking server: PostgreSQL backend store, artifacts proxied by the server.

`make mlflow-server` runs `mlflow server` so that training on any machine, the Dask
cluster and every replica of the scoring service share one registry. Clients never touch
the artifact store directly (`--serve-artifacts`): they upload and download through the
server with `MLFLOW_TRACKING_URI=http://HOST:PORT`. The backend database is created when
missing and its schema brought to this MLflow version (`mlflow db upgrade`).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

_MLFLOW = Path(sys.executable).with_name("mlflow")


@dataclass(frozen=True)
class TrackingServer:
    """How the tracking server runs (all values come from the command line or the Makefile)."""

    backend_store_uri: str
    artifacts_destination: Path
    host: str = "127.0.0.1"
    port: int = 5000
    allowed_hosts: str | None = None  # None: MLflow's default (localhost and the bound address)
    workers: int = 2

    def command(self) -> list[str]:
        """The `mlflow server` command line."""
        command = [
            str(_MLFLOW),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.artifacts_destination.resolve()),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        if self.allowed_hosts:
            command += ["--allowed-hosts", self.allowed_hosts]
        return command


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database of `url` when it does not exist; True when it was created."""
    parsed = make_url(url)
    if not parsed.get_backend_name().startswith("postgresql"):
        return False
    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
            ).first()
            if exists:
                return False
            connection.execute(sa.text(f'CREATE DATABASE "{parsed.database}"'))
            return True
    finally:
        admin.dispose()


def upgrade_schema(url: str) -> None:
    """`mlflow db upgrade URL`: bring an existing backend store to this MLflow version's schema."""
    subprocess.run([str(_MLFLOW), "db", "upgrade", url], check=True)


def serve(server: TrackingServer) -> int:
    """Create the database if needed, upgrade its schema, and run the server in the foreground."""
    created = ensure_database(server.backend_store_uri)
    if not created:
        upgrade_schema(server.backend_store_uri)  # a new database is initialised by the server itself
    server.artifacts_destination.mkdir(parents=True, exist_ok=True)
    return subprocess.call(server.command())
