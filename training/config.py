"""Training configuration: loaded once at the entry point, passed down as a value, logged."""

from __future__ import annotations

import os
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.contract import LABEL_WINDOW_DAYS
from models.estimator import BoosterParams


class TrainingConfig(BaseModel):
    """Everything that determines a training run (besides the data itself)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    declarations: Path = Path("data/synthetic/declarations.parquet")
    seizures: Path = Path("data/synthetic/seizures.parquet")
    inspections: Path | None = None
    output_dir: Path = Path("outputs")
    max_reject_share: float = Field(0.01, ge=0.0, le=1.0)

    label_window_days: int = Field(LABEL_WINDOW_DAYS, gt=0)
    test_days: int = Field(120, gt=0, description="length of the test window before label maturity ends")
    validation_share: float = Field(0.2, gt=0.0, lt=0.9)

    uninspected_negative_weight: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="training weight of declarations with no seizure and no inspection on record, when an "
        "inspections table is given (inspected-and-clean declarations weigh 1)",
    )

    red_rate: float = Field(0.02, gt=0.0, lt=1.0)
    yellow_rate: float = Field(0.08, ge=0.0, lt=1.0)
    mandatory_red_rules: tuple[str, ...] = ("controlled_without_authorisation",)

    seed: int = 42
    trials: int = Field(
        6,
        ge=1,
        description="fits in the hyperparameter search on the validation window (1 = today's settings only; "
        "2 = also without class weighting; more = seeded TPE proposals)",
    )
    search_rows: int | None = Field(
        100_000,
        gt=0,
        description="cap on the training rows each search trial sees (the latest, nearest the validation "
        "window); the chosen settings are then refitted once on the whole training window, so a search costs "
        "about `trials` fits of this many rows plus one full fit. None = every trial sees all of it",
    )
    baseline_rows: int | None = Field(
        500_000,
        gt=0,
        description="cap on the training rows the logistic-regression baseline is fitted on (evenly spaced "
        "over the training window); its one-hot, imputed and scaled copies grow with the rows it sees. "
        "None = all of them",
    )
    engine: Literal["local", "dask"] = Field(
        "local",
        description="local: one process; dask: features and the final fit on a Dask cluster "
        "(docs/training-dask.md)",
    )
    dask_scheduler: str | None = Field(
        None, description="Dask scheduler address (tcp://host:8786); empty: a LocalCluster on this machine"
    )
    dask_workers: int = Field(
        2, gt=0, description="worker processes of the LocalCluster started when no scheduler is given"
    )
    dask_blocks: int = Field(
        0,
        ge=0,
        description="time blocks of the feature step on the cluster, one task each (0: one per worker)",
    )
    dask_network_timeout_minutes: int = Field(
        10,
        gt=0,
        description="LightGBM's socket time-out between workers (time_out), so a lost peer fails the fit",
    )
    booster: dict = Field(default_factory=dict, description="overrides of models.estimator.BoosterParams")

    tracking_uri: str = Field(
        default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    experiment: str = "diversion-risk"
    registered_model: str = "diversion-risk"
    primary_metric: str = "precision_at_2pct"

    @field_validator("booster")
    @classmethod
    def _booster_settings(cls, value: dict) -> dict:
        """Unknown or invalid booster settings fail when the config loads, not after the features."""
        try:
            BoosterParams(**value)
        except TypeError as exc:
            raise ValueError(f"unknown booster setting: {exc}") from exc
        return value

    @field_validator("yellow_rate")
    @classmethod
    def _budget(cls, value: float, info) -> float:
        red = info.data.get("red_rate", 0.0)
        if red + value >= 1.0:
            raise ValueError("red_rate + yellow_rate must be below 1")
        return value

    def booster_params(self, monotone: list[int] | None = None) -> BoosterParams:
        params = BoosterParams(**{"seed": self.seed, **self.booster})
        if monotone and any(monotone):
            params = replace(params, extra={"monotone_constraints": monotone, **params.extra})
        return params

    @classmethod
    def load(cls, path: Path | None = None, **overrides: object) -> TrainingConfig:
        """Defaults, then a TOML file (if given), then explicit overrides (CLI options)."""
        values: dict[str, object] = {}
        if path is not None:
            values.update(tomllib.loads(Path(path).read_text()))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
