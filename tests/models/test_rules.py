"""The condition language: validation names the field; compiled masks equal a row-by-row reading."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from features.definitions import FEATURE_SET
from models.rules import (
    ActiveEntry,
    ActiveRule,
    CompiledRuleSet,
    Condition,
    RuleDefinition,
    WatchlistEntryDefinition,
    builtin_rules,
)

CONDITION = TypeAdapter(Condition)
NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


def _batch(n: int = 6) -> tuple[dict[str, np.ndarray], pd.DataFrame, np.ndarray]:
    columns = {
        "declaration_id": np.array([f"D{i}" for i in range(n)], dtype=object),
        "exporter_id": np.array([f"EX{i % 3}" for i in range(n)], dtype=object),
        "consignee_id": np.array([f"CN{i}" for i in range(n)], dtype=object),
        "customs_broker_id": np.array([None, "B1", None, "B2", "B1", None][:n], dtype=object),
        "consignee_country": np.array(["NG", "AE", "US", "NG", "GB", "DE"][:n], dtype=object),
        "destination_country": np.array(["NG", "AE", "US", "GH", "GB", "DE"][:n], dtype=object),
        "transshipment_country": np.array([None, None, "AE", None, None, "AE"][:n], dtype=object),
        "port_of_loading": np.array(["INNSA"] * n, dtype=object),
        "transport_mode": np.array(["COURIER", "SEA", "AIR", "COURIER", "POST", "SEA"][:n], dtype=object),
        "hs_code": np.array(
            ["29391900", "300490", "29394100", "300420", "29391100", "847130"][:n], dtype=object
        ),
        "quantity": np.arange(1, n + 1, dtype=np.float64),
        "declared_value_usd": np.array([10.0, 2000.0, np.nan, 50.0, 5.0, 9000.0][:n]),
    }
    features = pd.DataFrame(np.zeros((n, len(FEATURE_SET.columns))), columns=list(FEATURE_SET.columns))
    features["controlled_without_authorisation"] = [1.0, 0, 0, 0, 1.0, 0][:n]
    features["unit_value_vs_tariff_norm"] = [-2.0, 0.5, -1.5, 0.0, -3.0, 1.0][:n]
    score = np.array([0.9, 0.1, 0.4, 0.05, 0.2, 0.6][:n])
    return columns, features, score


def _mask(condition: dict, entries=()) -> list[bool]:
    columns, features, score = _batch()
    rule = ActiveRule("R1", 1, "r", CONDITION.validate_python(condition), "FLAG", 1)
    outcome = CompiledRuleSet(1, [rule], entries).apply(columns, features, score, ["GREEN"] * 6, NOW)
    return [bool(hits) for hits in outcome.live]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "transport_mode", "op": "eq", "value": "COURIER"}, [1, 0, 0, 1, 0, 0]),
        ({"field": "transport_mode", "op": "in", "value": ["AIR", "POST"]}, [0, 0, 1, 0, 1, 0]),
        ({"field": "hs_code", "op": "startswith", "value": "2939"}, [1, 0, 1, 0, 1, 0]),
        ({"field": "customs_broker_id", "op": "is_null"}, [1, 0, 1, 0, 0, 1]),
        ({"field": "customs_broker_id", "op": "is_null", "value": False}, [0, 1, 0, 1, 1, 0]),
        ({"field": "declared_value_usd", "op": "lt", "value": 50}, [1, 0, 0, 0, 1, 0]),
        ({"field": "declared_value_usd", "op": "between", "value": [10, 2000]}, [1, 1, 0, 1, 0, 0]),
        ({"field": "declared_value_usd", "op": "is_null"}, [0, 0, 1, 0, 0, 0]),
        ({"field": "risk_score", "op": "ge", "value": 0.6}, [1, 0, 0, 0, 0, 1]),
        ({"field": "unit_value_vs_tariff_norm", "op": "le", "value": -1.5}, [1, 0, 1, 0, 1, 0]),
        ({"field": "feature.transport_mode", "op": "eq", "value": 0}, [1] * 6),
        (
            {
                "all": [
                    {"field": "hs_code", "op": "startswith", "value": "2939"},
                    {"not": {"field": "risk_score", "op": "gt", "value": 0.5}},
                ]
            },
            [0, 0, 1, 0, 1, 0],
        ),
        (
            {
                "any": [
                    {"field": "transport_mode", "op": "eq", "value": "POST"},
                    {"field": "quantity", "op": "gt", "value": 5},
                ]
            },
            [0, 0, 0, 0, 1, 1],
        ),
    ],
)
def test_compiled_masks(condition: dict, expected: list[int]) -> None:
    assert _mask(condition) == [bool(x) for x in expected]


def _entry(watchlist: str, entity: str, value: str, days: int = 30, entry_id: str = "E1") -> ActiveEntry:
    return ActiveEntry(
        entry_id, 1, watchlist, entity, value, NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=days)
    )


def test_watchlist_membership_per_entity_and_validity() -> None:
    entries = [
        _entry("w", "consignee", "CN3"),
        _entry("w", "exporter", "EX2", entry_id="E2"),
        _entry("c", "country", "AE", entry_id="E3"),
        _entry("h", "hs_heading", "3004", entry_id="E4"),
        _entry("r", "route", "INNSA>AE>DE", entry_id="E5"),
        _entry("b", "broker", "B2", days=-0, entry_id="E6"),  # valid_until == NOW: not valid any more
    ]
    assert _mask({"on_watchlist": "w", "entity": "consignee"}, entries) == [0, 0, 0, 1, 0, 0]
    assert _mask({"on_watchlist": "w", "entity": "exporter"}, entries) == [0, 0, 1, 0, 0, 1]
    # country: destination, consignee or transshipment country
    assert _mask({"on_watchlist": "c", "entity": "country"}, entries) == [0, 1, 1, 0, 0, 1]
    assert _mask({"on_watchlist": "h", "entity": "hs_heading"}, entries) == [0, 1, 0, 1, 0, 0]
    assert _mask({"on_watchlist": "r", "entity": "route"}, entries) == [0, 0, 0, 0, 0, 1]
    assert _mask({"on_watchlist": "b", "entity": "broker"}, entries) == [0] * 6
    assert _mask({"on_watchlist": "unknown", "entity": "broker"}, entries) == [0] * 6


def test_live_rules_raise_channels_shadow_rules_only_record() -> None:
    columns, features, score = _batch()
    consignee = TypeAdapter(Condition).validate_python({"on_watchlist": "w", "entity": "consignee"})
    courier = TypeAdapter(Condition).validate_python(
        {"field": "transport_mode", "op": "eq", "value": "COURIER"}
    )
    rules = [
        ActiveRule("RED1", 3, "front company", consignee, "RED", 10),
        ActiveRule("Y1", 1, "courier", courier, "YELLOW", 20),
        ActiveRule("S1", 2, "courier shadow", courier, "RED", 5, mode="shadow"),
    ]
    model_channel = ["RED", "GREEN", "GREEN", "GREEN", "YELLOW", "GREEN"]
    outcome = CompiledRuleSet(7, rules, [_entry("w", "consignee", "CN3")]).apply(
        columns, features, score, model_channel, NOW
    )
    assert outcome.channel == ["RED", "GREEN", "GREEN", "RED", "YELLOW", "GREEN"]
    assert [h["rule_id"] for h in outcome.live[3]] == ["RED1", "Y1"]  # precedence order
    assert outcome.live[3][0]["watchlist_entries"] == [
        {"entry_id": "E1", "version": 1, "watchlist": "w", "entity": "consignee"}
    ]
    assert [h["rule_id"] for h in outcome.shadow[0]] == ["S1"] and outcome.shadow[1] == []
    assert outcome.audit_tokens()[3] == [  # precedence order, each rule followed by its entries
        "shadow:S1@v2:RED",
        "rule:RED1@v3:RED",
        "watchlist:E1@v1",
        "rule:Y1@v1:YELLOW",
    ]
    assert outcome.rule_set_version == 7


def test_rule_validity_window_is_applied_at_evaluation_time() -> None:
    columns, features, score = _batch()
    cond = TypeAdapter(Condition).validate_python({"field": "transport_mode", "op": "eq", "value": "SEA"})
    rule = ActiveRule("R", 1, "r", cond, "RED", 1, valid_until=NOW + dt.timedelta(hours=1))
    compiled = CompiledRuleSet(1, [rule], [])
    assert compiled.apply(columns, features, score, ["GREEN"] * 6, NOW).channel[1] == "RED"
    later = NOW + dt.timedelta(hours=2)
    assert compiled.apply(columns, features, score, ["GREEN"] * 6, later).channel[1] == "GREEN"


def test_builtin_mandatory_rule_matches_the_feature() -> None:
    columns, features, score = _batch()
    [(rule_id, definition)] = builtin_rules(("controlled_without_authorisation",))
    assert rule_id == "builtin:controlled_without_authorisation"
    rule = ActiveRule(rule_id, 1, definition.name, definition.condition, "RED", 0, builtin=True)
    outcome = CompiledRuleSet(1, [rule], []).apply(columns, features, score, ["GREEN"] * 6, NOW)
    assert outcome.channel == ["RED", "GREEN", "GREEN", "GREEN", "RED", "GREEN"]


@pytest.mark.parametrize(
    ("condition", "names"),
    [
        ({"field": "consignee_name", "op": "eq", "value": "x"}, "consignee_name"),
        ({"field": "transport_mode", "op": "eq", "value": "TELEPORT"}, "TELEPORT"),
        ({"field": "destination_country", "op": "eq", "value": "Nigeria"}, "destination_country"),
        ({"field": "quantity", "op": "lt", "value": "ten"}, "quantity"),
        ({"field": "quantity", "op": "startswith", "value": "1"}, "startswith"),
        ({"field": "hs_code", "op": "lt", "value": 3}, "hs_code"),
        ({"field": "quantity", "op": "between", "value": [5, 1]}, "between"),
        ({"field": "quantity", "op": "between", "value": [1]}, "between"),
        ({"field": "quantity", "op": "in", "value": []}, "in"),
        ({"field": "quantity", "op": "matches", "value": 1}, "op"),
        ({"on_watchlist": "w", "entity": "planet"}, "entity"),
        ({"all": []}, "all"),
        ({"eval": "__import__('os')"}, "condition"),
    ],
)
def test_bad_conditions_are_refused_naming_the_field(condition: dict, names: str) -> None:
    with pytest.raises(ValidationError) as raised:
        RuleDefinition(name="x", action="RED", condition=condition)
    assert names in str(raised.value)


def test_watchlist_entries_need_an_expiry_and_values_that_fit() -> None:
    base = {
        "entity": "consignee",
        "value": "CN1",
        "reason": "r",
        "source": "s",
        "owner": "o",
        "valid_from": NOW,
    }
    with pytest.raises(ValidationError, match="valid_until"):
        WatchlistEntryDefinition(**base)
    with pytest.raises(ValidationError, match="after valid_from"):
        WatchlistEntryDefinition(**base, valid_until=NOW)
    with pytest.raises(ValidationError, match="country"):
        WatchlistEntryDefinition(
            **{**base, "entity": "country", "value": "Nigeria"}, valid_until=NOW + dt.timedelta(1)
        )
    with pytest.raises(ValidationError, match="4 digits"):
        WatchlistEntryDefinition(
            **{**base, "entity": "hs_heading", "value": "29"}, valid_until=NOW + dt.timedelta(1)
        )


def test_definitions_round_trip_through_json() -> None:
    document = {
        "name": "r",
        "action": "YELLOW",
        "condition": {
            "any": [
                {"not": {"field": "payment_terms", "op": "eq", "value": "LC"}},
                {
                    "all": [
                        {"on_watchlist": "w", "entity": "route"},
                        {"field": "quantity", "op": "between", "value": [1, 2]},
                    ]
                },
            ]
        },
    }
    definition = RuleDefinition.model_validate(document)
    dumped = definition.model_dump(mode="json")
    assert dumped["condition"]["any"][0] == {"not": {"field": "payment_terms", "op": "eq", "value": "LC"}}
    assert RuleDefinition.model_validate(dumped) == definition
