"""Rules at scoring time, backtests, effectiveness and the shadow report (what the endpoints call).

`apply_rules` runs after the model scored a batch: live rules raise channels (RED over
YELLOW; FLAG only records a hit), shadow rules are evaluated and recorded in the audit row
but change nothing. `replay_rules` evaluates a given rule-set version on one recorded
decision, so an auditor can reproduce its rule hits.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from features.definitions import FEATURE_SET, compute_features
from features.history import History
from features.reference import ReferenceTables
from models.rules import (
    DECLARATION_FIELDS,
    FEATURE_PREFIX,
    SEVERITY,
    ActiveRule,
    AllOf,
    AnyOf,
    Compare,
    CompiledRuleSet,
    Not,
    RuleDefinition,
    RuleOutcome,
    backtest,
)
from serving.rules_store import NotFound, RulesStore


def reads_features(condition) -> bool:
    """Whether a condition reads a feature column (then the service needs the batch's features)."""
    if isinstance(condition, AllOf):
        return any(reads_features(c) for c in condition.all)
    if isinstance(condition, AnyOf):
        return any(reads_features(c) for c in condition.any)
    if isinstance(condition, Not):
        return reads_features(condition.not_)
    if isinstance(condition, Compare):
        return condition.field.startswith(FEATURE_PREFIX) or (
            condition.field in FEATURE_SET.columns and condition.field not in DECLARATION_FIELDS
        )
    return False


def _features_from_model_hits(results: Sequence[dict], rules: Sequence[ActiveRule]) -> dict[str, np.ndarray]:
    """The built-in rules' feature columns, read back from the model's own rule hits (no recomputation)."""
    names = [r.rule_id.removeprefix("builtin:") for r in rules if r.builtin]
    return {
        name: np.fromiter((name in r["rule_hits"] for r in results), float, len(results)) for name in names
    }


@dataclass
class AppliedRules:
    rule_set_version: int
    audit_rule_hits: list[list[str]]


def apply_rules(
    rule_set: CompiledRuleSet,
    columns: Mapping[str, np.ndarray],
    results: list[dict],
    at: dt.datetime,
    features: object = None,
) -> AppliedRules:
    """Apply the rule set to scored `results` in place (channel, `rules`, `rule_set_version`).

    `features`: the batch's feature frame, the one the model scored (or a callable returning
    it), read only when a non-built-in rule reads a feature; built-in rules are read from
    the model's rule hits.
    """
    rules, _ = rule_set.at(at)
    if any(not r.builtin and reads_features(r.condition) for r in rules):
        frame = features() if callable(features) else features
    else:
        frame = _features_from_model_hits(results, rules)
    risk = np.fromiter((r["risk_score"] for r in results), float, len(results))
    outcome = rule_set.apply(columns, frame, risk, [r["channel"] for r in results], at)
    return _annotate(results, outcome)


def _annotate(results: list[dict], outcome: RuleOutcome) -> AppliedRules:
    version = outcome.rule_set_version
    tokens = outcome.audit_tokens()
    audit = []
    for result, channel, live, extra in zip(results, outcome.channel, outcome.live, tokens, strict=True):
        result["channel"] = channel
        result["rules"] = live
        result["rule_set_version"] = version
        audit.append(result["rule_hits"] + extra if extra else result["rule_hits"])
    return AppliedRules(version, audit)


def replay_rules(
    store: RulesStore,
    rule_set_version: int,
    declaration: Mapping,
    features: pd.DataFrame,
    risk_score: float,
    model_channel: str,
    at: dt.datetime,
) -> dict:
    """Evaluate rule-set `rule_set_version` on one declaration (as received) + its features + its score.

    Returns the channel after rules and the audit tokens of the hits, to compare with the
    recorded decision (`channel`, `rule_hits`).
    """
    from serving.frames import declaration_columns
    from serving.schemas import Declaration

    columns = declaration_columns([Declaration.model_validate(dict(declaration))])
    outcome = store.load(rule_set_version).apply(
        columns, features, np.array([risk_score]), [model_channel], at
    )
    return {
        "rule_set_version": rule_set_version,
        "channel": outcome.channel[0],
        "rules": outcome.live[0],
        "rule_hits": outcome.audit_tokens()[0],
    }


# --- backtest -----------------------------------------------------------------------------


class BacktestRequest(BaseModel):
    """Window of the history to run a rule version over (filing times, UTC)."""

    model_config = ConfigDict(extra="forbid")

    start: dt.datetime
    end: dt.datetime
    version: int | None = Field(None, ge=1, description="rule version; default: the latest")


def rule_version_set(
    store: RulesStore, rule_id: str, version: int | None, at: dt.datetime
) -> CompiledRuleSet:
    """A rule set of that one rule version, live, with the watchlist entries valid at `at`."""
    history = store.history("rule", rule_id)
    change = (
        history[-1] if version is None else next((c for c in history if c.object_version == version), None)
    )
    if change is None:
        raise NotFound(f"rule {rule_id!r} has no version {version}")
    definition = RuleDefinition.model_validate(change.after["definition"])
    rule = ActiveRule(
        rule_id,
        change.object_version,
        definition.name,
        definition.condition,
        definition.action,
        definition.precedence,
        builtin=bool(change.after.get("builtin")),
    )
    current = store.compiled()
    return CompiledRuleSet(current.version, [rule], current.entries)


def run_backtest(
    rule_set: CompiledRuleSet,
    declarations: pd.DataFrame,
    seizures: pd.DataFrame,
    inspections: pd.DataFrame | None,
    reference: ReferenceTables,
    start: dt.datetime,
    end: dt.datetime,
    at: dt.datetime,
    scorer=None,
) -> dict:
    """Backtest over declarations filed in [start, end): features point in time, model scores if given."""
    start_naive = (
        pd.Timestamp(start).tz_convert("UTC").tz_localize(None) if start.tzinfo else pd.Timestamp(start)
    )
    end_naive = pd.Timestamp(end).tz_convert("UTC").tz_localize(None) if end.tzinfo else pd.Timestamp(end)
    ordered = declarations.sort_values("declared_at", kind="stable", ignore_index=True)
    window = ordered.loc[(ordered["declared_at"] >= start_naive) & (ordered["declared_at"] < end_naive)]
    window = window.reset_index(drop=True)
    history = History.build(ordered, seizures, reference)
    features = compute_features(window, history, reference)
    risk = channel = budget = None
    if scorer is not None and len(window):
        scored = scorer.score(features, explain=False)
        risk, channel, budget = scored.risk_score, scored.channel, scorer.policy.red_rate
    result = backtest(rule_set, window, features, seizures, inspections, at, risk, channel, budget)
    result["window"] = {"start": start.isoformat(), "end": end.isoformat()}
    result["model_scored"] = scorer is not None
    return result


# --- effectiveness and shadow report -------------------------------------------------------


def _parse_token(token: str) -> tuple[str, str, int, str] | None:
    """`rule:R1@v3:RED` -> ("rule", "R1", 3, "RED"); `watchlist:E1@v2` -> ("watchlist", "E1", 2, "")."""
    kind, _, rest = token.partition(":")
    if kind not in ("rule", "shadow", "watchlist") or "@v" not in rest:
        return None
    ident, _, tail = rest.rpartition("@v")
    number, _, action = tail.partition(":")
    try:
        return kind, ident, int(number), action
    except ValueError:
        return None


def audited_rule_decisions(audit, since: dt.datetime | None = None) -> pd.DataFrame:
    """Recorded decisions with rule hits: declaration_id, channel, rule_hits (list), scored_at."""
    from serving.audit import decisions_table

    query = sa.select(
        decisions_table.c.declaration_id,
        decisions_table.c.channel,
        decisions_table.c.rule_hits,
        decisions_table.c.scored_at,
    ).where(decisions_table.c.rule_hits.like("%@v%"))
    if since is not None:
        query = query.where(decisions_table.c.scored_at >= since)
    with audit._engine.connect() as connection:
        rows = [
            (r.declaration_id, r.channel, json.loads(r.rule_hits), r.scored_at)
            for r in connection.execute(query)
        ]
    return pd.DataFrame(rows, columns=["declaration_id", "channel", "rule_hits", "scored_at"])


def recorded_outcomes(history_db: str) -> tuple[set[str], set[str], dict[str, dt.datetime]]:
    """(inspected ids, ids with a finding, last finding time per id) from the service's history log."""
    from serving.history_store import read_log

    appended = read_log(history_db)
    inspected: set[str] = set()
    found: dict[str, dt.datetime] = {}
    for declaration_id, at, result in appended.inspections.itertuples(index=False):
        at = at.to_pydatetime()
        inspected.add(declaration_id)
        if result != "CLEAN":
            found[declaration_id] = max(found.get(declaration_id, at), at)
    if appended.seizures is not None:
        for declaration_id, at in appended.seizures[["declaration_id", "seized_at"]].itertuples(index=False):
            if isinstance(declaration_id, str) and declaration_id:
                at = at.to_pydatetime()
                found[declaration_id] = max(found.get(declaration_id, at), at)
    return inspected, set(found), found


def effectiveness(
    decisions: pd.DataFrame,
    inspected: set[str],
    found: dict[str, dt.datetime],
    now: dt.datetime,
    stale_days: int,
) -> dict:
    """Per rule and per watchlist entry: hits, inspected, found, precision, last hit / finding, stale."""
    stats: dict[tuple[str, str], dict] = defaultdict(
        lambda: {"hits": 0, "inspected": 0, "found": 0, "last_hit": None, "last_finding": None, "_ids": set()}
    )
    for declaration_id, rule_hits, scored_at in zip(
        decisions["declaration_id"], decisions["rule_hits"], decisions["scored_at"], strict=True
    ):
        for token in rule_hits:
            parsed = _parse_token(token)
            if parsed is None:
                continue
            kind, ident, _version, _action = parsed
            key = ("watchlist_entry" if kind == "watchlist" else "rule", ident)
            entry = stats[key]
            if declaration_id in entry["_ids"]:
                continue
            entry["_ids"].add(declaration_id)
            entry["hits"] += 1
            entry["last_hit"] = max(filter(None, [entry["last_hit"], scored_at]))
            if declaration_id in inspected:
                entry["inspected"] += 1
            if declaration_id in found:
                entry["found"] += 1
                at = found[declaration_id]
                entry["last_finding"] = max(filter(None, [entry["last_finding"], at]))
    naive_now = now.astimezone(dt.UTC).replace(tzinfo=None)
    horizon = naive_now - dt.timedelta(days=stale_days)

    def _naive(value):
        return (
            None
            if value is None
            else (value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value)
        )

    out = {"rules": [], "watchlist_entries": [], "stale_days": stale_days}
    for (kind, ident), entry in sorted(stats.items()):
        entry.pop("_ids")
        last_hit, last_finding = _naive(entry["last_hit"]), _naive(entry["last_finding"])
        row = {
            "id": ident,
            **entry,
            "precision": entry["found"] / entry["inspected"] if entry["inspected"] else None,
            "last_hit": last_hit.isoformat() if last_hit else None,
            "last_finding": last_finding.isoformat() if last_finding else None,
            "stale": (last_hit is None or last_hit < horizon)
            or (last_finding is None or last_finding < horizon),
        }
        out["rules" if kind == "rule" else "watchlist_entries"].append(row)
    return out


def with_never_hit(report: dict, store: RulesStore) -> dict:
    """Active and shadow rules without any recorded hit are listed too (stale by definition)."""
    seen = {r["id"] for r in report["rules"]}
    for rule in store.rules():
        if rule["status"] in ("active", "shadow") and rule["id"] not in seen:
            report["rules"].append(
                {
                    "id": rule["id"],
                    "hits": 0,
                    "inspected": 0,
                    "found": 0,
                    "precision": None,
                    "last_hit": None,
                    "last_finding": None,
                    "stale": True,
                }
            )
    return report


def shadow_report(decisions: pd.DataFrame) -> dict:
    """Shadow rules against live on the same decisions: hits and the channels they would have given."""
    per_rule: dict[str, dict] = {}
    changed = 0
    red_live = red_shadow = 0
    with_shadow = 0
    for channel, rule_hits in zip(decisions["channel"], decisions["rule_hits"], strict=True):
        shadow_channel = channel
        any_shadow = False
        for token in rule_hits:
            parsed = _parse_token(token)
            if parsed is None or parsed[0] != "shadow":
                continue
            any_shadow = True
            _, ident, version, action = parsed
            entry = per_rule.setdefault(
                f"{ident}@v{version}",
                {
                    "rule_id": ident,
                    "version": version,
                    "action": action,
                    "hits": 0,
                    "would_change_channel": 0,
                },
            )
            entry["hits"] += 1
            target = action if action in SEVERITY else channel
            if SEVERITY.get(target, 0) > SEVERITY[channel]:
                entry["would_change_channel"] += 1
            if SEVERITY.get(target, 0) > SEVERITY[shadow_channel]:
                shadow_channel = target
        with_shadow += any_shadow
        changed += shadow_channel != channel
        red_live += channel == "RED"
        red_shadow += shadow_channel == "RED"
    n = len(decisions)
    return {
        "decisions_with_rule_hits": n,
        "decisions_with_shadow_hits": with_shadow,
        "channel_would_change": changed,
        "red_live": red_live,
        "red_with_shadow": red_shadow,
        "rules": sorted(per_rule.values(), key=lambda e: (e["rule_id"], e["version"])),
        "note": "counts over recorded decisions that carry any rule hit; live channels are those answered",
    }
