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

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
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


@dataclass
class RuleHit:
    rule_id: str
    version: int
    name: str
    action: str
    mode: str
    watchlist_entries: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "rule_id": self.rule_id,
            "version": self.version,
            "name": self.name,
            "action": self.action,
            "mode": self.mode,
            "watchlist_entries": self.watchlist_entries,
        }

    def token(self) -> str:
        """Compact form for the audit row's rule_hits: `rule:<id>@v<n>:<action>` (or `shadow:`)."""
        prefix = "rule" if self.mode == "live" else "shadow"
        return f"{prefix}:{self.rule_id}@v{self.version}:{self.action}"


@dataclass
class RuleOutcome:
    """Per declaration: channel after live rules, live hits, shadow hits."""

    channel: list[str]
    live: list[list[RuleHit]]
    shadow: list[list[RuleHit]]
    rule_set_version: int

    def audit_tokens(self) -> list[list[str]]:
        tokens = []
        for live, shadow in zip(self.live, self.shadow, strict=True):
            row = [hit.token() for hit in live] + [hit.token() for hit in shadow]
            for hit in live + shadow:
                row.extend(f"watchlist:{e['entry_id']}@v{e['version']}" for e in hit.watchlist_entries)
            tokens.append(row)
        return tokens


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
        return [np.array([str(h)[:4] for h in columns["hs_code"]], dtype=object)]
    if entity == "route":
        port, destination = columns["port_of_loading"], columns["destination_country"]
        via = columns["transshipment_country"]
        direct = np.array([f"{p}>{d}" for p, d in zip(port, destination, strict=True)], dtype=object)
        routed = np.array(
            [f"{p}>{v}>{d}" if v else "" for p, v, d in zip(port, via, destination, strict=True)],
            dtype=object,
        )
        return [direct, routed]
    raise ValueError(f"unknown entity {entity!r}")


class Batch:
    """One scoring batch as the evaluator reads it; masks and lookups are memoised per batch."""

    def __init__(
        self,
        columns: Mapping[str, np.ndarray],
        features: pd.DataFrame | None,
        risk_score: np.ndarray | None,
        watchlists: Mapping[tuple[str, str], dict[str, ActiveEntry]],
    ) -> None:
        self.columns = columns
        self.features = features
        self.risk_score = risk_score
        self.n = len(columns["declaration_id"])
        self.watchlists = watchlists
        self._memo: dict[object, np.ndarray] = {}
        self._keys: dict[str, list[np.ndarray]] = {}

    def values(self, name: str) -> np.ndarray:
        if name == SCORE_FIELD:
            if self.risk_score is None:
                raise ValueError("this rule reads risk_score, and no model score is available here")
            return np.asarray(self.risk_score, dtype=np.float64)
        if name in _DECLARATION:
            return self.columns[name]
        feature = name.removeprefix(FEATURE_PREFIX)
        if self.features is None:
            raise ValueError(f"this rule reads feature {feature!r}, and no features are available here")
        return self.features[feature].to_numpy(dtype=np.float64)

    def keys(self, entity: str) -> list[np.ndarray]:
        if entity not in self._keys:
            self._keys[entity] = entity_keys(entity, self.columns)
        return self._keys[entity]

    def mask(self, condition) -> np.ndarray:
        key = id(condition)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = _evaluate(condition, self)
        return found

    def matched_entries(self, watchlist: str, entity: str, row: int) -> list[ActiveEntry]:
        table = self.watchlists.get((watchlist, entity), {})
        out = []
        for values in self.keys(entity):
            entry = table.get(values[row])
            if entry is not None:
                out.append(entry)
        return out


def _is_null(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.fromiter((v is None or v == "" for v in values), dtype=bool, count=len(values))
    return np.isnan(values)


def _evaluate(condition, batch: Batch) -> np.ndarray:
    if isinstance(condition, AllOf):
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
        table = batch.watchlists.get((condition.on_watchlist, condition.entity))
        if not table:
            return np.zeros(batch.n, dtype=bool)
        mask = np.zeros(batch.n, dtype=bool)
        for values in batch.keys(condition.entity):
            mask |= np.fromiter((v in table for v in values), dtype=bool, count=batch.n)
        return mask
    values = batch.values(condition.field)
    op, value = condition.op, condition.value
    if op == "is_null":
        nulls = _is_null(values)
        return nulls if value else ~nulls
    if values.dtype == object:
        if op == "eq":
            return values == value
        if op == "ne":
            return values != value
        if op == "in":
            wanted = frozenset(value)
            return np.fromiter((v in wanted for v in values), dtype=bool, count=batch.n)
        if op == "startswith":
            return np.fromiter(
                (isinstance(v, str) and v.startswith(value) for v in values), dtype=bool, count=batch.n
            )
        raise ValueError(f"operator {op!r} on {condition.field!r}")  # pragma: no cover - validated
    if op == "eq":
        return values == value
    if op == "ne":
        return values != value
    if op == "lt":
        return values < value
    if op == "le":
        return values <= value
    if op == "gt":
        return values > value
    if op == "ge":
        return values >= value
    if op == "between":
        return (values >= value[0]) & (values <= value[1])
    if op == "in":
        return np.isin(values, np.asarray(value, dtype=np.float64))
    raise ValueError(f"operator {op!r} on {condition.field!r}")  # pragma: no cover - validated


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
        self._cache_key: tuple | None = None
        self._cache: tuple = ()

    @classmethod
    def empty(cls, version: int = 0) -> CompiledRuleSet:
        return cls(version, (), ())

    def _window(self, at: dt.datetime) -> tuple:
        index = (
            int(np.searchsorted(np.array(self._bounds, dtype=object), at, side="right"))
            if self._bounds
            else 0
        )
        return (index,)

    def at(
        self, at: dt.datetime
    ) -> tuple[tuple[ActiveRule, ...], dict[tuple[str, str], dict[str, ActiveEntry]]]:
        """Rules and watchlist lookup tables valid at `at` (cached between validity boundaries)."""
        key = self._window(at)
        if key != self._cache_key:
            rules = tuple(r for r in self.rules if _valid(r.valid_from, r.valid_until, at))
            tables: dict[tuple[str, str], dict[str, ActiveEntry]] = {}
            for entry in self.entries:
                if _valid(entry.valid_from, entry.valid_until, at):
                    tables.setdefault((entry.watchlist, entry.entity), {})[entry.value] = entry
            self._cache_key, self._cache = key, (rules, tables)
        return self._cache

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
        batch = Batch(columns, features, risk_score, tables)
        n = batch.n
        channel = np.asarray(channel, dtype=object).copy()
        live: list[list[RuleHit]] = [[] for _ in range(n)]
        shadow: list[list[RuleHit]] = [[] for _ in range(n)]
        red = np.zeros(n, dtype=bool)
        yellow = np.zeros(n, dtype=bool)
        for rule in rules:
            mask = batch.mask(rule.condition)
            if not mask.any():
                continue
            memberships = _memberships(rule.condition)
            target = live if rule.mode == "live" else shadow
            for row in np.flatnonzero(mask).tolist():
                entries = [
                    {
                        "entry_id": e.entry_id,
                        "version": e.version,
                        "watchlist": e.watchlist,
                        "entity": e.entity,
                    }
                    for m in memberships
                    for e in batch.matched_entries(m.on_watchlist, m.entity, row)
                ]
                target[row].append(
                    RuleHit(rule.rule_id, rule.version, rule.name, rule.action, rule.mode, entries)
                )
            if rule.mode == "live":
                if rule.action == "RED":
                    red |= mask
                elif rule.action == "YELLOW":
                    yellow |= mask
        if yellow.any():
            channel[yellow & (channel == "GREEN")] = "YELLOW"
        if red.any():
            channel[red] = "RED"
        return RuleOutcome(channel.tolist(), live, shadow, self.version)


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
        (any(h.action == "RED" for h in hits) for hits in outcome.live), dtype=bool, count=n
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
