"""The feature set's metadata: families cover every column once, constraints name real columns."""

from __future__ import annotations

from collections import Counter

import pytest

from features.definitions import FEATURE_SET, MONOTONE, columns_without
from models.reasons import known_features


def test_every_column_is_in_exactly_one_family() -> None:
    counts = Counter(c for columns in FEATURE_SET.families.values() for c in columns)
    assert set(counts) == set(FEATURE_SET.columns)
    assert set(counts.values()) == {1}
    assert {"network", "seizure_rates", "exporter_history", "shipment_anomaly"} <= set(FEATURE_SET.families)


def test_columns_without_a_family_keep_the_order_of_the_rest() -> None:
    kept = columns_without(("network",))
    assert not set(kept) & set(FEATURE_SET.families["network"])
    assert list(kept) == [c for c in FEATURE_SET.columns if c not in FEATURE_SET.families["network"]]
    with pytest.raises(ValueError, match="unknown feature families"):
        columns_without(("netwrk",))


def test_constraints_and_reasons_cover_the_network_features() -> None:
    assert set(MONOTONE) <= set(FEATURE_SET.columns)
    network = set(FEATURE_SET.families["network"])
    assert {c for c in network if MONOTONE.get(c) == 1} == network - {"consignee_new_exporters_90d"}
    assert set(FEATURE_SET.columns) <= known_features()
    assert all(FEATURE_SET.descriptions[c] for c in FEATURE_SET.columns)


def test_the_features_reference_lists_every_column() -> None:
    from pathlib import Path

    reference = (Path(__file__).parents[2] / "docs" / "features.md").read_text()
    assert FEATURE_SET.version in reference
    assert [c for c in FEATURE_SET.columns if f"`{c}`" not in reference] == []
