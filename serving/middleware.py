"""ASGI middleware at the edge of the service: body limits, malformed JSON, batch limits, 422s.

BentoML validates request bodies with pydantic and answers every failure with 400. Callers
need to tell apart "your JSON is broken" (400), "your batch is too large" (413) and "this
field of that declaration is wrong" (422, naming the declaration and the field), so this
middleware checks the body first and rewrites BentoML's validation answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson

log = logging.getLogger(__name__)

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Request bodies are JSON objects whose list field holds the records.
_LIST_FIELDS = {
    "/score": "declarations",
    "/history/declarations": "declarations",
    "/history/seizures": "seizures",
    "/outcomes": "inspections",
}


async def _json_response(send: Send, status: int, document: dict) -> None:
    body = orjson.dumps(document)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """413 for oversized bodies or batches, 400 for malformed JSON, 422 for invalid fields."""

    def __init__(self, app, max_body_bytes: int = 32 * 1024 * 1024, max_batch: int = 10_000) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in _LIST_FIELDS:
            await self.app(scope, receive, send)
            return
        list_field = _LIST_FIELDS[scope["path"]]
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _json_response(send, 413, {"error": f"request body above {self.max_body_bytes} bytes"})
            return
        content_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip()
        if content_type != b"application/json":
            await _json_response(
                send,
                415,
                {"error": f"content type {content_type.decode(errors='replace')!r}: send application/json"},
            )
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
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

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, _ValidationRewriter(send, records, list_field))


class _ValidationRewriter:
    """Turns BentoML's 400 validation answer into a 422 naming each declaration and field."""

    def __init__(self, send: Send, records: object, list_field: str) -> None:
        self._send = send
        self._records = records if isinstance(records, list) else []
        self._list_field = list_field
        self._start: Message | None = None
        self._body: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if message["status"] == 400:
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
        raw = b"".join(self._body)
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            document = None
        if not (isinstance(document, dict) and isinstance(document.get("detail"), list)):
            await self._send(self._start)
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
        out["field"] = ".".join(str(part) for part in loc) or self._list_field
        where = f"{self._list_field}[{out['index']}]" if "index" in out else "request"
        name = out.get("declaration_id") or out.get("seizure_id")
        out["detail"] = f"{where}{f' ({name})' if name else ''} field '{out['field']}': {out['message']}"
        return out
