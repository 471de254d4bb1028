"""Point-in-time guarantees of the feature layer: no leakage, and offline == online."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.definitions import FEATURE_SET, compute_features, compute_online_features
from features.events import _search
from features.history import History
from features.reference import load_reference

REFERENCE = load_reference()
HS_CODES = ["300490", "293942", "292250", "300420", "293391", "30049099"]
DESCRIPTIONS = ["PARACETAMOL TABLETS", "TRAMADOL 225MG TABLETS", "DICLOFENAC", "PSEUDOEPHEDRINE HCL", ""]


def make_history(rng: np.random.Generator, n: int, n_seizures: int, start: str = "2023-01-01"):
    """Typed contract frames (as the validator returns them) with small entity pools."""
    seconds = np.sort(rng.integers(0, 400 * 86_400, n))
    # force some exact ties in filing time
    if n > 4:
        seconds[1] = seconds[0]
    declared_at = pd.Timestamp(start) + pd.to_timedelta(seconds, unit="s")
    s = lambda values: pd.Series(values, dtype="str")  # noqa: E731
    declarations = pd.DataFrame(
        {
            "declaration_id": s([f"SB{i:07d}" for i in range(n)]),
            "declared_at": pd.Series(declared_at.astype("datetime64[us]")),
            "exporter_id": s(rng.choice([f"E{i}" for i in range(8)], n)),
            "consignee_id": s(rng.choice([f"C{i}" for i in range(10)], n)),
            "consignee_country": s(rng.choice(["NG", "US", "GH", "AE"], n)),
            "destination_country": s(rng.choice(["NG", "US", "GH"], n)),
            "port_of_loading": s(rng.choice(["INNSA", "INMUN", "INBOM"], n)),
            "transport_mode": s(rng.choice(["SEA", "AIR", "COURIER"], n)),
            "hs_code": s(rng.choice(HS_CODES, n)),
            "goods_description": s(rng.choice(DESCRIPTIONS, n)),
            "quantity": rng.uniform(1, 1000, n),
            "quantity_unit": s(rng.choice(["KGM", "NOS"], n)),
            "gross_weight_kg": rng.uniform(1, 5000, n),
            "declared_value_usd": rng.uniform(10, 100_000, n),
            "customs_broker_id": s(rng.choice(["B1", "B2", None], n)),
            "payment_terms": s(rng.choice(["LC", "ADVANCE", None], n)),
            "export_authorization_id": s(rng.choice(["NC/2023/1", None], n)),
            "transshipment_country": s(rng.choice(["AE", None, None], n)),
        }
    )
    linked = rng.integers(0, n, n_seizures)
    lag = rng.integers(0, 200 * 86_400, n_seizures)
    kind = rng.integers(0, 3, n_seizures)
    seizures = pd.DataFrame(
        {
            "seizure_id": s([f"S{i}" for i in range(n_seizures)]),
            "seized_at": pd.Series(
                (declared_at[linked] + pd.to_timedelta(lag, unit="s")).astype("datetime64[us]")
            ),
            "declaration_id": s(np.where(kind == 0, declarations["declaration_id"].to_numpy()[linked], None)),
            "exporter_id": s(np.where(kind == 1, declarations["exporter_id"].to_numpy()[linked], None)),
            "consignee_id": s(np.where(kind == 2, declarations["consignee_id"].to_numpy()[linked], None)),
            "country": s(["IN"] * n_seizures),
            "substance": s(["tramadol"] * n_seizures),
            "quantity_kg": rng.uniform(0, 100, n_seizures),
            "agency": s(["NCB"] * n_seizures),
        }
    )
    return declarations, seizures.sort_values("seized_at", kind="stable").reset_index(drop=True)


def offline(declarations: pd.DataFrame, seizures: pd.DataFrame) -> pd.DataFrame:
    return compute_features(declarations, History.build(declarations, seizures, REFERENCE), REFERENCE)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), cut=st.floats(0.1, 0.9))
def test_appending_later_rows_never_changes_earlier_features(seed: int, cut: float) -> None:
    declarations, seizures = make_history(np.random.default_rng(seed), 120, 30)
    cutoff = declarations["declared_at"].quantile(cut)
    earlier = declarations["declared_at"] < cutoff
    # what was known before the cutoff: earlier declarations, seizures reported before it
    past = offline(declarations.loc[earlier], seizures.loc[seizures["seized_at"] < cutoff])
    full = offline(declarations, seizures)
    pd.testing.assert_frame_equal(past, full.loc[earlier], check_exact=False, rtol=1e-9, atol=1e-9)


def test_own_and_same_second_declarations_are_invisible() -> None:
    declarations, seizures = make_history(np.random.default_rng(1), 50, 0)
    declarations.loc[:, "exporter_id"] = "E1"
    features = offline(declarations, seizures)
    # rows 0 and 1 share a filing second: neither sees the other
    assert features.loc[0, "exporter_prior_declarations"] == 0
    assert features.loc[1, "exporter_prior_declarations"] == 0
    assert features.loc[2, "exporter_prior_declarations"] == 2
    assert np.isnan(features.loc[0, "exporter_tenure_days"])


def test_seizure_counts_from_seized_at_including_exporter_only_seizures() -> None:
    declarations, _ = make_history(np.random.default_rng(2), 30, 0)
    declarations.loc[:, "exporter_id"] = "E1"
    t = declarations["declared_at"]
    seizures = pd.DataFrame(
        {
            "seizure_id": pd.Series(["S1"], dtype="str"),
            "seized_at": pd.Series([t.iloc[10] + pd.Timedelta(seconds=1)]).astype("datetime64[us]"),
            "declaration_id": pd.Series([None], dtype="str"),
            "exporter_id": pd.Series(["E1"], dtype="str"),
            "consignee_id": pd.Series([None], dtype="str"),
            "country": pd.Series(["IN"], dtype="str"),
            "substance": pd.Series(["tramadol"], dtype="str"),
            "quantity_kg": [1.0],
            "agency": pd.Series(["NCB"], dtype="str"),
        }
    )
    features = offline(declarations, seizures)
    after = t > seizures["seized_at"].iloc[0]
    assert (features.loc[~after, "exporter_prior_seizures"] == 0).all()
    assert (features.loc[after, "exporter_prior_seizures"] == 1).all()
    assert features.loc[after, "exporter_days_since_seizure"].ge(0).all()


def test_unknown_entities_and_categories_are_scored_not_errors() -> None:
    declarations, seizures = make_history(np.random.default_rng(3), 60, 10)
    history = History.build(declarations, seizures, REFERENCE)
    new = declarations.tail(3).copy()
    new["declared_at"] = new["declared_at"] + pd.Timedelta(days=30)
    new["exporter_id"] = "NEVER-SEEN"
    new["destination_country"] = "ZW"
    new["transport_mode"] = "RAIL"
    new["customs_broker_id"] = pd.Series([None] * 3, dtype="str", index=new.index)
    features = compute_features(new, history, REFERENCE)
    assert list(features.columns) == list(FEATURE_SET.columns)
    assert (features["exporter_prior_declarations"] == 0).all()
    assert features["exporter_tenure_days"].isna().all()
    assert np.isfinite(features["destination_seizure_rate"]).all()


@pytest.mark.parametrize("chunk", [1, 7, 100])
def test_online_appends_match_offline_on_thousands_of_declarations(chunk: int) -> None:
    """The service's path (base history + appended segments) equals the offline build exactly.

    A filing system records each block of declarations, then scores it: the recorded rows
    never count for themselves (strictly before filing time) and never for each other
    beyond what the offline history shows. Seizures reach the service when reported, which
    may be before the block naming their declaration is recorded.
    """
    declarations, seizures = make_history(np.random.default_rng(4), 2200, 300)
    full = offline(declarations, seizures)
    split = 1900
    cutoff = declarations["declared_at"].iloc[split]
    history = History.build(
        declarations.iloc[:split], seizures.loc[seizures["seized_at"] < cutoff], REFERENCE
    )
    online_parts = []
    pending = seizures.loc[seizures["seized_at"] >= cutoff]
    for start in range(split, len(declarations), chunk):
        block = declarations.iloc[start : start + chunk]
        # seizures reported by the time the block is filed reach the service first ...
        block_end = block["declared_at"].iloc[-1]
        ready = pending.loc[pending["seized_at"] < block_end]
        if len(ready):
            history = history.append(None, ready, REFERENCE)
            pending = pending.loc[pending["seized_at"] >= block_end]
        # ... then the block is recorded and scored, as a filing system calls the service
        history = history.append(block, None, REFERENCE)
        online_parts.append(compute_online_features(block, history, REFERENCE))
        if len(history.segments) > 40:  # the service's store compacts the same way
            seen = declarations.iloc[: start + chunk]
            history = History.build(seen, seizures.loc[seizures["seized_at"] < block_end], REFERENCE)
    online = pd.concat(online_parts)
    pd.testing.assert_frame_equal(online, full.iloc[split:], check_exact=True)


def test_seizures_naming_a_declaration_count_for_its_exporter_consignee_broker_and_route() -> None:
    declarations, _ = make_history(np.random.default_rng(5), 40, 0)
    declarations.loc[:, "exporter_id"] = "E1"
    declarations.loc[:, "consignee_id"] = "C1"
    declarations.loc[:, "customs_broker_id"] = "B1"
    declarations.loc[:, "destination_country"] = "NG"
    first = declarations.iloc[0]
    seizures = pd.DataFrame(
        {
            "seizure_id": pd.Series(["S1"], dtype="str"),
            "seized_at": pd.Series([declarations["declared_at"].iloc[20]]).astype("datetime64[us]"),
            "declaration_id": pd.Series([first["declaration_id"]], dtype="str"),
            "exporter_id": pd.Series([None], dtype="str"),
            "consignee_id": pd.Series([None], dtype="str"),
            "country": pd.Series(["NG"], dtype="str"),
            "substance": pd.Series(["tramadol"], dtype="str"),
            "quantity_kg": [3.0],
            "agency": pd.Series(["NCB"], dtype="str"),
        }
    )
    features = offline(declarations, seizures)
    later = declarations["declared_at"] > seizures["seized_at"].iloc[0]
    assert (features.loc[later, "exporter_prior_seizures"] == 1).all()
    assert (features.loc[later, "consignee_prior_seizures"] == 1).all()
    assert (features.loc[~later, "exporter_prior_seizures"] == 0).all()
    assert (
        features.loc[later, "broker_seizure_rate"] > features.loc[~later, "broker_seizure_rate"].max()
    ).all()
    assert (
        features.loc[later, "destination_seizure_rate"]
        > features.loc[~later, "destination_seizure_rate"].max()
    ).all()
    # the same through the service's path: the seizure appended after the declarations
    history = History.build(declarations, seizures.iloc[:0], REFERENCE).append(None, seizures, REFERENCE)
    online = compute_features(declarations, history, REFERENCE)
    pd.testing.assert_frame_equal(online, features, check_exact=True)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_events=st.integers(0, 3000), n_queries=st.integers(1, 400))
def test_sorted_search_answers_exactly_as_searchsorted(seed: int, n_events: int, n_queries: int) -> None:
    """Queries answered in sorted order (large batches) come back in query order, unchanged."""
    rng = np.random.default_rng(seed)
    composite = np.sort(rng.integers(0, 1 << 40, n_events))
    needles = [rng.integers(0, 1 << 40, n_queries) for _ in range(3)]
    if n_events:  # exact hits and duplicates, where side="left" matters
        needles[1][: n_queries // 2] = rng.choice(composite, n_queries // 2)
    found = _search(composite, *needles)
    for needle, answer in zip(needles, found, strict=True):
        np.testing.assert_array_equal(answer, np.searchsorted(composite, needle, side="left"))
