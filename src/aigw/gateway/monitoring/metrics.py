"""Observe every finished request: the seed's monitoring/metrics step.

Each request becomes one structured JSON access-log line on the ``aigw.access`` logger (the key's
non-secret prefix, never the key) and is added to this worker's realtime usage counters
(``realtime.py``: an O(1) in-memory update, flushed to Redis or the config center every second
off the request path) and to the request-log shipper (``request_log.py``, the same way, to the
config center's request log). Prometheus counters hang off this same call.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields

import orjson

from aigw.config.snapshot import PriceEntry, RequestLogEntry
from aigw.gateway.monitoring import realtime, request_log
from aigw.gateway.routing.usage import Usage

log = logging.getLogger("aigw.gateway.metrics")
access_log = logging.getLogger("aigw.access")


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    status: int = 0
    namespace: str | None = None
    key: str | None = None
    model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    stream: bool = False
    attempts: int = 0
    """Upstream tries (more than 1: failed over or retried)."""
    error_type: str | None = None
    error_code: str | None = None
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    """Streams: from the request's arrival to the upstream's first chunk."""
    stream_broken: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    tries: list[tuple[str, str, int, float]] = field(default_factory=list)
    """Per upstream try: provider, target (provider/model), status (0: no answer), seconds."""
    request_body: tuple[bytes, RequestLogEntry] | None = None
    """The caller's raw body when gateway.request_log.bodies is on (for the request log, which
    redacts it); never in the access log."""
    timestamp: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter, repr=False)

    def count_usage(self, usage: Usage, price: PriceEntry | None) -> None:
        """Take the upstream's reported usage, and its cost when the model has a price."""
        self.prompt_tokens, self.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        self.cached_tokens = usage.cached_tokens
        if price is not None:
            self.cost_usd = price.cost(
                usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
            )

    @property
    def ttft_seconds(self) -> float | None:
        return None if self.ttft_ms is None else self.ttft_ms / 1000


def record_request(record: RequestRecord) -> None:
    """Called once per request after its response has been sent (or has failed)."""
    record.duration_ms = round((time.perf_counter() - record.started) * 1000, 3)
    usage = realtime.recorder
    if usage is None:
        usage = realtime.default_recorder()
    try:
        usage.record(record)
    except Exception:  # never let accounting fail a request
        log.exception("usage: cannot record request %s", record.request_id)
    try:
        request_log.ship(record)
    except Exception:  # nor the request log
        log.exception("request log: cannot record request %s", record.request_id)
    if access_log.isEnabledFor(logging.INFO):
        line = {name: getattr(record, name) for name in _LOGGED_FIELDS}
        access_log.info(orjson.dumps(line).decode())


_LOGGED_FIELDS = tuple(
    f.name for f in fields(RequestRecord) if f.name not in ("started", "request_body")
)
