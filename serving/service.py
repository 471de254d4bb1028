"""BentoML scoring service: `bentoml serve serving.service:DiversionRiskService`.

Endpoints: POST /score (scorer), POST /history/declarations and /history/seizures
(analyst), GET /model (any caller), GET /audit/decisions/{id} (auditor), /rules and
/watchlists (risk_officer, docs/rules.md); BentoML's
/livez, /readyz (ready only when model and history are loaded), /metrics, the OpenAPI
document (/docs.json) and docs page (/). Every scoring decision is committed to the audit
store before its response is sent.

Any number of workers and replicas: the history, the audit trail and the registry live in
SQL stores and MLflow, shared by all. Each request applies the history log up to its
committed head before scoring (an append acknowledged before a request starts is in its
answer, on any worker); each worker follows the registry alias and switches models between
requests. Importing this module reads configuration but opens nothing and needs no secret
(`bentoml build` imports it); tokens are read when a worker starts.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from http import HTTPStatus
from typing import Annotated

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import bentoml  # noqa: E402
import orjson  # noqa: E402
from bentoml.exceptions import BentoMLException  # noqa: E402
from fastapi import FastAPI, HTTPException, Request  # noqa: E402
from pydantic import Field, TypeAdapter  # noqa: E402
from starlette.responses import Response  # noqa: E402

from features.definitions import FEATURE_SET  # noqa: E402
from serving.audit import AuditStore, DecisionBatch  # noqa: E402
from serving.auth import AuthConfigError, AuthMiddleware, TokenRegistry, demo_mode_from_env  # noqa: E402
from serving.challenger import ChallengerStore  # noqa: E402
from serving.frames import declaration_columns  # noqa: E402
from serving.history_store import UnknownDeclarationError  # noqa: E402
from serving.limits import ConcurrencyLimit, Saturated, install_header_timeout  # noqa: E402
from serving.metrics import MetricsEndpoint, RouteMetrics, ServiceMetrics  # noqa: E402
from serving.middleware import RECEIVED_DECLARATIONS, RequestGuard  # noqa: E402
from serving.rules_endpoints import router as rules_router  # noqa: E402
from serving.rules_store import RulesStore  # noqa: E402
from serving.runtime import settle_garbage_collector  # noqa: E402
from serving.schemas import (  # noqa: E402
    Declaration,
    HistoryAck,
    Inspection,
    ModelInfo,
    OutcomeAck,
    ScoreResponse,
    Seizure,
)
from serving.settings import ServiceSettings  # noqa: E402

log = logging.getLogger("serving")
SETTINGS = ServiceSettings.from_env()
MAX_BATCH = SETTINGS.max_batch

info_app = FastAPI(
    title="diversion-risk model and audit reads", docs_url=None, redoc_url=None, openapi_url=None
)
info_app.include_router(rules_router)  # /rules and /watchlists (risk_officer)


#: Declarations in their audited form (JSON types, absent optional fields left out), in one call.
_AS_RECEIVED = TypeAdapter(list[Declaration])


class NotReady(BentoMLException):
    error_code = HTTPStatus.SERVICE_UNAVAILABLE


def _unknown_declarations_answer(exc: UnknownDeclarationError, inspections: list[Inspection]) -> Response:
    """409: the inspections name declarations the history does not hold (the field-error shape)."""
    unknown = set(exc.declaration_ids)
    errors = [
        {
            "message": exc.reason,
            "type": "unknown_declaration",
            "field": f"inspections[{i}].declaration_id",
            "detail": inspection.declaration_id,
            "index": i,
            "declaration_id": inspection.declaration_id,
        }
        for i, inspection in enumerate(inspections)
        if inspection.declaration_id in unknown
    ]
    body = {"error": f"{len(errors)} inspection(s) of declarations not in the history", "errors": errors}
    return Response(orjson.dumps(body), status_code=409, media_type="application/json")


def _as_received(declarations: list[Declaration], ctx: bentoml.Context) -> list[dict]:
    """The declarations as the caller sent them (JSON objects), for the audit trail.

    The request guard hands over the records it parsed from the body; without it (the
    class called directly), the validated models in their JSON form stand in.
    """
    state = ctx.request.scope.get("state") or {}
    received = state.get(RECEIVED_DECLARATIONS)
    if isinstance(received, list) and len(received) == len(declarations):
        return received
    return _AS_RECEIVED.dump_python(declarations, mode="json", exclude_none=True)


def _utc_or_bound(value: dt.datetime | None) -> dt.datetime | None:
    """A query time in UTC (naive means UTC); beyond what a datetime holds, the nearest bound."""
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        return (dt.datetime.max if value.year > 1 else dt.datetime.min).replace(tzinfo=dt.UTC)


def _caller(ctx: bentoml.Context) -> str:
    state = ctx.request.scope.get("state") or {}
    return str(state.get("caller", "unknown"))


@bentoml.asgi_app(info_app, path="/")
# BentoML's own traffic metrics label series by raw path: off; serving.metrics counts by route.
@bentoml.service(
    name="diversion_risk", workers=SETTINGS.workers, traffic={"timeout": 120}, metrics={"enabled": False}
)
class DiversionRiskService:
    """Risk score, inspection channel and reasons for export declarations."""

    def __init__(self) -> None:
        from serving.engine import ScoringEngine

        self.settings = ServiceSettings.from_env()
        self.engine: ScoringEngine | None = None
        self.audit: AuditStore | None = None
        self.rules: RulesStore | None = None
        self.challengers = None
        self.load_error: str | None = None
        self.replays = ConcurrencyLimit(self.settings.replay_concurrency)
        try:
            self.audit = AuditStore(self.settings.audit_db, schema=self.settings.audit_schema)
            self.challengers = ChallengerStore(self.audit)
            self.engine = ScoringEngine.open(self.settings)
            self.rules = RulesStore(
                self.settings.rules_db, self.engine.model.scorer.policy.mandatory_red_rules
            )
            log.warning(
                "ready: model %s v%s, %d declarations in history (log applied up to append %d)",
                self.engine.model.name,
                self.engine.model.version,
                self.engine.store.declaration_count,
                self.engine.store.sequence,
            )
        except Exception as exc:  # any failure: stay up, not ready, and say exactly why
            self.engine = None
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("NOT READY: %s", self.load_error)
        settle_garbage_collector()

    def __is_ready__(self) -> bool:
        return self.engine is not None and self.audit is not None

    def _engine(self):
        if self.engine is None or self.audit is None:
            raise NotReady(f"service not ready: {self.load_error}")
        return self.engine

    @bentoml.api(route="/score")
    def score(
        self,
        declarations: Annotated[list[Declaration], Field(min_length=1, max_length=MAX_BATCH)],
        ctx: bentoml.Context,
    ) -> ScoreResponse:
        """Score 1..N declarations; results in request order; each decision audited before the answer."""
        engine = self._engine()
        request_id = uuid.uuid4().hex
        model = engine.model  # read once: the alias may move while this request runs
        challenger = engine.challenger  # likewise; None when no challenger is scored in shadow
        view = engine.store.current()  # every append committed before now is applied
        scored_at = dt.datetime.now(dt.UTC)
        columns = declaration_columns(declarations)
        # Features once per request: the champion, the rules and the challenger read the same frame.
        features = engine.features(columns, view.history, model)
        results = engine.score(
            columns, scored_at=scored_at, history=view.history, model=model, features=features
        )
        shadow = self._score_challenger(engine, challenger, model, features, results)  # before rules
        applied = self._apply_rules(columns, results, scored_at, features)

        # The audit rows in their stored form, built once: each declaration as received is
        # encoded once (canonical JSON), and that text is both stored and hashed.
        batch = DecisionBatch.build(
            request_id=request_id,
            caller=_caller(ctx),
            model_name=model.name,
            model_version=model.version,
            feature_set_version=FEATURE_SET.version,
            scored_at=scored_at,
            declaration_ids=[result["declaration_id"] for result in results],
            declarations=_as_received(declarations, ctx),
            risk_scores=[result["risk_score"] for result in results],
            channels=[result["channel"] for result in results],
            reasons=[result["reasons"] for result in results],
            rule_hits=applied.audit_rule_hits,
            history_seq=view.sequence,
            rule_set_version=applied.rule_set_version,
        )
        self.audit.record(batch)  # committed before the response exists
        if shadow is not None:
            self._record_challenger(engine, shadow, request_id, scored_at, view.sequence)
        return Response(  # type: ignore[return-value]
            orjson.dumps({"request_id": request_id, "history_sequence": view.sequence, "scores": results}),
            media_type="application/json",
        )

    def _apply_rules(self, columns, results, scored_at, features):
        """Targeting rules over the model's results (in place), reading the request's feature frame."""
        from serving.rules_api import apply_rules

        rule_set = self.rules.compiled()  # one indexed max(version) read; recompiled when it moved
        return apply_rules(rule_set, columns, results, scored_at, features=features)

    def _score_challenger(self, engine, challenger, model, features, results):
        """The challenger's scores of the same rows, or None; a failure is logged and counted, never raised."""
        if challenger is None:
            return None
        from serving.challenger import score_in_shadow

        try:
            return score_in_shadow(challenger, model, features, results)
        except Exception as exc:  # shadow scoring never fails a request
            self._challenger_failed(engine, "scoring", challenger, exc)
            return None

    def _record_challenger(self, engine, shadow, request_id, scored_at, history_seq) -> None:
        try:
            self.challengers.record(shadow, request_id, scored_at, history_seq)
        except Exception as exc:  # the decision is recorded and answered; only the shadow row is lost
            self._challenger_failed(engine, "recording", shadow, exc)

    @staticmethod
    def _challenger_failed(engine, what: str, challenger, exc: Exception) -> None:
        version = getattr(challenger, "version", None) or getattr(challenger, "challenger_version", "?")
        engine.challenger_failures += 1
        engine.challenger_last_error = f"{what} challenger v{version}: {type(exc).__name__}: {exc}"
        log.exception("shadow %s of challenger v%s failed; the champion answered", what, version)

    @bentoml.api(route="/history/declarations")
    def history_declarations(
        self, declarations: Annotated[list[Declaration], Field(min_length=1, max_length=MAX_BATCH)]
    ) -> HistoryAck:
        """Record filed declarations in the history (durable before acknowledged)."""
        engine = self._engine()
        result = engine.store.add_declarations([d.model_dump() for d in declarations])
        return HistoryAck(
            accepted=result.accepted,
            duplicates=result.duplicates,
            history_declarations=engine.store.declaration_count,
            history_sequence=result.sequence if result.sequence is not None else engine.store.sequence,
        )

    @bentoml.api(route="/history/seizures")
    def history_seizures(
        self, seizures: Annotated[list[Seizure], Field(min_length=1, max_length=MAX_BATCH)]
    ) -> HistoryAck:
        """Record seizures: they raise the risk of the entities they name from `seized_at` on."""
        engine = self._engine()
        result = engine.store.add_seizures([s.model_dump() for s in seizures])
        return HistoryAck(
            accepted=result.accepted,
            duplicates=result.duplicates,
            history_declarations=engine.store.declaration_count,
            history_sequence=result.sequence if result.sequence is not None else engine.store.sequence,
        )

    @bentoml.api(route="/outcomes")
    def outcomes(
        self,
        inspections: Annotated[list[Inspection], Field(max_length=MAX_BATCH)] = [],  # noqa: B006
        seizures: Annotated[list[Seizure], Field(max_length=MAX_BATCH)] = [],  # noqa: B006
    ) -> OutcomeAck:
        """Inspection results and seizure reports: one transaction (all or nothing), in the history at once."""
        engine = self._engine()
        try:
            result = engine.store.record_outcomes(
                [i.model_dump() for i in inspections], [s.model_dump() for s in seizures]
            )
        except UnknownDeclarationError as exc:
            return _unknown_declarations_answer(exc, inspections)  # type: ignore[return-value]
        return OutcomeAck(
            inspections_accepted=result.inspections_accepted,
            seizures_accepted=result.seizures_accepted,
            duplicates=result.duplicates,
            history_sequence=result.sequence if result.sequence is not None else engine.store.sequence,
        )

    @info_app.get("/model")
    def model_info(self) -> ModelInfo:
        """Model name, version, run id, feature set, test metrics and inspection policy."""
        if self.engine is None:
            raise HTTPException(status_code=503, detail=f"service not ready: {self.load_error}")
        return ModelInfo(**self.engine.info())

    @info_app.get("/audit/decisions/{declaration_id}")
    def audit_decisions(self, declaration_id: str, request: Request) -> list[dict]:
        """Every recorded decision about one declaration, oldest first (auditor role)."""
        if self.audit is None:
            raise HTTPException(status_code=503, detail=f"service not ready: {self.load_error}")
        decisions = self.audit.get(declaration_id[:64])
        if not decisions:
            raise HTTPException(
                status_code=404, detail=f"no decision recorded for declaration {declaration_id[:64]!r}"
            )
        return [{**d.__dict__, "scored_at": d.scored_at.isoformat()} for d in decisions]

    @info_app.get("/audit/challenger-report")
    def audit_challenger_report(
        self, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict:
        """The shadow challenger against the champion on the same recorded declarations (auditor)."""
        from serving.challenger import challenger_report
        from serving.rules_api import recorded_outcomes

        if self.challengers is None:
            raise HTTPException(status_code=503, detail=f"service not ready: {self.load_error}")
        since, until = _utc_or_bound(since), _utc_or_bound(until)  # an empty window is an empty report
        inspected, found, _ = recorded_outcomes(self.settings.history_db)
        report = challenger_report(self.challengers.rows(since, until), inspected, found)
        report["window"] = {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        }
        return report

    @info_app.get("/audit/replay/{declaration_id}")
    def audit_replay(self, declaration_id: str) -> list[dict]:
        """Re-score each recorded decision with its model version and the history as of the decision (auditor)."""
        from serving.replay import replay_decision

        if self.audit is None:
            raise HTTPException(status_code=503, detail=f"service not ready: {self.load_error}")
        if not self.audit.get(declaration_id[:64]):
            raise HTTPException(
                status_code=404, detail=f"no decision recorded for declaration {declaration_id[:64]!r}"
            )
        engine = self.engine
        try:
            with self.replays.slot():  # a few at a time: each holds a model version and a history view
                results = replay_decision(
                    declaration_id[:64],
                    self.settings,
                    self.audit,
                    store=engine.store if engine is not None else None,
                    models=[engine.model] if engine is not None else (),
                    rules=self.rules,
                )
        except Saturated as exc:
            raise HTTPException(
                status_code=429,
                detail=f"too many audit replays running (limit {exc.limit}); retry in {exc.retry_after} s",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        return [{**r.__dict__, "scored_at": r.scored_at.isoformat(), "verified": r.verified} for r in results]


class EnvironmentAuth(AuthMiddleware):
    """`AuthMiddleware` with the tokens of the environment, read when a worker builds its app.

    Not at import: `bentoml build` imports this module without any secret. A worker without
    tokens (and not in demo mode) fails to start, saying which variable to set.
    """

    def __init__(self, app) -> None:
        registry = TokenRegistry.from_env()
        demo = demo_mode_from_env()
        if registry is None and not demo:
            raise AuthConfigError(
                "no API tokens configured: set DIVERSION_TOKENS_FILE (see `python -m serving.auth --help`) "
                "or DIVERSION_TOKENS; for a local demo only, set DIVERSION_DEMO_MODE=true"
            )
        if registry is None:
            log.warning("=" * 72)
            log.warning(
                "DEMO MODE: NO AUTHENTICATION. Every caller has every role. Never use this in production."
            )
            log.warning("=" * 72)
        super().__init__(app, registry=registry, demo_mode=demo)


METRICS = ServiceMetrics()
# Order: first added is outermost. Metrics count every answer (401s included); /metrics is served
# inside the auth middleware, which asks for the monitor role.
DiversionRiskService.add_asgi_middleware(RouteMetrics, metrics=METRICS)
DiversionRiskService.add_asgi_middleware(EnvironmentAuth)
DiversionRiskService.add_asgi_middleware(MetricsEndpoint, metrics=METRICS)
DiversionRiskService.add_asgi_middleware(
    RequestGuard,
    max_body_bytes=SETTINGS.max_body_bytes,
    max_batch=MAX_BATCH,
    body_timeout=SETTINGS.body_timeout_seconds,
)
install_header_timeout(SETTINGS.header_timeout_seconds)
