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
    # Rounds between two evaluations of `metric` on the validation window. Average precision
    # sorts the whole window, which costs about as much as growing a tree on the search's
    # 100,000 rows; the model is the best evaluated round (a multiple of this, or the last),
    # and the fit stops once `early_stopping_rounds` rounds pass without a better one.
    # 1 = every round (as `lgb.early_stopping`).
    eval_every: int = 5
    scale_pos_weight: float = 5.0  # training's search chooses it by validation (training/search.py)
    seed: int = 42
    num_threads: int = 2
    extra: dict = field(default_factory=dict)  # any other LightGBM parameter

    def __post_init__(self) -> None:
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be at least 1 (got {self.eval_every})")

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
    stopping = _EarlyStoppingEvery(validation_set, params.eval_every, params.early_stopping_rounds)
    return lgb.train(
        params.lightgbm(),
        train_set,
        num_boost_round=params.max_rounds,
        callbacks=[stopping.attach, stopping],
    )


class _EarlyStoppingEvery:
    """`lgb.early_stopping` that evaluates the validation window every `every` rounds only.

    The window is attached to the booster before the first round (`attach`), so LightGBM keeps
    its scores up to date as trees are added; the metric itself (a full sort of the window for
    average precision) runs on evaluated rounds only. The best evaluated round is the model,
    and the fit stops once `patience` rounds pass without a better one, as `lgb.early_stopping`
    does; with `every` = 1 the two give the same booster.
    """

    def __init__(self, validation_set: lgb.Dataset, every: int, patience: int) -> None:
        self.validation_set, self.every, self.patience = validation_set, every, patience
        self.best_value, self.best_iteration, self.best_score = -np.inf, -1, []

    def attach(self, env: lgb.callback.CallbackEnv) -> None:
        if env.iteration == env.begin_iteration:
            env.model.add_valid(self.validation_set, "validation")

    attach.before_iteration = True  # type: ignore[attr-defined]

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        last = env.iteration == env.end_iteration - 1
        if (env.iteration + 1) % self.every and not last:
            return
        score = env.model.eval_valid()
        _, _, value, higher_is_better = score[0]
        value = value if higher_is_better else -value
        if self.best_iteration < 0 or value > self.best_value:
            self.best_value, self.best_iteration, self.best_score = value, env.iteration, score
        if last or env.iteration - self.best_iteration >= self.patience:
            raise lgb.callback.EarlyStopException(self.best_iteration, self.best_score)


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
