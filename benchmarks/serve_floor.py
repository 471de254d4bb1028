"""The framework's floor for `make bench-serve`: BentoML and this service's request validation, nothing else.

`POST /score` takes the scoring service's request body (the same `Declaration` schema and
batch limit, validated by BentoML in the same way) and answers one `{"declaration_id"}`
per declaration: no features, model, reasons or audit write. Its latency and throughput,
measured in the same run as the scoring service, show how much of the scoring service's
time is BentoML, HTTP and validation, which any BentoML service with this request contract pays.
Not part of the product: `bentoml serve benchmarks.serve_floor:ValidationFloor` runs it.
"""

from __future__ import annotations

import os
from typing import Annotated

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import bentoml  # noqa: E402
import orjson  # noqa: E402
from pydantic import Field  # noqa: E402
from starlette.responses import Response  # noqa: E402

from serving.runtime import settle_garbage_collector  # noqa: E402
from serving.schemas import Declaration  # noqa: E402
from serving.settings import ServiceSettings  # noqa: E402

MAX_BATCH = ServiceSettings.from_env().max_batch


@bentoml.service(name="validation_floor", workers=1, traffic={"timeout": 120})
class ValidationFloor:
    """Validates declarations exactly as the scoring service does and echoes their ids."""

    def __init__(self) -> None:
        settle_garbage_collector()  # the scoring service's collector settings, for a like-for-like floor

    @bentoml.api(route="/score")
    def score(
        self, declarations: Annotated[list[Declaration], Field(min_length=1, max_length=MAX_BATCH)]
    ) -> dict:
        """One `{"declaration_id"}` per declaration, in request order."""
        return Response(  # type: ignore[return-value]
            orjson.dumps({"scores": [{"declaration_id": d.declaration_id} for d in declarations]}),
            media_type="application/json",
        )
