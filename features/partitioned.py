"""The feature set computed from partitions of the history, each with the existing code, exactly.

`compute_features` needs a `History` of everything known before each declaration. Past
one machine, no process can hold that whole history; this module splits the work so that
each piece runs the *same* `History` and `compute_features` on a part of the rows, and
the parts together give the single-machine values bit for bit. Nothing here knows about
Dask: `training.distributed` moves the parts between machines.

Three families of feature columns, three ways to cut the rows:

- **exporter** (`EXPORTER_COLUMNS`) and **consignee** (`CONSIGNEE_COLUMNS`): a partition
  holding *every* declaration of its exporters (a shuffle by ``exporter_id``), plus the
  seizures table, indexes those exporters' histories completely, so
  `entity_features` there is exact for them. Seizures are the small table broadcast to
  every partition: one counts for an exporter when it names that exporter, or names only
  a declaration of it, and both are decided inside the partition holding the exporter.
  Other columns computed there are wrong (their entities are cut) and are dropped.
- **aggregate** (`AGGREGATE_COLUMNS`: broker, destination, HS heading, heading ×
  destination, tariff line and the global base rate): few keys with many events each; a
  shuffle would put each key in one partition. Instead the time axis is cut into chunks at
  midnight (`time_cuts`); each chunk indexes its own declarations and the seizures
  reported in it (`chunk_history`), sums its events per key (`chunk_totals`), and the sums
  of all earlier chunks (`prefix_totals`) enter its history as one aggregate event per
  key just before the chunk starts (`chunk_features`). Every declaration of chunk k
  then sees exactly what a whole build shows it: earlier chunks' events through the
  aggregate, its own chunk's through the chunk's index.
- **shipment** (`SHIPMENT_COLUMNS`): row-wise; taken from the chunk pass.

Sums are exact whatever the order (`features.events.quantise`), so aggregates added up in
any order give the same bits. A new feature column must be placed in one family
(`FAMILIES`); a test fails until it is. A feature that joins across entities (say an
exporter's consignees' first seizures) fits as a small per-entity table computed first
and broadcast to the partitions, like the seizures are.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from features.definitions import FEATURE_SET, compute_features
from features.events import END_OF_TIME, KeyedEvents, to_seconds
from features.history import INDEX_KINDS, History, Segment
from features.reference import ReferenceTables

EXPORTER_COLUMNS: tuple[str, ...] = (
    "exporter_prior_declarations",
    "exporter_tenure_days",
    "exporter_distinct_consignees",
    "exporter_distinct_destinations",
    "exporter_controlled_share",
    "exporter_heading_share",
    "exporter_recent_volume_ratio",
    "exporter_prior_seizures",
    "exporter_days_since_seizure",
    "weight_vs_exporter_norm",
    "pair_prior_declarations",
    "exporter_destination_prior_declarations",
)
CONSIGNEE_COLUMNS: tuple[str, ...] = (
    "consignee_prior_seizures",
    "consignee_distinct_exporters",
    "consignee_prior_declarations",
)
AGGREGATE_COLUMNS: tuple[str, ...] = (
    "broker_seizure_rate",
    "heading_destination_seizure_rate",
    "destination_seizure_rate",
    "unit_value_vs_tariff_norm",
    "value_per_kg_vs_heading_norm",
)
SHIPMENT_COLUMNS: tuple[str, ...] = (
    "controlled_goods",
    "controlled_term_under_generic_heading",
    "controlled_without_authorisation",
    "log_declared_value",
    "log_gross_weight",
    "transport_mode",
    "payment_terms",
    "transshipment_via_hub",
    "consignee_country_differs",
)
#: Which partitioning computes each feature column exactly.
FAMILIES: dict[str, tuple[str, ...]] = {
    "exporter": EXPORTER_COLUMNS,
    "consignee": CONSIGNEE_COLUMNS,
    "chunk": AGGREGATE_COLUMNS + SHIPMENT_COLUMNS,
}
#: The declaration column each entity family is shuffled by.
ENTITY_KEYS: dict[str, str] = {"exporter": "exporter_id", "consignee": "consignee_id"}
#: Entity kinds with few keys: offsets per time chunk instead of a shuffle.
AGGREGATE_KINDS: frozenset[str] = frozenset(
    {"broker", "heading_destination", "destination", "global", "tariff_line", "heading"}
)
AGGREGATE_INDEXES: tuple[str, ...] = tuple(
    name for name, kind in INDEX_KINDS.items() if kind in AGGREGATE_KINDS
)
#: Declaration columns a seizure is attributed through (`History` links seizures by them).
LINK_COLUMNS: tuple[str, ...] = (
    "declaration_id",
    "exporter_id",
    "consignee_id",
    "customs_broker_id",
    "destination_country",
    "hs_code",
)

_DAY = 86_400


def entity_features(
    declarations: pd.DataFrame, seizures: pd.DataFrame, reference: ReferenceTables, family: str
) -> pd.DataFrame:
    """`family`'s columns for declarations that include every declaration of their entities.

    `declarations` is one partition of a shuffle by `ENTITY_KEYS[family]`; `seizures` is
    the whole seizures table (or any superset of those naming these entities or these
    declarations).
    """
    history = History.build(declarations, seizures, reference)
    return compute_features(declarations, history, reference).loc[:, list(FAMILIES[family])]


def time_cuts(declared_at: pd.Series, chunks: int) -> np.ndarray:
    """Chunk boundaries (seconds, at midnight) splitting the declarations into about `chunks` parts.

    At midnight, because a seizure recorded by date only falls at midnight of its
    declaration's filing day: cut there, it is never in an earlier chunk than its declaration.
    """
    if chunks <= 1 or declared_at.empty:
        return np.zeros(0, dtype=np.int64)
    inner = np.quantile(to_seconds(declared_at), np.linspace(0.0, 1.0, chunks + 1)[1:-1])
    cuts = np.unique((inner.astype(np.int64) // _DAY) * _DAY)
    return cuts[cuts > to_seconds(declared_at).min()]


def chunk_of(times: pd.Series, cuts: np.ndarray) -> np.ndarray:
    """The chunk (0 .. len(cuts)) of each time: chunk k holds [cuts[k - 1], cuts[k])."""
    return np.searchsorted(cuts, to_seconds(times), side="right")


def _empty_segment(reference: ReferenceTables) -> Segment:
    """A segment of no events with every index the feature code asks for."""
    history, _ = History().append_with_codes(None, None, reference)
    return history.segments[0]


def chunk_history(
    declarations: pd.DataFrame,
    seizures: pd.DataFrame,
    linked: pd.DataFrame,
    reference: ReferenceTables,
) -> History:
    """The index of one time chunk: its declarations and the seizures reported in it.

    `linked` holds `LINK_COLUMNS` of the declarations of *other* chunks that these seizures
    name, so each seizure is attributed to the broker, route and destination of its
    declaration as in a whole build (they are attributes only, never events).
    """
    links = _empty_segment(reference)
    ids = pd.Index(linked["declaration_id"].to_numpy(dtype=object, na_value=None), dtype=object)
    links = replace(
        links,
        ids=ids.rename("declaration_id"),
        attribute_values={
            name: linked[name].to_numpy(dtype=object, na_value=None) for name in LINK_COLUMNS[1:]
        },
    )
    return History(segments=(links,)).append(declarations, seizures, reference)


def chunk_totals(history: History) -> dict[str, pd.DataFrame]:
    """Per aggregate index, every key's events in the chunk: count and value sums (key-indexed)."""
    out: dict[str, pd.DataFrame] = {}
    for name in AGGREGATE_INDEXES:
        kind = INDEX_KINDS[name]
        keys = pd.Index(
            np.concatenate(
                [np.asarray(s.vocabularies.get(kind, []), dtype=object) for s in history.segments]
            ),
            dtype=object,
        ).unique()
        answer = history.as_of(name, keys.to_numpy(), np.full(len(keys), END_OF_TIME, dtype=np.int64))
        frame = pd.DataFrame({"count": answer.count, **answer.sums}, index=keys)
        out[name] = frame.loc[frame["count"] != 0]
    return out


def prefix_totals(totals: list[dict[str, pd.DataFrame]]) -> list[dict[str, pd.DataFrame]]:
    """For each chunk, the totals of all chunks before it (the first chunk: nothing)."""
    out: list[dict[str, pd.DataFrame]] = []
    running: dict[str, pd.DataFrame] = {}
    for chunk in totals:
        out.append(running or {name: frame.iloc[:0] for name, frame in chunk.items()})
        running = {
            name: chunk[name].copy() if not running else running[name].add(chunk[name], fill_value=0.0)
            for name in AGGREGATE_INDEXES
        }
    return out


def _aggregate_segment(offsets: dict[str, pd.DataFrame], second: int, reference: ReferenceTables) -> Segment:
    """A segment holding one event per key at `second` whose weight and values are `offsets`' totals."""
    empty = _empty_segment(reference)
    kinds: dict[str, list[str]] = {}
    for name in AGGREGATE_INDEXES:
        kinds.setdefault(INDEX_KINDS[name], []).append(name)
    indexes = dict(empty.indexes)
    vocabularies = dict(empty.vocabularies)
    for kind, names in kinds.items():
        vocabulary = pd.Index(
            np.concatenate([offsets[n].index.to_numpy(dtype=object) for n in names]), dtype=object
        ).unique()
        vocabularies[kind] = vocabulary
        for name in names:
            frame = offsets[name]
            value_names = empty.indexes[name].value_names
            indexes[name] = KeyedEvents.build(
                vocabulary.get_indexer(frame.index),
                np.full(len(frame), second, dtype=np.int64),
                {v: frame[v].to_numpy(dtype=np.float64) for v in value_names},
                vocabulary=vocabulary,
                weights=frame["count"].to_numpy(dtype=np.float64),
            )
    return replace(empty, indexes=indexes, vocabularies=vocabularies)


def chunk_features(
    declarations: pd.DataFrame,
    history: History,
    offsets: dict[str, pd.DataFrame],
    start_second: int,
    reference: ReferenceTables,
) -> pd.DataFrame:
    """The aggregate and shipment columns of one chunk's declarations.

    `history` is the chunk's `chunk_history`, `offsets` the `prefix_totals` of the chunks
    before it, entered as events one second before the chunk starts (`start_second`).
    """
    segments = history.segments
    if any(len(frame) for frame in offsets.values()):
        segments = (_aggregate_segment(offsets, start_second - 1, reference), *segments)
    features = compute_features(declarations, History(segments=segments), reference)
    return features.loc[:, list(FAMILIES["chunk"])]


def assemble(parts: dict[str, list[pd.DataFrame]], index: pd.Index) -> pd.DataFrame:
    """The feature frame (`FEATURE_SET.columns`, rows of `index`) from each family's partitions.

    Raises `ValueError` unless every family holds every row of `index` exactly once.
    """
    columns = []
    for family, frames in parts.items():
        frame = pd.concat(frames)
        if len(frame) != len(index) or not frame.index.sort_values().equals(index.sort_values()):
            raise ValueError(
                f"the {family} partitions hold {len(frame):,} rows for {len(index):,} declarations "
                f"({frame.index.duplicated().sum():,} repeated)"
            )
        columns.append(frame.reindex(index))
    return pd.concat(columns, axis=1).loc[:, list(FEATURE_SET.columns)]


def compute_partitioned_features(
    declarations: pd.DataFrame,
    seizures: pd.DataFrame,
    reference: ReferenceTables,
    partitions: int = 4,
    chunks: int = 4,
) -> pd.DataFrame:
    """Every step above in this process, for tests and as the reference of the Dask engine.

    Equals `compute_features(declarations, History.build(declarations, seizures, ...))`.
    """
    rows = declarations.reset_index(drop=True)
    parts: dict[str, list[pd.DataFrame]] = {}
    for family, key in ENTITY_KEYS.items():
        bucket = pd.util.hash_array(rows[key].to_numpy(dtype=object, na_value="")) % partitions
        parts[family] = [
            entity_features(rows.loc[bucket == p], seizures, reference, family) for p in range(partitions)
        ]
    cuts = time_cuts(rows["declared_at"], chunks)
    declaration_chunk = chunk_of(rows["declared_at"], cuts)
    seizure_chunk = chunk_of(seizures["seized_at"], cuts)
    histories, frames = [], []
    for k in range(len(cuts) + 1):
        frame = rows.loc[declaration_chunk == k]
        seized = seizures.loc[seizure_chunk == k]
        frames.append(frame)
        histories.append(chunk_history(frame, seized, linked_declarations(rows, seized, frame), reference))
    offsets = prefix_totals([chunk_totals(h) for h in histories])
    starts = [0, *cuts.tolist()]
    parts["chunk"] = [
        chunk_features(frame, history, offset, start, reference)
        for frame, history, offset, start in zip(frames, histories, offsets, starts, strict=True)
    ]
    features = assemble(parts, rows.index)
    features.index = declarations.index
    return features


def linked_declarations(
    declarations: pd.DataFrame, seizures: pd.DataFrame, chunk: pd.DataFrame
) -> pd.DataFrame:
    """`LINK_COLUMNS` of the declarations these seizures name that are not in `chunk`."""
    named = seizures["declaration_id"].dropna()
    wanted = declarations["declaration_id"].isin(named) & ~declarations["declaration_id"].isin(
        chunk["declaration_id"]
    )
    return declarations.loc[wanted, list(LINK_COLUMNS)]
