"""Keyed event indexes answering "what was known about this entity strictly before time t".

Every history feature in this project is an aggregate over events (declarations filed,
seizures reported, first sightings of a relationship) of one entity key, restricted to
events that happened strictly before the declaration's filing time. One structure answers
that question for a whole history at once (offline, vectorised) and for a few new
declarations (online, in the service): events are sorted by a composite
``(key code, second)`` integer, values are kept as prefix sums, and an as-of lookup is two
binary searches. Appending later events never changes an earlier answer, by construction.

Time resolution is one second: two events filed in the same second do not see each other.

Answers never depend on how a history was cut into indexes: values are quantised to a
multiple of ``2**-QUANTUM_BITS`` when indexed (`quantise`), so every prefix sum and every
sum of segments' answers is exact in float64, and events may carry a signed integer
weight (a first sighting moved earlier by a later segment retracts the old one).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

_TIME_BITS = 34  # seconds since 1970 fit in 34 bits until the year 2514
_TIME_MASK = (1 << _TIME_BITS) - 1
#: A time later than any event: "as of the end of the history".
END_OF_TIME = _TIME_MASK

#: Indexed values are multiples of 2**-QUANTUM_BITS. Sums of such values are exact in
#: float64 while their running total stays below 2**(53 - QUANTUM_BITS) = 2**37: e.g.
#: 50 million squared logs of magnitude up to ~2,700, far beyond the feature set's values
#: (log weights and values up to ~30, their squares up to ~900). Exact sums make an
#: index's answers independent of how its events were split into segments.
QUANTUM_BITS = 16
_QUANTUM = float(1 << QUANTUM_BITS)


def quantise(values: np.ndarray) -> np.ndarray:
    """Values rounded to the nearest multiple of 2**-QUANTUM_BITS (float64; exact arithmetic)."""
    return np.round(np.asarray(values, dtype=np.float64) * _QUANTUM) / _QUANTUM


def to_seconds(times: pd.Series | pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Whole seconds since 1970-01-01 as int64 (times before 1970 clip to 0)."""
    values = np.asarray(times, dtype="datetime64[s]").astype(np.int64)
    return np.clip(values, 0, _TIME_MASK)


@dataclass(frozen=True)
class AsOf:
    """Aggregates of one key's events strictly before each query time."""

    count: np.ndarray
    sums: dict[str, np.ndarray]
    first_seconds: np.ndarray  # NaN when there is no earlier event
    last_seconds: np.ndarray
    window_counts: dict[int, np.ndarray]  # window in days -> events in [t - window, t)


@dataclass(frozen=True)
class KeyedEvents:
    """Events of one kind for one entity key, indexed for as-of lookups."""

    keys: pd.Index
    composite: np.ndarray
    seconds: np.ndarray
    prefix: np.ndarray  # (n_events + 1, n_values) exclusive prefix sums
    value_names: tuple[str, ...]
    #: exclusive prefix sums of the events' integer weights (float64); None when every
    #: weight is 1 (then a count is a difference of positions)
    weight_prefix: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        keys: np.ndarray,
        seconds: np.ndarray,
        values: dict[str, np.ndarray] | None = None,
        vocabulary: pd.Index | None = None,
        weights: np.ndarray | None = None,
    ) -> KeyedEvents:
        """Index events; rows whose key is missing (None) are not events of any entity.

        With `vocabulary` (distinct keys, object dtype), `keys` are already codes in it
        (int, -1 for missing): several indexes over one entity kind share one code book.
        Values are quantised (`quantise`) so that sums are exact. `weights` (integers,
        +1 or -1) make counts sums of weights; first/last seconds then still report
        events of any sign.
        """
        values = values or {}
        if vocabulary is None:
            keys = np.asarray(keys, dtype=object)
            all_codes, uniques = pd.factorize(keys, sort=False)  # None -> -1
        else:
            all_codes, uniques = np.asarray(keys, dtype=np.int64), vocabulary
            if len(all_codes) and all_codes.max() >= len(vocabulary):
                raise ValueError("codes beyond the vocabulary of the events they index")
        present = all_codes >= 0
        codes = all_codes[present]
        secs = np.asarray(seconds, dtype=np.int64)[present]
        composite = (codes.astype(np.int64) << _TIME_BITS) | secs
        order = np.argsort(composite, kind="stable")
        names = tuple(values)
        matrix = np.zeros((len(order) + 1, len(names)), dtype=np.float64)
        for j, name in enumerate(names):
            column = quantise(np.asarray(values[name], dtype=np.float64)[present][order])
            np.cumsum(column, out=matrix[1:, j])
        weight_prefix = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)[present][order]
            if (w != 1.0).any():
                weight_prefix = np.zeros(len(order) + 1, dtype=np.float64)
                np.cumsum(w, out=weight_prefix[1:])
        return cls(
            keys=uniques if vocabulary is not None else pd.Index(uniques, dtype=object),
            composite=composite[order],
            seconds=secs[order],
            prefix=matrix,
            value_names=names,
            weight_prefix=weight_prefix,
        )

    def __len__(self) -> int:
        return len(self.composite)

    @functools.cached_property
    def _lookup(self) -> dict[object, int]:
        return {key: code for code, key in enumerate(self.keys)}

    def codes(self, keys: np.ndarray) -> np.ndarray:
        """Integer code of each key; -1 for keys never seen (or missing)."""
        return encode(self.keys, self._lookup if len(keys) <= ENCODE_BY_DICT_MAX else {}, keys)

    def count_before(
        self, keys: np.ndarray, seconds: np.ndarray, codes: np.ndarray | None = None
    ) -> np.ndarray:
        """Number of each key's events strictly before the matching query second (as float64).

        The same numbers as `as_of(...).count`, with only the two binary searches a count
        needs (most features are counts; the service computes them per request).
        """
        if not len(self.composite):
            return np.zeros(len(keys), dtype=np.float64)
        codes = self.codes(keys) if codes is None else codes
        if len(codes) == 1:  # one declaration (the service's usual request): two scalar searches
            code = int(codes[0])
            if code < 0:
                return np.zeros(1, dtype=np.float64)
            base = code << _TIME_BITS
            second = int(np.asarray(seconds, dtype=np.int64)[0])
            lo, hi = self.composite.searchsorted([base, base | second], side="left").tolist()
            if self.weight_prefix is not None:
                return np.array([self.weight_prefix[hi] - self.weight_prefix[lo]], dtype=np.float64)
            return np.array([hi - lo], dtype=np.float64)
        known = codes >= 0
        base = np.where(known, codes, 0) << _TIME_BITS
        lo, hi = _search(self.composite, base, base | np.asarray(seconds, dtype=np.int64))
        if self.weight_prefix is not None:
            return np.where(known, self.weight_prefix[hi] - self.weight_prefix[lo], 0.0)
        return np.where(known, hi - lo, 0).astype(np.float64)

    def as_of(
        self,
        keys: np.ndarray,
        seconds: np.ndarray,
        windows_days: tuple[int, ...] = (),
        codes: np.ndarray | None = None,
    ) -> AsOf:
        """Aggregates of each key's events strictly before the matching query second.

        `codes` may pass `self.codes(keys)` (or codes in the shared vocabulary) when known.
        """
        codes = self.codes(keys) if codes is None else codes
        known = codes >= 0
        base = np.where(known, codes, 0).astype(np.int64) << _TIME_BITS
        secs = np.asarray(seconds, dtype=np.int64)
        starts = [base | np.maximum(secs - days * 86_400, 0) for days in windows_days]
        lo, hi, *window_starts = _search(self.composite, base, base | secs, *starts)
        hi = np.where(known, hi, lo)
        weighted = self.weight_prefix
        count = (hi - lo).astype(np.float64) if weighted is None else weighted[hi] - weighted[lo]
        sums = {name: self.prefix[hi, j] - self.prefix[lo, j] for j, name in enumerate(self.value_names)}
        has_any = hi > lo
        if len(self.seconds):
            first = np.where(has_any, self.seconds[np.minimum(lo, len(self.seconds) - 1)], np.nan)
            last = np.where(has_any, self.seconds[np.maximum(hi - 1, 0)], np.nan)
        else:
            first = np.full(len(secs), np.nan)
            last = np.full(len(secs), np.nan)
        windows: dict[int, np.ndarray] = {}
        for days, w in zip(windows_days, window_starts, strict=True):
            start = np.maximum(w, lo)
            in_window = (
                (hi - start).astype(np.float64) if weighted is None else weighted[hi] - weighted[start]
            )
            windows[days] = np.where(known, in_window, 0.0)
        return AsOf(count=count, sums=sums, first_seconds=first, last_seconds=last, window_counts=windows)


#: From this many queries on, `_search` sorts them first.
SORTED_SEARCH_MIN = 64


def _search(composite: np.ndarray, *needles: np.ndarray) -> tuple[np.ndarray, ...]:
    """`np.searchsorted(composite, n, side="left")` of each needle array (all of one length).

    Many queries are answered in sorted order: consecutive binary searches then walk nearby
    memory (about twice as fast on a large index); the answers are put back in query order.
    """
    if len(needles[0]) < SORTED_SEARCH_MIN:
        return tuple(np.searchsorted(composite, n, side="left") for n in needles)
    order = np.argsort(needles[0], kind="stable")
    out = []
    for n in needles:
        found = np.empty(len(n), dtype=np.intp)
        found[order] = np.searchsorted(composite, n[order], side="left")
        out.append(found)
    return tuple(out)


#: Up to this many keys, `encode` looks them up in a Python dict (cheaper than pandas'
#: per-call set-up for the service's few declarations); above it, pandas' hash join.
ENCODE_BY_DICT_MAX = 4096


def encode(vocabulary: pd.Index, lookup: dict[object, int], keys: np.ndarray) -> np.ndarray:
    """Position of each key in `vocabulary` (`lookup` is its key -> position dict); -1 if absent."""
    if len(keys) > ENCODE_BY_DICT_MAX:  # hash join in C for whole histories
        return vocabulary.get_indexer(pd.Index(np.asarray(keys, dtype=object)))
    if not len(vocabulary):
        return np.full(len(keys), -1, dtype=np.int64)
    get = lookup.get
    return np.array([get(k, -1) for k in keys], dtype=np.int64)


def merge_as_of(parts: list[AsOf]) -> AsOf:
    """Combine the answers of several disjoint event segments (sums add, first/last min/max)."""
    if len(parts) == 1:
        return parts[0]
    count = np.sum([p.count for p in parts], axis=0)
    sums = {name: np.sum([p.sums[name] for p in parts], axis=0) for name in parts[0].sums}
    with np.errstate(all="ignore"):
        first = np.fmin.reduce([p.first_seconds for p in parts])
        last = np.fmax.reduce([p.last_seconds for p in parts])
    windows = {d: np.sum([p.window_counts[d] for p in parts], axis=0) for d in parts[0].window_counts}
    return AsOf(count=count, sums=sums, first_seconds=first, last_seconds=last, window_counts=windows)
