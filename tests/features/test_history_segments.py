"""Features are a pure function of the declaration and the set of history rows.

However the rows were cut into a build and appends, in whatever order they arrived
(back-dated declarations, seizures before the declarations they name), and whichever
other declarations share a scoring request, the feature values are exactly those of
`History.build` of all rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.definitions import compute_features, compute_online_features
from features.history import History
from features.reference import load_reference

REFERENCE = load_reference()
START = pd.Timestamp("2024-01-01")
HS_CODES = ["300490", "293942", "292250", "300420"]
DESCRIPTIONS = ["PARACETAMOL TABLETS", "TRAMADOL 225MG TABLETS", "DICLOFENAC", ""]


def _str(values) -> pd.Series:
    return pd.Series(list(values), dtype="str")


def _times(seconds: np.ndarray) -> pd.Series:
    return pd.Series((START + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us]"))


def make_declarations(rng: np.random.Generator, n: int, prefix: str, exporters: int = 3) -> pd.DataFrame:
    """Contract-typed declarations over small entity pools; coarse times force same-second ties."""
    seconds = rng.integers(0, 40, n) * 43_200
    return pd.DataFrame(
        {
            "declaration_id": _str(f"{prefix}{i:04d}" for i in range(n)),
            "declared_at": _times(seconds),
            "exporter_id": _str(rng.choice([f"E{i}" for i in range(exporters)], n)),
            "consignee_id": _str(rng.choice(["C0", "C1", "C2"], n)),
            "consignee_country": _str(rng.choice(["NG", "GH"], n)),
            "destination_country": _str(rng.choice(["NG", "GH", "US"], n)),
            "port_of_loading": _str(["INNSA"] * n),
            "transport_mode": _str(rng.choice(["SEA", "AIR"], n)),
            "hs_code": _str(rng.choice(HS_CODES, n)),
            "goods_description": _str(rng.choice(DESCRIPTIONS, n)),
            "quantity": rng.uniform(0.5, 1000, n),
            "quantity_unit": _str(rng.choice(["KGM", "NOS"], n)),
            "gross_weight_kg": rng.uniform(0.1, 5000, n),
            "declared_value_usd": rng.uniform(1, 100_000, n),
            "customs_broker_id": _str(rng.choice(np.array(["B0", "B1", None], dtype=object), n)),
            "payment_terms": _str(rng.choice(np.array(["LC", None], dtype=object), n)),
            "export_authorization_id": _str(rng.choice(np.array(["NC/1", None], dtype=object), n)),
            "transshipment_country": _str(rng.choice(np.array(["AE", None], dtype=object), n)),
        }
    )


def make_seizures(rng: np.random.Generator, n: int, declarations: pd.DataFrame) -> pd.DataFrame:
    """Seizures naming a declaration (maybe one that arrives later), an exporter, a consignee,
    or a declaration and an exporter (not necessarily the declaration's)."""
    kind = rng.integers(0, 4, n)
    named = rng.integers(0, max(len(declarations), 1), n)
    other = rng.integers(0, max(len(declarations), 1), n)  # kind 3: the exporter of another row

    def pick(column: str, kinds: tuple[int, ...], rows: np.ndarray = named) -> pd.Series:
        if not len(declarations):
            return _str([None] * n)
        values = declarations[column].to_numpy(dtype=object)[rows]
        return _str(np.where(np.isin(kind, kinds), values, None))

    return pd.DataFrame(
        {
            "seizure_id": _str(f"S{i:04d}" for i in range(n)),
            "seized_at": _times(rng.integers(0, 40, n) * 43_200),
            "declaration_id": pick("declaration_id", (0, 3)),
            "exporter_id": pick("exporter_id", (1, 3), np.where(kind == 3, other, named)),
            "consignee_id": pick("consignee_id", (2,)),
            "country": _str(["IN"] * n),
            "substance": _str(["tramadol"] * n),
            "quantity_kg": rng.uniform(0, 10, n),
            "agency": _str(["NCB"] * n),
        }
    )


def build_in_segments(
    declarations: pd.DataFrame, seizures: pd.DataFrame, decl_segment: np.ndarray, seizure_segment: np.ndarray
) -> History:
    """`History.build` of segment 0's rows, then one `append` per further segment."""
    segments = int(max(decl_segment.max(initial=0), seizure_segment.max(initial=0))) + 1
    history = History.build(
        declarations.loc[decl_segment == 0], seizures.loc[seizure_segment == 0], REFERENCE
    )
    for k in range(1, segments):
        history = history.append(
            declarations.loc[decl_segment == k], seizures.loc[seizure_segment == k], REFERENCE
        )
    return history


def assert_same_features(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_declarations=st.integers(0, 30),
    n_seizures=st.integers(0, 12),
    n_segments=st.integers(1, 6),
)
def test_any_segmentation_and_arrival_order_equals_one_build(
    seed: int, n_declarations: int, n_seizures: int, n_segments: int
) -> None:
    rng = np.random.default_rng(seed)
    declarations = make_declarations(rng, n_declarations, "D")
    seizures = make_seizures(rng, n_seizures, declarations)
    # rows arrive in any order: shuffle, then cut into segments at random
    declarations = declarations.iloc[rng.permutation(len(declarations))].reset_index(drop=True)
    seizures = seizures.iloc[rng.permutation(len(seizures))].reset_index(drop=True)
    decl_segment = rng.integers(0, n_segments, len(declarations))
    seizure_segment = rng.integers(0, n_segments, len(seizures))

    one_build = History.build(declarations, seizures, REFERENCE)
    segmented = build_in_segments(declarations, seizures, decl_segment, seizure_segment)
    assert segmented.n_declarations == one_build.n_declarations

    # the history's own declarations, and made-up ones at random times (some new entities)
    queries = pd.concat([declarations, make_declarations(rng, 12, "Q", exporters=4)], ignore_index=True)
    expected = compute_features(queries, one_build, REFERENCE)
    assert_same_features(compute_features(queries, segmented, REFERENCE), expected)
    # a build is itself independent of the order of its rows
    time_ordered = History.build(
        declarations.sort_values("declared_at", kind="stable"),
        seizures.sort_values("seized_at", kind="stable"),
        REFERENCE,
    )
    assert_same_features(compute_features(queries, time_ordered, REFERENCE), expected)
    # the service's path gives the same rows, alone or together
    assert_same_features(compute_online_features(queries, segmented, REFERENCE), expected)
    single = queries.iloc[[len(queries) - 1]]
    assert_same_features(compute_online_features(single, segmented, REFERENCE), expected.iloc[[-1]])


def test_back_dated_declaration_moves_the_first_sighting_of_a_relationship() -> None:
    rng = np.random.default_rng(0)
    declarations = make_declarations(rng, 4, "D")
    declarations["exporter_id"] = "E0"
    declarations["consignee_id"] = _str(["C0", "C1", "C0", "C1"])
    declarations["destination_country"] = "NG"
    declarations["declared_at"] = _times(np.array([10, 20, 30, 40]) * 86_400)
    no_seizures = make_seizures(rng, 0, declarations)
    # the later rows are recorded first, the earliest (back-dated) ones afterwards
    segmented = History.build(declarations.iloc[2:], no_seizures, REFERENCE).append(
        declarations.iloc[:2], None, REFERENCE
    )
    one_build = History.build(declarations, no_seizures, REFERENCE)
    query = declarations.copy()
    query["declared_at"] = _times(np.array([15, 25, 35, 45]) * 86_400)
    expected = compute_features(query, one_build, REFERENCE)
    assert expected["exporter_distinct_consignees"].tolist() == [1, 2, 2, 2]
    assert expected["consignee_distinct_exporters"].tolist() == [1, 1, 1, 1]
    assert expected["exporter_distinct_destinations"].tolist() == [1, 1, 1, 1]
    assert_same_features(compute_features(query, segmented, REFERENCE), expected)


def test_seizure_recorded_before_the_declaration_it_names_is_attributed_when_it_arrives() -> None:
    rng = np.random.default_rng(1)
    declarations = make_declarations(rng, 30, "D")
    declarations["exporter_id"] = "E0"
    declarations["customs_broker_id"] = "B0"
    declarations["declared_at"] = _times(np.arange(30) * 86_400)
    named = declarations.iloc[[3]]
    seizures = make_seizures(rng, 1, declarations)
    seizures["declaration_id"] = _str([named["declaration_id"].iloc[0]])
    seizures["exporter_id"] = _str([None])
    seizures["consignee_id"] = _str([None])
    seizures["seized_at"] = _times(np.array([10 * 86_400 + 1]))
    rest = declarations.drop(index=named.index)
    # the seizure reaches the history first; the declaration it names comes in a later append
    segmented = (
        History.build(rest, seizures, REFERENCE).append(None, None, REFERENCE).append(named, None, REFERENCE)
    )
    one_build = History.build(declarations, seizures, REFERENCE)
    expected = compute_features(declarations, one_build, REFERENCE)
    later = declarations["declared_at"] > seizures["seized_at"].iloc[0]
    assert (expected.loc[later, "exporter_prior_seizures"] == 1).all()
    assert (
        expected.loc[later, "broker_seizure_rate"] > expected.loc[~later, "broker_seizure_rate"].max()
    ).all()
    assert_same_features(compute_features(declarations, segmented, REFERENCE), expected)


def test_a_declaration_id_counts_once_in_a_build_and_across_appends() -> None:
    rng = np.random.default_rng(2)
    declarations = make_declarations(rng, 20, "D")
    again = declarations.iloc[:5].copy()
    again["declared_at"] = again["declared_at"] - pd.Timedelta(days=30)  # a conflicting repeat
    no_seizures = make_seizures(rng, 0, declarations)
    expected = compute_features(declarations, History.build(declarations, no_seizures, REFERENCE), REFERENCE)
    appended = History.build(declarations, no_seizures, REFERENCE).append(again, None, REFERENCE)
    built = History.build(pd.concat([declarations, again], ignore_index=True), no_seizures, REFERENCE)
    assert appended.n_declarations == built.n_declarations == 20
    assert_same_features(compute_features(declarations, appended, REFERENCE), expected)
    assert_same_features(compute_features(declarations, built, REFERENCE), expected)


def test_a_score_is_identical_alone_and_inside_any_batch() -> None:
    """Rows of one request are never history for each other (issue 13: 60 made-up declarations)."""
    rng = np.random.default_rng(3)
    recorded = make_declarations(rng, 300, "D", exporters=6)
    history = History.build(recorded, make_seizures(rng, 20, recorded), REFERENCE)
    new = make_declarations(rng, 1, "NEW")
    new["exporter_id"] = "NEW-EXPORTER"
    new["hs_code"] = "293942"  # tramadol
    new["goods_description"] = "TRAMADOL 225MG TABLETS"
    new["declared_at"] = _times(np.array([60 * 86_400]))
    made_up = make_declarations(rng, 60, "FAKE")
    made_up["exporter_id"] = "NEW-EXPORTER"
    made_up["consignee_id"] = new["consignee_id"].iloc[0]
    made_up["declared_at"] = _times(np.arange(60) * 3_600)  # all earlier than the new declaration
    alone = compute_online_features(new, history, REFERENCE)
    assert alone["exporter_prior_declarations"].iloc[0] == 0
    batches = [
        pd.concat([made_up, new], ignore_index=True),
        pd.concat([new, made_up, recorded.iloc[:40]], ignore_index=True),
        pd.concat([recorded.iloc[40:80], new], ignore_index=True),
    ]
    for batch in batches:
        scored = compute_online_features(batch, history, REFERENCE)
        position = np.flatnonzero(batch["declaration_id"].to_numpy() == new["declaration_id"].iloc[0])[0]
        assert_same_features(scored.iloc[[position]].reset_index(drop=True), alone)
        # and every other row equals its own score alone
        for i in rng.choice(len(batch), 5, replace=False):
            assert_same_features(
                scored.iloc[[i]].reset_index(drop=True),
                compute_online_features(batch.iloc[[i]].reset_index(drop=True), history, REFERENCE),
            )


def test_appending_nothing_changes_nothing() -> None:
    rng = np.random.default_rng(4)
    declarations = make_declarations(rng, 25, "D")
    seizures = make_seizures(rng, 6, declarations)
    history = History.build(declarations, seizures, REFERENCE)
    assert history.append(None, None, REFERENCE) is history
    emptied = history.append(declarations.iloc[:0], seizures.iloc[:0], REFERENCE)
    assert_same_features(
        compute_features(declarations, emptied, REFERENCE), compute_features(declarations, history, REFERENCE)
    )


# --- network and time-decayed features against their brute-force definitions ---------------

DAY = 86_400
NETWORK_COLUMNS = (
    "exporter_implicated_consignees",
    "exporter_implicated_consignee_share",
    "exporter_shared_consignees",
    "consignee_implicated_exporters",
    "consignee_new_exporters_90d",
    "broker_implicated_exporters",
    "broker_exporter_seizure_rate",
    "exporter_seizure_rate_decayed",
    "consignee_seizure_rate_decayed",
    "pair_seizure_rate_decayed",
    "heading_destination_seizure_rate_decayed",
)


def _seconds(times: pd.Series) -> np.ndarray:
    return times.to_numpy(dtype="datetime64[s]").astype(np.int64)


def brute_force_network(
    declarations: pd.DataFrame, seizures: pd.DataFrame, queries: pd.DataFrame
) -> pd.DataFrame:
    """The network and decayed-rate features by their definitions, one query at a time (slow, obvious)."""
    from features.definitions import DECAY_DAYS, EXPORTER_SMOOTHING, RATE_SMOOTHING, SHOPPING_DAYS

    rows = declarations.drop_duplicates("declaration_id")
    d = {
        "exporter": rows["exporter_id"].to_numpy(dtype=object),
        "consignee": rows["consignee_id"].to_numpy(dtype=object),
        "broker": rows["customs_broker_id"]
        .astype(object)
        .where(rows["customs_broker_id"].notna(), None)
        .to_numpy(),
        "hd": (rows["hs_code"].str[:4] + "|" + rows["destination_country"]).to_numpy(dtype=object),
        "t": _seconds(rows["declared_at"]),
    }
    by_id = {i: k for k, i in enumerate(rows["declaration_id"])}
    # each seizure's entities: named directly, or through the declaration it names
    seized = []
    for _, s in seizures.iterrows():
        linked = by_id.get(s["declaration_id"]) if pd.notna(s["declaration_id"]) else None
        exporter = (
            s["exporter_id"]
            if pd.notna(s["exporter_id"])
            else (d["exporter"][linked] if linked is not None else None)
        )
        consignee = (
            s["consignee_id"]
            if pd.notna(s["consignee_id"])
            else (d["consignee"][linked] if linked is not None else None)
        )
        hd = d["hd"][linked] if linked is not None else None
        seized.append(
            (int(_seconds(pd.Series([s["seized_at"]]))[0]), exporter, consignee, hd, linked is not None)
        )

    def implicated(kind: int, entity: object, t: int) -> bool:
        return any(s[kind] == entity and s[0] < t for s in seized)

    out = []
    for _, q in queries.iterrows():
        t = int(_seconds(pd.Series([q["declared_at"]]))[0])
        e, c = q["exporter_id"], q["consignee_id"]
        b = q["customs_broker_id"] if pd.notna(q["customs_broker_id"]) else None
        hd = q["hs_code"][:4] + "|" + q["destination_country"]
        before = d["t"] < t
        consignees_of_e = {d["consignee"][k] for k in np.flatnonzero(before & (d["exporter"] == e))}
        exporters_of_c = {d["exporter"][k] for k in np.flatnonzero(before & (d["consignee"] == c))}
        first_to_c = {}
        for k in np.flatnonzero(d["consignee"] == c):
            first_to_c[d["exporter"][k]] = min(first_to_c.get(d["exporter"][k], 2**62), d["t"][k])
        broker_exporters = (
            {d["exporter"][k] for k in np.flatnonzero(before & (d["broker"] == b))} - {e}
            if b is not None
            else set()
        )
        all_exporters = {d["exporter"][k] for k in np.flatnonzero(before)}
        n_implicated = sum(implicated(2, x, t) for x in consignees_of_e)
        # consignees of e that received (before t) from another exporter with a seizure before t
        shared = sum(
            any(
                implicated(1, d["exporter"][k], t)
                for k in np.flatnonzero(before & (d["consignee"] == x) & (d["exporter"] != e))
            )
            for x in consignees_of_e
        )
        other_implicated = sum(implicated(1, x, t) for x in broker_exporters)
        share_all = (
            sum(implicated(1, x, t) for x in all_exporters) / len(all_exporters) if all_exporters else 0.0
        )

        def decayed(times: list[int], t: int = t) -> float:
            return float(np.mean([sum(max(t - h * DAY, 0) <= u < t for u in times) for h in DECAY_DAYS]))

        def decl_times(mask: np.ndarray) -> list[int]:
            return [int(u) for u in d["t"][mask]]

        base_decl = decayed(decl_times(np.ones(len(d["t"]), dtype=bool)))
        base = decayed([s[0] for s in seized if s[4]]) / base_decl if base_decl > 0 else 0.0

        def rate(seizure_times: list[int], declaration_times: list[int], base: float = base) -> float:
            return (decayed(seizure_times) + RATE_SMOOTHING * base) / (
                decayed(declaration_times) + RATE_SMOOTHING
            )

        out.append(
            {
                "exporter_implicated_consignees": float(n_implicated),
                "exporter_implicated_consignee_share": n_implicated / len(consignees_of_e)
                if consignees_of_e
                else np.nan,
                "exporter_shared_consignees": float(shared),
                "consignee_implicated_exporters": float(sum(implicated(1, x, t) for x in exporters_of_c)),
                "consignee_new_exporters_90d": float(
                    sum(max(t - SHOPPING_DAYS * DAY, 0) <= u < t for u in first_to_c.values())
                ),
                "broker_implicated_exporters": float(other_implicated),
                "broker_exporter_seizure_rate": (other_implicated + EXPORTER_SMOOTHING * share_all)
                / (len(broker_exporters) + EXPORTER_SMOOTHING),
                "exporter_seizure_rate_decayed": rate(
                    [s[0] for s in seized if s[1] == e], decl_times(d["exporter"] == e)
                ),
                "consignee_seizure_rate_decayed": rate(
                    [s[0] for s in seized if s[2] == c], decl_times(d["consignee"] == c)
                ),
                "pair_seizure_rate_decayed": rate(
                    [s[0] for s in seized if s[1] == e and s[2] == c],
                    decl_times((d["exporter"] == e) & (d["consignee"] == c)),
                ),
                "heading_destination_seizure_rate_decayed": rate(
                    [s[0] for s in seized if s[3] == hd], decl_times(d["hd"] == hd)
                ),
            }
        )
    return pd.DataFrame(out, columns=pd.Index(NETWORK_COLUMNS, dtype=object))


def make_network_history(
    rng: np.random.Generator, n: int, n_seizures: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Declarations over more exporters and consignees, times spread over a year (windows matter)."""
    declarations = make_declarations(rng, n, "D", exporters=5)
    declarations["consignee_id"] = _str(rng.choice([f"C{i}" for i in range(5)], n))
    declarations["declared_at"] = _times(rng.integers(0, 400, n) * DAY // 2)
    seizures = make_seizures(rng, n_seizures, declarations)
    seizures["seized_at"] = _times(rng.integers(0, 400, n_seizures) * DAY // 2)
    return declarations, seizures


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_declarations=st.integers(0, 25),
    n_seizures=st.integers(0, 10),
    n_segments=st.integers(1, 5),
)
def test_network_features_equal_their_brute_force_definition_under_any_segmentation(
    seed: int, n_declarations: int, n_seizures: int, n_segments: int
) -> None:
    rng = np.random.default_rng(seed)
    declarations, seizures = make_network_history(rng, n_declarations, n_seizures)
    queries = pd.concat([declarations, make_declarations(rng, 6, "Q", exporters=6)], ignore_index=True)
    queries.loc[len(declarations) :, "declared_at"] = _times(rng.integers(0, 420, 6) * DAY // 2).to_numpy()
    expected = brute_force_network(declarations, seizures, queries)

    shuffled = declarations.iloc[rng.permutation(len(declarations))].reset_index(drop=True)
    shuffled_seizures = seizures.iloc[rng.permutation(len(seizures))].reset_index(drop=True)
    segmented = build_in_segments(
        shuffled,
        shuffled_seizures,
        rng.integers(0, n_segments, len(shuffled)),
        rng.integers(0, n_segments, len(shuffled_seizures)),
    )
    one_build = History.build(declarations, seizures, REFERENCE)
    built = compute_features(queries, one_build, REFERENCE)
    pd.testing.assert_frame_equal(
        built[list(NETWORK_COLUMNS)].reset_index(drop=True),
        expected,
        check_exact=False,
        rtol=1e-12,
        atol=1e-12,
    )
    assert_same_features(compute_features(queries, segmented, REFERENCE), built)


def test_two_hop_features_see_an_implication_only_once_it_is_reported() -> None:
    """E1 and E2 ship to C0; C0 is seized with E2 on day 50: E1 counts an implicated consignee from day 50 on."""
    rng = np.random.default_rng(5)
    declarations = make_declarations(rng, 4, "D")
    declarations["exporter_id"] = _str(["E1", "E2", "E2", "E1"])
    declarations["consignee_id"] = _str(["C0", "C0", "C1", "C2"])
    declarations["customs_broker_id"] = _str(["B0", "B0", "B0", "B0"])
    declarations["declared_at"] = _times(np.array([10, 20, 30, 40]) * DAY)
    seizures = make_seizures(rng, 1, declarations)
    seizures["declaration_id"] = _str(["D0001"])  # E2's shipment to C0
    seizures["exporter_id"] = _str([None])
    seizures["consignee_id"] = _str([None])
    seizures["seized_at"] = _times(np.array([50 * DAY]))
    query = declarations.iloc[[0, 0, 0]].reset_index(drop=True)
    query["declared_at"] = _times(np.array([45 * DAY, 50 * DAY, 50 * DAY + 1]))
    # the seizure arrives first; the declaration it names, back-dated, in a later append
    segmented = History.build(declarations.drop(index=1), seizures, REFERENCE).append(
        declarations.iloc[[1]], None, REFERENCE
    )
    for history in (History.build(declarations, seizures, REFERENCE), segmented):
        features = compute_features(query, history, REFERENCE)
        assert features["exporter_implicated_consignees"].tolist() == [0, 0, 1]
        assert features["exporter_implicated_consignee_share"].tolist() == [0, 0, 0.5]
        assert features["consignee_implicated_exporters"].tolist() == [0, 0, 1]
        assert features["broker_implicated_exporters"].tolist() == [0, 0, 1]
        assert features["exporter_shared_consignees"].tolist() == [0, 0, 1]
