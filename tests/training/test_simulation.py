"""Inspection-budget simulation: what a strategy may learn, budgets, oracle and random bounds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.simulation import (
    INSPECTED_ONLY,
    ORACLE,
    RANDOM,
    UNKNOWN_AS_NEGATIVE,
    SimulationConfig,
    SimulationData,
    add_rates,
    budget,
    simulate,
    training_rows,
)


@pytest.fixture(scope="module")
def data() -> SimulationData:
    from features.reference import load_reference
    from training.backtest import build_features
    from training.synthetic import generate_history

    declarations, seizures, _ = generate_history(rows=20_000, years=2.0, seed=5)
    features = build_features(declarations, seizures, load_reference())
    return SimulationData.from_tables(declarations, seizures, features, 180)


@pytest.fixture(scope="module")
def all_strategies(data: SimulationData):
    """Every strategy, both label modes, 6 weeks with a retrain after 3."""
    config = SimulationConfig(weeks=6, retrain_every_weeks=3, tracking_uri="unused")
    return simulate(data, config)


def test_labels_are_learned_only_from_inspections(all_strategies, data: SimulationData) -> None:
    result = all_strategies
    assert result.fits > 0
    for arm in result.summary["strategy"]:
        inspected = result.inspected[arm]
        # Nothing of the simulated period is ever trained on as diverted unless it was inspected.
        assert not (result.trained_positive[arm] & ~inspected).any(), arm
        if "(" not in arm and "model" in arm:  # primary model arms run inspected_only
            assert result.trained_on[arm].any(), f"{arm} never retrained on simulated weeks"
            assert not (result.trained_on[arm] & ~inspected).any(), arm
    # The unknowns-as-negatives variant does train on uninspected rows (as clean): the test can fail.
    naive = "model_only (unknown_as_negative)"
    assert (result.trained_on[naive] & ~result.inspected[naive]).any()
    assert not (result.trained_positive[naive] & ~result.inspected[naive]).any()


def test_training_rows_never_reveal_uninspected_outcomes() -> None:
    filed = np.array([True, True, True, True, False])
    known = np.array([True, False, True, False, False])
    diverted = np.array([True, True, False, False, True])
    rows, labels = training_rows(filed, known, diverted, INSPECTED_ONLY)
    assert rows.tolist() == [0, 2] and labels.tolist() == [True, False]
    rows, labels = training_rows(filed, known, diverted, UNKNOWN_AS_NEGATIVE)
    assert rows.tolist() == [0, 1, 2, 3] and labels.tolist() == [True, False, False, False]


def test_budget_respected_every_week(all_strategies) -> None:
    weekly = all_strategies.weekly
    expected = [math.ceil(0.05 * n) for n in weekly["declarations"]]
    assert weekly["selected"].tolist() == expected
    assert (weekly["budget"] == weekly["selected"]).all()
    for arm, inspected in all_strategies.inspected.items():
        assert inspected.sum() == weekly.loc[weekly["strategy"] == arm, "selected"].sum()
        # Inspections fall only in the simulated weeks.
        assert (all_strategies.week_index[inspected] >= 0).all()


def test_oracle_is_the_upper_bound(all_strategies) -> None:
    weekly = add_rates(all_strategies.weekly)
    oracle = weekly.loc[(weekly["strategy"] == ORACLE) & (weekly["positives"] > 0)]
    assert len(oracle) > 0
    assert np.allclose(oracle["normalised_precision"], 1.0)
    assert np.allclose(oracle["normalised_kg"], 1.0)
    others = weekly.loc[weekly["strategy"] != ORACLE]
    assert (others["normalised_precision"].dropna() <= 1.0 + 1e-12).all()


def test_random_precision_is_about_the_base_rate(data: SimulationData) -> None:
    config = SimulationConfig(
        weeks=40, inspection_rate=0.3, strategies=(RANDOM, ORACLE), tracking_uri="unused", seed=3
    )
    result = simulate(data, config)
    random_weeks = result.weekly.loc[result.weekly["strategy"] == RANDOM]
    base_rate = random_weeks["positives"].sum() / random_weeks["declarations"].sum()
    precision = random_weeks["hits"].sum() / random_weeks["selected"].sum()
    assert base_rate > 0
    assert 0.5 * base_rate <= precision <= 1.6 * base_rate
    assert result.fits == 0  # no model strategy, no fit


def test_budget_is_ceil_of_rate() -> None:
    assert budget(100, 0.05) == 5
    assert budget(101, 0.05) == 6
    assert budget(3, 0.05) == 1
    assert budget(1, 0.5) == 1


def test_config_rejects_unknown_strategy(tmp_path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text('strategies = ["random", "psychic"]\n')
    with pytest.raises(ValueError, match="psychic"):
        SimulationConfig.load(path)
    path.write_text("inspection_rate = 0.02\nexploration_share = 0.2\n")
    config = SimulationConfig.load(path)
    assert (config.inspection_rate, config.exploration_share) == (0.02, 0.2)


# --- what a strategy knows of seizures -------------------------------------------------------


@pytest.fixture(scope="module")
def tables():
    from training.synthetic import generate_history

    declarations, seizures, _ = generate_history(rows=20_000, years=2.0, seed=5)
    return declarations, seizures


def _knowledge(tables, config: SimulationConfig):
    from training.simulation_report import knowledge_of

    declarations, seizures = tables
    return knowledge_of(declarations, seizures, config)


def test_withheld_seizures_are_only_period_declarations_seized_at_home(tables) -> None:
    declarations, seizures = tables
    config = SimulationConfig(weeks=6, tracking_uri="unused", seizure_knowledge="own_and_partner")
    knowledge = _knowledge(tables, config)
    withheld = knowledge.withheld
    assert len(withheld) > 0
    rows = knowledge.withheld_row
    assert (rows >= 0).all()  # every withheld seizure names a declaration
    named = declarations.iloc[rows]
    assert (withheld["country"].astype(str).to_numpy() == named["port_of_loading"].str[:2].to_numpy()).all()
    period_from = knowledge.declarations["declared_at"].iloc[rows].min()
    # Seizures abroad, reports naming no declaration and pre-period seizures stay known to all.
    known = seizures.loc[~seizures["seizure_id"].isin(withheld["seizure_id"])]
    assert known["declaration_id"].isna().any()
    assert (known["country"].astype(str) != "IN").any()
    everything = _knowledge(tables, config.model_copy(update={"seizure_knowledge": "own_inspections"}))
    assert len(everything.withheld) > len(withheld)
    assert set(withheld["seizure_id"]) <= set(everything.withheld["seizure_id"])
    assert (declarations.iloc[everything.withheld_row]["declared_at"] >= period_from).all()
    nothing = _knowledge(tables, config.model_copy(update={"seizure_knowledge": "all"}))
    assert not nothing.withholds_anything


def test_a_strategy_sees_only_the_seizures_its_inspections_found(tables) -> None:
    from features.history import History

    declarations, seizures = tables
    config = SimulationConfig(
        weeks=6, retrain_every_weeks=3, tracking_uri="unused", seizure_knowledge="own_inspections",
        strategies=("random", "model_only", "oracle"), compare_label_modes_for=(),
    )  # fmt: skip
    knowledge = _knowledge(tables, config)
    full = knowledge.features(
        History.build(declarations, seizures, knowledge.reference), np.arange(len(declarations))
    )
    data = SimulationData.from_tables(declarations, seizures, full, 180)
    result = simulate(data, config, knowledge=knowledge)
    assert set(result.period_features) == {"model_only"}  # random and oracle read no features
    seen = result.period_features["model_only"]
    period = result.week_index >= 0
    column = list(data_columns()).index("exporter_prior_seizures")
    assert not np.isnan(seen[:, column]).any()  # every period row was computed
    # Never more than the file's view, and strictly less somewhere: uninspected seizures are unknown.
    assert (seen[:, column] <= data.features[period, column]).all()
    assert (seen[:, column] < data.features[period, column]).any()
    # The last week, recomputed from scratch: base seizures + those of the declarations inspected before it.
    last = result.week_index.max()
    inspected_before = np.flatnonzero(result.inspected["model_only"] & (result.week_index < last))
    found = np.isin(knowledge.withheld_row, inspected_before)
    known = pd.concat([seizures.loc[~seizures["seizure_id"].isin(knowledge.withheld["seizure_id"])],
                       knowledge.withheld.loc[found]])  # fmt: skip
    rows = np.flatnonzero(result.week_index == last)
    expected = knowledge.features(History.build(declarations, known, knowledge.reference), rows)
    position = np.cumsum(period) - 1
    np.testing.assert_array_equal(seen[position[rows]], expected.to_numpy(dtype=np.float64))


def data_columns():
    from features.definitions import FEATURE_SET

    return FEATURE_SET.columns
