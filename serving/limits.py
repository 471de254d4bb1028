"""Bounds on what one caller can make the service do: concurrency slots and slow-client timeouts.

`ConcurrencyLimit` caps how many of an expensive call (audit replay) run at once and lets
the caller know to come back later (429 with Retry-After) rather than queueing work that
takes the worker's memory with it. `HeaderTimeoutProtocol` closes connections whose
request headers do not arrive in time (the body's timeout is in `serving.middleware`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator

from uvicorn.protocols.http.h11_impl import H11Protocol


class Saturated(Exception):
    """Every slot is taken; `retry_after` is the number of seconds to suggest to the caller."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"{limit} running already; retry in {retry_after} s")
        self.limit = limit
        self.retry_after = retry_after


class ConcurrencyLimit:
    """At most `limit` holders at once; the next one is refused at once (`Saturated`), never queued."""

    def __init__(self, limit: int, retry_after: int = 2) -> None:
        if limit < 1:
            raise ValueError(f"a concurrency limit must be at least 1, got {limit}")
        self.limit = limit
        self.retry_after = retry_after
        self._slots = threading.BoundedSemaphore(limit)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of the block, or raise `Saturated`."""
        if not self._slots.acquire(blocking=False):
            raise Saturated(self.limit, self.retry_after)
        try:
            yield
        finally:
            self._slots.release()


def _timeout_answer() -> bytes:
    body = json.dumps({"error": "request headers not received in time; connection closed"}).encode()
    return (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers (408 and close when missed).

    The clock starts when a connection opens and when the first bytes of a following request
    arrive on a kept-alive connection (an idle kept-alive connection is uvicorn's own
    keep-alive timer's business), and stops when the headers are complete.
    """

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None and not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        between_requests = self.cycle is None or self.cycle.response_complete
        if between_requests:
            self._arm_header_timer()
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:  # the headers of a new request are complete
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its headers did arrive
        self.transport.write(_timeout_answer())
        self.transport.close()


def install_header_timeout(seconds: float) -> None:
    """Make uvicorn (as BentoML starts it, `http="auto"`) use `HeaderTimeoutProtocol` with `seconds`.

    BentoML creates the uvicorn server after importing the service module and offers no
    option for a header deadline, so the protocol class is registered under uvicorn's
    protocol names here. Without `httptools` installed (as in this project's lock file)
    "auto" already means h11; with it, h11 is chosen instead, on purpose.
    """
    from uvicorn import config

    HeaderTimeoutProtocol.header_timeout = float(seconds)
    target = f"{__name__}:HeaderTimeoutProtocol"
    config.HTTP_PROTOCOLS["auto"] = target
    config.HTTP_PROTOCOLS["h11"] = target
