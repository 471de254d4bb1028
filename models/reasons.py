"""Plain-language sentences for reason codes, written for the officer who opens the shipment."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from features.contract import PAYMENT_TERMS, TRANSPORT_MODES

Context = Mapping[str, object]


def _days(value: float) -> str:
    return f"{value:.0f} day" + ("" if round(value) == 1 else "s")


def _code(value: float, categories: tuple[str, ...]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not declared"
    index = int(value)
    return categories[index] if 0 <= index < len(categories) else "unknown"


def _substance(ctx: Context) -> str:
    return str(ctx.get("substance") or "a controlled substance")


_TEMPLATES: dict[str, Callable[[float, Context], str]] = {
    "exporter_prior_declarations": lambda v, c: (
        "exporter never seen before" if v == 0 else f"exporter has only {v:.0f} earlier declarations"
    ),
    "exporter_tenure_days": lambda v, c: (
        "exporter never seen before" if math.isnan(v) else f"exporter first seen {_days(v)} ago"
    ),
    "exporter_distinct_consignees": lambda v, c: f"exporter has shipped to {v:.0f} distinct consignees",
    "exporter_distinct_destinations": lambda v, c: f"exporter has shipped to {v:.0f} destination countries",
    "exporter_controlled_share": lambda v, c: (
        "exporter's first declaration"
        if math.isnan(v)
        else f"{v:.0%} of the exporter's shipments were controlled goods"
    ),
    "exporter_heading_share": lambda v, c: (
        "exporter's first declaration"
        if math.isnan(v)
        else f"only {v:.0%} of the exporter's earlier shipments were under HS heading {str(c.get('hs_code', ''))[:4]}"
    ),
    "value_per_kg_vs_heading_norm": lambda v, c: (
        "too few earlier declarations of this heading to judge value per kg"
        if math.isnan(v)
        else f"value per kg is {v:+.1f} standard deviations from the heading's norm"
    ),
    "exporter_recent_volume_ratio": lambda v, c: (
        "exporter's first declaration"
        if math.isnan(v)
        else f"exporter's last-30-day volume is {v:.1f}x its own monthly norm"
    ),
    "exporter_prior_seizures": lambda v, c: f"exporter implicated in {v:.0f} earlier seizure(s)",
    "exporter_days_since_seizure": lambda v, c: (
        "no earlier seizure implicates the exporter"
        if math.isnan(v) or v >= 3650
        else f"exporter implicated in a seizure {_days(v)} ago"
    ),
    "weight_vs_exporter_norm": lambda v, c: (
        "exporter has too few shipments to establish a weight norm"
        if math.isnan(v)
        else f"gross weight is {v:+.1f} standard deviations from the exporter's usual shipments"
    ),
    "consignee_prior_seizures": lambda v, c: f"consignee implicated in {v:.0f} earlier seizure(s)",
    "consignee_distinct_exporters": lambda v, c: (
        "consignee never seen before" if v == 0 else f"consignee receives from {v:.0f} different exporters"
    ),
    "consignee_prior_declarations": lambda v, c: (
        "consignee never seen before" if v == 0 else f"consignee named in {v:.0f} earlier declarations"
    ),
    "pair_prior_declarations": lambda v, c: (
        "first shipment between this exporter and consignee"
        if v == 0
        else f"{v:.0f} earlier shipments between this exporter and consignee"
    ),
    "exporter_destination_prior_declarations": lambda v, c: (
        f"exporter's first shipment to {c.get('destination_country', 'this destination')}"
        if v == 0
        else f"exporter shipped {v:.0f} times before to {c.get('destination_country', 'this destination')}"
    ),
    "broker_seizure_rate": lambda v, c: f"customs broker's earlier declarations seized at a rate of {v:.1%}",
    "heading_destination_seizure_rate": lambda v, c: (
        f"HS heading {str(c.get('hs_code', ''))[:4]} to {c.get('destination_country', '?')} "
        f"has a seizure rate of {v:.1%}"
    ),
    "destination_seizure_rate": lambda v, c: (
        f"shipments to {c.get('destination_country', '?')} have a seizure rate of {v:.1%}"
    ),
    "exporter_seizure_rate_decayed": lambda v, c: (
        f"exporter's recent declarations seized at a (smoothed, time-decayed) rate of {v:.1%}"
    ),
    "consignee_seizure_rate_decayed": lambda v, c: (
        f"recent declarations to the consignee seized at a (smoothed, time-decayed) rate of {v:.1%}"
    ),
    "pair_seizure_rate_decayed": lambda v, c: (
        f"shipments between this exporter and consignee seized at a (smoothed, time-decayed) rate of {v:.1%}"
    ),
    "heading_destination_seizure_rate_decayed": lambda v, c: (
        f"HS heading {str(c.get('hs_code', ''))[:4]} to {c.get('destination_country', '?')} "
        f"has a recent (time-decayed) seizure rate of {v:.1%}"
    ),
    "exporter_implicated_consignees": lambda v, c: (
        "none of the exporter's earlier consignees has been implicated in a seizure"
        if v == 0
        else f"{v:.0f} of the exporter's earlier consignees implicated in seizures (with any exporter)"
    ),
    "exporter_implicated_consignee_share": lambda v, c: (
        "exporter's first declaration"
        if math.isnan(v)
        else f"{v:.0%} of the exporter's earlier consignees implicated in seizures (with any exporter)"
    ),
    "exporter_shared_consignees": lambda v, c: (
        "no consignee of the exporter received from an implicated exporter"
        if v == 0
        else f"{v:.0f} of the exporter's consignees also received from exporters implicated in seizures"
    ),
    "consignee_implicated_exporters": lambda v, c: (
        "no exporter of this consignee has been implicated in a seizure"
        if v == 0
        else f"{v:.0f} exporter(s) that shipped to this consignee implicated in seizures"
    ),
    "consignee_new_exporters_90d": lambda v, c: (
        f"{v:.0f} exporter(s) started shipping to this consignee in the last 90 days"
    ),
    "broker_implicated_exporters": lambda v, c: (
        "no other exporter of this customs broker implicated in a seizure"
        if v == 0
        else f"{v:.0f} other exporter(s) of this customs broker implicated in seizures"
    ),
    "broker_exporter_seizure_rate": lambda v, c: (
        f"{v:.0%} of the customs broker's other exporters implicated in seizures (smoothed)"
    ),
    "controlled_goods": lambda v, c: (
        f"{_substance(c)} is a controlled substance (HS {c.get('hs_code', '?')})"
        if v
        else f"HS {c.get('hs_code', '?')} is not a controlled heading"
    ),
    "controlled_term_under_generic_heading": lambda v, c: (
        f"{_substance(c)} named in the description under non-controlled heading {c.get('hs_code', '?')}"
        if v
        else "description names no controlled substance"
    ),
    "controlled_without_authorisation": lambda v, c: (
        f"{_substance(c)} declared without an export authorisation"
        if v
        else "no controlled goods without authorisation"
    ),
    "unit_value_vs_tariff_norm": lambda v, c: (
        "too few earlier declarations of this tariff line to judge its value"
        if math.isnan(v)
        else f"unit value is {v:+.1f} standard deviations from the tariff line's norm"
        + (" (undervalued)" if v < -1 else "")
    ),
    "log_declared_value": lambda v, c: f"declared value USD {math.expm1(v):,.0f}",
    "log_gross_weight": lambda v, c: f"gross weight {math.expm1(v):,.1f} kg",
    "transport_mode": lambda v, c: f"shipped by {_code(v, TRANSPORT_MODES)}",
    "payment_terms": lambda v, c: f"payment terms: {_code(v, PAYMENT_TERMS)}",
    "transshipment_via_hub": lambda v, c: (
        f"transshipment declared through hub {c.get('transshipment_country') or ''}".strip()
        if v
        else "no hub transshipment"
    ),
    "consignee_country_differs": lambda v, c: (
        f"consignee in {c.get('consignee_country', '?')} but goods go to {c.get('destination_country', '?')}"
        if v
        else "consignee country matches destination"
    ),
}


#: Templates that quote the declaration (HS code, countries, substance). Every other
#: sentence depends on the value alone, so each (feature, value) is formatted once and
#: then remembered (`tests/models` checks that those ignore the context).
READS_CONTEXT = frozenset(
    {
        "exporter_heading_share",
        "exporter_destination_prior_declarations",
        "heading_destination_seizure_rate",
        "heading_destination_seizure_rate_decayed",
        "destination_seizure_rate",
        "controlled_goods",
        "controlled_term_under_generic_heading",
        "controlled_without_authorisation",
        "transshipment_via_hub",
        "consignee_country_differs",
    }
)
_CONTEXT_FREE = frozenset(_TEMPLATES) - READS_CONTEXT
_MEMO_LIMIT = 100_000
_memo: dict[tuple[str, float], str] = {}


def sentence(feature: str, value: float, context: Context) -> str:
    """The plain-language reason for one feature's value on one declaration."""
    if feature in _CONTEXT_FREE and value == value:  # NaN keys never match: not remembered
        key = (feature, value)
        known = _memo.get(key)
        if known is None:
            if len(_memo) > _MEMO_LIMIT:
                _memo.clear()
            known = _memo[key] = _TEMPLATES[feature](float(value), context)
        return known
    template = _TEMPLATES.get(feature)
    if template is None:
        return f"{feature} = {value}"
    return template(float(value), context)


def known_features() -> frozenset[str]:
    return frozenset(_TEMPLATES)
