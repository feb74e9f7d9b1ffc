"""A gateway worker's usage recorder: batches in memory, flushes off the request path, never drops.

Redis is expected on 127.0.0.1:6379; each test uses its own key prefix and deletes its keys.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from aiohttp import web

from aigw.gateway.monitoring import metrics, realtime
from aigw.gateway.monitoring.metrics import RequestRecord, record_request
from aigw.gateway.monitoring.realtime import (
    DeliveryError,
    HttpSink,
    NullRecorder,
    RedisSink,
    UsageRecorder,
    recorder_from_env,
)
from aigw.state.realtime import RedisRealtimeStore, UsageBatch, UsageCounters
from tests.helpers import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


def request(
    namespace: str | None = "team-a",
    model: str | None = "gpt-4o",
    status: int = 200,
    at: float | None = None,
    **fields: Any,
) -> RequestRecord:
    record = RequestRecord(secrets.token_hex(4), "POST", "/v1/chat/completions", status=status)
    record.namespace, record.model = namespace, model
    record.timestamp = time.time() if at is None else at
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def minute_of(t: float) -> int:
    return int(t) // 60 * 60


async def eventually(check: Callable[[], Any], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def store() -> AsyncIterator[RedisRealtimeStore]:
    prefix = f"aigw:test:{secrets.token_hex(6)}"
    store = RedisRealtimeStore(REDIS_URL, prefix)
    try:
        yield store
    finally:
        await store.close()
        client = redis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def requests_in(store: RedisRealtimeStore, dimension: str, name: str) -> int:
    return (await store.totals(dimension, [name], 10))[name].requests


class FlakySink:
    """A sink in front of a real store that fails while ``down``; with ``partial`` set, the next
    send delivers only its first ``partial`` entries (like an HttpSink losing a later chunk)."""

    def __init__(self, store: RedisRealtimeStore) -> None:
        self.store = store
        self.down = False
        self.partial: int | None = None
        self.attempts: list[float] = []
        self.closed = False

    async def send(self, batch: UsageBatch) -> None:
        self.attempts.append(time.monotonic())
        if self.partial is not None:
            chunks = list(batch.chunks(self.partial))
            await self.store.add(chunks[0])
            self.partial = None
            rest = UsageBatch()
            for chunk in chunks[1:]:
                rest.merge(chunk)
            raise DeliveryError("gone after the first chunk", rest)
        if self.down:
            raise ConnectionError("redis is away")
        await self.store.add(batch)

    async def close(self) -> None:
        self.closed = True

    def __str__(self) -> str:
        return "the flaky sink"


def test_record_adds_to_the_batch_in_o1() -> None:
    recorder = UsageRecorder(FlakySink(None))  # type: ignore[arg-type]
    t = 1_800_000_000.0
    recorder.record(
        request(at=t, duration_ms=120.4, prompt_tokens=10, completion_tokens=5, cost_usd=0.001234)
    )
    recorder.record(request(at=t + 1, status=429, duration_ms=2.6))
    recorder.record(request(model=None, status=401, at=t))  # refused before a model: namespace only
    recorder.record(request(namespace=None, status=401, at=t))  # no namespace: not counted
    # Bucketed by the minute the request finished.
    recorder.record(request(at=minute_of(t) + 59.9, duration_ms=200))
    m = minute_of(t)
    assert recorder.batch == {
        (m, "namespace", "team-a"): UsageCounters(3, 2, 10, 5, 1234, 123),
        (m, "model", "gpt-4o"): UsageCounters(2, 1, 10, 5, 1234, 123),
        (m + 60, "namespace", "team-a"): UsageCounters(1, 0, 0, 0, 0, 200),
        (m + 60, "model", "gpt-4o"): UsageCounters(1, 0, 0, 0, 0, 200),
    }
    assert recorder._task is None  # no running loop: nothing started, nothing lost


async def test_it_flushes_to_redis_in_the_background(store: RedisRealtimeStore) -> None:
    recorder = UsageRecorder(RedisSink(store), interval=0.05)
    try:
        for _ in range(3):
            recorder.record(request(prompt_tokens=7))
        recorder.record(request(namespace="team-b", model="claude", status=500))
        assert recorder._task is not None
        await eventually(lambda: _equals(requests_in(store, "namespace", "team-a"), 3))
        assert await requests_in(store, "model", "claude") == 1
        assert (await store.totals("namespace", ["team-b"], 1))["team-b"].errors == 1
        assert (await store.totals("model", ["gpt-4o"], 1))["gpt-4o"].prompt_tokens == 21
        assert not recorder.batch
    finally:
        await recorder.close()


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


async def test_a_failed_flush_is_merged_back_and_nothing_is_lost(
    store: RedisRealtimeStore, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FlakySink(store)
    recorder = UsageRecorder(sink, interval=0.02, max_backoff=0.08)
    caplog.set_level(logging.WARNING, logger="aigw.gateway.usage")
    try:
        sink.down = True
        for _ in range(5):
            recorder.record(request())
        await eventually(lambda: _true(len(sink.attempts) >= 4))
        for _ in range(2):
            recorder.record(request(model="claude"))
        assert await requests_in(store, "namespace", "team-a") == 0
        assert recorder.undelivered().requests() == 7 and recorder.failed_flushes >= 4
        # Backoff: the gaps between attempts grow, capped.
        gaps = [b - a for a, b in zip(sink.attempts, sink.attempts[1:], strict=False)]
        assert gaps[-1] > gaps[0] and max(gaps) < 0.3

        sink.down = False
        await eventually(lambda: _equals(requests_in(store, "namespace", "team-a"), 7))
        assert await requests_in(store, "model", "gpt-4o") == 5
        assert await requests_in(store, "model", "claude") == 2
    finally:
        await recorder.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "aigw.gateway.usage"]
    assert len(warnings) == 2, warnings  # one for the outage, one for the recovery
    assert "cannot deliver" in warnings[0] and "again after" in warnings[1]


async def _true(value: bool) -> bool:
    return value


async def test_a_partial_delivery_keeps_only_the_rest(store: RedisRealtimeStore) -> None:
    sink = FlakySink(store)
    recorder = UsageRecorder(sink, interval=3600)
    names = [f"ns-{i}" for i in range(6)]
    for name in names:
        recorder.record(request(namespace=name, model=None))
    sink.partial = 2
    assert await recorder.flush() is False
    assert len(recorder.undelivered()) == 4  # the first chunk arrived; only the rest is kept
    assert await recorder.flush() is True
    totals = await store.totals("namespace", names, 5)
    assert [totals[n].requests for n in names] == [1] * 6  # each exactly once
    await recorder.close()


async def test_close_flushes_and_releases_the_sink(store: RedisRealtimeStore) -> None:
    sink = FlakySink(store)
    recorder = UsageRecorder(sink, interval=3600)
    recorder.record(request())
    task = recorder._task
    assert task is not None and not task.done()
    await recorder.close()
    assert task.done() and sink.closed
    assert await requests_in(store, "namespace", "team-a") == 1
    assert not recorder.batch


async def test_close_reports_what_it_could_not_deliver(
    store: RedisRealtimeStore, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FlakySink(store)
    sink.down = True
    recorder = UsageRecorder(sink, interval=3600)
    recorder.record(request())
    await recorder.close()
    assert "1 requests (2 counters) could not be delivered" in caplog.text
    assert sink.closed


def test_a_loop_that_ends_without_close_still_flushes() -> None:
    """asyncio.run cancels the flush task at the end: it makes a last flush on its way out."""
    prefix = f"aigw:test:{secrets.token_hex(6)}"
    recorder = UsageRecorder(RedisSink(RedisRealtimeStore(REDIS_URL, prefix)), interval=3600)

    async def serve_and_exit() -> None:
        recorder.record(request(namespace="short-lived"))
        await asyncio.sleep(0)

    async def count_and_clean() -> int:
        store = RedisRealtimeStore(REDIS_URL, prefix)
        try:
            return await requests_in(store, "namespace", "short-lived")
        finally:
            await store.close()
            client = redis.from_url(REDIS_URL)
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    asyncio.run(serve_and_exit())
    assert asyncio.run(count_and_clean()) == 1


async def test_a_long_outage_is_bounded_and_keeps_every_counter(
    store: RedisRealtimeStore,
) -> None:
    sink = FlakySink(store)
    sink.down = True
    now = time.time()
    recorder = UsageRecorder(sink, interval=3600, max_entries=50)
    for minute in range(600):  # ten hours of traffic, two names a minute
        recorder.record(request(at=now - minute * 60))
    assert await recorder.flush() is False
    assert len(recorder.undelivered()) <= 2 * 12  # folded into hours (current minute stays)
    sink.down = False
    assert await recorder.flush() is True
    start, end = datetime.fromtimestamp(now - 600 * 60, UTC), datetime.fromtimestamp(now + 1, UTC)
    days = await store.series("namespace", "team-a", "day", start, end)
    assert sum(p.counters.requests for p in days) == 600
    await recorder.close()


async def test_the_http_sink_posts_the_batch_with_the_gateway_token() -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    fail_after = {"n": 10**9}

    async def usage(request: web.Request) -> web.Response:
        if len(received) >= fail_after["n"]:
            return web.Response(status=503, text="busy")
        received.append((request.headers.get("Authorization"), await request.json()))
        return web.json_response({"accepted": 1})

    app = web.Application()
    app.router.add_post("/internal/v1/usage", usage)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    sink = HttpSink(f"http://127.0.0.1:{port}/", "gw-token", chunk_size=2)
    try:
        original = UsageBatch()
        for i in range(5):
            original.add(60 * i, "namespace", "team-a", UsageCounters(i + 1, prompt_tokens=i))
        await sink.send(original)
        assert [auth for auth, _ in received] == ["Bearer gw-token"] * 3
        assert (
            UsageBatch().merge(
                UsageBatch.from_items(item for _, body in received for item in body["items"])
            )
            == original
        )

        received.clear()
        fail_after["n"] = 1
        with pytest.raises(DeliveryError) as failed:
            await sink.send(original)
        assert len(failed.value.undelivered) == 3 and "503" in str(failed.value)
        received.clear()
        fail_after["n"] = 0
        with pytest.raises(RuntimeError, match="503"):  # nothing delivered: a plain failure
            await sink.send(original)
    finally:
        await sink.close()
        await runner.cleanup()


def test_the_environment_picks_the_sink() -> None:
    redis_recorder = recorder_from_env({"AIGW_REDIS_URL": REDIS_URL, "AIGW_CONFIG_CENTER": "x"})
    assert isinstance(redis_recorder, UsageRecorder)
    assert isinstance(redis_recorder.sink, RedisSink)
    assert redis_recorder.sink.store.prefix == "aigw:rt"
    http = recorder_from_env({"AIGW_CONFIG_CENTER": "http://cc:8001", "AIGW_GATEWAY_TOKEN": "t"})
    assert isinstance(http, UsageRecorder) and isinstance(http.sink, HttpSink)
    assert http.sink.url == "http://cc:8001/internal/v1/usage"
    assert isinstance(recorder_from_env({"AIGW_CONFIG_CENTER": "http://cc"}), NullRecorder)
    assert isinstance(recorder_from_env({}), NullRecorder)


async def test_record_request_feeds_this_workers_recorder(
    store: RedisRealtimeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = UsageRecorder(RedisSink(store), interval=3600)
    monkeypatch.setattr(realtime, "recorder", recorder)
    record = request(cost_usd=0.5)
    record.timestamp = time.time()
    record_request(record)
    assert recorder.batch.requests() == 1
    assert next(iter(recorder.batch.values())).cost_micro_usd == 500_000
    await realtime.close_default_recorder()
    assert realtime.recorder is None
    assert await requests_in(store, "namespace", "team-a") == 1


def test_record_request_makes_the_recorder_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AIGW_REDIS_URL", "AIGW_CONFIG_CENTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(realtime, "recorder", None)
    record_request(request())
    assert isinstance(realtime.recorder, NullRecorder)
    assert metrics.realtime is realtime


def test_record_request_never_fails_a_request(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = UsageRecorder(FlakySink(None))  # type: ignore[arg-type]
    monkeypatch.setattr(realtime, "recorder", recorder)
    record_request(request(cost_usd=float("nan")))
    assert "cannot record request" in caplog.text


async def test_a_batch_serialises_to_the_wire_form() -> None:
    batch = UsageBatch()
    batch.add(120, "model", "gpt-4o", UsageCounters(1, 0, 2, 3, 4, 5))
    assert orjson.loads(orjson.dumps({"items": batch.to_items()})) == {
        "items": [
            {
                "minute": 120,
                "dimension": "model",
                "name": "gpt-4o",
                "requests": 1,
                "errors": 0,
                "prompt_tokens": 2,
                "completion_tokens": 3,
                "cost_micro_usd": 4,
                "latency_ms_total": 5,
            }
        ]
    }
