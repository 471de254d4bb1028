"""Request and response schemas of the scoring service (validated at the edge with pydantic).

The request models are *built from* `features.contract` (column names, kinds, enums,
lengths, date bounds, the seizure link rule and the reasons' wording), the same
definition the training validator (`features.validation`) checks files against: a row
the service acknowledges passes `make validate`, and a row `make validate` rejects gets
a 422 naming the same field and reason. A request declaration is one row of the
contract's `declarations` table without outcome columns.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from features.contract import (
    DECLARATION_COLUMNS,
    EXAMPLE_DECLARATION,
    EXAMPLE_INSPECTION,
    EXAMPLE_SEIZURE,
    FUTURE_TOLERANCE_DAYS,
    INSPECTION_COLUMNS,
    REASON_BEFORE_EARLIEST,
    REASON_CONTROL_IN_ID,
    REASON_FUTURE,
    REASON_NO_LINK,
    REASON_NUL,
    REASON_OUT_OF_RANGE,
    REASON_TOO_LONG,
    SEIZURE_COLUMNS,
    SEIZURE_LINK_COLUMNS,
    Column,
    earliest_date,
    latest_date,
    max_length,
)

_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)

#: pydantic error type of a seizure that names no entity (the 422 names the link columns).
SEIZURE_LINK_ERROR = "seizure_without_entity"


def _country(value: str) -> str:
    if value not in _COUNTRIES:
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code (upper case, e.g. 'NG')")
    return value


def _iso_text(value: object) -> object:
    # pydantic's lax mode reads a bare number as Unix time; the contract says ISO 8601 text.
    if isinstance(value, int | float):
        raise ValueError("expected ISO 8601 date-time text (e.g. '2024-05-01T09:30:00Z'), not a number")
    return value


def _within_contract_dates(value: dt.datetime) -> dt.datetime:
    """The contract's date bounds, checked on the UTC time (naive times are UTC, as in training)."""
    try:
        utc = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    except (OverflowError, ValueError):
        # e.g. 9999-12-31T23:59:59-14:00 is in year 10000 in UTC: no datetime holds it.
        raise ValueError(REASON_OUT_OF_RANGE) from None
    if utc < earliest_date():
        raise ValueError(REASON_BEFORE_EARLIEST)
    latest = latest_date()
    if utc > latest:
        raise ValueError(
            f"{REASON_FUTURE} (after {latest:%Y-%m-%d %H:%M} UTC, the validation time "
            f"plus {FUTURE_TOLERANCE_DAYS} day)"
        )
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(REASON_NUL)
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(REASON_CONTROL_IN_ID)
    return value


def _at_most(limit: int):
    def check(value: str) -> str:
        if len(value) > limit:
            raise ValueError(REASON_TOO_LONG.format(limit=limit))
        return value

    return check


def _contract_id(column: Column, min_length: int) -> Any:
    """An identifier column: the validator's length and control-character checks, in its words.

    The limits are published in the JSON schema (maxLength, pattern) and checked by
    validators whose messages are the contract's reasons.
    """
    limit = max_length(column, request=True)
    return Annotated[
        str,
        Field(
            min_length=min_length,
            json_schema_extra={"maxLength": limit, "pattern": r"^[^\x00-\x1f\x7f]*$"},
        ),
        AfterValidator(_at_most(limit)),
        AfterValidator(_no_control),
    ]


def _locode(value: str) -> str:
    if value[:2] not in _COUNTRIES:
        raise ValueError(f"'{value}' is not a UN/LOCODE: '{value[:2]}' is not a country code")
    return value


# The published JSON schema lists the country codes themselves (not only "two characters"),
# so that what the OpenAPI document calls valid is what the validators accept.
_COUNTRY_CODES = sorted(_COUNTRIES)
_LOCODE_SCHEMA_PATTERN = f"^(?:{'|'.join(_COUNTRY_CODES)})[A-Z2-9]{{3}}$"

Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
Country = Annotated[
    str,
    Field(min_length=2, max_length=2, json_schema_extra={"enum": _COUNTRY_CODES}),
    AfterValidator(_country),
]
LoCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{2}[A-Z2-9]{3}$", json_schema_extra={"pattern": _LOCODE_SCHEMA_PATTERN}),
    AfterValidator(_locode),
]
HsCode = Annotated[str, Field(pattern=r"^(\d{6}|\d{8})$", description="6 or 8 digits, leading zeros kept")]
# strict: a JSON number only (no true/false, no numeric strings), as the published schema says.
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]


def _published_date_pattern(today: dt.date) -> str:
    """A pattern for the published schema that only matches times every edge accepts.

    The bounds themselves (1990-01-01 to now + 1 day, in UTC) cannot be written in JSON
    Schema, and "now" moves: the pattern covers 1991 up to last year, days 01-28 and
    offsets up to 13:59, so whatever it matches is accepted whatever the offset. Later
    times are accepted too, up to the bound; a generator working from the document
    simply never proposes them.
    """
    years = "|".join(str(year) for year in range(1991, today.year))
    return (
        rf"^({years})-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{{1,6}})?"
        r"(Z|[+-](0\d|1[0-3]):[0-5]\d)$"
    )


IsoDateTime = Annotated[
    dt.datetime,
    BeforeValidator(_iso_text),
    AfterValidator(_within_contract_dates),
    Field(
        description="ISO 8601; offsets are converted to UTC; from 1990-01-01 to now + 1 day (UTC)",
        json_schema_extra={"pattern": _published_date_pattern(dt.date.today())},
    ),
]

Channel = Literal["RED", "YELLOW", "GREEN"]


def _field_type(column: Column) -> Any:
    """The pydantic type of one contract column."""
    if column.kind == "id":
        return _contract_id(column, min_length=1)
    if column.kind == "text":
        limit = max_length(column, request=True)
        return Annotated[
            str,
            Field(
                min_length=0 if column.nullable else 1,
                json_schema_extra={"maxLength": limit, "pattern": "^[^\\x00]*$"},
            ),
            AfterValidator(_at_most(limit)),
            AfterValidator(_no_nul),
        ]
    if column.kind == "datetime":
        return IsoDateTime
    if column.kind == "number":
        if column.strictly_positive:
            return Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
        return Annotated[float, Field(ge=column.min_value, allow_inf_nan=False, strict=True)]
    if column.kind == "enum":
        return Literal[column.enum]  # type: ignore[valid-type]
    if column.kind == "country":
        return Country
    if column.kind == "locode":
        return LoCode
    if column.kind == "hs":
        return HsCode
    raise ValueError(f"unknown column kind {column.kind!r} for {column.name}")  # a bug in contract.py


#: Optional columns whose contract says "empty when none": "" is accepted and means none.
_EMPTY_MEANS_NONE = frozenset({"export_authorization_id"})


def _fields(columns: tuple[Column, ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for column in columns:
        kind = _field_type(column)
        if column.name in _EMPTY_MEANS_NONE:
            kind = _contract_id(column, min_length=0)
        if column.required and not column.nullable:
            fields[column.name] = (kind, ...)
        elif column.required:  # a required column that may be empty (goods_description)
            fields[column.name] = (kind, "")
        else:
            fields[column.name] = (kind | None, None)
    return fields


class _Row(BaseModel):
    # hide_input_in_errors: a rejected value never reaches the logs (declaration content is
    # confidential); the 422 names the record, field and reason instead.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False, hide_input_in_errors=True)


class _SeizureRow(_Row):
    # The link rule in the published schema: at least one of the link columns, as a string.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in SEIZURE_LINK_COLUMNS
            ],
            "example": dict(EXAMPLE_SEIZURE),
        }
    )

    @model_validator(mode="after")
    def _names_an_entity(self) -> _SeizureRow:
        if all(getattr(self, name) in (None, "") for name in SEIZURE_LINK_COLUMNS):
            raise PydanticCustomError(SEIZURE_LINK_ERROR, REASON_NO_LINK)
        return self


class _DeclarationRow(_Row):
    model_config = ConfigDict(json_schema_extra={"example": dict(EXAMPLE_DECLARATION)})


class _InspectionRow(_Row):
    model_config = ConfigDict(json_schema_extra={"example": dict(EXAMPLE_INSPECTION)})


Declaration = create_model(
    "Declaration",
    __base__=_DeclarationRow,
    __doc__="One export declaration line, as filed (the contract's declaration columns).",
    __module__=__name__,
    **_fields(DECLARATION_COLUMNS),
)
Seizure = create_model(
    "Seizure",
    __base__=_SeizureRow,
    __doc__="One seizure or enforcement finding (the contract's seizures row).",
    __module__=__name__,
    **_fields(SEIZURE_COLUMNS),
)
Inspection = create_model(
    "Inspection",
    __base__=_InspectionRow,
    __doc__="Outcome of a customs examination (the contract's inspections row).",
    __module__=__name__,
    **_fields(INSPECTION_COLUMNS),
)


class OutcomeAck(BaseModel):
    inspections_accepted: int
    seizures_accepted: int = Field(
        description="seizures stored: reported ones and those SEIZURE inspections add"
    )
    duplicates: list[str]
    history_sequence: int = Field(
        description="sequence number of this append in the history log; when nothing new was stored, "
        "the log's head at the time"
    )


class Reason(BaseModel):
    feature: str
    value: float | None
    contribution: float = Field(description="log-odds the feature added to this declaration's score")
    sentence: str


class ModelRef(BaseModel):
    name: str
    version: str


class FiredWatchlistEntry(BaseModel):
    entry_id: str
    version: int = Field(description="version of the watchlist entry that matched")
    watchlist: str
    entity: str = Field(description="exporter, consignee, broker, country, hs_heading or route")


class FiredRule(BaseModel):
    rule_id: str
    version: int = Field(description="version of the rule that fired")
    name: str
    action: Literal["RED", "YELLOW", "FLAG"]
    mode: str = Field(description="always `live`: only live rules are answered; shadow hits are audited only")
    watchlist_entries: list[FiredWatchlistEntry] = Field(
        description="the watchlist entries whose membership made the rule fire"
    )


class DeclarationScore(BaseModel):
    declaration_id: str
    risk_score: float = Field(description="calibrated probability of diversion")
    percentile: float = Field(description="percent of training-period declarations scoring lower")
    channel: Channel = Field(description="inspection channel after targeting rules")
    reasons: list[Reason]
    rule_hits: list[str] = Field(description="the model's built-in rules that fired (feature names)")
    rules: list[FiredRule] = Field(
        description="live targeting rules (with the watchlist entries involved) that fired, with versions"
    )
    rule_set_version: int = Field(description="version of the targeting rule set the decision was made under")
    model: ModelRef
    scored_at: dt.datetime


class ScoreResponse(BaseModel):
    request_id: str
    history_sequence: int = Field(description="the history log was applied up to this append when scoring")
    scores: list[DeclarationScore]


class HistoryAck(BaseModel):
    accepted: int
    duplicates: list[str] = Field(description="ids already in the history (not added again)")
    history_declarations: int
    history_sequence: int = Field(
        description="sequence number of this append in the history log; when nothing new was stored, "
        "the log's head at the time"
    )


class ChallengerInfo(BaseModel):
    alias: str | None
    enabled: bool
    version: str | None = Field(description="challenger version scored in shadow now; None: none")
    run_id: str | None
    refused_versions: dict[str, str] = Field(description="challenger versions that failed to load or verify")
    shadow_failures: int = Field(description="requests whose shadow scoring or recording failed")
    last_error: str | None


class ModelInfo(BaseModel):
    name: str
    version: str
    run_id: str
    model_uri: str
    feature_set: dict
    test_metrics: dict
    inspection_policy: dict
    refused_versions: dict[str, str] = Field(
        default_factory=dict, description="versions the alias named that failed verification, with the reason"
    )
    history_sequence: int = 0
    challenger: ChallengerInfo | None = Field(
        None, description="the @challenger version scored in shadow (never answered), refusals, failures"
    )
