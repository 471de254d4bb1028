"""The export history as point-in-time event indexes, shared by training and the service.

`History.build` indexes a whole history (training, backtests, the service's start-up);
`History.append` adds declarations and seizures as a new segment (the service's
`/history/*` endpoints) without rebuilding what is already indexed. Feature code only
ever asks a `History` "what was known strictly before t" (see `features.events`).

Every answer is a function of the set of rows only: any split of the same rows into a
build and appends, in any arrival order, answers exactly as `History.build` of all rows.
Rows may arrive out of time order (back-dated declarations; seizures before the
declarations they name), so a segment also records what a later segment needs to correct
the running answer: the earliest second of each relationship it saw (a later, earlier
sighting retracts it with a -1 event) and the seizures naming declarations not yet known
("pending"; the segment carrying the declaration adds their attributed events). A
declaration id counts once: a later row with a known id is ignored, in a build as in an
append (the contract validator refuses duplicates anyway).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.events import (
    ENCODE_BY_DICT_MAX,
    AsOf,
    KeyedEvents,
    encode,
    merge_as_of,
    quantise,
    to_seconds,
)
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


def nan_to_zero(values: np.ndarray) -> np.ndarray:
    """`np.nan_to_num(values, nan=0.0)` as float64, skipping its work when every value is finite."""
    values = np.asarray(values, dtype=np.float64)
    return values if np.isfinite(values).all() else np.nan_to_num(values, nan=0.0)


def log1p_nonneg(values: np.ndarray) -> np.ndarray:
    """log(1 + x) of a non-negative amount, as float64 (missing -> 0)."""
    return np.log1p(np.clip(nan_to_zero(values), 0.0, None))


def unit_value_log(columns: dict[str, np.ndarray]) -> np.ndarray:
    """log of declared value per declared unit (the thing undervaluation moves)."""
    value = nan_to_zero(columns["declared_value_usd"])
    quantity = np.asarray(columns["quantity"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log((value + 0.01) / quantity)


def value_per_kg_log(columns: dict[str, np.ndarray]) -> np.ndarray:
    """log of declared value per kg of gross weight (weight is always in kg, unlike quantity)."""
    value = nan_to_zero(columns["declared_value_usd"])
    weight = nan_to_zero(columns["gross_weight_kg"])
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
        "broker_exporter": _join(columns["customs_broker_id"], exporter),
        "heading_destination": _join(headings, destination),
        "destination": destination,
        "tariff_line": _tariff_line(columns["hs_code"], columns["quantity_unit"]),
        "global": np.full(len(exporter), _GLOBAL_KEY, dtype=object),
    }


@dataclass(frozen=True)
class Segment:
    """One indexed slice of history (the base build or one append)."""

    indexes: dict[str, KeyedEvents]
    ids: pd.Index  # declaration ids of the slice (object dtype; its hash table is reused)
    attribute_values: dict[str, np.ndarray]  # `_ATTRIBUTE_COLUMNS` of those declarations
    vocabularies: dict[str, pd.Index]  # entity kind -> the code book its indexes share
    #: relationship kind ("pair", "exporter_destination") -> earliest second of each code
    #: in this segment's declarations (`_NEVER` for none)
    first_seen: dict[str, np.ndarray]
    #: seizures of this segment naming a declaration unknown when it was indexed
    #: (`_PENDING_COLUMNS` and their seized second)
    pending: pd.DataFrame | None = None
    #: relationship kind (`_RELATION_ENDS`) -> this segment's relationships: their key, the
    #: keys of their two ends ("a", "b") and their earliest second in this segment
    relations: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: seizure kind ("exporter", "consignee") -> earliest seized second of each key this
    #: segment's seizures (and the pending seizures it resolved) implicate
    first_seized: dict[str, pd.Series] = field(default_factory=dict)

    @functools.cached_property
    def pending_ids(self) -> pd.Index:
        """Declaration ids the pending seizures name (object dtype; its hash table is reused)."""
        ids = [] if self.pending is None else _object(self.pending["declaration_id"])
        return pd.Index(ids, dtype=object)

    @functools.cached_property
    def attributes(self) -> pd.DataFrame:
        """Declaration attributes indexed by declaration_id (built on first use: seizure attribution)."""
        return self.attributes_frame(self.ids, self.attribute_values)

    @staticmethod
    def attributes_frame(ids: pd.Index, values: dict[str, np.ndarray]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                name: pd.Series(np.asarray(v, dtype=object), index=ids, dtype="str")
                for name, v in values.items()
            },
            index=ids,
        )

    @functools.cached_property
    def _lookups(self) -> dict[str, dict[object, int]]:
        return {}

    @functools.cached_property
    def _relation_ends(self) -> dict[tuple[str, str], dict[object, np.ndarray]]:
        return {}

    def relations_with(self, relation: str, end: str, keys: np.ndarray) -> pd.DataFrame:
        """This segment's relationships of a kind whose `end` ("a" or "b") is one of `keys`."""
        table = self.relations.get(relation)
        if table is None or not len(table) or not len(keys):
            return _EMPTY_RELATIONS
        rows_of = self._relation_ends.get((relation, end))
        if rows_of is None:  # end key -> its rows, built once per segment (appends look up a few keys)
            codes, uniques = pd.factorize(table[end].to_numpy(dtype=object))
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
            rows_of = self._relation_ends[relation, end] = {
                key: order[bounds[i] : bounds[i + 1]] for i, key in enumerate(uniques)
            }
        empty = np.zeros(0, dtype=np.intp)
        found = [rows_of.get(key, empty) for key in pd.unique(np.asarray(keys, dtype=object))]
        return table.iloc[np.concatenate(found)] if found else _EMPTY_RELATIONS

    def codes(self, kind: str, keys: np.ndarray) -> np.ndarray:
        """Codes of `keys` in the kind's code book (-1 for keys this segment never saw)."""
        vocabulary = self.vocabularies[kind]
        if len(keys) > ENCODE_BY_DICT_MAX:  # whole histories: pandas' hash join, no Python dict
            return encode(vocabulary, {}, keys)
        lookup = self._lookups.get(kind)
        if lookup is None:  # a few declarations (the service): a dict, built once per kind
            lookup = self._lookups[kind] = {key: code for code, key in enumerate(vocabulary)}
        return encode(vocabulary, lookup, keys)


@dataclass(frozen=True)
class History:
    """Point-in-time view of declarations and seizures, as indexed segments."""

    segments: tuple[Segment, ...] = field(default_factory=tuple)

    @classmethod
    def build(cls, declarations: pd.DataFrame, seizures: pd.DataFrame, reference: ReferenceTables) -> History:
        """Index a whole history at once."""
        return cls(segments=(_build_segment(declarations, seizures, reference, prior=None)[0],))

    def append(
        self,
        declarations: pd.DataFrame | dict[str, np.ndarray] | None,
        seizures: pd.DataFrame | None,
        reference: ReferenceTables,
        keys: dict[str, np.ndarray] | None = None,
    ) -> History:
        """A new History with declarations and/or seizures added as one segment.

        The rows may be of any time (back-dated declarations, seizures naming declarations
        not yet recorded): the result answers as `History.build` of all rows would.
        Declarations whose id is already known are ignored. `self` is not changed (readers
        holding it keep a consistent view); appending nothing returns `self`.
        `keys` may pass the declarations' `declaration_keys`, when the caller has them already.
        """
        if (declarations is None or not len(declarations["declaration_id"])) and (
            seizures is None or not len(seizures)
        ):
            return self
        return self.append_with_codes(declarations, seizures, reference, keys)[0]

    def append_with_codes(
        self,
        declarations: pd.DataFrame | dict[str, np.ndarray] | None,
        seizures: pd.DataFrame | None,
        reference: ReferenceTables,
        keys: dict[str, np.ndarray] | None = None,
        prior_query: HistoryQuery | None = None,
    ) -> tuple[History, dict[tuple[int, str], np.ndarray]]:
        """`append`, and the appended declarations' keys as codes of the new segment.

        The codes are keyed `(segment position, entity kind)` as `History.query` takes them:
        a query about exactly the appended declarations need not encode its keys again.
        An ignored (already known) declaration gets the codes its keys have in the new
        segment (-1 where no recorded row shares them). `prior_query` is accepted for
        compatibility and not needed.
        """
        del prior_query
        declarations = declarations if declarations is not None else _empty_like_declarations()
        seizures = seizures if seizures is not None else _empty_like_seizures()
        segment, codes = _build_segment(declarations, seizures, reference, prior=self, keys=keys)
        position = len(self.segments)
        return History(segments=(*self.segments, segment)), {(position, k): c for k, c in codes.items()}

    @property
    def n_declarations(self) -> int:
        return sum(len(s.ids) for s in self.segments)

    def knows_declaration(self, declaration_ids: pd.Series | np.ndarray) -> np.ndarray:
        """Whether each declaration id is already in the history."""
        known = np.zeros(len(declaration_ids), dtype=bool)
        ids = pd.Index(np.asarray(declaration_ids, dtype=object), dtype=object)
        for segment in self.segments:
            known |= segment.ids.get_indexer(ids) >= 0
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

    def query(
        self,
        keys: dict[str, np.ndarray],
        seconds: np.ndarray,
        known_codes: dict[tuple[int, str], np.ndarray] | None = None,
    ) -> HistoryQuery:
        """As-of questions about these declarations' entities (`declaration_keys`) at `seconds`.

        `known_codes` may pass codes of these keys already known per `(segment position,
        kind)`, as `append_with_codes` returns them.
        """
        return HistoryQuery(self, keys, np.asarray(seconds, dtype=np.int64), known_codes)

    def count_before(self, index_name: str, keys: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """`as_of(index_name, keys, seconds).count`, computed with counts only."""
        return self.query({INDEX_KINDS[index_name]: keys}, seconds).count(index_name)

    def as_of(
        self, index_name: str, keys: np.ndarray, seconds: np.ndarray, windows_days: tuple[int, ...] = ()
    ) -> AsOf:
        """Aggregates of one index's events strictly before each time, over all segments."""
        return self.query({INDEX_KINDS[index_name]: keys}, seconds).as_of(index_name, windows_days)


#: Entity kind (a `declaration_keys` name) each index is keyed by.
INDEX_KINDS: dict[str, str] = {
    "exporter_declarations": "exporter",
    "exporter_new_consignees": "exporter",
    "exporter_new_destinations": "exporter",
    "exporter_seizures": "exporter",
    "consignee_declarations": "consignee",
    "consignee_new_exporters": "consignee",
    "consignee_seizures": "consignee",
    "pair_declarations": "pair",
    "exporter_destination_declarations": "exporter_destination",
    "exporter_heading_declarations": "exporter_heading",
    "heading_value_per_kg": "heading",
    "broker_declarations": "broker",
    "broker_seizures": "broker",
    "heading_destination_declarations": "heading_destination",
    "heading_destination_seizures": "heading_destination",
    "destination_declarations": "destination",
    "destination_seizures": "destination",
    "global_declarations": "global",
    "global_seizures": "global",
    "tariff_line_values": "tariff_line",
    "pair_seizures": "pair",
    "broker_new_exporters": "broker",
    "broker_exporter_sightings": "broker_exporter",
    "global_new_exporters": "global",
    "exporter_implicated_consignees": "exporter",
    "consignee_implicated_exporters": "consignee",
    "broker_implicated_exporters": "broker",
    "global_implicated_exporters": "global",
    "exporter_shared_consignees": "exporter",
}


class HistoryQuery:
    """The as-of questions of one set of declarations: each entity key is encoded once per segment.

    Indexes of one entity kind share their segment's code book, so the exporter's
    declarations, seizures and new relationships are all looked up with one encoding.
    Answers equal `History.as_of` / `History.count_before` exactly.
    """

    def __init__(
        self,
        history: History,
        keys: dict[str, np.ndarray],
        seconds: np.ndarray,
        known_codes: dict[tuple[int, str], np.ndarray] | None = None,
    ) -> None:
        self._segments = history.segments
        self._keys = keys
        self._seconds = seconds
        self._codes: dict[tuple[int, str], np.ndarray] = dict(known_codes or {})

    def _codes_of(self, position: int, kind: str) -> np.ndarray:
        try:
            return self._codes[position, kind]
        except KeyError:
            codes = self._codes[position, kind] = self._segments[position].codes(kind, self._keys[kind])
            return codes

    def count(self, index_name: str, seconds: np.ndarray | None = None) -> np.ndarray:
        """Events of the index strictly before each declaration's time, or before `seconds` (float64)."""
        kind = INDEX_KINDS[index_name]
        seconds = self._seconds if seconds is None else seconds
        total = np.zeros(len(seconds), dtype=np.float64)
        for position, segment in enumerate(self._segments):
            index = segment.indexes[index_name]
            if len(index):
                total += index.count_before(self._keys[kind], seconds, self._codes_of(position, kind))
        return total

    @property
    def known_codes(self) -> dict[tuple[int, str], np.ndarray]:
        """The codes encoded so far, keyed as `History.query` takes them."""
        return dict(self._codes)

    def as_of(self, index_name: str, windows_days: tuple[int, ...] = ()) -> AsOf:
        """Aggregates of the index's events strictly before each declaration's time."""
        kind = INDEX_KINDS[index_name]
        keys = self._keys[kind]
        parts = [
            segment.indexes[index_name].as_of(
                keys, self._seconds, windows_days, self._codes_of(position, kind)
            )
            for position, segment in enumerate(self._segments)
        ]
        if not parts:
            return _NO_EVENTS.as_of(keys, self._seconds, windows_days)
        return merge_as_of(parts)


@functools.cache
def _empty_like_declarations() -> pd.DataFrame:
    from features.contract import DECLARATION_COLUMNS

    frame = pd.DataFrame({c.name: pd.Series([], dtype="str") for c in DECLARATION_COLUMNS})
    for name in ("quantity", "gross_weight_kg", "declared_value_usd"):
        frame[name] = frame[name].astype("float64")
    frame["declared_at"] = pd.Series([], dtype="datetime64[us]")
    return frame


@functools.cache
def _empty_like_seizures() -> pd.DataFrame:
    from features.contract import SEIZURE_COLUMNS

    frame = pd.DataFrame({c.name: pd.Series([], dtype="str") for c in SEIZURE_COLUMNS})
    frame["seized_at"] = pd.Series([], dtype="datetime64[us]")
    frame["quantity_kg"] = frame["quantity_kg"].astype("float64")
    return frame


#: "Never seen" in `Segment.first_seen` (later than any second).
_NEVER = np.iinfo(np.int64).max


def _first_sightings(
    kind: str, codes: np.ndarray, seconds: np.ndarray, keys: np.ndarray, n_codes: int, prior: History | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Signed first-sighting events of a relationship kind, and each code's earliest second.

    `codes` are the declarations' keys (`keys`) as codes of this segment's code book
    (`n_codes` codes, -1: none). A key's first sighting is its earliest declaration over
    the prior segments and this one. When this segment sees a key earlier than every prior
    segment did, it emits +1 at its own earliest second and -1 at the prior earliest (the
    sighting the prior counted): sums of weights then equal one build's counts, whatever
    the segmentation. Returns (declaration rows, seconds, weights) of the events and the
    earliest second of each code of this segment.
    """
    rows = np.flatnonzero(codes >= 0)
    rows = rows[np.argsort(seconds[rows], kind="stable")]
    _, first = np.unique(codes[rows], return_index=True)  # first occurrence in time order
    first_rows = rows[first]  # one row per code, in code order
    own = seconds[first_rows]
    earliest = np.full(n_codes, _NEVER, dtype=np.int64)
    earliest[codes[first_rows]] = own
    before = np.full(len(first_rows), _NEVER, dtype=np.int64)
    if prior is not None and len(first_rows):
        first_keys = keys[first_rows]
        for segment in prior.segments:
            seen = segment.first_seen[kind]
            if len(seen):
                found = segment.codes(kind, first_keys)
                np.minimum(before, np.where(found >= 0, seen[np.maximum(found, 0)], _NEVER), out=before)
    new = own < before
    retracted = new & (before != _NEVER)
    event_rows = np.concatenate([first_rows[new], first_rows[retracted]])
    event_seconds = np.concatenate([own[new], before[retracted]])
    weights = np.concatenate([np.ones(new.sum()), -np.ones(retracted.sum())])
    return event_rows, event_seconds, weights, earliest


def _object(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype=object, na_value=None)


#: What a pending seizure keeps of itself: the declaration it names, the entities it names.
_PENDING_COLUMNS = ("declaration_id", "exporter_id", "consignee_id")


def _attributed_keys(seizures: pd.DataFrame, linked: pd.DataFrame) -> dict[str, np.ndarray]:
    """Entity keys each seizure counts for: named directly, or through its `linked` declaration.

    `linked` holds the named declaration's `_ATTRIBUTE_COLUMNS` (missing when unknown),
    aligned with `seizures`.
    """
    on_declaration = linked["exporter_id"].notna().to_numpy()
    destination = _object(linked["destination_country"])
    exporter = _object(seizures["exporter_id"].fillna(linked["exporter_id"]))
    consignee = _object(seizures["consignee_id"].fillna(linked["consignee_id"]))
    return {
        "exporter": exporter,
        "consignee": consignee,
        "pair": _join(exporter, consignee),
        "broker": _object(linked["customs_broker_id"]),
        "heading_destination": _join(heading(_object(linked["hs_code"])), destination),
        "destination": destination,
        "global": np.where(on_declaration, _GLOBAL_KEY, None),
    }


def _no_links(seizures: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(index=seizures.index, columns=list(_ATTRIBUTE_COLUMNS), dtype="str")


def _seizure_keys(
    seizures: pd.DataFrame, attributes: pd.DataFrame, prior: History | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Entity keys each seizure counts for, and which seizures name a declaration not known yet.

    A seizure naming a declaration (in this segment or a prior one) is attributed through
    it; one naming an unknown declaration counts only for the entities it names itself
    until that declaration arrives (`_resolved_pending`).
    """
    declaration_ids = seizures["declaration_id"]
    linked = _no_links(seizures)
    names = declaration_ids.notna().to_numpy()
    unknown = np.zeros(len(seizures), dtype=bool)
    if names.any():
        wanted = declaration_ids.astype("str").to_numpy()
        own = attributes.reindex(wanted)
        own.index = seizures.index
        known = attributes.index.get_indexer(pd.Index(wanted, dtype=object)) >= 0
        if prior is not None and prior.segments:
            earlier = prior.attributes_of(declaration_ids)
            earlier.index = seizures.index
            own = own.fillna(earlier)
            known |= prior.knows_declaration(wanted)
        linked = own.where(pd.DataFrame({c: names for c in own.columns}, index=own.index))
        unknown = names & ~known
    return _attributed_keys(seizures, linked), unknown


def _resolved_pending(
    prior: History | None, ids: pd.Index, attributes: Callable[[], pd.DataFrame]
) -> tuple[dict, np.ndarray]:
    """Attributed seizure events that prior segments' pending seizures gain from these declarations.

    Only what the seizure did not already count for is added (an exporter or consignee it
    named itself was counted when it arrived), so the totals equal one build's attribution.
    `attributes()` gives the declarations' attributes frame. Returns keys by seizure kind
    and the seized seconds.
    """
    parts = []
    if prior is not None and len(ids):
        for segment in prior.segments:
            if segment.pending is not None:
                found, _ = segment.pending_ids.get_indexer_non_unique(ids)
                if (found >= 0).any():
                    parts.append(segment.pending.iloc[found[found >= 0]])
    if not parts:
        return {}, np.zeros(0, dtype=np.int64)
    resolved = pd.concat(parts, ignore_index=True)
    attributes = attributes()
    linked = attributes.reindex(resolved["declaration_id"].astype("str").to_numpy())
    linked.index = resolved.index
    full = _attributed_keys(resolved, linked)
    direct = _attributed_keys(resolved, _no_links(resolved))
    keys = {kind: np.where(pd.isna(direct[kind]), full[kind], None) for kind in full}
    return keys, resolved["second"].to_numpy(dtype=np.int64)


def _vocabulary(*key_arrays: np.ndarray) -> tuple[pd.Index, list[np.ndarray]]:
    """The shared code book of one entity kind, and each array's keys as codes in it (-1: none)."""
    keys = np.concatenate([np.asarray(k, dtype=object) for k in key_arrays])
    codes, uniques = pd.factorize(keys, sort=False)  # missing keys -> -1
    bounds = np.cumsum([len(k) for k in key_arrays])[:-1]
    return pd.Index(uniques, dtype=object), np.split(codes, bounds)


def _build_segment(
    declarations: pd.DataFrame | dict[str, np.ndarray],
    seizures: pd.DataFrame,
    reference: ReferenceTables,
    prior: History | None,
    keys: dict[str, np.ndarray] | None = None,
) -> tuple[Segment, dict[str, np.ndarray]]:
    """The segment, and the declarations' keys as codes in its code books (by entity kind).

    Declarations whose id is repeated (within these rows, or known to `prior`) are ignored;
    their codes are those of their keys in the code books (-1 when no kept row has them).
    """
    given_columns = columns_of(declarations)
    given_keys = declaration_keys(given_columns) if keys is None else keys
    ids_in = pd.Index(np.asarray(given_columns["declaration_id"], dtype=object), dtype=object)
    repeated = ids_in.duplicated(keep="first")
    if prior is not None and prior.segments and len(ids_in):
        repeated |= prior.knows_declaration(ids_in)
    columns, keys = given_columns, given_keys
    if repeated.any():
        columns = {name: np.asarray(v)[~repeated] for name, v in given_columns.items()}
        keys = {name: np.asarray(v)[~repeated] for name, v in given_keys.items()}

    decl_seconds = to_seconds(columns["declared_at"])
    controlled = np.array(
        [s is not None for s in reference.controlled_substance_array(columns["hs_code"])], dtype=np.float64
    )
    log_weight = log1p_nonneg(columns["gross_weight_kg"])
    log_unit_value = unit_value_log(columns)
    valid_unit_value = np.isfinite(log_unit_value)
    log_value_per_kg = value_per_kg_log(columns)

    # object dtype: the index's hash table is built once and reused by every lookup
    ids = pd.Index(np.asarray(columns["declaration_id"], dtype=object), dtype=object, name="declaration_id")
    attribute_values = {name: columns[name] for name in _ATTRIBUTE_COLUMNS}

    @functools.cache
    def attributes() -> pd.DataFrame:  # built only when a seizure needs it
        return Segment.attributes_frame(ids, attribute_values)

    # Seizures count from seized_at. Those naming a declaration are attributed through it;
    # those naming only an exporter or consignee still count for that entity. Seizures of
    # earlier segments that named one of these declarations before it was known gain
    # the attributions they missed.
    seizure_keys: dict[str, np.ndarray] = {}
    pending = None
    seizure_seconds = np.zeros(0, dtype=np.int64)
    if len(seizures):
        seizure_keys, unknown = _seizure_keys(seizures, attributes(), prior)
        seizure_seconds = to_seconds(seizures["seized_at"])
        if unknown.any():
            pending = seizures.loc[unknown, list(_PENDING_COLUMNS)].reset_index(drop=True)
            pending["second"] = seizure_seconds[unknown]
    resolved_keys, resolved_seconds = _resolved_pending(prior, ids, attributes)
    if resolved_keys:
        seizure_keys = {
            kind: np.concatenate([seizure_keys[kind], resolved_keys[kind]])
            if seizure_keys
            else resolved_keys[kind]
            for kind in resolved_keys
        }
        seizure_seconds = np.concatenate([seizure_seconds, resolved_seconds])
    seized = len(seizure_seconds) > 0

    # Indexes of one entity kind share one code book, so a query encodes its keys once per kind.
    vocabularies: dict[str, pd.Index] = {}
    codes: dict[str, np.ndarray] = {}  # declarations' keys as codes
    seizure_codes: dict[str, np.ndarray] = {}
    for kind in keys:
        vocabularies[kind], (codes[kind], *rest) = _vocabulary(
            keys[kind], *([seizure_keys[kind]] if kind in seizure_keys else [])
        )
        if rest:
            seizure_codes[kind] = rest[0]

    # First sightings of relationships, this segment's relationships and implications,
    # and the two-hop events they give (`_implication_events`). Events keyed by an entity
    # this segment has not seen extend its code book (appended: earlier codes stay valid).
    sightings = {
        kind: _first_sightings(kind, codes[kind], decl_seconds, keys[kind], len(vocabularies[kind]), prior)
        for kind in _SIGHTINGS
    }
    relations = {
        kind: _relation_table(kind, codes[kind], sightings[kind][3], vocabularies[kind], keys)
        for kind in _RELATION_ENDS
    }
    first_seized = {
        kind: _earliest_by_key(seizure_keys.get(kind), seizure_seconds) for kind in _IMPLICATED_KINDS
    }
    implications = {
        spec.index: _implication_events(spec, relations, first_seized, prior) for spec in _IMPLICATIONS
    }
    implications[_SHARED_CONSIGNEES] = _shared_consignee_events(
        relations["pair"], first_seized["exporter"], prior
    )
    for index_name, entity_kind in _TWO_HOP_KINDS.items():
        entity_keys = implications[index_name][0]
        vocabulary = vocabularies[entity_kind]
        unseen = pd.unique(entity_keys[vocabulary.get_indexer(pd.Index(entity_keys, dtype=object)) < 0])
        if len(unseen):
            vocabularies[entity_kind] = vocabulary.append(pd.Index(unseen, dtype=object))
    first_seen = {
        kind: np.concatenate(
            [earliest, np.full(len(vocabularies[kind]) - len(earliest), _NEVER, dtype=np.int64)]
        )
        for kind, (*_, earliest) in sightings.items()
    }

    def build(
        kind: str,
        key_codes: np.ndarray,
        seconds: np.ndarray,
        values: dict | None = None,
        weights: np.ndarray | None = None,
    ) -> KeyedEvents:
        return KeyedEvents.build(key_codes, seconds, values, vocabulary=vocabularies[kind], weights=weights)

    indexes: dict[str, KeyedEvents] = {
        "exporter_declarations": build(
            "exporter",
            codes["exporter"],
            decl_seconds,
            {"controlled": controlled, "log_weight": log_weight, "log_weight_sq": quantise(log_weight) ** 2},
        ),
        "consignee_declarations": build("consignee", codes["consignee"], decl_seconds),
        "pair_declarations": build("pair", codes["pair"], decl_seconds),
        "exporter_destination_declarations": build(
            "exporter_destination", codes["exporter_destination"], decl_seconds
        ),
        "exporter_heading_declarations": build("exporter_heading", codes["exporter_heading"], decl_seconds),
        "heading_value_per_kg": build(
            "heading",
            codes["heading"],
            decl_seconds,
            {"log_value_per_kg": log_value_per_kg, "log_value_per_kg_sq": quantise(log_value_per_kg) ** 2},
        ),
        "broker_declarations": build("broker", codes["broker"], decl_seconds),
        "heading_destination_declarations": build(
            "heading_destination", codes["heading_destination"], decl_seconds
        ),
        "destination_declarations": build("destination", codes["destination"], decl_seconds),
        "global_declarations": build("global", codes["global"], decl_seconds),
        "tariff_line_values": build(
            "tariff_line",
            np.where(valid_unit_value, codes["tariff_line"], -1),
            decl_seconds,
            {
                "log_unit_value": np.where(valid_unit_value, log_unit_value, 0.0),
                "log_unit_value_sq": np.where(valid_unit_value, quantise(log_unit_value) ** 2, 0.0),
            },
        ),
    }

    # Distinct counts: an entity gains a new consignee/destination/exporter at the first
    # sighting of the relationship (signed events keep that exact across segments).
    for kind, targets in _SIGHTINGS.items():
        rows, seconds, weights, _ = sightings[kind]
        for index_name, entity in targets:
            indexes[index_name] = build(entity, codes[entity][rows], seconds, weights=weights)
    for index_name, entity_kind in _TWO_HOP_KINDS.items():
        entity_keys, seconds, weights = implications[index_name]
        indexes[index_name] = build(
            entity_kind,
            vocabularies[entity_kind].get_indexer(pd.Index(entity_keys, dtype=object)),
            seconds,
            weights=weights,
        )
    for kind in _SEIZURE_KINDS:
        indexes[f"{kind}_seizures"] = (
            build(kind, seizure_codes[kind], seizure_seconds) if seized else _NO_EVENTS
        )
    segment = Segment(
        indexes=indexes,
        ids=ids,
        attribute_values=attribute_values,
        vocabularies=vocabularies,
        first_seen=first_seen,
        pending=pending,
        relations=relations,
        first_seized=first_seized,
    )
    if attributes.cache_info().currsize:
        segment.__dict__["attributes"] = attributes()  # the cached property, already built
    if repeated.any():  # codes of every given row, as the caller's keys are aligned with them
        codes = {kind: segment.codes(kind, given_keys[kind]) for kind in given_keys}
    return segment, codes


#: Relationship kinds whose first sightings are events: index name and the entity it counts for.
_SIGHTINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "pair": (("exporter_new_consignees", "exporter"), ("consignee_new_exporters", "consignee")),
    "exporter_destination": (("exporter_new_destinations", "exporter"),),
    "broker_exporter": (("broker_new_exporters", "broker"), ("broker_exporter_sightings", "broker_exporter")),
    "exporter": (("global_new_exporters", "global"),),
}
_SEIZURE_KINDS = ("exporter", "consignee", "pair", "broker", "heading_destination", "destination", "global")

#: Relationship kinds kept per segment for two-hop events: the entity kinds of their ends (a, b).
_RELATION_ENDS: dict[str, tuple[str, str]] = {
    "pair": ("exporter", "consignee"),
    "broker_exporter": ("broker", "exporter"),
    "exporter": ("global", "exporter"),
}
_IMPLICATED_KINDS = ("exporter", "consignee")
_EMPTY_RELATIONS = pd.DataFrame(
    {
        "key": pd.Series([], dtype=object),
        "a": pd.Series([], dtype=object),
        "b": pd.Series([], dtype=object),
        "first": pd.Series([], dtype=np.int64),
    }
)


@dataclass(frozen=True)
class Implication:
    """A two-hop count: the entity's counterparts (through a relationship) implicated in a seizure.

    For an entity x and a time t, the count is the number of counterparts y such that x and
    y had a declaration together before t (the relationship's first sighting) and a seizure
    implicating y was known before t (its earliest seized second). Each relationship is
    one event, at the later of those two seconds.
    """

    index: str  # index name (keyed by `entity_kind`)
    relation: str  # relationship kind (`_RELATION_ENDS`)
    end: str  # which end of the relationship is the entity: "a" or "b"
    entity_kind: str
    implicated: str  # seizure kind of the other end

    @property
    def other(self) -> str:
        return "b" if self.end == "a" else "a"


_IMPLICATIONS = (
    Implication("exporter_implicated_consignees", "pair", "a", "exporter", "consignee"),
    Implication("consignee_implicated_exporters", "pair", "b", "consignee", "exporter"),
    Implication("broker_implicated_exporters", "broker_exporter", "a", "broker", "exporter"),
    Implication("global_implicated_exporters", "exporter", "a", "global", "exporter"),
)


#: Consignees of the exporter that received from another, implicated exporter (`_shared_consignee_events`).
_SHARED_CONSIGNEES = "exporter_shared_consignees"
#: Index name -> entity kind of every two-hop index.
_TWO_HOP_KINDS: dict[str, str] = {
    **{spec.index: spec.entity_kind for spec in _IMPLICATIONS},
    _SHARED_CONSIGNEES: "exporter",
}


def _relation_table(
    kind: str, codes: np.ndarray, earliest: np.ndarray, vocabulary: pd.Index, keys: dict[str, np.ndarray]
) -> pd.DataFrame:
    """This segment's relationships of a kind (seen in its declarations) with their two ends."""
    a_kind, b_kind = _RELATION_ENDS[kind]
    rows = np.flatnonzero(codes >= 0)
    if not len(rows):
        return _EMPTY_RELATIONS
    representative = np.full(len(vocabulary), -1, dtype=np.int64)
    representative[codes[rows]] = rows  # any declaration of each relationship: its ends are the same
    seen = np.flatnonzero(representative >= 0)
    row = representative[seen]
    return pd.DataFrame(  # object columns: pandas would otherwise store Arrow strings (slow takes)
        {
            "key": pd.Series(vocabulary.to_numpy()[seen], dtype=object),
            "a": pd.Series(np.asarray(keys[a_kind], dtype=object)[row], dtype=object),
            "b": pd.Series(np.asarray(keys[b_kind], dtype=object)[row], dtype=object),
            "first": earliest[seen],
        }
    )


def _earliest_by_key(keys: np.ndarray | None, seconds: np.ndarray) -> pd.Series:
    """Earliest second of each (present) key, as a Series indexed by key."""
    if keys is None or not len(keys):
        return pd.Series([], dtype=np.int64, index=pd.Index([], dtype=object))
    present = pd.notna(keys)
    series = pd.Series(seconds[present], index=pd.Index(keys[present], dtype=object))
    earliest = series.groupby(level=0, sort=False).min()
    earliest.index = earliest.index.astype(object)
    return earliest.astype(np.int64)


def _seconds_of(index: pd.Index, seconds: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """`seconds` of each key's position in `index` (`_NEVER` for keys not in it)."""
    if not len(index):
        return np.full(len(keys), _NEVER, dtype=np.int64)
    found = index.get_indexer(pd.Index(np.asarray(keys, dtype=object), dtype=object))
    return np.where(found >= 0, np.asarray(seconds, dtype=np.int64)[np.maximum(found, 0)], _NEVER)


def _prior_earliest_seized(prior: History | None, kind: str, keys: np.ndarray) -> np.ndarray:
    """Earliest seized second of each key over the prior segments (`_NEVER` for none)."""
    out = np.full(len(keys), _NEVER, dtype=np.int64)
    if prior is None or not len(keys):
        return out
    for segment in prior.segments:
        seized = segment.first_seized.get(kind)
        if seized is not None and len(seized):
            np.minimum(out, _seconds_of(seized.index, seized.to_numpy(), keys), out=out)
    return out


def _prior_first_seen(prior: History | None, kind: str, keys: np.ndarray) -> np.ndarray:
    """Earliest second of each relationship key over the prior segments (`_NEVER` for none)."""
    out = np.full(len(keys), _NEVER, dtype=np.int64)
    if prior is None or not len(keys):
        return out
    for segment in prior.segments:
        seen = segment.first_seen[kind]
        if len(seen):
            found = segment.codes(kind, keys)
            np.minimum(out, np.where(found >= 0, seen[np.maximum(found, 0)], _NEVER), out=out)
    return out


def _implication_events(
    spec: Implication,
    relations: dict[str, pd.DataFrame],
    first_seized: dict[str, pd.Series],
    prior: History | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed two-hop events this segment adds: (entity keys, seconds, weights).

    A relationship's event sits at max(first sighting, earliest seizure of the other end),
    both over all segments. This segment can move either earlier (or make it exist):
    for every relationship it sees, and every earlier relationship whose other end it
    implicates earlier than before, it retracts the event the prior segments placed (-1)
    and places the new one (+1). Sums of weights then equal one build's events, whatever
    the segmentation; the cost is the segment's relationships plus the relationships of
    the entities it newly implicates (never a walk over the whole history).
    """
    own = relations[spec.relation]
    seized = first_seized[spec.implicated]
    candidates = own[["key", "a", "b"]]
    if prior is not None and len(seized):
        before = _prior_earliest_seized(prior, spec.implicated, seized.index.to_numpy())
        moved = seized.index[seized.to_numpy() < before].to_numpy()
        if len(moved):
            earlier = [s.relations_with(spec.relation, spec.other, moved) for s in prior.segments]
            candidates = pd.concat([candidates, *[e[["key", "a", "b"]] for e in earlier]], ignore_index=True)
            candidates = candidates.drop_duplicates("key")
    if not len(candidates):
        return np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64), np.zeros(0)
    relation_keys = candidates["key"].to_numpy(dtype=object)
    others = candidates[spec.other].to_numpy(dtype=object)
    first_before = _prior_first_seen(prior, spec.relation, relation_keys)
    first_own = _seconds_of(
        pd.Index(own["key"].to_numpy(), dtype=object), own["first"].to_numpy(), relation_keys
    )
    seized_before = _prior_earliest_seized(prior, spec.implicated, others)
    seized_own = _seconds_of(seized.index, seized.to_numpy(), others)
    old = np.maximum(first_before, seized_before)
    new = np.maximum(np.minimum(first_before, first_own), np.minimum(seized_before, seized_own))
    changed = old != new
    placed = changed & (new != _NEVER)
    retracted = changed & (old != _NEVER)
    entities = candidates[spec.end].to_numpy(dtype=object)
    return (
        np.concatenate([entities[placed], entities[retracted]]),
        np.concatenate([new[placed], old[retracted]]),
        np.concatenate([np.ones(placed.sum()), -np.ones(retracted.sum())]),
    )


_NO_EVENTS = KeyedEvents.build(np.array([], dtype=object), np.array([], dtype=np.int64))


def _shared_consignee_events(
    own: pd.DataFrame, seized: pd.Series, prior: History | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed events of "the exporter's consignees that received from another implicated exporter".

    For an exporter e and a consignee C it shipped to, the event sits at the later of e's
    first shipment to C and the earliest second at which some *other* exporter e' had
    shipped to C and had a seizure on record: min over e' != e of max(first sighting of
    (e', C), earliest seizure of e'). Per consignee the two smallest such seconds (and whose
    the smallest is) give every exporter's value. A segment recomputes, old (prior
    segments) and new (with this one), the pairs of the consignees whose value it can move:
    those it sees, and those of the exporters it implicates earlier than before; it emits
    the differences (+1 new, -1 old), as `_implication_events` does.
    """
    affected = own["b"].to_numpy(dtype=object)
    tables = [own.assign(prior=False)]
    if prior is not None:
        if len(seized):
            earlier = _prior_earliest_seized(prior, "exporter", seized.index.to_numpy())
            moved = seized.index[seized.to_numpy() < earlier].to_numpy()
            if len(moved):
                affected = np.concatenate(
                    [
                        affected,
                        *[s.relations_with("pair", "a", moved)["b"].to_numpy() for s in prior.segments],
                    ]
                )
        affected = pd.unique(affected)
        tables += [s.relations_with("pair", "b", affected).assign(prior=True) for s in prior.segments]
    rows = pd.concat(tables, ignore_index=True)
    if not len(rows):
        return np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64), np.zeros(0)
    rows["first_old"] = np.where(rows["prior"].to_numpy(dtype=bool), rows["first"].to_numpy(np.int64), _NEVER)
    pairs = rows.groupby("key", sort=False).agg(
        a=("a", "first"), b=("b", "first"), first_old=("first_old", "min"), first_new=("first", "min")
    )
    exporters = pairs["a"].to_numpy(dtype=object)
    seized_old = _prior_earliest_seized(prior, "exporter", exporters)
    seized_new = np.minimum(seized_old, _seconds_of(seized.index, seized.to_numpy(), exporters))
    consignees = pairs["b"].to_numpy(dtype=object)
    old = _excluding_own(consignees, exporters, pairs["first_old"].to_numpy(np.int64), seized_old)
    new = _excluding_own(consignees, exporters, pairs["first_new"].to_numpy(np.int64), seized_new)
    changed = old != new
    placed = changed & (new != _NEVER)
    retracted = changed & (old != _NEVER)
    return (
        np.concatenate([exporters[placed], exporters[retracted]]),
        np.concatenate([new[placed], old[retracted]]),
        np.concatenate([np.ones(placed.sum()), -np.ones(retracted.sum())]),
    )


def _excluding_own(
    consignees: np.ndarray, exporters: np.ndarray, first: np.ndarray, seized: np.ndarray
) -> np.ndarray:
    """Per (exporter, consignee) pair: max(its first sighting, the consignee's earliest *other* implicated exporter)."""
    exposed = np.maximum(
        first, seized
    )  # when each pair made its consignee "received from an implicated exporter"
    frame = pd.DataFrame(
        {"c": pd.Series(consignees, dtype=object), "e": pd.Series(exporters, dtype=object), "v": exposed}
    )
    ordered = frame.sort_values(["c", "v"], kind="stable")
    rank = ordered.groupby("c", sort=False).cumcount().to_numpy()
    top = ordered[rank == 0].set_index("c")
    second = ordered[rank == 1].set_index("c")["v"]
    smallest = top["v"].reindex(consignees).to_numpy(np.int64)
    smallest_of = top["e"].reindex(consignees).to_numpy(dtype=object)
    found = second.index.get_indexer(pd.Index(consignees, dtype=object))
    runner_up = _NEVER if not len(second) else second.to_numpy(np.int64)[np.maximum(found, 0)]
    runner_up = np.where(found >= 0, runner_up, _NEVER)
    other = np.where(smallest_of == exporters, runner_up, smallest)
    return np.where((first == _NEVER) | (other == _NEVER), _NEVER, np.maximum(first, other))
