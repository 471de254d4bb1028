"""Features from partitions of the history (`features.partitioned`) equal one whole build, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.definitions import FEATURE_SET, compute_features
from features.history import History
from features.partitioned import FAMILIES, compute_partitioned_features, time_cuts
from features.reference import load_reference
from features.validation import load_contract_tables


def assert_identical(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    """Same rows, columns and float64 bits (NaN where NaN)."""
    assert list(actual.columns) == list(expected.columns)
    assert actual.index.equals(expected.index)
    a, b = expected.to_numpy(np.float64), actual.to_numpy(np.float64)
    differs = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    bad = {c: int(n) for c, n in zip(expected.columns, differs.sum(axis=0), strict=True) if n}
    assert not bad, f"rows differing per column: {bad}"


def test_every_feature_column_belongs_to_exactly_one_family() -> None:
    placed = [c for columns in FAMILIES.values() for c in columns]
    assert sorted(placed) == sorted(FEATURE_SET.columns), (
        "place each feature column in one family of features.partitioned.FAMILIES"
    )


def test_time_cuts_fall_at_midnight_inside_the_history() -> None:
    declared_at = pd.Series(pd.date_range("2023-01-01 07:13", periods=5000, freq="37min"))
    cuts = time_cuts(declared_at, 6)
    assert len(cuts) == 5 and (cuts % 86_400 == 0).all() and (np.diff(cuts) > 0).all()
    assert time_cuts(declared_at, 1).size == 0


@pytest.mark.parametrize(("partitions", "chunks"), [(3, 5), (1, 1)])
def test_partitioned_features_equal_one_build(small_history, partitions: int, chunks: int) -> None:
    tables = load_contract_tables(
        small_history / "declarations.parquet", small_history / "seizures.parquet", None, rejects_dir=None
    )
    declarations, seizures = tables.declarations, tables.seizures
    # the history exercises what partitioning could get wrong: seizures across chunks,
    # seizures naming only an exporter or consignee, entities in several partitions
    assert seizures["declaration_id"].isna().any() and seizures["declaration_id"].notna().any()
    reference = load_reference()
    expected = compute_features(declarations, History.build(declarations, seizures, reference), reference)
    actual = compute_partitioned_features(declarations, seizures, reference, partitions, chunks)
    assert_identical(expected, actual)
