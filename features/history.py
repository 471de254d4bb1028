"""The export history as point-in-time event indexes, shared by training and the service.

`History.build` indexes a whole history (training, backtests, the service's start-up);
`History.append` adds later declarations and seizures as a new segment (the service's
`/history/*` endpoints) without rebuilding what is already indexed. Feature code only
ever asks a `History` "what was known strictly before t" (see `features.events`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.events import END_OF_TIME, AsOf, KeyedEvents, merge_as_of, to_seconds
from features.reference import ReferenceTables

#: Declaration attributes a seizure naming only a declaration id is attributed through.
_ATTRIBUTE_COLUMNS = ("exporter_id", "consignee_id", "customs_broker_id", "destination_country", "hs_code")
_GLOBAL_KEY = "*"


def columns_of(declarations: pd.DataFrame | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Contract declaration columns as numpy arrays (strings: object arrays with None for missing).

    Feature code works on these arrays so that one declaration costs microseconds, not the
    per-call overhead of pandas; the service passes such a dict directly.
    """
    if isinstance(declarations, dict):
        return declarations
    out: dict[str, np.ndarray] = {}
    for name, series in declarations.items():
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            out[name] = series.to_numpy(dtype="datetime64[us]")
        elif pd.api.types.is_float_dtype(series.dtype):
            out[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            out[name] = series.to_numpy(dtype=object, na_value=None)
    return out


def _join(*parts: np.ndarray) -> np.ndarray:
    """Composite entity key ("A|B"); None when any part is missing."""
    return np.array(
        [None if None in values else "|".join(values) for values in zip(*parts, strict=True)], dtype=object
    )


def heading(hs_code: np.ndarray) -> np.ndarray:
    """HS heading: the first four digits of the tariff line."""
    return np.array([None if c is None else c[:4] for c in hs_code], dtype=object)


def _tariff_line(hs_code: np.ndarray, unit: np.ndarray) -> np.ndarray:
    return np.array(
        [None if c is None or u is None else f"{c[:6]}|{u}" for c, u in zip(hs_code, unit, strict=True)],
        dtype=object,
    )


def log1p_nonneg(values: np.ndarray) -> np.ndarray:
    """log(1 + x) of a non-negative amount, as float64 (missing -> 0)."""
    return np.log1p(np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, None))


def unit_value_log(columns: dict[str, np.ndarray]) -> np.ndarray:
    """log of declared value per declared unit (the thing undervaluation moves)."""
    value = np.nan_to_num(np.asarray(columns["declared_value_usd"], dtype=np.float64), nan=0.0)
    quantity = np.asarray(columns["quantity"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log((value + 0.01) / quantity)


def value_per_kg_log(columns: dict[str, np.ndarray]) -> np.ndarray:
    """log of declared value per kg of gross weight (weight is always in kg, unlike quantity)."""
    value = np.nan_to_num(np.asarray(columns["declared_value_usd"], dtype=np.float64), nan=0.0)
    weight = np.nan_to_num(np.asarray(columns["gross_weight_kg"], dtype=np.float64), nan=0.0)
    return np.log((value + 1.0) / (weight + 0.1))


def declaration_keys(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Entity keys of each declaration, one per history index."""
    exporter, consignee = columns["exporter_id"], columns["consignee_id"]
    destination = columns["destination_country"]
    headings = heading(columns["hs_code"])
    return {
        "exporter": exporter,
        "consignee": consignee,
        "pair": _join(exporter, consignee),
        "exporter_destination": _join(exporter, destination),
        "exporter_heading": _join(exporter, headings),
        "heading": headings,
        "broker": columns["customs_broker_id"],
        "heading_destination": _join(headings, destination),
        "destination": destination,
        "tariff_line": _tariff_line(columns["hs_code"], columns["quantity_unit"]),
        "global": np.full(len(exporter), _GLOBAL_KEY, dtype=object),
    }


@dataclass(frozen=True)
class Segment:
    """One indexed slice of history (the base build or one append)."""

    indexes: dict[str, KeyedEvents]
    attributes: pd.DataFrame  # declaration attributes indexed by declaration_id


@dataclass(frozen=True)
class History:
    """Point-in-time view of declarations and seizures, as indexed segments."""

    segments: tuple[Segment, ...] = field(default_factory=tuple)

    @classmethod
    def build(cls, declarations: pd.DataFrame, seizures: pd.DataFrame, reference: ReferenceTables) -> History:
        """Index a whole history at once."""
        return cls(segments=(_build_segment(declarations, seizures, reference, prior=None),))

    def append(
        self,
        declarations: pd.DataFrame | dict[str, np.ndarray] | None,
        seizures: pd.DataFrame | None,
        reference: ReferenceTables,
    ) -> History:
        """A new History with later declarations and/or seizures added as one segment."""
        declarations = declarations if declarations is not None else _empty_like_declarations()
        seizures = seizures if seizures is not None else _empty_like_seizures()
        segment = _build_segment(declarations, seizures, reference, prior=self)
        return History(segments=(*self.segments, segment))

    @property
    def n_declarations(self) -> int:
        return sum(len(s.attributes) for s in self.segments)

    def knows_declaration(self, declaration_ids: pd.Series) -> np.ndarray:
        """Whether each declaration id is already in the history."""
        known = np.zeros(len(declaration_ids), dtype=bool)
        ids = pd.Index(np.asarray(declaration_ids, dtype=object), dtype=object)
        for segment in self.segments:
            known |= segment.attributes.index.get_indexer(ids) >= 0
        return known

    def attributes_of(self, declaration_ids: pd.Series) -> pd.DataFrame:
        """Exporter, consignee, broker, destination and HS code of known declarations."""
        wanted = np.asarray(declaration_ids, dtype=object)
        frames = [s.attributes.reindex(wanted) for s in self.segments]
        if not frames:
            return pd.DataFrame(
                index=declaration_ids.to_numpy(), columns=list(_ATTRIBUTE_COLUMNS), dtype="str"
            )
        out = frames[0]
        for frame in frames[1:]:
            out = out.fillna(frame)
        return out

    def as_of(
        self, index_name: str, keys: np.ndarray, seconds: np.ndarray, windows_days: tuple[int, ...] = ()
    ) -> AsOf:
        """Aggregates of one index's events strictly before each time, over all segments."""
        parts = [s.indexes[index_name].as_of(keys, seconds, windows_days) for s in self.segments]
        if not parts:
            return KeyedEvents.build(np.array([], dtype=object), np.array([], dtype=np.int64)).as_of(
                keys, seconds, windows_days
            )
        return merge_as_of(parts)


def _empty_like_declarations() -> pd.DataFrame:
    from features.contract import DECLARATION_COLUMNS

    frame = pd.DataFrame({c.name: pd.Series([], dtype="str") for c in DECLARATION_COLUMNS})
    for name in ("quantity", "gross_weight_kg", "declared_value_usd"):
        frame[name] = frame[name].astype("float64")
    frame["declared_at"] = pd.Series([], dtype="datetime64[us]")
    return frame


def _empty_like_seizures() -> pd.DataFrame:
    from features.contract import SEIZURE_COLUMNS

    frame = pd.DataFrame({c.name: pd.Series([], dtype="str") for c in SEIZURE_COLUMNS})
    frame["seized_at"] = pd.Series([], dtype="datetime64[us]")
    frame["quantity_kg"] = frame["quantity_kg"].astype("float64")
    return frame


def _first_sightings(
    keys: np.ndarray, seconds: np.ndarray, prior: History | None, prior_index: str
) -> np.ndarray:
    """True for the first event of each key in this segment that the prior history never saw."""
    order = np.argsort(seconds, kind="stable")
    first = np.zeros(len(keys), dtype=bool)
    first[order] = ~pd.Series(keys[order], dtype=object).duplicated().to_numpy()
    first &= pd.notna(keys)
    if prior is not None and prior.segments and first.any():
        seen = prior.as_of(prior_index, keys, np.full(len(keys), END_OF_TIME, dtype=np.int64)).count > 0
        first &= ~seen
    return first


def _object(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype=object, na_value=None)


def _build_segment(
    declarations: pd.DataFrame | dict[str, np.ndarray],
    seizures: pd.DataFrame,
    reference: ReferenceTables,
    prior: History | None,
) -> Segment:
    columns = columns_of(declarations)
    decl_seconds = to_seconds(columns["declared_at"])
    keys = declaration_keys(columns)
    controlled = np.array(
        [s is not None for s in reference.controlled_substance_array(columns["hs_code"])], dtype=np.float64
    )
    log_weight = log1p_nonneg(columns["gross_weight_kg"])
    log_unit_value = unit_value_log(columns)
    valid_unit_value = np.isfinite(log_unit_value)
    log_value_per_kg = value_per_kg_log(columns)

    # object dtype: the index's hash table is built once and reused by every lookup
    ids = pd.Index(np.asarray(columns["declaration_id"], dtype=object), dtype=object, name="declaration_id")
    attributes = pd.DataFrame(
        {
            name: pd.Series(np.asarray(columns[name], dtype=object), index=ids, dtype="str")
            for name in _ATTRIBUTE_COLUMNS
        },
        index=ids,
    )

    indexes: dict[str, KeyedEvents] = {
        "exporter_declarations": KeyedEvents.build(
            keys["exporter"],
            decl_seconds,
            {"controlled": controlled, "log_weight": log_weight, "log_weight_sq": log_weight**2},
        ),
        "consignee_declarations": KeyedEvents.build(keys["consignee"], decl_seconds),
        "pair_declarations": KeyedEvents.build(keys["pair"], decl_seconds),
        "exporter_destination_declarations": KeyedEvents.build(keys["exporter_destination"], decl_seconds),
        "exporter_heading_declarations": KeyedEvents.build(keys["exporter_heading"], decl_seconds),
        "heading_value_per_kg": KeyedEvents.build(
            keys["heading"],
            decl_seconds,
            {"log_value_per_kg": log_value_per_kg, "log_value_per_kg_sq": log_value_per_kg**2},
        ),
        "broker_declarations": KeyedEvents.build(keys["broker"], decl_seconds),
        "heading_destination_declarations": KeyedEvents.build(keys["heading_destination"], decl_seconds),
        "destination_declarations": KeyedEvents.build(keys["destination"], decl_seconds),
        "global_declarations": KeyedEvents.build(keys["global"], decl_seconds),
        "tariff_line_values": KeyedEvents.build(
            np.where(valid_unit_value, keys["tariff_line"], None),
            decl_seconds,
            {
                "log_unit_value": np.where(valid_unit_value, log_unit_value, 0.0),
                "log_unit_value_sq": np.where(valid_unit_value, log_unit_value**2, 0.0),
            },
        ),
    }

    # Distinct counts: an entity gains a new consignee/destination/exporter at the first
    # sighting of the relationship.
    new_pair = _first_sightings(keys["pair"], decl_seconds, prior, "pair_declarations")
    new_route = _first_sightings(
        keys["exporter_destination"], decl_seconds, prior, "exporter_destination_declarations"
    )
    indexes["exporter_new_consignees"] = KeyedEvents.build(keys["exporter"][new_pair], decl_seconds[new_pair])
    indexes["consignee_new_exporters"] = KeyedEvents.build(
        keys["consignee"][new_pair], decl_seconds[new_pair]
    )
    indexes["exporter_new_destinations"] = KeyedEvents.build(
        keys["exporter"][new_route], decl_seconds[new_route]
    )

    # Seizures count from seized_at. Those naming a declaration are attributed through it;
    # those naming only an exporter or consignee still count for that entity.
    seizure_seconds = to_seconds(seizures["seized_at"])
    declaration_ids = seizures["declaration_id"]
    linked = pd.DataFrame(index=seizures.index, columns=list(_ATTRIBUTE_COLUMNS), dtype="str")
    if declaration_ids.notna().any():
        own = attributes.reindex(declaration_ids.astype("str").to_numpy())
        own.index = seizures.index
        if prior is not None and prior.segments:
            earlier = prior.attributes_of(declaration_ids)
            earlier.index = seizures.index
            own = own.fillna(earlier)
        linked = own.where(pd.DataFrame({c: declaration_ids.notna() for c in own.columns}, index=own.index))
    exporter = _object(seizures["exporter_id"].fillna(linked["exporter_id"]))
    consignee = _object(seizures["consignee_id"].fillna(linked["consignee_id"]))
    on_declaration = linked["exporter_id"].notna().to_numpy()
    destination = _object(linked["destination_country"])
    linked_keys = {
        "broker": _object(linked["customs_broker_id"]),
        "heading_destination": _join(heading(_object(linked["hs_code"])), destination),
        "destination": destination,
        "global": np.where(on_declaration, _GLOBAL_KEY, None),
    }
    indexes["exporter_seizures"] = KeyedEvents.build(exporter, seizure_seconds)
    indexes["consignee_seizures"] = KeyedEvents.build(consignee, seizure_seconds)
    for name, key in linked_keys.items():
        indexes[f"{name}_seizures"] = KeyedEvents.build(key, seizure_seconds)
    return Segment(indexes=indexes, attributes=attributes)
