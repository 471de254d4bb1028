"""HTTP endpoints of the risk officers (role `risk_officer`): rules, watchlists, backtests, reports.

Included in the service's FastAPI app (`info_app.include_router(router)`); every route
reads the running service instance (its rule store, engine, audit store and settings).
Request bodies are pydantic models: an unknown field, a bad operator or value answers 422
with the field's location. Refused changes answer 403 (built-in rule, self-approval),
404 (unknown id) or 409 (wrong state).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import bentoml
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from models.rules import RuleDefinition, WatchlistEntryDefinition
from serving.rules_store import RulesStore, RuleStoreError

router = APIRouter()


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=4000, description="why: recorded with the change")


class RuleRequest(RuleDefinition):
    reason: str = Field(min_length=1, max_length=4000)


class WatchlistRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = Field("", max_length=4000)
    owner: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=4000)


class RestoreRequest(Reason):
    version: int = Field(ge=1)


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: dt.datetime
    end: dt.datetime
    version: int | None = Field(None, ge=1, description="rule version; default: the latest")


def _service(service=Depends(bentoml.get_current_service)):  # noqa: B008 - FastAPI dependency
    if getattr(service, "rules", None) is None:
        raise HTTPException(status_code=503, detail=f"service not ready: {service.load_error}")
    return service


def _caller(request: Request) -> str:
    return str((request.scope.get("state") or {}).get("caller", "unknown"))


def _call(function, *args):
    try:
        return function(*args)
    except RuleStoreError as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from exc


def _definition(body: BaseModel, model: type[BaseModel]) -> BaseModel:
    return model.model_validate(body.model_dump(exclude={"reason"}))


# --- watchlists ----------------------------------------------------------------------------


@router.get("/watchlists")
def list_watchlists(service=Depends(_service)) -> list[dict]:  # noqa: B008
    """Every watchlist with its state."""
    return service.rules.watchlists()


@router.post("/watchlists")
def create_watchlist(body: WatchlistRequest, request: Request, service=Depends(_service)) -> dict:  # noqa: B008
    """A new, active watchlist."""
    store: RulesStore = service.rules
    return _call(
        store.create_watchlist, body.name, body.description, body.owner, _caller(request), body.reason
    )


@router.get("/watchlists/{name}/entries")
def list_entries(name: str, service=Depends(_service)) -> list[dict]:  # noqa: B008
    """A watchlist's entries (current version each)."""
    return service.rules.entries(name)


@router.post("/watchlists/{name}/entries")
def add_entry(name: str, body: WatchlistEntryDefinition, request: Request, service=Depends(_service)) -> dict:  # noqa: B008
    """Put an entity on a watchlist, with reason, source, owner and mandatory valid_until."""
    # the entry's own reason is the change's reason
    return _call(service.rules.add_entry, name, body, _caller(request), body.reason)


@router.put("/watchlists/{name}/entries/{entry_id}")
def update_entry(
    name: str,
    entry_id: str,
    body: WatchlistEntryDefinition,
    request: Request,
    service=Depends(_service),  # noqa: B008
) -> dict:
    """A new version of an entry (e.g. a later valid_until)."""
    return _call(service.rules.update_entry, entry_id, body, _caller(request), body.reason)


@router.post("/watchlists/{name}/entries/{entry_id}/remove")
def remove_entry(
    name: str,
    entry_id: str,
    body: Reason,
    request: Request,
    service=Depends(_service),  # noqa: B008
) -> dict:
    """Take an entity off the list (a new version with status removed; history kept)."""
    return _call(service.rules.remove_entry, entry_id, _caller(request), body.reason)


@router.get("/watchlists/{name}/entries/{entry_id}/versions")
def entry_versions(name: str, entry_id: str, service=Depends(_service)) -> list[dict]:  # noqa: B008
    """Every version of an entry: who, when, why, before and after."""
    return [c.as_dict() for c in _call(service.rules.history, "entry", entry_id)]


@router.post("/watchlists/{name}/{action}")
def set_watchlist_status(
    name: str,
    action: Literal["enable", "disable"],
    body: Reason,
    request: Request,
    service=Depends(_service),  # noqa: B008
) -> dict:
    """Disable (its entries stop matching) or enable a watchlist."""
    status = "active" if action == "enable" else "disabled"
    return _call(service.rules.set_watchlist_status, name, status, _caller(request), body.reason)


# --- rules -----------------------------------------------------------------------------------


@router.get("/rules")
def list_rules(service=Depends(_service)) -> dict:  # noqa: B008
    """Every rule (current version), and the rule-set version."""
    return {"rule_set_version": service.rules.current_version(), "rules": service.rules.rules()}


@router.post("/rules")
def create_rule(body: RuleRequest, request: Request, service=Depends(_service)) -> dict:  # noqa: B008
    """A new rule, in draft: activate or shadow it (with approval if it requires one)."""
    definition = _definition(body, RuleDefinition)
    return _call(service.rules.create_rule, definition, _caller(request), body.reason)


@router.get("/rules/effectiveness")
def rules_effectiveness(stale_days: int = 30, service=Depends(_service)) -> dict:  # noqa: B008
    """Per rule and watchlist entry: hits, inspected, found, precision; stale after `stale_days`."""
    from serving.rules_api import audited_rule_decisions, effectiveness, recorded_outcomes, with_never_hit

    decisions = audited_rule_decisions(service.audit)
    inspected, _, found = recorded_outcomes(service.settings.history_db)
    report = effectiveness(decisions, inspected, found, dt.datetime.now(dt.UTC), stale_days)
    return with_never_hit(report, service.rules)


@router.get("/rules/shadow-report")
def rules_shadow_report(since: dt.datetime | None = None, service=Depends(_service)) -> dict:  # noqa: B008
    """Shadow rules against live on the same recorded decisions."""
    from serving.rules_api import audited_rule_decisions, shadow_report

    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    return shadow_report(audited_rule_decisions(service.audit, since))


@router.get("/rules/{rule_id}")
def get_rule(rule_id: str, service=Depends(_service)) -> dict:  # noqa: B008
    return _call(service.rules.rule, rule_id)


@router.put("/rules/{rule_id}")
def update_rule(rule_id: str, body: RuleRequest, request: Request, service=Depends(_service)) -> dict:  # noqa: B008
    """A new definition; back to draft."""
    definition = _definition(body, RuleDefinition)
    return _call(service.rules.update_rule, rule_id, definition, _caller(request), body.reason)


@router.get("/rules/{rule_id}/versions")
def rule_versions(rule_id: str, service=Depends(_service)) -> list[dict]:  # noqa: B008
    """Every version of a rule: who, when, why, before and after, rule-set version."""
    return [c.as_dict() for c in _call(service.rules.history, "rule", rule_id)]


@router.post("/rules/{rule_id}/restore")
def restore_rule(rule_id: str, body: RestoreRequest, request: Request, service=Depends(_service)) -> dict:  # noqa: B008
    """A new version equal to an earlier one (approval applies again)."""
    return _call(service.rules.restore, rule_id, body.version, _caller(request), body.reason)


@router.post("/rules/{rule_id}/backtest")
def backtest_rule(rule_id: str, body: BacktestRequest, service=Depends(_service)) -> dict:  # noqa: B008
    """Run a rule version over a window of the history, point in time (see docs/rules.md)."""
    from serving.rules_api import rule_version_set, run_backtest

    engine = service._engine()
    at = dt.datetime.now(dt.UTC)
    rule_set = _call(rule_version_set, service.rules, rule_id, body.version, at)
    declarations, seizures, inspections = _history_tables(service.settings)
    return run_backtest(
        rule_set,
        declarations,
        seizures,
        inspections,
        engine.model.reference,
        body.start,
        body.end,
        at,
        scorer=engine.model.scorer,
    )


@router.post("/rules/{rule_id}/{action}")
def set_rule_status(
    rule_id: str,
    action: Literal["activate", "shadow", "approve", "disable", "expire"],
    body: Reason,
    request: Request,
    service=Depends(_service),  # noqa: B008
) -> dict:
    """activate / shadow (pending a second officer's approval when required), approve, disable, expire."""
    store: RulesStore = service.rules
    caller = _caller(request)
    if action == "approve":
        return _call(store.approve, rule_id, caller, body.reason)
    target = {"activate": "active", "shadow": "shadow", "disable": "disabled", "expire": "expired"}[action]
    return _call(store.set_status, rule_id, target, caller, body.reason)


def _history_tables(settings):
    """The service's whole history (base contract files + the history log) and the recorded inspections."""
    import pandas as pd

    from features.validation import load_contract_tables
    from serving.history_store import read_log

    tables = load_contract_tables(
        settings.history_declarations, settings.history_seizures, None, rejects_dir=None
    )
    appended = read_log(settings.history_db)
    declarations = pd.concat(
        [f for f in (tables.declarations, appended.declarations) if f is not None], ignore_index=True
    ).sort_values("declared_at", kind="stable", ignore_index=True)
    seizures = pd.concat(
        [f for f in (tables.seizures, appended.seizures) if f is not None], ignore_index=True
    )
    inspections = appended.inspections if len(appended.inspections) else None
    return declarations, seizures, inspections
