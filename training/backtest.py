"""Fit at a point in time and evaluate on a later window: the core of `train` and `backtest`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.definitions import FEATURE_SET, MONOTONE
from features.reference import ReferenceTables
from models.baselines import logistic_regression, random_scores, red_flag_scores
from models.estimator import PlattCalibration
from models.scorer import DiversionScorer, InspectionPolicy
from training.config import TrainingConfig
from training.datasets import build_features_lean
from training.evaluation import evaluate_scores
from training.labels import Labels, Windows, declaration_labels, fit_windows, inspected_before
from training.search import SearchResult, search_booster

#: Quantiles of training-period scores kept with the model for score percentiles.
_PERCENTILE_POINTS = 1001
#: Training-period rows whose scores give the reference percentiles (evenly spaced when more).
_QUANTILE_ROWS = 200_000


@dataclass
class FitResult:
    """A fitted scorer and its honest evaluation on the test window."""

    scorer: DiversionScorer
    windows: Windows
    train_mask: np.ndarray
    validation_mask: np.ndarray
    test_mask: np.ndarray
    test_scores: np.ndarray
    test_labels: Labels
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    baseline_scores: dict[str, np.ndarray] = field(default_factory=dict)
    validation_metrics: dict[str, float] = field(default_factory=dict)
    search: SearchResult | None = None


def build_features(
    declarations: pd.DataFrame, seizures: pd.DataFrame, reference: ReferenceTables
) -> pd.DataFrame:
    """Point-in-time features of every declaration against the whole history.

    Computed in bounded memory (`training.datasets`): the same values as
    `compute_features(declarations, History.build(declarations, seizures, reference), reference)`.
    """
    return build_features_lean(declarations, seizures, reference)


def fit_and_evaluate(
    declarations: pd.DataFrame,
    seizures: pd.DataFrame,
    features: pd.DataFrame,
    config: TrainingConfig,
    train_until: pd.Timestamp,
    test_from: pd.Timestamp,
    test_to: pd.Timestamp,
    inspections: pd.DataFrame | None = None,
    columns: tuple[str, ...] | None = None,
    progress=None,
    refit: Callable[..., lgb.Booster] | None = None,
) -> FitResult:
    """Train on what was known before `train_until`; evaluate once on [test_from, test_to).

    The booster is chosen by `training.search` on the validation window (`config.trials`
    fits). `columns` restricts the model and logistic regression to some feature columns
    (an ablation, e.g. `features.definitions.columns_without(("network",))`); the red-flag
    rules always read the features they need. `refit` refits the chosen settings on the
    whole training window (`training.search.search_booster`; the Dask engine's cluster fit).

    With an inspections table: inspections that found a seizure are positives; declarations
    with neither a seizure nor an inspection on record are unknown rather than clean, and
    weigh `config.uninspected_negative_weight` in training.
    """
    declared_at = declarations["declared_at"]
    windows = fit_windows(
        declared_at, train_until, test_from, test_to, config.label_window_days, config.validation_share
    )
    known = declaration_labels(
        declarations, seizures, config.label_window_days, known_before=train_until, inspections=inspections
    )
    inspected = inspected_before(declarations, inspections, known_before=train_until)
    weights = None
    if inspections is not None and not inspections.empty:
        weights = np.where(known.diverted | inspected, 1.0, config.uninspected_negative_weight)
    train_mask = (declared_at < windows.validation_from).to_numpy()
    validation_mask = (
        (declared_at >= windows.validation_from) & (declared_at < windows.mature_until)
    ).to_numpy()
    test_mask = ((declared_at >= test_from) & (declared_at < test_to)).to_numpy()
    _require_both_classes(known.diverted[train_mask], "training")
    _require_both_classes(known.diverted[validation_mask], "validation")

    columns = list(FEATURE_SET.columns if columns is None else columns)
    categorical = tuple(c for c in FEATURE_SET.categorical if c in columns)
    x_train, x_validation = features.loc[train_mask, columns], features.loc[validation_mask, columns]
    y_train, y_validation = known.diverted[train_mask], known.diverted[validation_mask]
    search = search_booster(
        x_train,
        y_train,
        x_validation,
        y_validation,
        categorical,
        config.booster_params(monotone=[MONOTONE.get(c, 0) for c in columns]),
        trials=config.trials,
        seed=config.seed,
        train_weights=None if weights is None else weights[train_mask],
        search_rows=config.search_rows,
        progress=progress,
        refit=refit,
    )
    booster = search.booster
    raw_validation = booster.predict(x_validation.to_numpy(dtype=np.float64), raw_score=True)
    calibration = PlattCalibration.fit(raw_validation, y_validation)
    validation_scores = calibration(raw_validation)
    policy = InspectionPolicy.from_scores(
        validation_scores, config.red_rate, config.yellow_rate, config.mandatory_red_rules
    )
    period_scores = calibration(
        _raw_scores(booster, features, _evenly_spaced(train_mask | validation_mask, _QUANTILE_ROWS), columns)
    )
    scorer = DiversionScorer(
        booster=booster,
        feature_names=tuple(columns),
        calibration=calibration,
        policy=policy,
        reference_quantiles=np.quantile(period_scores, np.linspace(0.0, 1.0, _PERCENTILE_POINTS)),
        metadata={
            "feature_set": {"name": FEATURE_SET.name, "version": FEATURE_SET.version},
            "best_iteration": int(booster.best_iteration or booster.num_trees()),
            "search": {"trials": config.trials, "chosen_trial": search.chosen_trial},
            "label_window_days": config.label_window_days,
            "windows": windows.as_dict(),
        },
    )

    # The test window is touched once, after everything above is fitted.
    test_labels = declaration_labels(
        declarations.loc[test_mask], seizures, config.label_window_days, inspections=inspections
    )
    x_test = features.loc[test_mask, columns]
    test_scores = scorer.predict_proba(x_test)
    metrics = evaluate_scores(
        test_scores, test_labels.diverted, test_labels.seized_kg, probabilities=test_scores
    )
    validation_metrics = evaluate_scores(validation_scores, y_validation, known.seized_kg[validation_mask])

    baseline_scores = {
        "random": random_scores(int(test_mask.sum()), config.seed),
        "red_flag_rules": red_flag_scores(features.loc[test_mask, list(FEATURE_SET.columns)]),
    }
    numeric = tuple(c for c in columns if c not in categorical)
    x_baseline, y_baseline = x_train, y_train
    if config.baseline_rows is not None and len(y_train) > config.baseline_rows:
        # the baseline's one-hot, imputed and scaled copies grow with its rows: a spread sample
        kept = _evenly_spaced(np.ones(len(y_train), dtype=bool), config.baseline_rows)
        x_baseline, y_baseline = x_train.loc[kept], y_train[kept]
    logistic = logistic_regression(categorical, numeric, config.seed).fit(x_baseline, y_baseline)
    baseline_scores["logistic_regression"] = logistic.predict_proba(x_test)[:, 1]
    baselines = {
        name: evaluate_scores(scores, test_labels.diverted, test_labels.seized_kg)
        for name, scores in baseline_scores.items()
    }
    return FitResult(
        scorer=scorer,
        windows=windows,
        train_mask=train_mask,
        validation_mask=validation_mask,
        test_mask=test_mask,
        test_scores=test_scores,
        test_labels=test_labels,
        metrics=metrics,
        baselines=baselines,
        baseline_scores=baseline_scores,
        validation_metrics=validation_metrics,
        search=search,
    )


#: Rows per `Booster.predict` call when scoring a whole period (bounds the float64 copy).
_PREDICT_ROWS = 500_000


def _evenly_spaced(mask: np.ndarray, at_most: int) -> np.ndarray:
    """`mask` thinned to at most `at_most` rows taken at even steps (all of them when fewer)."""
    rows = np.flatnonzero(mask)
    if len(rows) > at_most:
        rows = rows[np.linspace(0, len(rows) - 1, at_most).round().astype(np.int64)]
    thinned = np.zeros(len(mask), dtype=bool)
    thinned[rows] = True
    return thinned


def _raw_scores(booster, features: pd.DataFrame, mask: np.ndarray, columns: list[str]) -> np.ndarray:
    """Raw booster scores of the masked rows, predicted a slice at a time (row by row the same)."""
    rows = np.flatnonzero(mask)
    out = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), _PREDICT_ROWS):
        part = rows[start : start + _PREDICT_ROWS]
        out[start : start + len(part)] = booster.predict(
            features.iloc[part][columns].to_numpy(np.float64), raw_score=True
        )
    return out


def _require_both_classes(labels: np.ndarray, window: str) -> None:
    if len(labels) == 0 or labels.all() or not labels.any():
        raise ValueError(
            f"the {window} window has {int(labels.sum())} diverted of {len(labels)} declarations: a model needs "
            "both classes; supply a longer history or move --train-until later"
        )


def write_backtest(
    result: FitResult, declarations: pd.DataFrame, out: Path, contract: dict[str, object] | None = None
) -> None:
    """`scores.csv` (declaration_id, risk_score) and `metrics.json` for the test window.

    ``contract`` (`ValidationReport.as_dict()`) records in `metrics.json` how many input
    rows validation rejected, so the result is never read without knowing what it left out.
    """
    out.mkdir(parents=True, exist_ok=True)
    scores = pd.DataFrame(
        {
            "declaration_id": declarations.loc[result.test_mask, "declaration_id"].astype("str").to_numpy(),
            "risk_score": result.test_scores,
        }
    )
    scores.to_csv(out / "scores.csv", index=False, float_format="%.10g")
    document = {
        "model": result.metrics,
        "baselines": result.baselines,
        "windows": result.windows.as_dict(),
        "feature_set": {"name": FEATURE_SET.name, "version": FEATURE_SET.version},
        "inspection_policy": result.scorer.policy.__dict__
        | {"mandatory_red_rules": list(result.scorer.policy.mandatory_red_rules)},
    }
    if contract is not None:
        document["contract"] = contract
    (out / "metrics.json").write_text(json.dumps(document, indent=2, sort_keys=True, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def default_windows(
    declared_at: pd.Series, label_window_days: int, test_days: int
) -> tuple[pd.Timestamp, ...]:
    """Default `train` windows: test = the last `test_days` whose labels are mature at the data's end."""
    end = declared_at.max()
    test_to = (end - pd.Timedelta(days=label_window_days)).floor("D")
    test_from = test_to - pd.Timedelta(days=test_days)
    return test_from, test_from, test_to
