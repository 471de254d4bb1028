"""Estimator and calibrator factories for the diversion-risk model."""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression


@dataclass(frozen=True)
class BoosterParams:
    """LightGBM settings (logged with every run)."""

    num_leaves: int = 31
    learning_rate: float = 0.05
    min_data_in_leaf: int = 40
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_rounds: int = 600
    early_stopping_rounds: int = 50
    # Early stopping watches the ranking customs uses (average precision on the validation
    # window), not log-loss: with class weights the log-loss worsens long before the ranking.
    metric: str = "average_precision"
    scale_pos_weight: float = 5.0  # training's search chooses it by validation (training/search.py)
    seed: int = 42
    num_threads: int = 2
    extra: dict = field(default_factory=dict)  # any other LightGBM parameter

    def lightgbm(self) -> dict:
        return {
            "objective": "binary",
            "metric": self.metric,
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "scale_pos_weight": self.scale_pos_weight,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "first_metric_only": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
            **self.extra,
        }


def fit_booster(
    train_features: pd.DataFrame,
    train_labels: np.ndarray,
    validation_features: pd.DataFrame,
    validation_labels: np.ndarray,
    categorical: tuple[str, ...],
    params: BoosterParams,
    train_weights: np.ndarray | None = None,
    datasets: tuple[lgb.Dataset, lgb.Dataset] | None = None,
) -> lgb.Booster:
    """Fit LightGBM with early stopping on the validation window's `params.metric`.

    `datasets` (from `booster_datasets`) lets a search reuse one binned training and
    validation set across trials instead of binning the same rows again.
    """
    train_set, validation_set = datasets or booster_datasets(
        train_features, train_labels, validation_features, validation_labels, categorical, train_weights
    )
    return lgb.train(
        params.lightgbm(),
        train_set,
        num_boost_round=params.max_rounds,
        valid_sets=[validation_set],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )


#: Dataset settings. Binned once for every search trial, so no feature pre-filter tied to the
#: first trial's `min_data_in_leaf` (a later trial with a smaller one would force a re-binning).
_DATASET_PARAMS = {"verbosity": -1, "feature_pre_filter": False}


def booster_datasets(
    train_features: pd.DataFrame,
    train_labels: np.ndarray,
    validation_features: pd.DataFrame,
    validation_labels: np.ndarray,
    categorical: tuple[str, ...],
    train_weights: np.ndarray | None = None,
) -> tuple[lgb.Dataset, lgb.Dataset]:
    """LightGBM training and validation sets (validation binned like training, unweighted)."""
    train_set = lgb.Dataset(
        train_features,
        label=train_labels,
        weight=train_weights,
        categorical_feature=list(categorical),
        free_raw_data=False,
        params=dict(_DATASET_PARAMS),
    )
    validation_set = lgb.Dataset(
        validation_features,
        label=validation_labels,
        categorical_feature=list(categorical),
        reference=train_set,
        free_raw_data=False,
        params=dict(_DATASET_PARAMS),
    )
    return train_set, validation_set


@dataclass(frozen=True)
class PlattCalibration:
    """Calibrated probability = sigmoid(slope * raw_score + intercept), fitted on validation."""

    slope: float
    intercept: float

    @classmethod
    def fit(cls, raw_scores: np.ndarray, labels: np.ndarray) -> PlattCalibration:
        model = LogisticRegression(C=1e6, max_iter=1000)
        model.fit(np.asarray(raw_scores).reshape(-1, 1), np.asarray(labels).astype(int))
        return cls(slope=float(model.coef_[0, 0]), intercept=float(model.intercept_[0]))

    def __call__(self, raw_scores: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * np.asarray(raw_scores) + self.intercept)))
