"""Forward one request: try the planned targets in order until one serves it.

A try fails over to the next target when nothing has reached the caller yet: the upstream could
not be reached or did not start answering in time (for a stream: no first chunk), or it answered
429 or 5xx. Tries are bounded by the model's ``max_attempts`` and ``deadline``; between them the
worker waits a jittered exponential backoff. When the targets run out before the attempts do,
the plan starts again from its first target still available (a single-target model retries that
target). A 429's ``Retry-After`` puts its target in a cooling period that every later request
respects too; there is no waiting for it within a request, another target serves instead.

If no try can be made anymore, the caller gets the last failure: the upstream's own 429/5xx
answer (in the caller's protocol), or the gateway's 502/504. Each try is recorded on its target
(breaker, requests in flight, time to first byte), and the answer names the target that served
it in ``x-aigw-upstream``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aigw.config.schema import CircuitBreakerSettings
from aigw.config.snapshot import ModelEntry, TargetEntry
from aigw.gateway.core.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from aigw.gateway.core.http import Headers, Send, send_response
from aigw.gateway.routing.exchange import Exchange
from aigw.gateway.routing.router import Router
from aigw.gateway.routing.upstream import Relayed, RetryableStatus, UpstreamClient

if TYPE_CHECKING:
    from aigw.gateway.monitoring.metrics import RequestRecord

log = logging.getLogger("aigw.gateway.routing")

UPSTREAM_HEADER = b"x-aigw-upstream"
# A Retry-After longer than this is capped: a target is not given up on for hours.
MAX_COOLING_SECONDS = 300.0


async def forward(
    router: Router,
    upstream: UpstreamClient,
    send: Send,
    model: ModelEntry,
    targets: list[TargetEntry],
    exchange_for: Callable[[TargetEntry], Exchange],
    response_headers: Headers,
    settings: CircuitBreakerSettings,
    record: RequestRecord,
) -> Relayed:
    """Try ``targets`` (from :meth:`Router.plan`, first exchange already planned by the
    caller's ``exchange_for``) until one serves the request; see the module documentation."""
    routing = model.routing
    loop = asyncio.get_running_loop()
    deadline = loop.time() + routing.deadline
    header_at = len(response_headers)
    response_headers.append((UPSTREAM_HEADER, b""))
    first = _take(router, targets, 0, settings)
    if first is None:  # the plan's targets were taken meanwhile (another request's probe)
        raise router.unavailable(model, settings)
    target = first
    attempt = 0
    while True:
        record.provider, record.upstream_model = target.provider.name, target.upstream_model
        record.attempts = attempt + 1
        response_headers[header_at] = (UPSTREAM_HEADER, target.name.encode())
        last = attempt + 1 >= routing.max_attempts
        state = router.state(target)
        state.in_flight += 1
        failure: GatewayError | RetryableStatus
        began = time.perf_counter()
        try:
            relayed = await upstream.relay(
                send, target, exchange_for(target), response_headers, may_retry=not last
            )
        except RetryableStatus as refused:
            failure = refused
            _note_try(record, target, refused.status, began)
        except (UpstreamUnavailable, UpstreamTimeout) as error:
            failure = error
            _note_try(record, target, 0, began)
        else:
            _note_try(record, target, relayed.status, began)
            if record.stream and relayed.first_byte_seconds is not None:
                record.ttft_ms = (began - record.started + relayed.first_byte_seconds) * 1000
            record.stream_broken = relayed.broken
            _observe(router, target, relayed, settings)
            return relayed
        finally:
            state.in_flight -= 1
        _observe_failure(router, target, failure, settings)
        attempt += 1
        following = None if last else _take(router, targets, targets.index(target) + 1, settings)
        pause = _backoff(routing.backoff_ms, attempt)
        if following is None or loop.time() + pause >= deadline:
            return await _give_up(send, failure)
        log.info(
            "request %s: %s failed (%s); trying %s",
            record.request_id,
            target.name,
            _describe(failure),
            following.name,
        )
        await asyncio.sleep(pause)
        target = following


def _note_try(record: RequestRecord, target: TargetEntry, status: int, began: float) -> None:
    seconds = time.perf_counter() - began
    record.tries.append((target.provider.name, target.name, status, seconds))


def _take(
    router: Router, targets: list[TargetEntry], start: int, settings: CircuitBreakerSettings
) -> TargetEntry | None:
    """The first target of the plan from ``start`` on (wrapping around) that a try may go to
    now; taking it (and its probe, if its breaker is half-open)."""
    for offset in range(len(targets)):
        candidate = targets[(start + offset) % len(targets)]
        if router.acquire(candidate, settings):
            return candidate
    return None


def _backoff(base_ms: float, attempt: int) -> float:
    """Seconds before try ``attempt + 1``: exponential, with full jitter around it."""
    return base_ms / 1000 * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)


def _observe(
    router: Router, target: TargetEntry, relayed: Relayed, settings: CircuitBreakerSettings
) -> None:
    state = router.state(target)
    if relayed.status == 429:  # relayed on the last try: its Retry-After still holds
        _cool(router, target, relayed.retry_after)
        return
    healthy = relayed.status < 500 and not relayed.broken
    if relayed.first_byte_seconds is not None and healthy:
        state.observe_latency(relayed.first_byte_seconds)
    _record(router, target, healthy, settings)


def _observe_failure(
    router: Router,
    target: TargetEntry,
    failure: GatewayError | RetryableStatus,
    settings: CircuitBreakerSettings,
) -> None:
    if isinstance(failure, RetryableStatus) and failure.status == 429:
        # The upstream's own rate limit: not a fault, but no use asking again before it says.
        _cool(router, target, failure.retry_after)
        return
    _record(router, target, False, settings)


def _cool(router: Router, target: TargetEntry, retry_after: float | None) -> None:
    wait = retry_after if retry_after is not None else 1.0
    router.cool(target, min(wait, MAX_COOLING_SECONDS))


def _record(
    router: Router, target: TargetEntry, success: bool, settings: CircuitBreakerSettings
) -> None:
    if router.state(target).breaker.record(success, settings):
        log.warning(
            "target %s: circuit open for %.0fs after repeated failures",
            target.name,
            settings.cooldown,
        )


async def _give_up(send: Send, failure: GatewayError | RetryableStatus) -> Relayed:
    """No other try: the caller gets the last failure."""
    if isinstance(failure, GatewayError):
        raise failure
    await send_response(send, failure.status, failure.body, failure.headers)
    return Relayed(failure.status)


def _describe(failure: GatewayError | RetryableStatus) -> str:
    if isinstance(failure, RetryableStatus):
        return f"HTTP {failure.status}"
    return failure.message
