"""BentoML scoring service: `bentoml serve serving.service:DiversionRiskService`.

Endpoints: POST /score, POST /history/declarations, POST /history/seizures, GET /model;
BentoML's /livez, /readyz (ready only when model and history are loaded), /metrics, the
OpenAPI document (/docs.json) and docs page (/). One worker: the history store lives in
the worker's memory (a second worker would not see the first one's appends).
"""

from __future__ import annotations

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
from fastapi import FastAPI  # noqa: E402
from pydantic import Field  # noqa: E402
from starlette.responses import Response  # noqa: E402

from serving.frames import declaration_columns  # noqa: E402
from serving.middleware import RequestGuard  # noqa: E402
from serving.schemas import Declaration, HistoryAck, ModelInfo, ScoreResponse, Seizure  # noqa: E402
from serving.settings import ServiceSettings  # noqa: E402

log = logging.getLogger("serving")
SETTINGS = ServiceSettings.from_env()
MAX_BATCH = SETTINGS.max_batch

info_app = FastAPI(title="diversion-risk model info", docs_url=None, redoc_url=None, openapi_url=None)


class NotReady(BentoMLException):
    error_code = HTTPStatus.SERVICE_UNAVAILABLE


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(name="diversion_risk", workers=1, traffic={"timeout": 120})
class DiversionRiskService:
    """Risk score, inspection channel and reasons for export declarations."""

    def __init__(self) -> None:
        from serving.engine import ScoringEngine

        self.settings = ServiceSettings.from_env()
        self.engine: ScoringEngine | None = None
        self.load_error: str | None = None
        try:
            self.engine = ScoringEngine.open(self.settings)
            log.warning(
                "ready: model %s v%s, %d declarations in history",
                self.engine.model.name,
                self.engine.model.version,
                self.engine.store.declaration_count,
            )
        except Exception as exc:  # any failure: stay up, not ready, and say why
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("NOT READY: %s", self.load_error)

    def __is_ready__(self) -> bool:
        return self.engine is not None

    def _engine(self):
        if self.engine is None:
            raise NotReady(f"service not ready: {self.load_error}")
        return self.engine

    @bentoml.api(route="/score")
    def score(
        self, declarations: Annotated[list[Declaration], Field(min_length=1, max_length=MAX_BATCH)]
    ) -> ScoreResponse:
        """Score 1..N declarations; results in request order."""
        engine = self._engine()
        results = engine.score(declaration_columns([d.model_dump() for d in declarations]))
        body = orjson.dumps({"request_id": uuid.uuid4().hex, "scores": results})
        return Response(body, media_type="application/json")  # type: ignore[return-value]

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
        )

    @bentoml.api(route="/history/seizures")
    def history_seizures(self, seizures: Annotated[list[Seizure], Field(min_length=1, max_length=MAX_BATCH)]) -> HistoryAck:
        """Record seizures: they raise the risk of the entities they name from `seized_at` on."""
        engine = self._engine()
        result = engine.store.add_seizures([s.model_dump() for s in seizures])
        return HistoryAck(
            accepted=result.accepted,
            duplicates=result.duplicates,
            history_declarations=engine.store.declaration_count,
        )

    @info_app.get("/model")
    def model_info(self) -> ModelInfo:
        """Model name, version, run id, feature set, test metrics and inspection policy."""
        return ModelInfo(**self._engine().info())


DiversionRiskService.add_asgi_middleware(RequestGuard, max_body_bytes=SETTINGS.max_body_bytes, max_batch=MAX_BATCH)
