"""Request and response schemas of the scoring service (validated at the edge with pydantic).

A request declaration is one row of the contract's `declarations` table without outcome
columns; the constraints mirror `features.contract` so that what the service accepts is
what training accepted.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import pycountry
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from features.contract import INSPECTION_RESULTS, PAYMENT_TERMS, QUANTITY_UNITS, TRANSPORT_MODES

_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)


def _country(value: str) -> str:
    if value not in _COUNTRIES:
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code (upper case, e.g. 'NG')")
    return value


def _iso_text(value: object) -> object:
    # pydantic's lax mode reads a bare number as Unix time; the contract says ISO 8601 text.
    if isinstance(value, int | float):
        raise ValueError("expected ISO 8601 date-time text (e.g. '2024-05-01T09:30:00Z'), not a number")
    return value


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
IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_text)]

TransportMode = Literal[TRANSPORT_MODES]  # type: ignore[valid-type]
QuantityUnit = Literal[QUANTITY_UNITS]  # type: ignore[valid-type]
PaymentTerms = Literal[PAYMENT_TERMS]  # type: ignore[valid-type]
Channel = Literal["RED", "YELLOW", "GREEN"]


class Declaration(BaseModel):
    """One export declaration line, as filed (the contract's declaration columns)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    declaration_id: Identifier
    declared_at: IsoDateTime = Field(description="ISO 8601 filing time; offsets are converted to UTC")
    exporter_id: Identifier
    consignee_id: Identifier
    consignee_country: Country
    destination_country: Country
    port_of_loading: LoCode
    transport_mode: TransportMode
    hs_code: HsCode
    goods_description: str = Field("", max_length=4000)
    quantity: float = Field(gt=0, allow_inf_nan=False, strict=True)
    quantity_unit: QuantityUnit
    gross_weight_kg: Amount
    declared_value_usd: Amount
    customs_broker_id: Identifier | None = None
    payment_terms: PaymentTerms | None = None
    export_authorization_id: Annotated[str, Field(max_length=64)] | None = None
    transshipment_country: Country | None = None


class Seizure(BaseModel):
    """One seizure or enforcement finding (the contract's seizures row)."""

    model_config = ConfigDict(extra="ignore")

    seizure_id: Identifier
    seized_at: IsoDateTime
    declaration_id: Identifier | None = None
    exporter_id: Identifier | None = None
    consignee_id: Identifier | None = None
    country: Country
    substance: Annotated[str, Field(min_length=1, max_length=200)]
    quantity_kg: Amount | None = None
    agency: Annotated[str, Field(max_length=200)] | None = None


class Inspection(BaseModel):
    """Outcome of a customs examination (the contract's inspections row)."""

    model_config = ConfigDict(extra="ignore")

    declaration_id: Identifier
    inspected_at: IsoDateTime
    result: Literal[INSPECTION_RESULTS]  # type: ignore[valid-type]


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


class DeclarationScore(BaseModel):
    declaration_id: str
    risk_score: float = Field(description="calibrated probability of diversion")
    percentile: float = Field(description="percent of training-period declarations scoring lower")
    channel: Channel
    reasons: list[Reason]
    rule_hits: list[str]
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
