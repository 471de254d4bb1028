"""Extra cost of targeting rules per scoring batch: `python -m benchmarks.rules` (`make bench-rules`).

A rule store (SQLite, as the service's default) holds 100 active rules and 10,000
watchlist entries; a batch of 1,000 declarations with model scores and features is run
through exactly what the service adds per request (`RulesStore.compiled()`: one indexed
`max(version)` read; `serving.rules_api.apply_rules`: masks, channels, hits, audit
tokens), against the same step with no rule at all, in the same run. Compilation happens
once, when the rule-set version moves, and is reported separately.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.definitions import FEATURE_SET
from models.rules import RuleDefinition, WatchlistEntryDefinition
from serving.rules_api import apply_rules
from serving.rules_store import RulesStore

COUNTRIES = ("NG", "GH", "AE", "US", "GB", "DE", "BJ", "TG", "CM", "KE", "ZA", "EG", "SA", "MY", "SG")
MODES = ("SEA", "AIR", "COURIER", "POST", "ROAD", "RAIL")
HEADINGS = ("2939", "3004", "3003", "2933", "2924", "1302", "2922", "3006")


#: Most traffic goes to a few large markets; the rest is spread thin.
COUNTRY_WEIGHTS = np.array([0.15] * 6 + [0.1 / 9] * 9)


def _countries(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.array(COUNTRIES, dtype=object)[rng.choice(len(COUNTRIES), n, p=COUNTRY_WEIGHTS)]


def _batch(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], pd.DataFrame, list[dict]]:
    pick = rng.integers
    columns = {
        "declaration_id": np.array([f"SB{i:08d}" for i in range(n)], dtype=object),
        "exporter_id": np.array([f"EXP{v:06d}" for v in pick(0, 300_000, n)], dtype=object),
        "consignee_id": np.array([f"CNS{v:07d}" for v in pick(0, 2_000_000, n)], dtype=object),
        "customs_broker_id": np.array([f"CHA{v:05d}" for v in pick(0, 60_000, n)], dtype=object),
        "consignee_country": _countries(rng, n),
        "destination_country": _countries(rng, n),
        "transshipment_country": np.where(rng.random(n) < 0.2, _countries(rng, n), None),
        "port_of_loading": np.array(["INNSA", "INBOM", "INDEL", "INMAA"], dtype=object)[pick(0, 4, n)],
        "transport_mode": np.array(MODES, dtype=object)[pick(0, len(MODES), n)],
        "hs_code": np.array(
            [
                f"{HEADINGS[h]}{s:04d}"
                for h, s in zip(pick(0, len(HEADINGS), n), pick(0, 10_000, n), strict=True)
            ],
            dtype=object,
        ),
        "quantity": rng.lognormal(5, 1, n),
        "gross_weight_kg": rng.lognormal(4, 1, n),
        "declared_value_usd": rng.lognormal(8, 1.5, n),
        "payment_terms": np.array(["LC", "ADVANCE", None], dtype=object)[pick(0, 3, n)],
    }
    features = pd.DataFrame(rng.normal(size=(n, len(FEATURE_SET.columns))), columns=list(FEATURE_SET.columns))
    features["controlled_without_authorisation"] = (rng.random(n) < 0.01).astype(float)
    risk = rng.beta(1, 30, n)
    channel = np.where(risk > 0.2, "RED", np.where(risk > 0.08, "YELLOW", "GREEN"))
    return columns, features, _results(columns, risk, channel, features)


def _results(columns, risk, channel, features) -> list[dict]:
    flagged = features["controlled_without_authorisation"].to_numpy() > 0
    return [
        {
            "declaration_id": d,
            "risk_score": float(r),
            "channel": str(c),
            "rule_hits": ["controlled_without_authorisation"] if f else [],
        }
        for d, r, c, f in zip(columns["declaration_id"], risk, channel, flagged, strict=True)
    ]


def _rules(rng: np.random.Generator, count: int, watchlists: list[tuple[str, str]]) -> list[RuleDefinition]:
    """A mix like a customs targeting unit's: watchlist rules, field rules, score rules, feature rules."""
    rules = []
    for i in range(count):
        kind = i % 4
        name, entity = watchlists[i % len(watchlists)]
        heading = HEADINGS[i % len(HEADINGS)]
        countries = [COUNTRIES[j] for j in rng.choice(len(COUNTRIES), 3, replace=False)]
        if kind == 0:
            condition = {
                "all": [
                    {"on_watchlist": name, "entity": entity},
                    {"field": "transport_mode", "op": "in", "value": ["COURIER", "POST", "AIR"]},
                ]
            }
        elif kind == 1:
            condition = {
                "all": [
                    {"field": "hs_code", "op": "startswith", "value": heading},
                    {"field": "destination_country", "op": "in", "value": countries},
                    {"field": "declared_value_usd", "op": "lt", "value": float(rng.uniform(200, 2000))},
                ]
            }
        elif kind == 2:
            condition = {
                "any": [
                    {"on_watchlist": name, "entity": entity},
                    {
                        "all": [
                            {"field": "risk_score", "op": "ge", "value": 0.15},
                            {"field": "transshipment_country", "op": "in", "value": countries},
                        ]
                    },
                ]
            }
        else:
            condition = {
                "all": [
                    {"field": "hs_code", "op": "startswith", "value": heading},
                    {"field": "unit_value_vs_tariff_norm", "op": "lt", "value": -2.5},
                    {"not": {"field": "payment_terms", "op": "eq", "value": "LC"}},
                ]
            }
        action = ("RED", "YELLOW", "FLAG")[i % 3]
        rules.append(RuleDefinition(name=f"bench rule {i}", condition=condition, action=action, precedence=i))
    return rules


def _entries(
    rng: np.random.Generator, total: int, now: dt.datetime
) -> dict[str, list[WatchlistEntryDefinition]]:
    """`total` entries over 50 watchlists (consignees, exporters, brokers, routes), 1/50 of them each."""

    def entry(entity: str, value: str) -> WatchlistEntryDefinition:
        return WatchlistEntryDefinition(
            entity=entity,
            value=value,
            reason="bench",
            source="bench",
            owner="bench",
            valid_from=now - dt.timedelta(days=1),
            valid_until=now + dt.timedelta(days=365),
        )

    per_list = total // 50
    consignees = iter(rng.choice(2_000_000, total, replace=False).tolist())
    exporters = iter(rng.choice(300_000, total, replace=False).tolist())
    brokers = iter(rng.choice(60_000, total, replace=False).tolist())
    routes = [f"INNSA>{a}>{b}" for a in COUNTRIES for b in COUNTRIES if a != b]
    lists: dict[str, list[WatchlistEntryDefinition]] = {}
    for i in range(50):
        kind = ("consignee", "exporter", "broker", "consignee", "route")[i % 5]
        if kind == "consignee":
            values = [f"CNS{next(consignees):07d}" for _ in range(per_list)]
        elif kind == "exporter":
            values = [f"EXP{next(exporters):06d}" for _ in range(per_list)]
        elif kind == "broker":
            values = [f"CHA{next(brokers):05d}" for _ in range(per_list)]
        else:  # routes: a few per list, the rest consignees
            values = [routes[(i * 3 + j) % len(routes)] for j in range(2)]
            values += [f"CNS{next(consignees):07d}" for _ in range(per_list - 2)]
        lists[f"list-{i:02d}"] = [
            entry("route" if v.startswith("INNSA>") else kind.replace("route", "consignee"), v)
            for v in values
        ]
    assert sum(len(v) for v in lists.values()) == total
    return lists


def _median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _timed(function) -> tuple[float, float]:
    """(wall ms, CPU ms of this thread): CPU time is what the step costs when the machine is shared."""
    wall, cpu = time.perf_counter(), time.thread_time()
    function()
    return (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000


def run(
    rules: int = 100, entries: int = 10_000, rows: int = 1_000, repeats: int = 200, seed: int = 7
) -> dict:
    rng = np.random.default_rng(seed)
    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder)}/rules.db"
        store = RulesStore(url, ("controlled_without_authorisation",))
        empty = RulesStore(f"sqlite:///{Path(folder)}/empty.db")
        lists = _entries(rng, entries, now)
        for name, items in lists.items():
            store.create_watchlist(name, "bench", "bench", "bench", "bench")
            store.add_entries_bulk(name, items, "bench", "bench")
        entity = {name: items[-1].entity for name, items in lists.items()}
        for definition in _rules(rng, rules, [(n, entity[n]) for n in lists]):
            rule_id = store.create_rule(definition, "bench", "bench")["id"]
            store.set_status(rule_id, "active", "bench", "bench")
        started = time.perf_counter()
        compiled = store.compiled()
        compile_ms = (time.perf_counter() - started) * 1000
        columns, features, results = _batch(rng, rows)

        def without() -> None:
            apply_rules(empty.compiled(), columns, [dict(r) for r in results], now, features)

        def with_rules() -> None:
            apply_rules(store.compiled(), columns, [dict(r) for r in results], now, features)

        def copy_only() -> None:
            [dict(r) for r in results]

        for function in (without, with_rules):  # warm caches (validity windows, code paths)
            function()
        # alternate the two so that machine load falls on both alike
        baseline, timed, copies = [], [], []
        for _ in range(repeats):
            baseline.append(_timed(without))
            timed.append(_timed(with_rules))
            copies.append(_timed(copy_only))
        hits = apply_rules(compiled, columns, [dict(r) for r in results], now, features)
        fired = sum(1 for tokens in hits.audit_rule_hits if any("@v" in t for t in tokens))
        check_ms = _median_ms(store.current_version, repeats)
        store.close()
        empty.close()

    def median(samples, which):
        return statistics.median(sample[which] for sample in samples)

    return {
        "rules": len(compiled.rules),
        "watchlist_entries": len(compiled.entries),
        "rows": rows,
        "compile_ms": compile_ms,
        # without: the batch's result dicts only (the service with no rules step)
        "without_ms": median(copies, 0),
        "empty_rule_set_ms": median(baseline, 0),
        "with_ms": median(timed, 0),
        "without_cpu_ms": median(copies, 1),
        "empty_rule_set_cpu_ms": median(baseline, 1),
        "with_cpu_ms": median(timed, 1),
        "version_check_ms": check_ms,
        "rows_with_rule_hits": fired,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rules", description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    result = run(args.rules, args.entries, args.rows, args.repeats)
    extra = result["with_ms"] - result["without_ms"]
    extra_cpu = result["with_cpu_ms"] - result["without_cpu_ms"]
    print(
        f"{result['rules']} active rules (incl. built-in), {result['watchlist_entries']:,} watchlist entries, "
        f"{result['rows']:,} declarations per batch ({result['rows_with_rule_hits']} with a rule hit)"
    )
    print(f"  compile once per rule-set version      {result['compile_ms']:8.1f} ms")
    print("                                          wall (median)   CPU of the thread (median)")
    print(
        f"  per batch without rules                 {result['without_ms']:8.3f} ms     {result['without_cpu_ms']:8.3f} ms"
    )
    print(
        f"  per batch, empty rule set               {result['empty_rule_set_ms']:8.3f} ms     "
        f"{result['empty_rule_set_cpu_ms']:8.3f} ms"
    )
    print(
        f"  per batch with rules                    {result['with_ms']:8.3f} ms     {result['with_cpu_ms']:8.3f} ms"
    )
    print(
        f"  extra per batch                         {extra:8.3f} ms     {extra_cpu:8.3f} ms   (floor: <= 5 ms)"
    )
    print(f"  rule-set version check per request      {result['version_check_ms']:8.3f} ms (included above)")
    print(f"  load average while measuring            {os.getloadavg()[0]:8.2f} on {os.cpu_count()} cores")
    print("PASS" if extra <= 5.0 else "FAIL (wall): above the 5 ms floor")


if __name__ == "__main__":
    main()
