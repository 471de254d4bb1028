"""Targeting rules and watchlists: a typed condition language compiled to vectorised masks.

A rule is a condition over a scoring batch (declaration fields of the data contract,
feature columns of `features.definitions.FEATURE_SET`, the model's `risk_score`, and
membership of a watchlist) with an action: RED, YELLOW or FLAG (a hit, no channel
change). Conditions are pydantic models, never evaluated text: unknown fields, operators
that do not fit the field, and values of the wrong type are a `ValidationError` naming
the field. The same compiled rule set serves backtests (training) and the service.

Condition JSON, for example::

    {"all": [
        {"on_watchlist": "front-companies", "entity": "consignee"},
        {"field": "transport_mode", "op": "eq", "value": "COURIER"},
        {"field": "hs_code", "op": "startswith", "value": "2939"},
        {"field": "unit_value_vs_tariff_norm", "op": "lt", "value": -1.0},
        {"not": {"field": "risk_score", "op": "ge", "value": 0.5}}
    ]}
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from features.contract import DECLARATION_COLUMNS
from features.definitions import FEATURE_SET
from features.history import columns_of

ACTIONS = ("RED", "YELLOW", "FLAG")
#: Severity of a channel: a rule can raise a declaration's channel, never lower it.
SEVERITY = {"GREEN": 0, "YELLOW": 1, "RED": 2}
ENTITIES = ("exporter", "consignee", "broker", "country", "hs_heading", "route")
SCORE_FIELD = "risk_score"
FEATURE_PREFIX = "feature."

_DECLARATION = {c.name: c for c in DECLARATION_COLUMNS if c.kind != "datetime"}
#: Field name -> kind ("string" or "number"), and the allowed values of enumerated fields.
DECLARATION_FIELDS = frozenset(_DECLARATION)
FIELD_KINDS: dict[str, str] = {}
FIELD_VALUES: dict[str, frozenset[str]] = {}
for _column in _DECLARATION.values():
    FIELD_KINDS[_column.name] = "number" if _column.kind == "number" else "string"
    if _column.kind == "enum":
        FIELD_VALUES[_column.name] = frozenset(_column.enum)
for _name in FEATURE_SET.columns:
    # features sharing a contract column's name are reached as "feature.<name>"
    FIELD_KINDS[_name if _name not in _DECLARATION else FEATURE_PREFIX + _name] = "number"
    FIELD_KINDS.setdefault(FEATURE_PREFIX + _name, "number")
FIELD_KINDS[SCORE_FIELD] = "number"

_STRING_OPS = frozenset({"eq", "ne", "in", "is_null", "startswith"})
_NUMBER_OPS = frozenset({"eq", "ne", "in", "lt", "le", "gt", "ge", "between", "is_null"})
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_DIGITS = re.compile(r"^[0-9]{2,8}$")
_LOCODE = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}$")
_ROUTE = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}(>[A-Z]{2}){1,2}$")


def _check_string(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"field {name!r} compares with non-empty strings, got {value!r}")
    allowed = FIELD_VALUES.get(name)
    if allowed is not None and value not in allowed:
        raise ValueError(f"field {name!r}: {value!r} is not one of {sorted(allowed)}")
    kind = _DECLARATION[name].kind
    if kind == "country" and not _COUNTRY.match(value):
        raise ValueError(f"field {name!r}: {value!r} is not an ISO 3166-1 alpha-2 code (two capitals)")
    if kind == "locode" and not _LOCODE.match(value):
        raise ValueError(f"field {name!r}: {value!r} is not a UN/LOCODE (5 characters)")
    return value


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValueError(f"field {name!r} compares with finite numbers, got {value!r}")
    return float(value)


class Compare(BaseModel):
    """`field op value`: a declaration field, a feature, or `risk_score`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    op: Literal["eq", "ne", "in", "lt", "le", "gt", "ge", "between", "is_null", "startswith"]
    value: Any = None

    @field_validator("field")
    @classmethod
    def _known_field(cls, name: str) -> str:
        if name not in FIELD_KINDS:
            raise ValueError(
                f"unknown field {name!r}: use a declaration field, a feature of {FEATURE_SET.name} "
                f"{FEATURE_SET.version} (or 'feature.<name>'), or {SCORE_FIELD!r}"
            )
        return name

    @model_validator(mode="after")
    def _value_fits(self) -> Compare:
        kind = FIELD_KINDS[self.field]
        allowed = _STRING_OPS if kind == "string" else _NUMBER_OPS
        if self.op not in allowed:
            raise ValueError(f"operator {self.op!r} does not apply to {kind} field {self.field!r}")
        if (
            self.op == "startswith"
            and self.field == "hs_code"
            and (not isinstance(self.value, str) or not _DIGITS.match(self.value))
        ):
            raise ValueError(f"field 'hs_code': startswith takes 2-8 digits, got {self.value!r}")
        check = _check_string if kind == "string" else _check_number
        if self.op == "is_null":
            if self.value not in (None, True, False):
                raise ValueError(f"field {self.field!r}: is_null takes true, false or no value")
            object.__setattr__(self, "value", self.value is not False)
        elif self.op == "in":
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"field {self.field!r}: 'in' takes a non-empty list")
            object.__setattr__(self, "value", [check(self.field, v) for v in self.value])
        elif self.op == "between":
            if not isinstance(self.value, list) or len(self.value) != 2:
                raise ValueError(f"field {self.field!r}: 'between' takes [low, high]")
            low, high = (check(self.field, v) for v in self.value)
            if low > high:
                raise ValueError(f"field {self.field!r}: 'between' low {low} is above high {high}")
            object.__setattr__(self, "value", [low, high])
        elif self.op == "startswith":
            if not isinstance(self.value, str) or not self.value:
                raise ValueError(f"field {self.field!r}: startswith takes a non-empty string")
        else:
            object.__setattr__(self, "value", check(self.field, self.value))
        return self


class OnWatchlist(BaseModel):
    """The declaration's `entity` is an entry of watchlist `on_watchlist` (valid at scoring time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_watchlist: str = Field(min_length=1, max_length=128)
    entity: Literal["exporter", "consignee", "broker", "country", "hs_heading", "route"]


class AllOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    all: list[Condition] = Field(min_length=1, max_length=64)


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    any: list[Condition] = Field(min_length=1, max_length=64)


class Not(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)
    not_: Condition = Field(alias="not")


def _condition_kind(value: object) -> str | None:
    if isinstance(value, dict):
        for key in ("all", "any", "not", "on_watchlist", "field"):
            if key in value:
                return key
        return None
    return {AllOf: "all", AnyOf: "any", Not: "not", OnWatchlist: "on_watchlist", Compare: "field"}.get(
        type(value)
    )


Condition = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[Not, Tag("not")]
    | Annotated[OnWatchlist, Tag("on_watchlist")]
    | Annotated[Compare, Tag("field")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition is {field, op, value}, {on_watchlist, entity}, {all}, {any} or {not}",
    ),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()


class RuleDefinition(BaseModel):
    """What a risk officer writes: the condition, the action, precedence, validity."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    condition: Condition
    action: Literal["RED", "YELLOW", "FLAG"]
    precedence: int = Field(100, ge=0, le=1_000_000, description="lower wins among rules of one action")
    requires_approval: bool = False
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None
    description: str = Field("", max_length=4000)

    @model_validator(mode="after")
    def _validity(self) -> RuleDefinition:
        for name in ("valid_from", "valid_until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                setattr(self, name, value.replace(tzinfo=dt.UTC))
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class WatchlistEntryDefinition(BaseModel):
    """One entity on a watchlist, with why, from where, whose, and until when (mandatory)."""

    model_config = ConfigDict(extra="forbid")

    entity: Literal["exporter", "consignee", "broker", "country", "hs_heading", "route"]
    value: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=4000)
    source: str = Field(min_length=1, max_length=400)
    owner: str = Field(min_length=1, max_length=128)
    valid_from: dt.datetime
    valid_until: dt.datetime

    @model_validator(mode="after")
    def _checks(self) -> WatchlistEntryDefinition:
        for name in ("valid_from", "valid_until"):
            value = getattr(self, name)
            if value.tzinfo is None:
                setattr(self, name, value.replace(tzinfo=dt.UTC))
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        pattern = {"country": _COUNTRY, "route": _ROUTE}.get(self.entity)
        if pattern is not None and not pattern.match(self.value):
            raise ValueError(
                f"value {self.value!r} does not fit entity {self.entity!r} "
                + ("(ISO alpha-2 country)" if self.entity == "country" else "(PORTL>CC or PORTL>VIA>CC)")
            )
        if self.entity == "hs_heading" and not re.fullmatch(r"[0-9]{4}", self.value):
            raise ValueError(f"value {self.value!r}: an HS heading is 4 digits")
        return self


# --- compiled form ----------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveRule:
    """A rule version as the evaluator sees it."""

    rule_id: str
    version: int
    name: str
    condition: Any  # a Condition model
    action: str
    precedence: int
    mode: Literal["live", "shadow"] = "live"
    builtin: bool = False
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None


@dataclass(frozen=True)
class ActiveEntry:
    entry_id: str
    version: int
    watchlist: str
    entity: str
    value: str
    valid_from: dt.datetime
    valid_until: dt.datetime


def hit_token(rule: ActiveRule) -> str:
    """Compact form of a hit for the audit row's rule_hits: `rule:<id>@v<n>:<action>` (or `shadow:`)."""
    prefix = "rule" if rule.mode == "live" else "shadow"
    return f"{prefix}:{rule.rule_id}@v{rule.version}:{rule.action}"


def entry_token(entry: ActiveEntry) -> str:
    return f"watchlist:{entry.entry_id}@v{entry.version}"


@dataclass
class RuleOutcome:
    """Per declaration: channel after live rules, live hits (dicts), shadow hits, audit tokens.

    `live[i]` lists the live rules that fired on row i (rule_id, version, name, action,
    mode, watchlist_entries); `tokens[i]` names every hit, shadow ones included, and the
    watchlist entries involved (`rule:<id>@v<n>:<action>`, `shadow:...`, `watchlist:<id>@v<n>`).
    Rows without any hit share one empty list: treat them as read-only.
    """

    channel: list[str]
    live: list[list[dict]]
    shadow: list[list[dict]]
    tokens: list[list[str]]
    rule_set_version: int

    def audit_tokens(self) -> list[list[str]]:
        return self.tokens


def _prefixes(values: np.ndarray, length: int) -> np.ndarray:
    """First `length` characters of each text (None stays None), truncated by numpy when none is missing."""
    if not (values == None).any():  # noqa: E711 - elementwise comparison
        return values.astype(str).astype(f"<U{length}").astype(object)
    return np.array([v[:length] if isinstance(v, str) else None for v in values], dtype=object)


def entity_keys(entity: str, columns: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The batch's values an entry of `entity` is matched against (several arrays: any matches)."""
    if entity == "exporter":
        return [columns["exporter_id"]]
    if entity == "consignee":
        return [columns["consignee_id"]]
    if entity == "broker":
        return [columns["customs_broker_id"]]
    if entity == "country":
        return [
            columns["destination_country"],
            columns["consignee_country"],
            columns["transshipment_country"],
        ]
    if entity == "hs_heading":
        return [_prefixes(columns["hs_code"], 4)]
    if entity == "route":
        port, destination = columns["port_of_loading"], columns["destination_country"]
        via = columns["transshipment_country"]
        direct = port + ">" + destination  # object arrays: elementwise str concatenation
        has_via = np.fromiter((isinstance(v, str) and v != "" for v in via), dtype=bool, count=len(via))
        routed = np.full(len(via), "", dtype=object)
        if has_via.any():
            routed[has_via] = port[has_via] + ">" + via[has_via] + ">" + destination[has_via]
        return [direct, routed]
    raise ValueError(f"unknown entity {entity!r}")


class Batch:
    """One scoring batch as the evaluator reads it; masks and lookups are memoised per batch."""

    def __init__(
        self,
        columns: Mapping[str, np.ndarray],
        features: pd.DataFrame | Mapping[str, np.ndarray] | None,
        risk_score: np.ndarray | None,
        watchlists: Mapping[str, dict[str, list[ActiveEntry]]],
        node_keys: Mapping[int, str] | None = None,
        comparisons: Mapping[int, object] | None = None,
    ) -> None:
        self.columns = columns
        self.features = features
        self.risk_score = risk_score
        self.n = len(columns["declaration_id"])
        self.watchlists = watchlists
        self._memo: dict[object, np.ndarray] = {}
        # identical sub-conditions of different rules share one key: evaluated once per batch
        self._node_keys = node_keys or {}
        self._comparisons = comparisons if comparisons is not None else {}
        self._feature_matrix: np.ndarray | None = None
        self._feature_index: dict[str, int] = {}
        self._keys: dict[str, list[np.ndarray]] = {}
        self._codes: dict[tuple[str, int | None], tuple[np.ndarray, dict[str, int]]] = {}
        self._found: dict[str, dict[int, list[ActiveEntry]]] = {}

    def values(self, name: str) -> np.ndarray:
        if name == SCORE_FIELD:
            if self.risk_score is None:
                raise ValueError("this rule reads risk_score, and no model score is available here")
            return np.asarray(self.risk_score, dtype=np.float64)
        if name in _DECLARATION:
            return self.columns[name]
        return self.feature(name.removeprefix(FEATURE_PREFIX))

    def feature(self, name: str) -> np.ndarray:
        """A feature column (the frame is converted to one float matrix once per batch)."""
        if isinstance(self.features, Mapping):  # a few columns, e.g. read back from the model's hits
            return np.asarray(self.features[name], dtype=np.float64)
        if self._feature_matrix is None:
            if self.features is None:
                raise ValueError(f"this rule reads feature {name!r}, and no features are available here")
            self._feature_matrix = self.features.to_numpy(dtype=np.float64)
            self._feature_index = {column: i for i, column in enumerate(self.features.columns)}
        return self._feature_matrix[:, self._feature_index[name]]

    def score(self) -> np.ndarray:
        if self.risk_score is None:
            raise ValueError("this rule reads risk_score, and no model score is available here")
        return self.risk_score

    def codes(self, name: str, prefix: int | None = None) -> tuple[np.ndarray, dict[str, int]]:
        """A text column (or its first `prefix` characters) as integer codes (-1: missing), per batch."""
        key = (name, prefix)
        found = self._codes.get(key)
        if found is None:
            values = self.columns[name]
            if prefix is not None:
                values = _prefixes(values, prefix)
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            found = self._codes[key] = (codes, {u: i for i, u in enumerate(uniques.tolist())})
        return found

    def keys(self, entity: str) -> list[np.ndarray]:
        if entity not in self._keys:
            self._keys[entity] = entity_keys(entity, self.columns)
        return self._keys[entity]

    def mask(self, condition) -> np.ndarray:
        key = self._node_keys.get(id(condition), id(condition))
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = _evaluate(condition, self)
        return found

    def found(self, entity: str) -> dict[int, list[ActiveEntry]]:
        """Rows whose `entity` is on any watchlist, with the entries: one dict lookup per row and key."""
        rows = self._found.get(entity)
        if rows is None:
            rows = self._found[entity] = {}
            table = self.watchlists.get(entity)
            if table:
                for values in self.keys(entity):
                    listed = values.tolist()
                    # set intersection in C; then one pass for the rows of the (few) listed values
                    matched = table.keys() & set(listed)
                    if matched:
                        for i, value in enumerate(listed):
                            if value in matched:
                                rows.setdefault(i, []).extend(table[value])
        return rows

    def listed(self, watchlist: str, entity: str) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        rows = [
            i for i, entries in self.found(entity).items() if any(e.watchlist == watchlist for e in entries)
        ]
        mask[rows] = True
        return mask

    def matched_entries(self, watchlist: str, entity: str, row: int) -> list[ActiveEntry]:
        out: dict[str, ActiveEntry] = {}
        for entry in self.found(entity).get(row, ()):
            if entry.watchlist == watchlist:
                out.setdefault(entry.entry_id, entry)
        return list(out.values())


def _string_mask(condition: Compare, batch: Batch) -> np.ndarray:
    """eq / ne / in / startswith / is_null on a text column, through its per-batch codes."""
    op, value = condition.op, condition.value
    if op == "startswith":
        codes, lookup = batch.codes(condition.field, len(value))
        code = lookup.get(value)
        return np.zeros(batch.n, dtype=bool) if code is None else codes == code
    codes, lookup = batch.codes(condition.field)
    if op == "is_null":
        # missing is code -1; an empty string counts as missing too
        nulls = (codes == -1) | (codes == lookup.get("", -2))
        return nulls if value else ~nulls
    wanted = [value] if op in ("eq", "ne") else value
    table = np.zeros(len(lookup) + 1, dtype=bool)  # the last slot answers code -1 (missing)
    table[[lookup[v] for v in wanted if v in lookup]] = True
    mask = table[codes]
    return ~mask & (codes != -1) if op == "ne" else mask


_COMPARE = {
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
}


def compile_comparison(condition: Compare):
    """A `Compare` as a function of the batch, with field lookup and operator resolved once."""
    name, op, value = condition.field, condition.op, condition.value
    if FIELD_KINDS[name] == "string":
        return lambda batch: _string_mask(condition, batch)
    if name == SCORE_FIELD:

        def get(batch):
            return batch.score()
    elif name in _DECLARATION:

        def get(batch):
            return batch.columns[name]
    else:
        feature = name.removeprefix(FEATURE_PREFIX)

        def get(batch):
            return batch.feature(feature)

    if op in _COMPARE:
        ufunc = _COMPARE[op]
        return lambda batch: ufunc(get(batch), value)
    if op == "between":
        low, high = value
        return lambda batch: (lambda v: (v >= low) & (v <= high))(get(batch))
    if op == "in":
        wanted = np.asarray(value, dtype=np.float64)
        return lambda batch: np.isin(get(batch), wanted)
    if value:  # is_null
        return lambda batch: np.isnan(get(batch))
    return lambda batch: ~np.isnan(get(batch))


def _evaluate(condition, batch: Batch) -> np.ndarray:
    kind = type(condition)
    if kind is Compare:
        compiled = batch._comparisons.get(id(condition))
        return (compiled or compile_comparison(condition))(batch)
    if kind is AllOf:
        mask = batch.mask(condition.all[0])
        for part in condition.all[1:]:
            if not mask.any():
                break
            mask = mask & batch.mask(part)
        return mask
    if isinstance(condition, AnyOf):
        mask = batch.mask(condition.any[0])
        for part in condition.any[1:]:
            mask = mask | batch.mask(part)
        return mask
    if isinstance(condition, Not):
        return ~batch.mask(condition.not_)
    if isinstance(condition, OnWatchlist):
        return batch.listed(condition.on_watchlist, condition.entity)
    raise TypeError(f"not a condition: {condition!r}")  # pragma: no cover - validated


def watchlists_of(condition) -> set[str]:
    """Names of the watchlists a condition reads."""
    if isinstance(condition, AllOf):
        return set().union(*(watchlists_of(c) for c in condition.all))
    if isinstance(condition, AnyOf):
        return set().union(*(watchlists_of(c) for c in condition.any))
    if isinstance(condition, Not):
        return watchlists_of(condition.not_)
    if isinstance(condition, OnWatchlist):
        return {condition.on_watchlist}
    return set()


def _memberships(condition) -> list[OnWatchlist]:
    if isinstance(condition, AllOf):
        return [m for c in condition.all for m in _memberships(c)]
    if isinstance(condition, AnyOf):
        return [m for c in condition.any for m in _memberships(c)]
    if isinstance(condition, OnWatchlist):
        return [condition]
    return []  # a watchlist under `not` never explains a hit


def _collect_keys(condition, keys: dict[int, str], comparisons: dict[int, object]) -> None:
    """Canonical text of every node of a condition tree, by node identity; comparisons compiled."""
    keys[id(condition)] = (
        condition.model_dump_json(by_alias=True) if isinstance(condition, BaseModel) else repr(condition)
    )
    if isinstance(condition, Compare):
        comparisons[id(condition)] = compile_comparison(condition)
    for child in _children(condition):
        _collect_keys(child, keys, comparisons)


def _children(condition) -> list:
    if isinstance(condition, AllOf):
        return list(condition.all)
    if isinstance(condition, AnyOf):
        return list(condition.any)
    if isinstance(condition, Not):
        return [condition.not_]
    return []


def _valid(start: dt.datetime | None, end: dt.datetime | None, at: dt.datetime) -> bool:
    return (start is None or start <= at) and (end is None or at < end)


class CompiledRuleSet:
    """Every rule and watchlist entry of one rule-set version, ready to evaluate batches.

    Conditions are validated models (compiled once, when the version is loaded); each batch
    evaluates each distinct condition node once (shared sub-conditions are memoised) as a
    numpy mask. Validity windows are applied per evaluation time; the watchlist lookup
    tables for a time are cached until the next validity boundary passes.
    """

    def __init__(self, version: int, rules: Sequence[ActiveRule], entries: Iterable[ActiveEntry]) -> None:
        self.version = version
        # precedence, then id: the order hits are listed and the first hit of the
        # winning action names the deciding rule
        self.rules = tuple(sorted(rules, key=lambda r: (r.precedence, r.rule_id)))
        self.entries = tuple(entries)
        bounds = {e.valid_from for e in self.entries} | {e.valid_until for e in self.entries}
        bounds |= {r.valid_from for r in self.rules if r.valid_from} | {
            r.valid_until for r in self.rules if r.valid_until
        }
        self._bounds = sorted(bounds)
        self._node_keys: dict[int, str] = {}
        # per rule: its hit dict (shared by rows without watchlist entries), token, memberships
        self._hit_parts: dict[int, tuple[dict, str, list[OnWatchlist]]] = {}
        self._comparisons: dict[int, object] = {}
        for rule in self.rules:
            _collect_keys(rule.condition, self._node_keys, self._comparisons)
            static = {
                "rule_id": rule.rule_id,
                "version": rule.version,
                "name": rule.name,
                "action": rule.action,
                "mode": rule.mode,
                "watchlist_entries": [],
            }
            self._hit_parts[id(rule)] = (static, hit_token(rule), _memberships(rule.condition))
        self._entry_dicts = {
            e.entry_id: {
                "entry_id": e.entry_id,
                "version": e.version,
                "watchlist": e.watchlist,
                "entity": e.entity,
            }
            for e in self.entries
        }
        # (validity window, (rules, tables)) as one attribute: threads swap it atomically
        self._cached: tuple = (None, ())

    @classmethod
    def empty(cls, version: int = 0) -> CompiledRuleSet:
        return cls(version, (), ())

    def _window(self, at: dt.datetime) -> tuple:
        # which validity boundaries have passed: O(log n), no array built per request
        return (bisect.bisect_right(self._bounds, at),)

    def at(self, at: dt.datetime) -> tuple[tuple[ActiveRule, ...], dict[str, dict[str, list[ActiveEntry]]]]:
        """Rules, and per entity the watchlist entries by value, valid at `at` (cached between boundaries)."""
        key = self._window(at)
        cached_key, cached = self._cached
        if key != cached_key:
            rules = tuple(r for r in self.rules if _valid(r.valid_from, r.valid_until, at))
            tables: dict[str, dict[str, list[ActiveEntry]]] = {}
            for entry in self.entries:
                if _valid(entry.valid_from, entry.valid_until, at):
                    tables.setdefault(entry.entity, {}).setdefault(entry.value, []).append(entry)
            cached = (rules, tables)
            self._cached = (key, cached)
        return cached

    def apply(
        self,
        columns: Mapping[str, np.ndarray],
        features: pd.DataFrame | None,
        risk_score: np.ndarray | None,
        channel: Sequence[str] | np.ndarray,
        at: dt.datetime,
    ) -> RuleOutcome:
        """Evaluate every valid rule on the batch: live rules raise channels, shadow rules only record."""
        rules, tables = self.at(at)
        if risk_score is not None:
            risk_score = np.asarray(risk_score, dtype=np.float64)
        batch = Batch(columns, features, risk_score, tables, self._node_keys, self._comparisons)
        n = batch.n
        channel = np.asarray(channel, dtype=object).copy()
        empty: list = []
        live: list[list[dict]] = [empty] * n
        shadow: list[list[dict]] = [empty] * n
        tokens: list[list[str]] = [empty] * n
        red = np.zeros(n, dtype=bool)
        yellow = np.zeros(n, dtype=bool)
        for rule in rules:
            mask = batch.mask(rule.condition)
            rows = np.flatnonzero(mask)
            if not len(rows):
                continue
            static, token, memberships = self._hit_parts[id(rule)]
            target = live if rule.mode == "live" else shadow
            for row in rows.tolist():
                if memberships:
                    entries = [
                        e for m in memberships for e in batch.matched_entries(m.on_watchlist, m.entity, row)
                    ]
                    hit = {**static, "watchlist_entries": [self._entry_dicts[e.entry_id] for e in entries]}
                    row_tokens = [token, *(entry_token(e) for e in entries)]
                else:
                    hit, row_tokens = static, [token]
                if target[row] is empty:
                    target[row] = [hit]
                else:
                    target[row].append(hit)
                if tokens[row] is empty:
                    tokens[row] = row_tokens
                else:
                    tokens[row].extend(row_tokens)
            if rule.mode == "live":
                if rule.action == "RED":
                    red |= mask
                elif rule.action == "YELLOW":
                    yellow |= mask
        if yellow.any():
            channel[yellow & (channel == "GREEN")] = "YELLOW"
        if red.any():
            channel[red] = "RED"
        return RuleOutcome(channel.tolist(), live, shadow, tokens, self.version)


def builtin_rules(mandatory_red_rules: Sequence[str]) -> list[tuple[str, RuleDefinition]]:
    """The model's mandatory RED rules as rules (id `builtin:<name>`): they cannot be disabled."""
    out = []
    for name in mandatory_red_rules:
        if name not in FEATURE_SET.columns:
            continue
        out.append(
            (
                f"builtin:{name}",
                RuleDefinition(
                    name=f"mandatory: {name}",
                    condition=Compare(field=FEATURE_PREFIX + name, op="gt", value=0.0),
                    action="RED",
                    precedence=0,
                    description="mandatory rule of the inspection policy; cannot be disabled",
                ),
            )
        )
    return out


# --- backtest ---------------------------------------------------------------------------

#: What the backtest says about outcomes it cannot know.
OUTCOME_NOTE = (
    "outcomes are known only for inspected declarations and for seizures reported against a "
    "declaration: 'found' and 'seized' are lower bounds, and precision is over inspected ones"
)


def backtest(
    rule_set: CompiledRuleSet,
    declarations: pd.DataFrame,
    features: pd.DataFrame,
    seizures: pd.DataFrame,
    inspections: pd.DataFrame | None,
    at: dt.datetime,
    risk_score: np.ndarray | None = None,
    model_channel: np.ndarray | None = None,
    red_budget: float | None = None,
) -> dict:
    """What the rules of `rule_set` would have selected among `declarations` (features as of each filing).

    `features` are point-in-time rows of the same declarations (`compute_features` against a
    `History.build` of the history). Counts: selected, share of traffic, later seized (a
    seizure names the declaration, at or after its filing), inspected and found in
    inspection (result other than CLEAN), how many the model put RED / YELLOW already, and
    the RED rate with the rule's RED selections added, against the inspection budget.
    """
    columns = _columns(declarations)
    n = len(declarations)
    model_channel = np.asarray(model_channel if model_channel is not None else ["GREEN"] * n, dtype=object)
    outcome = rule_set.apply(columns, features, risk_score, model_channel, at)
    selected = np.fromiter((bool(hits) for hits in outcome.live), dtype=bool, count=n)
    ids = declarations["declaration_id"].astype(object).to_numpy()
    declared_at = declarations["declared_at"].to_numpy(dtype="datetime64[us]")
    seized_ids = seizures.loc[seizures["declaration_id"].notna(), ["declaration_id", "seized_at"]]
    first_seizure = seized_ids.groupby("declaration_id")["seized_at"].min()
    seized_at = pd.Series(ids).map(first_seizure).to_numpy(dtype="datetime64[us]")
    seized = ~np.isnat(seized_at) & (seized_at >= declared_at)
    if inspections is not None and len(inspections):
        inspected_ids = set(inspections["declaration_id"].astype(str))
        found_ids = set(inspections.loc[inspections["result"] != "CLEAN", "declaration_id"].astype(str))
    else:
        inspected_ids, found_ids = set(), set()
    inspected = np.fromiter((i in inspected_ids for i in ids), dtype=bool, count=n)
    found = np.fromiter((i in found_ids for i in ids), dtype=bool, count=n)
    rule_red = np.fromiter(
        (any(h["action"] == "RED" for h in hits) for hits in outcome.live), dtype=bool, count=n
    )
    model_red = model_channel == "RED"
    selected_inspected = int((selected & inspected).sum())
    selected_found = int((selected & found).sum())
    return {
        "declarations": n,
        "selected": int(selected.sum()),
        "traffic_share": float(selected.mean()) if n else 0.0,
        "later_seized": int((selected & seized).sum()),
        "inspected": selected_inspected,
        "found_in_inspection": selected_found,
        "seized_or_found": int((selected & (seized | found)).sum()),
        "precision_among_inspected": selected_found / selected_inspected if selected_inspected else None,
        "model_red": int((selected & model_red).sum()),
        "model_yellow": int((selected & (model_channel == "YELLOW")).sum()),
        "red_rate_model": float(model_red.mean()) if n and risk_score is not None else None,
        "red_rate_with_rule": float((model_red | rule_red).mean()) if n and risk_score is not None else None,
        "red_rate_rule_alone": float(rule_red.mean()) if n else 0.0,
        "red_budget": red_budget,
        "note": OUTCOME_NOTE,
    }


def _columns(declarations: pd.DataFrame) -> dict[str, np.ndarray]:
    return columns_of(declarations)
