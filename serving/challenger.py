"""The `@challenger` model in shadow: scored beside the champion, recorded, never answered.

Each /score request computes the batch's features once; when the engine holds a
challenger (`ScoringEngine.check_challenger`), the same feature rows are scored with it and
its calibrated score and channel are written to `audit_challenger_scores` in the audit
database, beside the champion model's own score and channel for the same rows (both before
targeting rules, so the two models are compared, not the rules). Nothing of it reaches the
caller or the channel; a failure is logged, counted and shown in `GET /model`.

`challenger_report` compares the two over a window of recorded rows: agreement of
channels, RED/YELLOW each would select, rank correlation of scores, and, where inspection
results or seizures are recorded in the history log, findings at the RED budget.
`python -m serving.challenger` prints the same report from the command line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from serving.audit import AuditStore, _UTCDateTime
from serving.history_store import create_schema

log = logging.getLogger(__name__)

_metadata = sa.MetaData()
challenger_table = sa.Table(
    "audit_challenger_scores",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("declaration_id", sa.String(64), nullable=False, index=True),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("challenger_version", sa.String(64), nullable=False),
    sa.Column("champion_version", sa.String(64), nullable=False),
    sa.Column("challenger_risk_score", sa.Double, nullable=False),
    sa.Column("challenger_channel", sa.String(32), nullable=False),
    # The champion model's score and channel for the same row, before targeting rules.
    sa.Column("champion_risk_score", sa.Double, nullable=False),
    sa.Column("champion_channel", sa.String(32), nullable=False),
    sa.Column("scored_at", _UTCDateTime, nullable=False, index=True),
    sa.Column("history_seq", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("request_id", "declaration_id", name="uq_audit_challenger_request_declaration"),
)

COLUMNS = tuple(c.name for c in challenger_table.columns if c.name != "id")


@dataclass(frozen=True)
class ShadowScores:
    """The challenger's scores of one request's rows, with the champion model's for the same rows."""

    model_name: str
    challenger_version: str
    champion_version: str
    declaration_ids: list[str]
    challenger_risk_scores: list[float]
    challenger_channels: list[str]
    champion_risk_scores: list[float]
    champion_channels: list[str]


def score_in_shadow(challenger, champion, features: pd.DataFrame, results: Sequence[dict]) -> ShadowScores:
    """Score `features` (the champion's rows, computed once) with `challenger`; `results` before rules."""
    batch = challenger.scorer.score(features, None, explain=False)
    return ShadowScores(
        model_name=challenger.name,
        challenger_version=challenger.version,
        champion_version=champion.version,
        declaration_ids=[r["declaration_id"] for r in results],
        challenger_risk_scores=[float(v) for v in batch.risk_score],
        challenger_channels=[str(v) for v in batch.channel],
        champion_risk_scores=[float(r["risk_score"]) for r in results],
        champion_channels=[str(r["channel"]) for r in results],
    )


class ChallengerStore:
    """Append-only shadow scores in the audit database (same engine, schema and durability)."""

    def __init__(self, audit: AuditStore) -> None:
        self._engine = audit._engine
        create_schema(self._engine, _metadata)

    def record(
        self, shadow: ShadowScores, request_id: str, scored_at: dt.datetime, history_seq: int | None
    ) -> None:
        rows = [
            {
                "request_id": request_id,
                "declaration_id": declaration_id,
                "model_name": shadow.model_name,
                "challenger_version": shadow.challenger_version,
                "champion_version": shadow.champion_version,
                "challenger_risk_score": challenger_score,
                "challenger_channel": challenger_channel,
                "champion_risk_score": champion_score,
                "champion_channel": champion_channel,
                "scored_at": scored_at,
                "history_seq": history_seq,
            }
            for declaration_id, challenger_score, challenger_channel, champion_score, champion_channel in zip(
                shadow.declaration_ids,
                shadow.challenger_risk_scores,
                shadow.challenger_channels,
                shadow.champion_risk_scores,
                shadow.champion_channels,
                strict=True,
            )
        ]
        with self._engine.begin() as connection:
            connection.execute(sa.insert(challenger_table), rows)

    def rows(self, since: dt.datetime | None = None, until: dt.datetime | None = None) -> pd.DataFrame:
        """Recorded shadow rows scored in [since, until), oldest first."""
        query = sa.select(*[challenger_table.c[name] for name in COLUMNS]).order_by(challenger_table.c.id)
        if since is not None:
            query = query.where(challenger_table.c.scored_at >= since)
        if until is not None:
            query = query.where(challenger_table.c.scored_at < until)
        with self._engine.connect() as connection:
            return pd.DataFrame(connection.execute(query).all(), columns=list(COLUMNS))


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rho (average ranks for ties); None below 3 rows or for a constant score."""
    if len(a) < 3:
        return None
    rank_a = pd.Series(a).rank(method="average").to_numpy()
    rank_b = pd.Series(b).rank(method="average").to_numpy()
    if rank_a.std() == 0 or rank_b.std() == 0:
        return None
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


def _top(scores: np.ndarray, budget: int) -> np.ndarray:
    """Indices of the `budget` highest scores (ties broken by row order, so the answer is stable)."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[:budget]


def _compare(group: pd.DataFrame, inspected: set[str], found: set[str]) -> dict:
    champion_channel = group["champion_channel"].to_numpy()
    challenger_channel = group["challenger_channel"].to_numpy()
    champion_score = group["champion_risk_score"].to_numpy(dtype=float)
    challenger_score = group["challenger_risk_score"].to_numpy(dtype=float)
    ids = group["declaration_id"].to_numpy()
    n = len(group)
    agreement = pd.crosstab(
        pd.Series(champion_channel, name="champion"), pd.Series(challenger_channel, name="challenger")
    )
    budget = int((champion_channel == "RED").sum())
    with_outcome = np.fromiter((i in inspected or i in found for i in ids), bool, n)
    was_found = np.fromiter((i in found for i in ids), bool, n)

    def selection(channel: np.ndarray, scores: np.ndarray) -> dict:
        red = channel == "RED"
        top = np.zeros(n, bool)
        top[_top(scores, budget)] = True
        return {
            "red": int(red.sum()),
            "yellow": int((channel == "YELLOW").sum()),
            "red_with_outcome": int((red & with_outcome).sum()),
            "red_found": int((red & was_found).sum()),
            "top_budget_with_outcome": int((top & with_outcome).sum()),
            "top_budget_found": int((top & was_found).sum()),
        }

    return {
        "champion_version": group["champion_version"].iloc[0],
        "challenger_version": group["challenger_version"].iloc[0],
        "declarations": n,
        "channel_agreement": int((champion_channel == challenger_channel).sum()),
        "channel_agreement_rate": float((champion_channel == challenger_channel).mean()) if n else None,
        "channels": {
            f"{a}->{b}": int(agreement.loc[a, b])
            for a in agreement.index
            for b in agreement.columns
            if agreement.loc[a, b]
        },
        "rank_correlation": _rank_correlation(champion_score, challenger_score),
        "red_budget": budget,
        "with_outcome": int(with_outcome.sum()),
        "found": int(was_found.sum()),
        "champion": selection(champion_channel, champion_score),
        "challenger": selection(challenger_channel, challenger_score),
    }


def challenger_report(rows: pd.DataFrame, inspected: set[str], found: set[str]) -> dict:
    """Challenger against champion on the same recorded declarations, per (champion, challenger) pair.

    A declaration scored more than once counts once (its latest shadow row). `red_budget` is
    the champion's RED count over the window; `top_budget_*` count each model's that many
    highest scores. Outcomes are known only for inspected declarations (or seized ones).
    """
    latest = rows.drop_duplicates(["declaration_id", "champion_version", "challenger_version"], keep="last")
    pairs = [
        _compare(group.reset_index(drop=True), inspected, found)
        for _, group in latest.groupby(["champion_version", "challenger_version"], sort=True)
    ]
    return {
        "shadow_rows": len(rows),
        "comparisons": pairs,
        "note": "model channels before targeting rules; outcomes are known only for inspected or seized "
        "declarations (with_outcome); red_budget is the champion's RED count in the window",
    }


def _aware(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m serving.challenger`: the shadow-vs-live report of the service's stores, as JSON."""
    from serving.rules_api import recorded_outcomes
    from serving.settings import ServiceSettings

    settings = ServiceSettings.from_env()
    parser = argparse.ArgumentParser(prog="python -m serving.challenger", description=main.__doc__)
    parser.add_argument("--audit-db", default=settings.audit_db, help="audit store URL (DIVERSION_AUDIT_DB)")
    parser.add_argument(
        "--history-db",
        default=settings.history_db,
        help="history log URL, for outcomes (DIVERSION_HISTORY_DB)",
    )
    parser.add_argument("--since", help="first scoring time (ISO 8601, UTC if no offset)")
    parser.add_argument("--until", help="end of the window, excluded (ISO 8601)")
    args = parser.parse_args(argv)
    try:
        since, until = _aware(args.since), _aware(args.until)
    except ValueError as exc:
        parser.error(f"--since/--until: {exc}")
    audit = AuditStore(args.audit_db, schema=settings.audit_schema)
    try:
        rows = ChallengerStore(audit).rows(since, until)
    finally:
        audit.close()
    inspected, found, _ = recorded_outcomes(args.history_db)
    report = challenger_report(rows, inspected, found)
    report["window"] = {"since": args.since, "until": args.until}
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
