"""forward(): the router's plan tried against a local aiohttp upstream, through the real
UpstreamClient, with the caller's side recorded as ASGI messages."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from aigw.config.schema import CircuitBreakerSettings, Config
from aigw.config.snapshot import ModelEntry, build_snapshot
from aigw.gateway.core.errors import UpstreamRateLimited
from aigw.gateway.monitoring.metrics import RequestRecord
from aigw.gateway.routing.exchange import plan_exchange
from aigw.gateway.routing.failover import forward
from aigw.gateway.routing.router import Router, resolve_model
from aigw.gateway.routing.upstream import Relayed, UpstreamClient

SETTINGS = CircuitBreakerSettings(consecutive_failures=2, cooldown=5, min_requests=100)
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}

Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _chunk(text: str) -> bytes:
    delta = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    delta["choices"] = [{"index": 0, "delta": {"content": text}, "finish_reason": None}]
    return b"data: " + orjson.dumps(delta) + b"\n\n"


async def ok(request: web.Request) -> web.StreamResponse:
    if not (await request.json()).get("stream"):
        message = {"role": "assistant", "content": "fine"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return web.json_response({"object": "chat.completion", "choices": [choice]})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_chunk("fine") + b"data: [DONE]\n\n")
    return response


async def failing(request: web.Request) -> web.StreamResponse:
    error = {"message": "boom", "type": "server_error", "param": None, "code": None}
    return web.json_response({"error": error}, status=500)


async def rate_limited(request: web.Request) -> web.StreamResponse:
    error = {"message": "slow down", "type": "requests", "param": None, "code": None}
    return web.json_response({"error": error}, status=429, headers={"Retry-After": "5"})


async def headers_then_silence(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await asyncio.sleep(10)  # cancelled when the gateway gives up on it
    return response


async def one_chunk_then_cut(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_chunk("partial"))
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.close()
    return response


class Upstreams:
    """One local server standing in for providers: ``/{provider}/v1/chat/completions``."""

    def __init__(self) -> None:
        self.script: dict[str, Behaviour] = {}
        self.calls: Counter[str] = Counter()
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.calls[name] += 1
        return await self.script[name](request)

    def model(self, targets: list[dict[str, Any]], **routing: Any) -> ModelEntry:
        providers = sorted({t["provider"] for t in targets})
        config = {
            "providers": [{"name": p, "base_url": f"{self.url}/{p}/v1"} for p in providers],
            "models": [{"name": "m", "targets": targets, "routing": routing}],
        }
        return resolve_model(build_snapshot(Config.model_validate(config)), "m")


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    upstreams = Upstreams()
    app = web.Application()
    app.router.add_post("/{name}/v1/chat/completions", upstreams.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    upstreams.url = f"http://{host}:{port}"
    try:
        yield upstreams
    finally:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient()
    await client.start()
    try:
        yield client
    finally:
        await client.close()


class Caller:
    """The ASGI ``send`` of one request, kept."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def starts(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "http.response.start"]

    def upstream(self) -> str:
        (start,) = self.starts()
        return dict(start["headers"])[b"x-aigw-upstream"].decode()

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def _forward(
    router: Router, client: UpstreamClient, model: ModelEntry, body: dict[str, Any]
) -> tuple[Relayed, Caller, RequestRecord]:
    caller = Caller()
    record = RequestRecord("r", "POST", "/v1/chat/completions")
    record.stream = bool(body.get("stream"))
    raw = orjson.dumps(body)

    def exchange_for(chosen: Any) -> Any:
        return plan_exchange(
            "openai",
            "/chat/completions",
            body,
            raw,
            model,
            chosen,
            settle_stream_usage=False,
            default_max_tokens=None,
            caller_headers={},
        )

    targets = router.plan(model, SETTINGS)
    relayed = await forward(
        router, client, caller.send, model, targets, exchange_for, [], SETTINGS, record
    )
    return relayed, caller, record


async def test_a_stream_without_its_first_chunk_in_time_fails_over_before_anything_is_sent(
    upstreams: Upstreams, client: UpstreamClient
) -> None:
    upstreams.script = {"a": headers_then_silence, "b": ok}
    model = upstreams.model(
        [{"provider": "a", "model": "m"}, {"provider": "b", "model": "m", "priority": 1}],
        timeouts={"first_byte": 0.3},
    )
    relayed, caller, record = await asyncio.wait_for(_forward(Router(), client, model, STREAM), 5)
    assert relayed.status == 200 and not relayed.broken
    assert caller.upstream() == "b/m"  # one response, and it is b's
    assert caller.body().endswith(b"data: [DONE]\n\n")
    assert upstreams.calls == {"a": 1, "b": 1}
    assert record.attempts == 2


async def test_a_stream_broken_after_its_first_chunk_ends_with_an_error_event_not_a_retry(
    upstreams: Upstreams, client: UpstreamClient
) -> None:
    upstreams.script = {"a": one_chunk_then_cut, "b": ok}
    model = upstreams.model(
        [{"provider": "a", "model": "m"}, {"provider": "b", "model": "m", "priority": 1}]
    )
    relayed, caller, _ = await asyncio.wait_for(_forward(Router(), client, model, STREAM), 5)
    assert relayed.broken
    assert caller.upstream() == "a/m"
    body = caller.body()
    assert body.startswith(_chunk("partial"))
    assert b'"code":"upstream_unavailable"' in body
    assert caller.messages[-1]["more_body"] is False
    assert upstreams.calls == {"a": 1}


async def test_a_429_relayed_by_the_last_try_still_cools_its_target(
    upstreams: Upstreams, client: UpstreamClient
) -> None:
    """failover.py: "A 429's Retry-After puts its target in a cooling period that every later
    request respects too"; on the last try (``may_retry=False``) the 429 is relayed by
    ``UpstreamClient.relay`` itself and ``_observe`` skips it, so no cooling is set."""
    upstreams.script = {"a": rate_limited}
    model = upstreams.model([{"provider": "a", "model": "m"}], max_attempts=1)
    router = Router()
    relayed, caller, _ = await _forward(router, client, model, CHAT)
    assert relayed.status == 429
    assert dict(caller.starts()[0]["headers"])[b"retry-after"] == b"5"
    with pytest.raises(UpstreamRateLimited):  # the next request must not go to it for 5 s
        router.plan(model, SETTINGS)


async def test_a_fallback_planned_as_a_half_open_probe_is_tried_when_the_primary_fails(
    upstreams: Upstreams, client: UpstreamClient
) -> None:
    """Router.plan lists the fallback (its cooldown is over) and so moves its breaker to
    half-open, reserving the probe; the primary then fails, and failover must try the
    fallback. It asks Router.still_available, which sees the probe "under way" and refuses."""
    upstreams.script = {"a": failing, "b": ok}
    model = upstreams.model(
        [{"provider": "a", "model": "m"}, {"provider": "b", "model": "m", "priority": 1}]
    )
    clock = Clock()
    router = Router(clock)
    fallback = model.targets[1]
    for _ in range(SETTINGS.consecutive_failures):  # an earlier outage opened b's breaker
        router.state(fallback).breaker.record(False, SETTINGS)
    clock.now += SETTINGS.cooldown  # long over

    relayed, caller, _ = await _forward(router, client, model, CHAT)
    assert (relayed.status, upstreams.calls["b"]) == (200, 1), (
        f"got {relayed.status} after tries {dict(upstreams.calls)}"
    )
    assert caller.upstream() == "b/m"
