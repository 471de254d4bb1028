"""Early stopping of the booster fit: every round, or every `eval_every` rounds."""

from __future__ import annotations

from dataclasses import replace

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.estimator import BoosterParams, booster_datasets, fit_booster

PATIENCE = 20


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(7)
    n = 12_000
    x = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"f{i}" for i in range(6)])
    x["f5"] = pd.Categorical(rng.integers(0, 5, n))
    y = ((x["f0"] + 0.5 * x["f1"] + rng.normal(scale=1.5, size=n)) > 2.5).to_numpy().astype(int)
    cut = 9_000
    return x.iloc[:cut], y[:cut], x.iloc[cut:], y[cut:]


def _params(**changes) -> BoosterParams:
    return replace(BoosterParams(max_rounds=300, early_stopping_rounds=PATIENCE, num_threads=1), **changes)


def _fit(windows, params: BoosterParams) -> lgb.Booster:
    x_train, y_train, x_validation, y_validation = windows
    return fit_booster(x_train, y_train, x_validation, y_validation, ("f5",), params)


@pytest.mark.parametrize("metric", ["average_precision", "binary_logloss"])
def test_evaluating_every_round_is_lightgbms_own_early_stopping(windows, metric) -> None:
    params = _params(metric=metric, eval_every=1)
    x_train, y_train, x_validation, y_validation = windows
    train_set, validation_set = booster_datasets(x_train, y_train, x_validation, y_validation, ("f5",))
    reference = lgb.train(
        params.lightgbm(),
        train_set,
        num_boost_round=params.max_rounds,
        valid_sets=[validation_set],
        callbacks=[lgb.early_stopping(PATIENCE, verbose=False)],
    )
    ours = _fit(windows, params)
    assert 0 < ours.best_iteration < params.max_rounds
    assert ours.best_iteration == reference.best_iteration
    assert ours.model_to_string() == reference.model_to_string()


def _validation_curve(windows, params: BoosterParams) -> list[float]:
    """LightGBM's validation metric after each round of a fit that never stops early."""
    x_train, y_train, x_validation, y_validation = windows
    train_set, validation_set = booster_datasets(x_train, y_train, x_validation, y_validation, ("f5",))
    record: dict = {}
    lgb.train(
        params.lightgbm(),
        train_set,
        num_boost_round=params.max_rounds,
        valid_sets=[validation_set],
        valid_names=["validation"],
        callbacks=[lgb.record_evaluation(record)],
    )
    return record["validation"][params.metric]


@pytest.mark.parametrize("every", [5, 7])
def test_evaluating_every_k_rounds_keeps_the_best_evaluated_round(windows, every) -> None:
    params = _params(eval_every=every)
    curve = _validation_curve(windows, params)
    # what early stopping on rounds every, 2*every, ... must choose
    best_round, best = 0, -np.inf
    for round_ in range(every, params.max_rounds + 1, every):
        if curve[round_ - 1] > best:
            best_round, best = round_, curve[round_ - 1]
        elif round_ - best_round >= PATIENCE:
            break
    booster = _fit(windows, params)
    assert booster.best_iteration == best_round and best_round % every == 0
    assert booster.num_trees() == best_round
    # and the kept trees are the ones an every-round fit grows up to that round
    full = _fit(windows, _params(max_rounds=best_round, early_stopping_rounds=10_000))
    x_validation = windows[2]
    np.testing.assert_array_equal(booster.predict(x_validation), full.predict(x_validation))


def test_a_fit_that_never_stops_keeps_its_best_round_within_max_rounds(windows) -> None:
    params = _params(eval_every=4, max_rounds=30, early_stopping_rounds=10_000)
    curve = _validation_curve(windows, params)
    evaluated = list(range(4, 31, 4)) + [30]
    expected = max(evaluated, key=lambda r: (curve[r - 1], -r))
    assert _fit(windows, params).best_iteration == expected


def test_eval_every_below_one_is_refused_before_any_fit() -> None:
    from pydantic import ValidationError

    from training.config import TrainingConfig

    with pytest.raises(ValueError, match="eval_every must be at least 1"):
        _params(eval_every=0)
    with pytest.raises(ValidationError, match="eval_every must be at least 1"):
        TrainingConfig(booster={"eval_every": 0})
    with pytest.raises(ValidationError, match="unknown booster setting"):
        TrainingConfig(booster={"eval_evry": 5})
