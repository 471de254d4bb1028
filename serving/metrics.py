"""Prometheus metrics labelled by route template, behind a role (see docs/security.md).

BentoML's own traffic metrics label every series with the raw request path: anyone who
can read /metrics learns which declaration ids were looked up (200 vs 404), and random
paths grow the exposition without bound. The service switches those off and counts
requests here instead, by *route template* (`/audit/replay/{declaration_id}`, or `other`
for any path the service does not serve), so the number of series is fixed by the code.

Two ASGI middlewares share one registry: `RouteMetrics` (outermost: it counts every
answer, 401s and 403s included) and `MetricsEndpoint` (inside the auth middleware: it
serves /metrics to callers holding the `monitor` role).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

METRICS_PATH = "/metrics"
#: Paths served as they are (no parameters in them).
EXACT_ROUTES = frozenset(
    {
        "/score",
        "/history/declarations",
        "/history/seizures",
        "/outcomes",
        "/model",
        "/livez",
        "/readyz",
        "/healthz",
        METRICS_PATH,
        "/docs.json",
        "/schema.json",
        "/",
    }
)
#: Prefix -> template of the paths with a parameter.
PREFIX_ROUTES: tuple[tuple[str, str], ...] = (
    ("/audit/decisions/", "/audit/decisions/{declaration_id}"),
    ("/audit/replay/", "/audit/replay/{declaration_id}"),
    ("/static_content/", "/static_content/{file}"),
)
OTHER = "other"
_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


def route_template(path: str) -> str:
    """The route a path belongs to, with its parameter as a placeholder; `other` for unknown paths."""
    if path in EXACT_ROUTES:
        return path
    for prefix, template in PREFIX_ROUTES:
        rest = path[len(prefix) :]
        if path.startswith(prefix) and rest and "/" not in rest:
            return template
    return OTHER


class ServiceMetrics:
    """The registry and the series: requests by route template, method and status; durations by route."""

    def __init__(self, namespace: str = "diversion") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            namespace=namespace,
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Seconds from the request's headers to the end of its answer, by route template",
            ["route"],
            namespace=namespace,
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RouteMetrics:
    """Counts every HTTP answer by route template (never the raw path), method and status."""

    def __init__(self, app, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_template(scope["path"])
        method = scope.get("method", "GET") if scope.get("method") in _METHODS else OTHER
        status = 500  # what the server answers if the app fails before starting a response
        started = time.perf_counter()

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - started)


class MetricsEndpoint:
    """Answers GET /metrics with the exposition; placed inside the auth middleware, which guards it."""

    def __init__(self, app, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != METRICS_PATH:
            await self.app(scope, receive, send)
            return
        body = self.metrics.exposition() if scope.get("method") in ("GET", "HEAD") else b""
        status = 200 if body else 405
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", CONTENT_TYPE_LATEST.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body if scope.get("method") == "GET" else b""})
