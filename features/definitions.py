"""The declaration risk feature set: one definition for training, backtests and the service.

`compute_features(declarations, history, reference)` turns contract declaration rows into
model features using only what `history` knew strictly before each declaration's filing
time. Offline, `history` is the whole history (each row sees only its own past); online,
it is the service's history store and the rows are newly filed declarations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import PAYMENT_TERMS, TRANSPORT_MODES
from features.events import AsOf, to_seconds
from features.history import (
    History,
    columns_of,
    declaration_keys,
    log1p_nonneg,
    unit_value_log,
    value_per_kg_log,
)
from features.reference import ReferenceTables

FEATURE_SET_NAME = "declaration_diversion_risk"
FEATURE_SET_VERSION = "1.2.0"

#: Pseudo-count of the smoothed seizure rates (how many declarations' worth of prior).
RATE_SMOOTHING = 50.0
#: Below this many earlier values, a norm is unknown and its z-score is missing.
MIN_NORM_COUNT = 5
RECENT_DAYS = 30
#: `exporter_days_since_seizure` of an exporter never implicated in a seizure (ten years).
NEVER_DAYS = 3650.0
#: Horizons of the time-decayed counts: an event weighs 1 in its first 90 days, 2/3 up to
#: a year and 1/3 up to three years (the mean of three windowed counts, so exact and
#: independent of how the history was indexed).
DECAY_DAYS = (90, 365, 1095)
#: Window of "recently" in the consignee's new exporters (company shopping).
SHOPPING_DAYS = 90
#: Pseudo-count of the broker's smoothed implicated-exporter share (how many exporters' worth of prior).
EXPORTER_SMOOTHING = 5.0


@dataclass(frozen=True)
class FeatureSet:
    """Name, version and columns of the feature set, logged with every model."""

    name: str
    version: str
    columns: tuple[str, ...]
    categorical: tuple[str, ...]
    descriptions: dict[str, str]
    #: feature family -> its columns (every column in exactly one family; used for ablations)
    families: dict[str, tuple[str, ...]]


_DESCRIPTIONS: dict[str, str] = {
    # exporter history
    "exporter_prior_declarations": "declarations the exporter filed before this one",
    "exporter_tenure_days": "days since the exporter's first declaration (missing when new)",
    "exporter_distinct_consignees": "distinct consignees the exporter shipped to before",
    "exporter_distinct_destinations": "distinct destination countries of the exporter before",
    "exporter_controlled_share": "share of the exporter's earlier declarations with controlled goods",
    "exporter_heading_share": "share of the exporter's earlier declarations under this HS heading (goods outside its usual mix)",
    "exporter_recent_volume_ratio": "declarations in the last 30 days against the exporter's own monthly norm",
    "exporter_prior_seizures": "seizures implicating the exporter known before filing",
    "exporter_days_since_seizure": "days since the exporter's last seizure (3650 when none)",
    "weight_vs_exporter_norm": "z-score of log gross weight against the exporter's earlier shipments",
    # consignee, relationship, route
    "consignee_prior_seizures": "seizures implicating the consignee known before filing",
    "consignee_distinct_exporters": "distinct exporters that shipped to the consignee before",
    "consignee_prior_declarations": "declarations to the consignee before",
    "pair_prior_declarations": "earlier declarations between this exporter and consignee (0 = new relationship)",
    "exporter_destination_prior_declarations": "earlier declarations of the exporter to this destination",
    # smoothed seizure rates
    "broker_seizure_rate": "smoothed seizure rate of the customs broker's earlier declarations",
    "heading_destination_seizure_rate": "smoothed seizure rate of the HS heading to this destination",
    "destination_seizure_rate": "smoothed seizure rate of declarations to the destination country",
    "exporter_seizure_rate_decayed": "smoothed, time-decayed seizure rate of the exporter's earlier declarations (recent seizures weigh more)",
    "consignee_seizure_rate_decayed": "smoothed, time-decayed seizure rate of earlier declarations to the consignee (recent seizures weigh more)",
    "pair_seizure_rate_decayed": "smoothed, time-decayed seizure rate of earlier shipments between this exporter and consignee",
    "heading_destination_seizure_rate_decayed": "smoothed, time-decayed seizure rate of the HS heading to this destination (recent seizures weigh more)",
    # network: who the exporter, consignee and broker trade with
    "exporter_implicated_consignees": "the exporter's earlier consignees implicated in a seizure (with any exporter) known before filing",
    "exporter_implicated_consignee_share": "share of the exporter's earlier consignees implicated in a seizure with any exporter",
    "exporter_shared_consignees": "the exporter's earlier consignees that also received from another exporter implicated in a seizure",
    "consignee_implicated_exporters": "exporters that shipped to the consignee before and were implicated in a seizure known before filing",
    "consignee_new_exporters_90d": "exporters that started shipping to the consignee in the last 90 days (company shopping)",
    "broker_implicated_exporters": "other exporters of the customs broker implicated in a seizure known before filing",
    "broker_exporter_seizure_rate": "smoothed share of the customs broker's other exporters implicated in a seizure",
    # shipment
    "controlled_goods": "HS code is a controlled medicine or precursor (reference table)",
    "controlled_term_under_generic_heading": "a controlled substance is named in the description under a non-controlled HS code",
    "controlled_without_authorisation": "controlled goods (by HS code or description) without export authorisation",
    "unit_value_vs_tariff_norm": "z-score of log unit value against earlier declarations of the tariff line",
    "value_per_kg_vs_heading_norm": "z-score of log value per kg against earlier declarations of the HS heading",
    "log_declared_value": "log(1 + declared FOB value in USD)",
    "log_gross_weight": "log(1 + gross weight in kg)",
    "transport_mode": "transport mode (category)",
    "payment_terms": "payment terms (category; missing when not declared)",
    "transshipment_via_hub": "declared transshipment through a known hub",
    "consignee_country_differs": "consignee country differs from the destination country",
}

CATEGORICAL_FEATURES: tuple[str, ...] = ("transport_mode", "payment_terms")

#: Features along which risk may only rise (+1) or only fall (-1): a seizure on record never
#: makes an exporter, consignee, broker or route look safer. Enforced in the model.
MONOTONE: dict[str, int] = {
    "exporter_prior_seizures": 1,
    "exporter_days_since_seizure": -1,
    "consignee_prior_seizures": 1,
    "broker_seizure_rate": 1,
    "heading_destination_seizure_rate": 1,
    "destination_seizure_rate": 1,
    "controlled_without_authorisation": 1,
    "controlled_term_under_generic_heading": 1,
    "exporter_seizure_rate_decayed": 1,
    "consignee_seizure_rate_decayed": 1,
    "pair_seizure_rate_decayed": 1,
    "heading_destination_seizure_rate_decayed": 1,
    # more implicated neighbours never make a declaration look safer
    "exporter_implicated_consignees": 1,
    "exporter_implicated_consignee_share": 1,
    "exporter_shared_consignees": 1,
    "consignee_implicated_exporters": 1,
    "broker_implicated_exporters": 1,
    "broker_exporter_seizure_rate": 1,
}

#: Feature families (for ablations and the features reference): every column in exactly one.
FAMILIES: dict[str, tuple[str, ...]] = {
    "exporter_history": (
        "exporter_prior_declarations",
        "exporter_tenure_days",
        "exporter_distinct_consignees",
        "exporter_distinct_destinations",
        "exporter_controlled_share",
        "exporter_heading_share",
    ),
    "consignee_route": (
        "consignee_distinct_exporters",
        "consignee_prior_declarations",
        "pair_prior_declarations",
        "exporter_destination_prior_declarations",
    ),
    "seizure_rates": (
        "exporter_prior_seizures",
        "exporter_days_since_seizure",
        "consignee_prior_seizures",
        "broker_seizure_rate",
        "heading_destination_seizure_rate",
        "destination_seizure_rate",
        "exporter_seizure_rate_decayed",
        "consignee_seizure_rate_decayed",
        "pair_seizure_rate_decayed",
        "heading_destination_seizure_rate_decayed",
    ),
    "network": (
        "exporter_implicated_consignees",
        "exporter_implicated_consignee_share",
        "exporter_shared_consignees",
        "consignee_implicated_exporters",
        "consignee_new_exporters_90d",
        "broker_implicated_exporters",
        "broker_exporter_seizure_rate",
    ),
    "shipment_anomaly": (
        "exporter_recent_volume_ratio",
        "weight_vs_exporter_norm",
        "unit_value_vs_tariff_norm",
        "value_per_kg_vs_heading_norm",
    ),
    "shipment": (
        "controlled_goods",
        "controlled_term_under_generic_heading",
        "controlled_without_authorisation",
        "log_declared_value",
        "log_gross_weight",
        "transport_mode",
        "payment_terms",
        "transshipment_via_hub",
        "consignee_country_differs",
    ),
}

FEATURE_SET = FeatureSet(
    name=FEATURE_SET_NAME,
    version=FEATURE_SET_VERSION,
    columns=tuple(_DESCRIPTIONS),
    categorical=CATEGORICAL_FEATURES,
    descriptions=dict(_DESCRIPTIONS),
    families=dict(FAMILIES),
)


def columns_without(families: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The feature set's columns without those of the named families (for ablations)."""
    unknown = sorted(set(families) - set(FEATURE_SET.families))
    if unknown:
        raise ValueError(f"unknown feature families {unknown}; known: {sorted(FEATURE_SET.families)}")
    dropped = {c for f in families for c in FEATURE_SET.families[f]}
    return tuple(c for c in FEATURE_SET.columns if c not in dropped)


#: Column labels of every feature frame, built once (pandas would build an index per frame).
_FEATURE_COLUMNS = pd.Index(FEATURE_SET.columns, dtype=object)


def _category_codes(values: np.ndarray, categories: tuple[str, ...]) -> np.ndarray:
    """Stable integer codes from the contract's enum order; unknown or missing -> NaN."""
    lookup = {name: float(i) for i, name in enumerate(categories)}
    return np.fromiter((lookup.get(v, np.nan) for v in values), dtype=np.float64, count=len(values))


def _smoothed_rate(seizures: np.ndarray, declarations: np.ndarray, prior: np.ndarray) -> np.ndarray:
    return (seizures + RATE_SMOOTHING * prior) / (declarations + RATE_SMOOTHING)


def _decayed(events: AsOf) -> np.ndarray:
    """Time-decayed count: the mean of the windowed counts at `DECAY_DAYS`."""
    return np.mean([events.window_counts[d] for d in DECAY_DAYS], axis=0)


def _z_score(value: np.ndarray, count: np.ndarray, total: np.ndarray, total_sq: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / count
        variance = np.maximum(total_sq / count - mean**2, 0.0)
        z = (value - mean) / np.sqrt(variance + 0.05)
    return np.where(count >= MIN_NORM_COUNT, z, np.nan)


def compute_features(
    declarations: pd.DataFrame | dict[str, np.ndarray],
    history: History,
    reference: ReferenceTables,
    keys: dict[str, np.ndarray] | None = None,
    known_codes: dict[tuple[int, str], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Feature rows (in `FEATURE_SET.columns` order) for declarations, as of each filing time.

    `declarations` is a typed contract frame, or the same columns as numpy arrays
    (`features.history.columns_of`), which is what the service passes. `keys` may pass
    the declarations' `declaration_keys` when the caller has them already, and
    `known_codes` their codes in some segments (`History.append_with_codes`).
    """
    columns_in = columns_of(declarations)
    index = declarations.index if isinstance(declarations, pd.DataFrame) else None
    t = to_seconds(columns_in["declared_at"])
    keys = declaration_keys(columns_in) if keys is None else keys
    query = history.query(keys, t, known_codes)
    days = 86_400.0

    exporter = query.as_of("exporter_declarations", windows_days=(RECENT_DAYS, *DECAY_DAYS))
    n_exporter = exporter.count
    tenure = (t - exporter.first_seconds) / days
    with np.errstate(divide="ignore", invalid="ignore"):
        monthly_norm = n_exporter * RECENT_DAYS / np.maximum(tenure, RECENT_DAYS)
        recent_ratio = np.where(n_exporter > 0, exporter.window_counts[RECENT_DAYS] / monthly_norm, np.nan)
        controlled_share = np.where(n_exporter > 0, exporter.sums["controlled"] / n_exporter, np.nan)
    log_weight = log1p_nonneg(columns_in["gross_weight_kg"])

    exporter_seizures = query.as_of("exporter_seizures", windows_days=DECAY_DAYS)
    consignee_declarations = query.as_of("consignee_declarations", windows_days=DECAY_DAYS)
    consignee_seizures = query.as_of("consignee_seizures", windows_days=DECAY_DAYS)

    global_declarations = query.as_of("global_declarations", windows_days=DECAY_DAYS)
    global_seizures = query.as_of("global_seizures", windows_days=DECAY_DAYS)
    with np.errstate(divide="ignore", invalid="ignore"):
        base_rate = np.where(
            global_declarations.count > 0, global_seizures.count / global_declarations.count, 0.0
        )
        decayed_declarations = _decayed(global_declarations)
        decayed_base_rate = np.where(
            decayed_declarations > 0, _decayed(global_seizures) / decayed_declarations, 0.0
        )

    def seizure_rate(name: str) -> np.ndarray:
        declared = query.count(f"{name}_declarations")
        seized = query.count(f"{name}_seizures")
        return _smoothed_rate(seized, declared, base_rate)

    def decayed_rate(seized: AsOf, declared: AsOf) -> np.ndarray:
        return _smoothed_rate(_decayed(seized), _decayed(declared), decayed_base_rate)

    heading_destination_declarations = query.as_of(
        "heading_destination_declarations", windows_days=DECAY_DAYS
    )
    heading_destination_seizures = query.as_of("heading_destination_seizures", windows_days=DECAY_DAYS)
    pair_declarations = query.as_of("pair_declarations", windows_days=DECAY_DAYS)

    # Network: counterparts implicated in a seizure known before filing (two-hop events).
    distinct_consignees = query.count("exporter_new_consignees")
    implicated_consignees = query.count("exporter_implicated_consignees")
    new_exporters = query.as_of("consignee_new_exporters", windows_days=(SHOPPING_DAYS,))
    # the broker's other exporters: the declaration's own exporter left out
    with_broker = query.count("broker_exporter_sightings")  # 1 if this exporter used the broker before
    exporter_implicated = (exporter_seizures.count > 0).astype(np.float64)
    broker_other_exporters = query.count("broker_new_exporters") - with_broker
    broker_other_implicated = query.count("broker_implicated_exporters") - with_broker * exporter_implicated
    global_exporters = query.count("global_new_exporters")
    with np.errstate(divide="ignore", invalid="ignore"):
        implicated_share = np.where(
            global_exporters > 0, query.count("global_implicated_exporters") / global_exporters, 0.0
        )
        implicated_consignee_share = np.where(
            distinct_consignees > 0, implicated_consignees / distinct_consignees, np.nan
        )

    tariff = query.as_of("tariff_line_values")
    per_kg = query.as_of("heading_value_per_kg")
    same_heading = query.count("exporter_heading_declarations")
    with np.errstate(divide="ignore", invalid="ignore"):
        heading_share = np.where(n_exporter > 0, same_heading / n_exporter, np.nan)
    controlled = pd.notna(reference.controlled_substance_array(columns_in["hs_code"]))
    named_substance = pd.notna(reference.substance_in_text_array(columns_in["goods_description"]))
    authorised = np.array([bool(a and a.strip()) for a in columns_in["export_authorization_id"]], dtype=bool)
    hubs = reference.hub_set
    via_hub = np.array([c in hubs for c in columns_in["transshipment_country"]], dtype=np.float64)
    differs = columns_in["consignee_country"] != columns_in["destination_country"]

    columns = {
        "exporter_prior_declarations": n_exporter,
        "exporter_tenure_days": tenure,
        "exporter_distinct_consignees": distinct_consignees,
        "exporter_distinct_destinations": query.count("exporter_new_destinations"),
        "exporter_controlled_share": controlled_share,
        "exporter_heading_share": heading_share,
        "exporter_recent_volume_ratio": recent_ratio,
        "exporter_prior_seizures": exporter_seizures.count,
        # never seized counts as "longer ago than any seizure", so risk can fall monotonically with it
        "exporter_days_since_seizure": np.where(
            np.isnan(exporter_seizures.last_seconds), NEVER_DAYS, (t - exporter_seizures.last_seconds) / days
        ),
        "weight_vs_exporter_norm": _z_score(
            log_weight, n_exporter, exporter.sums["log_weight"], exporter.sums["log_weight_sq"]
        ),
        "consignee_prior_seizures": consignee_seizures.count,
        "consignee_distinct_exporters": new_exporters.count,
        "consignee_prior_declarations": consignee_declarations.count,
        "pair_prior_declarations": pair_declarations.count,
        "exporter_destination_prior_declarations": query.count("exporter_destination_declarations"),
        "broker_seizure_rate": seizure_rate("broker"),
        "heading_destination_seizure_rate": _smoothed_rate(
            heading_destination_seizures.count, heading_destination_declarations.count, base_rate
        ),
        "destination_seizure_rate": seizure_rate("destination"),
        "exporter_seizure_rate_decayed": decayed_rate(exporter_seizures, exporter),
        "consignee_seizure_rate_decayed": decayed_rate(consignee_seizures, consignee_declarations),
        "pair_seizure_rate_decayed": decayed_rate(
            query.as_of("pair_seizures", DECAY_DAYS), pair_declarations
        ),
        "heading_destination_seizure_rate_decayed": decayed_rate(
            heading_destination_seizures, heading_destination_declarations
        ),
        "exporter_implicated_consignees": implicated_consignees,
        "exporter_implicated_consignee_share": implicated_consignee_share,
        "exporter_shared_consignees": query.count("exporter_shared_consignees"),
        "consignee_implicated_exporters": query.count("consignee_implicated_exporters"),
        "consignee_new_exporters_90d": new_exporters.window_counts[SHOPPING_DAYS],
        "broker_implicated_exporters": broker_other_implicated,
        "broker_exporter_seizure_rate": (broker_other_implicated + EXPORTER_SMOOTHING * implicated_share)
        / (broker_other_exporters + EXPORTER_SMOOTHING),
        "controlled_goods": controlled.astype(np.float64),
        "controlled_term_under_generic_heading": (named_substance & ~controlled).astype(np.float64),
        "controlled_without_authorisation": ((controlled | named_substance) & ~authorised).astype(np.float64),
        "unit_value_vs_tariff_norm": _z_score(
            unit_value_log(columns_in),
            tariff.count,
            tariff.sums["log_unit_value"],
            tariff.sums["log_unit_value_sq"],
        ),
        "value_per_kg_vs_heading_norm": _z_score(
            value_per_kg_log(columns_in),
            per_kg.count,
            per_kg.sums["log_value_per_kg"],
            per_kg.sums["log_value_per_kg_sq"],
        ),
        "log_declared_value": log1p_nonneg(columns_in["declared_value_usd"]),
        "log_gross_weight": log_weight,
        "transport_mode": _category_codes(columns_in["transport_mode"], TRANSPORT_MODES),
        "payment_terms": _category_codes(columns_in["payment_terms"], PAYMENT_TERMS),
        "transshipment_via_hub": via_hub,
        "consignee_country_differs": differs.astype(np.float64),
    }
    matrix = np.column_stack([np.asarray(columns[name], dtype=np.float64) for name in FEATURE_SET.columns])
    return pd.DataFrame(matrix, columns=_FEATURE_COLUMNS, index=index)


def compute_online_features(
    declarations: pd.DataFrame | dict[str, np.ndarray], history: History, reference: ReferenceTables
) -> pd.DataFrame:
    """Features of declarations against a history store, as of each one's filing time (the service's path).

    Scoring never adds its own declarations to the history: each row is computed against
    `history` alone, so a declaration scores the same alone and inside any batch (rows of
    one request are not history for each other; a filing system records declarations
    through the history store). A declaration already in the history is fine: features
    count only what happened strictly before its filing time, never the row itself.
    """
    columns = columns_of(declarations)
    features = compute_features(columns, history, reference, keys=declaration_keys(columns))
    if isinstance(declarations, pd.DataFrame):
        features.index = declarations.index
    return features
