"""The bounded-memory feature path gives exactly the features and the model of the plain path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.definitions import FEATURE_SET, MONOTONE, compute_features
from features.history import History
from features.reference import load_reference
from models.estimator import fit_booster
from training.backtest import _raw_scores
from training.config import TrainingConfig
from training.datasets import (
    assemble_blocks,
    block_bounds,
    block_of,
    build_features_by_blocks,
    build_features_lean,
    compact_declarations,
    features_in_chunks,
    history_in_chunks,
)
from training.labels import declaration_labels
from training.synthetic import generate_history


@pytest.fixture(scope="module")
def history_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    declarations, seizures, _ = generate_history(rows=24_000, years=2.0, seed=5)
    return declarations, seizures


@pytest.fixture(scope="module")
def plain_features(history_tables) -> pd.DataFrame:
    declarations, seizures = history_tables
    reference = load_reference()
    return compute_features(declarations, History.build(declarations, seizures, reference), reference)


@pytest.fixture(scope="module")
def lean_features(history_tables) -> pd.DataFrame:
    declarations, seizures = history_tables
    # uneven slices: several history segments, a short last feature slice
    return build_features_lean(
        declarations, seizures, load_reference(), chunk_rows=7_000, history_chunk_rows=9_000
    )


def _assert_identical(lean: pd.DataFrame, plain: pd.DataFrame) -> None:
    assert list(lean.columns) == list(plain.columns) == list(FEATURE_SET.columns)
    assert lean.dtypes.equals(plain.dtypes)
    assert lean.index.equals(plain.index)
    left, right = lean.to_numpy(), plain.to_numpy()
    np.testing.assert_array_equal(np.isnan(left), np.isnan(right))
    assert np.array_equal(left, right, equal_nan=True)


def test_lean_features_are_bit_identical_to_one_build_and_one_call(lean_features, plain_features):
    _assert_identical(lean_features, plain_features)
    assert np.isnan(plain_features.to_numpy()).any()  # the comparison covers missing values too


def test_each_lean_step_alone_gives_the_same_features(history_tables, plain_features):
    declarations, seizures = history_tables
    reference = load_reference()
    chunked_history = history_in_chunks(declarations, seizures, reference, chunk_rows=5_000)
    assert len(chunked_history.segments) == 5
    _assert_identical(compute_features(declarations, chunked_history, reference), plain_features)
    one_history = History.build(declarations, seizures, reference)
    _assert_identical(
        features_in_chunks(declarations, one_history, reference, chunk_rows=3_333), plain_features
    )
    compact = compact_declarations(declarations)
    _assert_identical(compute_features(compact, one_history, reference), plain_features)


def test_compact_declarations_keeps_values_and_leaves_the_input_alone(history_tables):
    declarations, _ = history_tables
    dtypes = declarations.dtypes.copy()
    compact = compact_declarations(declarations)
    assert declarations.dtypes.equals(dtypes)
    assert isinstance(compact["exporter_id"].dtype, pd.CategoricalDtype)
    assert not isinstance(compact["declaration_id"].dtype, pd.CategoricalDtype)  # unique: stays text
    for name in declarations.columns:
        assert compact[name].astype(object).equals(declarations[name].astype(object)), name
    # the lineage hash logged with a model does not see the difference
    assert np.array_equal(
        pd.util.hash_pandas_object(compact, index=False),
        pd.util.hash_pandas_object(declarations, index=False),
    )


def test_training_on_the_compact_copy_records_and_labels_what_the_loaded_frame_gives(history_tables):
    """`make train` keeps only the compact copy: its labels and MLflow lineage must not move."""
    import mlflow

    declarations, seizures = history_tables
    compact = compact_declarations(declarations)
    for frame in (declarations, compact):
        assert frame["exporter_id"].map(type).eq(str).all()  # what MLflow's digest keeps as text
    loaded = mlflow.data.from_pandas(declarations, source="declarations.parquet", name="d")
    kept = mlflow.data.from_pandas(compact, source="declarations.parquet", name="d")
    assert kept.digest == loaded.digest
    assert kept.schema == loaded.schema
    before = pd.Timestamp(declarations["declared_at"].quantile(0.7))
    for known_before in (None, before):
        expected = declaration_labels(declarations, seizures, 180, known_before=known_before)
        got = declaration_labels(compact, seizures, 180, known_before=known_before)
        assert np.array_equal(got.diverted, expected.diverted)
        assert np.array_equal(got.seized_kg, expected.seized_kg)


def test_a_booster_fitted_on_lean_features_predicts_exactly_as_on_plain_features(
    history_tables, lean_features, plain_features
):
    declarations, seizures = history_tables
    config = TrainingConfig(booster={"max_rounds": 25, "early_stopping_rounds": 10})
    labels = declaration_labels(declarations, seizures, config.label_window_days).diverted
    order = declarations["declared_at"].rank(method="first").to_numpy()
    train = order <= 0.7 * len(order)
    validation = ~train
    columns = list(FEATURE_SET.columns)
    params = config.booster_params(monotone=[MONOTONE.get(c, 0) for c in columns])

    def fit(features: pd.DataFrame):
        return fit_booster(
            features.loc[train, columns],
            labels[train],
            features.loc[validation, columns],
            labels[validation],
            FEATURE_SET.categorical,
            params,
        )

    plain_booster, lean_booster = fit(plain_features), fit(lean_features)
    assert lean_booster.model_to_string() == plain_booster.model_to_string()
    everything = np.ones(len(declarations), dtype=bool)
    whole = plain_booster.predict(plain_features[columns].to_numpy(np.float64), raw_score=True)
    np.testing.assert_array_equal(_raw_scores(lean_booster, lean_features, everything, columns), whole)


@pytest.mark.parametrize("blocks", [1, 3, 7])
def test_features_by_time_blocks_equal_one_build(history_tables, plain_features, blocks: int):
    """The Dask engine's plan, in one process: each block against what was known before it ends."""
    declarations, seizures = history_tables
    # the plan must attribute what a whole build does: a seizure reported before the
    # declaration it names (a data-entry slip the contract admits) and seizures naming
    # only an exporter or a consignee
    seizures = seizures.copy()
    named = seizures["declaration_id"].notna().to_numpy().nonzero()[0][-40:]
    filed = declarations.set_index("declaration_id")["declared_at"]
    early = filed.reindex(seizures["declaration_id"].iloc[named]).to_numpy() - pd.Timedelta(days=200)
    seizures.loc[seizures.index[named], "seized_at"] = early
    assert seizures["declaration_id"].isna().any()
    reference = load_reference()
    expected = compute_features(declarations, History.build(declarations, seizures, reference), reference)
    _assert_identical(build_features_by_blocks(declarations, seizures, reference, blocks), expected)


def test_time_blocks_split_the_declarations_evenly_and_cover_them():
    declared_at = pd.Series(pd.date_range("2024-01-01", periods=1000, freq="h"))
    ends = block_bounds(declared_at, 4)
    assert len(ends) == 4 and (np.diff(ends) > 0).all()
    counts = np.bincount(block_of(declared_at, ends))
    assert counts.tolist() == [250, 250, 250, 250]
    assert block_bounds(declared_at.iloc[:0], 4).size == 0


def test_assembling_blocks_refuses_missing_or_repeated_rows(plain_features):
    parts = [plain_features.iloc[:100], plain_features.iloc[100:]]
    assert assemble_blocks(parts[::-1], plain_features.index).index.equals(plain_features.index)
    with pytest.raises(ValueError, match="repeated"):
        assemble_blocks([*parts, plain_features.iloc[:1]], plain_features.index)
    with pytest.raises(ValueError, match="rows for"):
        assemble_blocks(parts[1:], plain_features.index)
