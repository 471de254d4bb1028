"""Choose the booster by what customs measures on the validation window: a small, seeded search.

Every trial fits LightGBM with early stopping on the validation window's average precision
and is scored on that window only (average precision, precision and recall at 1/2/5 %
inspection rates). The test window never reaches this module. The first trials are
today's settings with and without class weighting, so even a budget of two trials chooses
the class weighting by validation; the rest are proposed by a seeded TPE sampler.
Same data, settings and seed give the same trials, the same chosen settings and the same
booster (LightGBM runs deterministic, with a fixed seed and thread count).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd

from models.estimator import BoosterParams, booster_datasets, fit_booster
from training.evaluation import budget_metrics, ranking_metrics, rate_label

#: Inspection rates whose validation precision and recall every trial reports.
SEARCH_RATES: tuple[float, ...] = (0.01, 0.02, 0.05)

#: Class weightings the search may choose between (1.0 = no weighting).
CLASS_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)

#: Parameters the search tunes (each a `BoosterParams` field).
TUNED = (
    "num_leaves",
    "learning_rate",
    "min_data_in_leaf",
    "feature_fraction",
    "lambda_l2",
    "scale_pos_weight",
)


@dataclass
class SearchResult:
    """The chosen booster, its settings and one row per trial (validation metrics only)."""

    booster: lgb.Booster
    params: BoosterParams
    chosen_trial: int
    trials: pd.DataFrame

    def chosen(self) -> dict[str, float]:
        """The chosen trial's row (settings and validation metrics)."""
        row = self.trials.loc[self.trials["trial"] == self.chosen_trial].iloc[0]
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}

    def markdown(self) -> str:
        """The trial table as markdown (the chosen trial marked)."""
        columns = [c for c in self.trials.columns if c != "chosen"]
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for _, row in self.trials.iterrows():
            cells = [_cell(row[c]) for c in columns]
            if row["chosen"]:
                cells[0] = f"**{cells[0]}** (chosen)"
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _propose(trial: optuna.Trial) -> dict[str, float]:
    return {
        # bounded so one trial costs about one of today's fits: no more than 63 leaves, and a
        # learning rate that reaches its best validation AP within max_rounds
        "num_leaves": trial.suggest_int("num_leaves", 15, 63, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.04, 0.15, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 400, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 0.01, 30.0, log=True),
        "scale_pos_weight": trial.suggest_categorical("scale_pos_weight", CLASS_WEIGHTS),
    }


def validation_metrics(scores: np.ndarray, diverted: np.ndarray) -> dict[str, float]:
    """Average precision and precision/recall at 1, 2 and 5 % of the validation window."""
    diverted = np.asarray(diverted, dtype=bool)
    budget = budget_metrics(scores, diverted, np.zeros(len(diverted)), SEARCH_RATES)
    out = {"average_precision": ranking_metrics(scores, diverted)["pr_auc"]}
    for rate in SEARCH_RATES:
        label = rate_label(rate)
        out[f"precision_at_{label}"] = budget[f"precision_at_{label}"]
        out[f"recall_at_{label}"] = budget[f"recall_at_{label}"]
    return out


def search_booster(
    train_features: pd.DataFrame,
    train_labels: np.ndarray,
    validation_features: pd.DataFrame,
    validation_labels: np.ndarray,
    categorical: tuple[str, ...],
    base: BoosterParams,
    trials: int,
    seed: int,
    train_weights: np.ndarray | None = None,
    search_rows: int | None = None,
    progress=None,
    refit: Callable[..., lgb.Booster] | None = None,
) -> SearchResult:
    """Run `trials` fits and keep the one with the best validation average precision.

    `search_rows` caps the training rows each trial sees (the latest ones, nearest the
    validation window); the chosen settings are then refitted on the whole training window.
    `progress(text)` is called after each trial. `refit` (`fit_booster`'s signature and
    contract: a local booster whose `best_iteration`, or else all its trees, is the model)
    always refits the chosen settings on the whole training window; the Dask engine passes
    its cluster fit (`training.distributed`).
    """
    if trials < 1:
        raise ValueError(f"trials must be at least 1 (got {trials}); 1 fits today's settings only")
    n = len(train_labels)
    start = max(0, n - search_rows) if search_rows else 0
    subset = slice(start, n)
    datasets = booster_datasets(
        train_features.iloc[subset],
        np.asarray(train_labels)[subset],
        validation_features,
        validation_labels,
        categorical,
        None if train_weights is None else np.asarray(train_weights)[subset],
    )
    x_validation = validation_features.to_numpy(dtype=np.float64)
    rows: list[dict[str, object]] = []
    best: dict[str, object] = {}

    def objective(trial: optuna.Trial) -> float:
        began = time.perf_counter()
        params = replace(base, **_propose(trial))
        booster = fit_booster(
            train_features, train_labels, validation_features, validation_labels, categorical, params,
            datasets=datasets,
        )  # fmt: skip
        scores = booster.predict(x_validation, raw_score=True)
        metrics = validation_metrics(scores, validation_labels)
        value = metrics["average_precision"]
        rows.append(
            {
                "trial": trial.number,
                **{name: getattr(params, name) for name in TUNED},
                "best_iteration": int(booster.best_iteration or booster.num_trees()),
                **{f"validation_{k}": v for k, v in metrics.items()},
                "seconds": round(time.perf_counter() - began, 2),
            }
        )
        if not best or value > best["value"]:
            best.update(value=value, trial=trial.number, booster=booster, params=params)
        if progress is not None:
            progress(
                f"trial {trial.number + 1}/{trials}: validation AP {value:.4f}, "
                f"R@5% {metrics['recall_at_5pct']:.3f}, {rows[-1]['best_iteration']} trees "
                f"(best so far: trial {best['trial']}, AP {best['value']:.4f})"
            )
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    for weight in (base.scale_pos_weight, 1.0):  # today's settings, then the same without weighting
        study.enqueue_trial(
            {**{name: getattr(base, name) for name in TUNED}, "scale_pos_weight": weight}, skip_if_exists=True
        )
    study.optimize(objective, n_trials=trials)

    chosen_params: BoosterParams = best["params"]  # type: ignore[assignment]
    booster: lgb.Booster = best["booster"]  # type: ignore[assignment]
    if refit is not None:
        booster = refit(
            train_features, train_labels, validation_features, validation_labels, categorical, chosen_params,
            train_weights=train_weights,
        )  # fmt: skip
    elif start > 0:
        booster = fit_booster(
            train_features, train_labels, validation_features, validation_labels, categorical, chosen_params,
            train_weights=train_weights,
        )  # fmt: skip
    table = pd.DataFrame(rows)
    table["chosen"] = table["trial"] == best["trial"]
    return SearchResult(booster=booster, params=chosen_params, chosen_trial=int(best["trial"]), trials=table)
