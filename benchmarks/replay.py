"""`python -m benchmarks.replay`: what auditing one decision costs a running worker.

Opens the scoring engine on the benchmark history (`make bench-serve` writes it, from
`make data` and `make train`), appends 1,000 declarations in ten appends with one decision
recorded after each, then replays a decision made at the live sequence number and one
made five appends earlier (its history is the last compaction plus 500 log rows). Prints
median milliseconds over five replays and the growth of the process's peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from features.definitions import FEATURE_SET
from serving.audit import AuditStore, DecisionBatch
from serving.demo import split_history
from serving.engine import ScoringEngine
from serving.frames import declaration_columns
from serving.replay import Replayer
from serving.settings import ServiceSettings


def run(
    declarations: Path, seizures: Path, appends: int = 10, rows_per_append: int = 100
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        base_declarations, base_seizures, records = split_history(declarations, seizures, 2000, Path(folder))
        for record in records:
            record["declared_at"] = pd.Timestamp(record["declared_at"]).to_pydatetime()
        settings = ServiceSettings.from_env().model_copy(
            update={
                "history_declarations": base_declarations,
                "history_seizures": base_seizures,
                "history_db": f"sqlite:///{folder}/history.db",
                "audit_db": f"sqlite:///{folder}/audit.db",
                "model_poll_seconds": 0,
            }
        )
        engine = ScoringEngine.open(settings)
        audit = AuditStore(settings.audit_db)
        decided = []
        for i in range(appends):
            engine.store.add_declarations(records[i * rows_per_append : (i + 1) * rows_per_append])
            record = records[-1 - i]
            view = engine.store.current()
            (result,) = engine.score(declaration_columns([record]), history=view.history)
            audit.record(
                DecisionBatch.build(
                    f"bench-replay-{i}",
                    "bench",
                    engine.model.name,
                    engine.model.version,
                    FEATURE_SET.version,
                    dt.datetime.now(dt.UTC),
                    [record["declaration_id"]],
                    [{**record, "declared_at": record["declared_at"].isoformat()}],
                    [result["risk_score"]],
                    [result["channel"]],
                    [result["reasons"]],
                    [result["rule_hits"]],
                    history_seq=view.sequence,
                )
            )
            decided.append(record["declaration_id"])
        replayer = Replayer(settings, audit, engine.store, [engine.model])
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        def median_ms(declaration_id: str) -> float:
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                (replayed,) = replayer.replay(declaration_id)
                timings.append(time.perf_counter() - started)
                assert replayed.verified, replayed
            return statistics.median(timings) * 1000

        figures = {
            "live_ms": median_ms(decided[-1]),
            "older_ms": median_ms(decided[appends // 2 - 1]),
            "older_log_rows": float(rows_per_append * appends // 2),
            "peak_rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024,
        }
        audit.close()
        engine.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__)
    parser.add_argument("--declarations", type=Path, default=Path("data/synthetic/declarations.parquet"))
    parser.add_argument("--seizures", type=Path, default=Path("data/synthetic/seizures.parquet"))
    args = parser.parse_args(argv)
    figures = run(args.declarations, args.seizures)
    print(
        f"replay of a decision at the live sequence number: {figures['live_ms']:.1f} ms (median of 5)\n"
        f"replay of a decision {int(figures['older_log_rows'])} log rows back: {figures['older_ms']:.1f} ms\n"
        f"peak RSS growth over the replays: {figures['peak_rss_growth_mb']:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
