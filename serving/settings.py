"""Service settings, read once from the environment at start-up (12-factor style)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

_PREFIX = "DIVERSION_"


class ServiceSettings(BaseModel):
    """Where the model and the history come from, and the request limits."""

    model_config = ConfigDict(frozen=True)

    tracking_uri: str = "sqlite:///mlflow.db"
    model_name: str = "diversion-risk"
    model_alias: str = "champion"
    model_version: str | None = Field(None, description="pin a registered version instead of the alias")
    challenger_alias: str = Field(
        "challenger",
        min_length=1,
        description="alias of the model version scored in shadow beside the champion",
    )
    challenger_shadow: bool = Field(
        True, description="score the challenger alias in shadow when it exists (false: never load it)"
    )
    history_declarations: Path = Path("data/synthetic/declarations.parquet")
    history_seizures: Path = Path("data/synthetic/seizures.parquet")
    history_db: str = "sqlite:///outputs/service/history.db"
    audit_db: str = "sqlite:///outputs/service/audit.db"
    rules_db: str = "sqlite:///outputs/service/rules.db"
    audit_schema: str | None = Field(None, description="PostgreSQL schema of the audit tables")
    max_batch: int = Field(10_000, gt=0)
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0)
    compact_every: int = Field(
        64, gt=0, description="re-index the log as one segment after this many applied appends"
    )
    history_poll_seconds: float = Field(
        1.0, gt=0, description="how often an idle worker applies new log rows (requests always check)"
    )
    model_poll_seconds: float = Field(
        10.0, ge=0, description="how often a worker checks the registry alias for a new version (0: never)"
    )
    workers: int = Field(
        1, gt=0, description="worker processes of `bentoml serve` (all share the SQL stores)"
    )
    replay_concurrency: int = Field(2, gt=0, description="audit replays running at once; more get 429")
    header_timeout_seconds: float = Field(10.0, gt=0, description="408 and close when headers take longer")
    body_timeout_seconds: float = Field(30.0, gt=0, description="408 and close when the body takes longer")

    @property
    def model_uri(self) -> str:
        if self.model_version:
            return f"models:/{self.model_name}/{self.model_version}"
        return f"models:/{self.model_name}@{self.model_alias}"

    @classmethod
    def from_env(cls) -> ServiceSettings:
        """Defaults overridden by `DIVERSION_*` variables (and `MLFLOW_TRACKING_URI`)."""
        values: dict[str, str] = {}
        if "MLFLOW_TRACKING_URI" in os.environ:
            values["tracking_uri"] = os.environ["MLFLOW_TRACKING_URI"]
        for name in cls.model_fields:
            key = _PREFIX + name.upper()
            if key in os.environ and os.environ[key] != "":
                values[name] = os.environ[key]
        return cls(**values)
