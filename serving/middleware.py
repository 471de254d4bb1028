"""ASGI middleware at the edge of the service: body limits, malformed JSON, batch limits, 422s.

BentoML validates request bodies with pydantic and answers every failure with 400. Callers
need to tell apart "your JSON is broken" (400), "your batch is too large" (413) and "this
field of that declaration is wrong" (422, naming the declaration and the field), so this
middleware checks the body first and rewrites BentoML's validation answer.

It also completes the OpenAPI document BentoML publishes at /docs.json, so that the
document describes what the service really answers (`complete_contract`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson

from features.contract import DECLARATION_COLUMNS, REASON_NUL, SEIZURE_COLUMNS, SEIZURE_LINK_COLUMNS
from serving.auth import route_access
from serving.schemas import SEIZURE_LINK_ERROR

log = logging.getLogger(__name__)

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Key in the ASGI scope's "state" under which `/score`'s records, as received, reach the service.
RECEIVED_DECLARATIONS = "declarations_as_received"

#: Request bodies are JSON objects whose list field holds the records.
_LIST_FIELDS = {
    "/score": "declarations",
    "/history/declarations": "declarations",
    "/history/seizures": "seizures",
    "/outcomes": "inspections",
}


async def _json_response(send: Send, status: int, document: dict, close: bool = False) -> None:
    body = orjson.dumps(document)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """413 for oversized bodies or batches, 400 for malformed JSON, 422 for invalid fields,
    408 (and the connection closed) for a body that does not arrive within `body_timeout` seconds."""

    def __init__(
        self, app, max_body_bytes: int = 32 * 1024 * 1024, max_batch: int = 10_000, body_timeout: float = 30.0
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in _LIST_FIELDS:
            if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == OPENAPI_PATH:
                send = _ContractCompleter(send)
            await self.app(scope, receive, send)
            return
        list_field = _LIST_FIELDS[scope["path"]]
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _json_response(send, 413, {"error": f"request body above {self.max_body_bytes} bytes"})
            return
        # Media types are case-insensitive (RFC 9110 8.3.1); parameters such as charset may follow.
        content_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            await _json_response(
                send,
                415,
                {"error": f"content type {content_type.decode(errors='replace')!r}: send application/json"},
            )
            return
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        while True:
            try:
                # A slow client is the client's fault (408), not the server's (504), and it
                # must not hold a connection and a worker slot for as long as it likes.
                message = await asyncio.wait_for(receive(), timeout=max(deadline - loop.time(), 0.0))
            except TimeoutError:
                await _json_response(
                    send,
                    408,
                    {"error": f"request body not received within {self.body_timeout:g} s; connection closed"},
                    close=True,
                )
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _json_response(send, 413, {"error": f"request body above {self.max_body_bytes} bytes"})
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            await _json_response(send, 400, {"error": f"malformed JSON: {exc}"})
            return
        records = document.get(list_field) if isinstance(document, dict) else None
        if isinstance(records, list) and len(records) > self.max_batch:
            await _json_response(
                send,
                413,
                {
                    "error": f"{len(records)} {list_field} in one request; the limit is {self.max_batch}: split the batch"
                },
            )
            return
        nul = _nul_errors(document, list_field)
        if nul:
            # Answered here, before BentoML's validation, which would log the rejected text.
            rewriter = _ValidationRewriter(send, records, list_field)
            errors = [rewriter._describe(item) for item in nul]
            await _json_response(send, 422, {"error": f"{len(errors)} invalid field(s)", "errors": errors})
            return
        if scope["path"] == "/score" and isinstance(records, list):
            repeated = _repeated_declaration_ids(records)
            if repeated:
                await _json_response(send, 409, _repeated_ids_answer(repeated))
                return
            # The records exactly as the caller sent them (parsed once, here): the audit trail
            # stores these rather than re-serialising the validated models.
            scope.setdefault("state", {})[RECEIVED_DECLARATIONS] = records

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, _ValidationRewriter(send, records, list_field))


#: Free-text columns, where NUL is refused (contract reason REASON_NUL).
_TEXT_COLUMNS = tuple(
    dict.fromkeys(c.name for c in (*DECLARATION_COLUMNS, *SEIZURE_COLUMNS) if c.kind == "text")
)


def _nul_errors(document: object, list_field: str) -> list[dict]:
    """Validation items (pydantic's shape) for free text holding NUL, in every list of the body."""
    if not isinstance(document, dict):
        return []
    items = []
    for field in dict.fromkeys((list_field, "seizures")):
        records = document.get(field)
        if not isinstance(records, list):
            continue
        for index, record in enumerate(records[:100_000]):
            if not isinstance(record, dict):
                continue
            for name in _TEXT_COLUMNS:
                value = record.get(name)
                if isinstance(value, str) and "\x00" in value:
                    items.append(
                        {
                            "loc": [field, index, name],
                            "msg": f"Value error, {REASON_NUL}",
                            "type": "value_error",
                        }
                    )
    return items[:100]


def _repeated_declaration_ids(records: list) -> dict[str, list[int]]:
    """declaration_id -> its indexes, for ids that occur more than once in one scoring request."""
    positions: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        if isinstance(record, dict) and isinstance(record.get("declaration_id"), str):
            positions.setdefault(record["declaration_id"], []).append(index)
    return {declaration_id: where for declaration_id, where in positions.items() if len(where) > 1}


def _repeated_ids_answer(repeated: dict[str, list[int]]) -> dict:
    # The audit trail records one decision per declaration and request: a repeated id cannot be
    # decided twice in one request, and the caller has to say which line it meant.
    errors = [
        {
            "message": f"declaration_id repeated at indexes {where}",
            "type": "duplicate_declaration_id",
            "index": where[1],
            "declaration_id": declaration_id[:64],
            "field": "declaration_id",
            "detail": (
                f"declarations{where[1:]} repeat declaration_id {declaration_id[:64]!r} of "
                f"declarations[{where[0]}]: each declaration is scored once per request"
            ),
        }
        for declaration_id, where in list(repeated.items())[:100]
    ]
    return {"error": f"{len(repeated)} declaration_id(s) repeated within one request", "errors": errors}


class _BufferedResponse:
    """An ASGI `send` that holds back a whole response of the chosen status and rewrites it.

    Responses of any other status pass through untouched; subclasses say which status
    they want (`_wanted`) and what to send once the body is complete (`_finish`).
    """

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._body: list[bytes] = []

    def _wanted(self, status: int) -> bool:
        raise NotImplementedError

    async def _finish(self, start: Message, raw: bytes) -> None:
        raise NotImplementedError

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if self._wanted(message["status"]):
                self._start = message
                return
            await self._send(message)
            return
        if self._start is None or message["type"] != "http.response.body":
            await self._send(message)
            return
        self._body.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        await self._finish(self._start, b"".join(self._body))


class _ValidationRewriter(_BufferedResponse):
    """Turns BentoML's 400 validation answer into a 422 naming each declaration and field."""

    def __init__(self, send: Send, records: object, list_field: str) -> None:
        super().__init__(send)
        self._records = records if isinstance(records, list) else []
        self._list_field = list_field

    def _wanted(self, status: int) -> bool:
        return status == 400

    async def _finish(self, start: Message, raw: bytes) -> None:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            document = None
        if not (isinstance(document, dict) and isinstance(document.get("detail"), list)):
            await self._send(start)
            await self._send({"type": "http.response.body", "body": raw})
            return
        errors = [self._describe(item) for item in document["detail"]]
        await _json_response(self._send, 422, {"error": f"{len(errors)} invalid field(s)", "errors": errors})

    def _describe(self, item: dict) -> dict:
        loc = list(item.get("loc") or [])
        if loc and loc[0] == self._list_field:
            loc = loc[1:]
        out: dict = {"message": item.get("msg", "invalid"), "type": item.get("type")}
        if loc and isinstance(loc[0], int):
            index = loc[0]
            out["index"] = index
            record = self._records[index] if 0 <= index < len(self._records) else None
            if isinstance(record, dict) and isinstance(record.get("declaration_id"), str):
                out["declaration_id"] = record["declaration_id"][:64]
            if isinstance(record, dict) and isinstance(record.get("seizure_id"), str):
                out["seizure_id"] = record["seizure_id"][:64]
            loc = loc[1:]
        if item.get("type") == SEIZURE_LINK_ERROR:
            loc = [*loc, "|".join(SEIZURE_LINK_COLUMNS)]  # the rejects file's column for this reason
        out["field"] = ".".join(str(part) for part in loc) or self._list_field
        where = f"{self._list_field}[{out['index']}]" if "index" in out else "request"
        name = out.get("declaration_id") or out.get("seizure_id")
        out["detail"] = f"{where}{f' ({name})' if name else ''} field '{out['field']}': {out['message']}"
        return out


# --- the published contract ---------------------------------------------------------------

#: Where BentoML publishes the service's OpenAPI document.
OPENAPI_PATH = "/docs.json"
BEARER_SCHEME = "bearerAuth"

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_DETAIL = {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}
_FIELD_ERRORS = {
    "type": "object",
    "required": ["error", "errors"],
    "properties": {
        "error": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["message", "field", "detail"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string", "nullable": True},
                    "field": {"type": "string"},
                    "detail": {"type": "string"},
                    "index": {"type": "integer"},
                    "declaration_id": {"type": "string"},
                    "seizure_id": {"type": "string"},
                },
            },
        },
    },
}


def _response(description: str, schema: dict | None = None) -> dict:
    response: dict = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return response


#: Answers of this guard on the list endpoints (BentoML documents 200, 400, 404 and 500 itself).
_GUARD_RESPONSES = {
    "408": _response("Request body not received in time; the connection is closed", _ERROR),
    "413": _response("Request body or batch above the service's limit", _ERROR),
    "415": _response("Body is not application/json", _ERROR),
    "422": _response("Invalid fields, each named with its record's index and id", _FIELD_ERRORS),
    "503": _response("Service not ready (model or store not loaded)", _ERROR),
}
#: Further answers by path (a prefix when it ends in "/"): this guard's 409 on /score, and the
#: handlers mounted beside BentoML's APIs (FastAPI routes, probes).
_PATH_RESPONSES: dict[str, dict[str, dict]] = {
    "/score": {"409": _response("A declaration_id repeated within one scoring request", _FIELD_ERRORS)},
    "/outcomes": {
        "409": _response(
            "Inspections of declarations the history does not hold (nothing of the request stored)",
            _FIELD_ERRORS,
        )
    },
    "/model": {"503": _response("Model not loaded", _DETAIL)},
    "/audit/replay/": {
        "429": _response("Too many audit replays running; retry after the Retry-After seconds", _DETAIL)
    },
    "/audit/": {
        "404": _response("No decision recorded for this declaration", _DETAIL),
        "503": _response("Audit store not loaded", _DETAIL),
    },
    "/readyz": {"503": _response("Not ready: model, history or audit store not loaded")},
}


def complete_contract(document: dict) -> dict:
    """The OpenAPI document BentoML generates, completed to describe what the service answers.

    BentoML declares OpenAPI 3.0.2 but embeds pydantic's JSON Schema 2020-12 (numeric
    `exclusiveMinimum`, `{"type": "null"}` variants), which 3.0 tools reject; it knows
    neither the bearer tokens nor this guard's 413/415/422 nor the 503 of a service that is
    not ready, and it leaves request bodies optional. Returns a new document; `document`
    is not changed.
    """
    completed = _openapi_30_schema(document)
    components = completed.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "API token issued with `python -m serving.auth`; roles scorer, analyst, auditor, monitor",
    }
    for path, item in completed.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                _complete_operation(path, method, operation)
    return completed


def _complete_operation(path: str, method: str, operation: dict) -> None:
    responses = operation["responses"]
    needs_token, role = route_access(path)
    if needs_token:
        operation["security"] = [{BEARER_SCHEME: []}]
        responses.setdefault("401", _response("Missing, malformed or unknown bearer token", _ERROR))
        responses.setdefault(
            "403", _response(f"Token lacks the role {role!r}" if role else "Token lacks access", _ERROR)
        )
    else:
        operation["security"] = []
    if method == "post" and path in _LIST_FIELDS:
        operation.setdefault("requestBody", {})["required"] = True
        for status, response in _GUARD_RESPONSES.items():
            responses.setdefault(status, response)
    for prefix, extra in _PATH_RESPONSES.items():
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            for status, response in extra.items():
                responses.setdefault(status, response)


def _openapi_30_schema(node: object) -> object:
    """JSON Schema 2020-12 constructs pydantic emits, rewritten in their OpenAPI 3.0 form."""
    if isinstance(node, list):
        return [_openapi_30_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _openapi_30_schema(value) for key, value in node.items()}
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        bound = schema.get(exclusive)
        if isinstance(bound, int | float) and not isinstance(bound, bool):
            stricter = schema.get(inclusive)
            beyond = stricter is not None and (
                stricter > bound if inclusive == "minimum" else stricter < bound
            )
            if beyond:  # the inclusive bound already excludes the exclusive one
                del schema[exclusive]
            else:
                schema[inclusive] = bound
                schema[exclusive] = True
    variants = schema.get("anyOf")
    null = {"type": "null"}
    if isinstance(variants, list) and null in variants:
        others = [variant for variant in variants if variant != null]
        del schema["anyOf"]
        if len(others) == 1 and isinstance(others[0], dict) and "$ref" not in others[0]:
            schema = {**others[0], **schema}
        elif len(others) == 1:
            schema["allOf"] = others
        else:
            schema["anyOf"] = others
        schema["nullable"] = True
        if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]  # 3.0.3: a nullable enum lists null itself
    return schema


class _ContractCompleter(_BufferedResponse):
    """Buffers BentoML's /docs.json answer and sends `complete_contract` of it instead."""

    def _wanted(self, status: int) -> bool:
        return status == 200

    async def _finish(self, start: Message, raw: bytes) -> None:
        try:
            body = orjson.dumps(complete_contract(orjson.loads(raw)))
        except (orjson.JSONDecodeError, TypeError, AttributeError) as exc:
            log.warning("OpenAPI document not completed (%s): published as BentoML generated it", exc)
            body = raw
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})
