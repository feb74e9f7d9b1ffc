"""Prometheus metrics of the config center, on ``GET /metrics``.

A private registry per app (prometheus_client), so two apps in one process (the tests) never share
counters. Like the gateway's, the endpoint is open unless ``AIGW_METRICS_TOKEN`` is set, and then
needs it as a bearer token. With several config-center workers, each scrape sees the counters of
the worker that answers it (the default is one worker).

- ``config_center_api_requests_total{route, method, status_class}``: admin API (``/api/``)
  requests answered, by route template (``/api/v1/namespaces/{name}``; ``unmatched`` for an
  unknown path), so the labels are bounded by the code;
- ``config_center_usage_batches_total``: usage batches taken from gateways;
- ``config_center_request_log_records_total``: request records taken from gateways;
- ``config_center_request_log_purged_total``: request-log rows deleted by the retention task;
- ``config_center_feed_long_polls``: gateway long-polls waiting on the configuration feed now.
"""

from __future__ import annotations

import hmac
import os

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aigw.config_center.errors import Unauthenticated

METRICS_TOKEN_ENV = "AIGW_METRICS_TOKEN"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class CenterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.api_requests = Counter(
            "config_center_api_requests",
            "Admin API requests answered, by route template, method and status class.",
            ("route", "method", "status_class"),
            registry=registry,
        )
        self.usage_batches = Counter(
            "config_center_usage_batches", "Usage batches taken from gateways.", registry=registry
        )
        self.request_records = Counter(
            "config_center_request_log_records",
            "Request records taken from gateways into the request log.",
            registry=registry,
        )
        self.request_log_purged = Counter(
            "config_center_request_log_purged",
            "Request-log rows deleted by the retention task.",
            registry=registry,
        )
        self.feed_long_polls = Gauge(
            "config_center_feed_long_polls",
            "Gateway long-polls waiting on the configuration feed now.",
            registry=registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class CountApiRequests:
    """ASGI middleware: counts each ``/api/`` request by route template and status class."""

    def __init__(self, app: ASGIApp, metrics: CenterMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.api_requests.labels(route, method, f"{status // 100}xx").inc()


router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus's scrape; with ``AIGW_METRICS_TOKEN`` set, it must bring it as a bearer."""
    token = os.environ.get(METRICS_TOKEN_ENV)
    if token:
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise Unauthenticated("/metrics needs the metrics bearer token")
    center: CenterMetrics = request.app.state.metrics
    return Response(center.exposition(), media_type=CONTENT_TYPE_LATEST)
