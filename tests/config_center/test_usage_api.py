"""The realtime usage API: gateways post counters with the gateway token, the dashboard reads them.

Runs an in-process config center (``api_client.config_center``) with an in-process realtime
store; the stores themselves are tested against Redis in ``tests/state``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from aigw.config_center.api import usage
from aigw.config_center.auth import Principal
from aigw.config_center.settings import CenterSettings
from aigw.state.realtime import (
    MemoryRealtimeStore,
    RedisRealtimeStore,
    UsageBatch,
    UsageCounters,
)
from tests.config_center.api_client import act_as, config_center

GATEWAY_TOKEN = "test-gateway-token-0123456789"
GATEWAY = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with config_center(tmp_path) as (app, client):
        app.state.settings = dataclasses.replace(app.state.settings, gateway_token=GATEWAY_TOKEN)
        app.state.realtime = MemoryRealtimeStore()
        if (await client.get("/api/v1/usage/top?dimension=model")).status_code == 404:
            app.include_router(usage.router)  # until app.py includes it
        yield app, client
        act_as(app, None)


def now_minute() -> int:
    return int(time.time()) // 60 * 60


def item(minute: int, dimension: str, name: str, **counters: int) -> dict[str, Any]:
    return {"minute": minute, "dimension": dimension, "name": name, **counters}


async def post(client: httpx.AsyncClient, *items: dict[str, Any], **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", GATEWAY)
    return await client.post("/internal/v1/usage", json={"items": list(items)}, headers=headers)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


# -- writing ----------------------------------------------------------------------------------


async def test_gateways_post_their_counters(center: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = center
    minute = now_minute()
    # Exactly what a gateway's HttpSink sends (orjson, with its Content-Type).
    batch = UsageBatch()
    batch.add(minute, "namespace", "team-a", UsageCounters(3, 1, 30, 12, 4500, 900))
    batch.add(minute, "model", "ft:gpt-4o:org:x", UsageCounters(3))
    answer = await client.post(
        "/internal/v1/usage",
        content=orjson.dumps({"items": batch.to_items()}),
        headers={**GATEWAY, "Content-Type": "application/json"},
    )
    assert answer.status_code == 200 and answer.json() == {"accepted": 2}
    assert (await post(client, item(minute, "namespace", "team-a", requests=2))).status_code == 200
    totals = await app.state.realtime.totals("namespace", None, 1)
    assert totals == {"team-a": UsageCounters(5, 1, 30, 12, 4500, 900)}
    assert (await app.state.realtime.totals("model", None, 1))["ft:gpt-4o:org:x"].requests == 3


async def test_posting_needs_the_gateway_token(center: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = center
    one = item(now_minute(), "namespace", "team-a", requests=1)
    for headers in (
        {"Authorization": ""},  # the client's admin token is not a gateway token
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {GATEWAY_TOKEN}"},
    ):
        assert (await post(client, one, headers=headers)).status_code == 401, headers
    assert (await post(client, one)).status_code == 200
    app.state.settings = dataclasses.replace(app.state.settings, gateway_token=None)
    refused = await post(client, one)
    assert refused.status_code == 401 and "AIGW_GATEWAY_TOKEN" in refused.text
    assert await app.state.realtime.totals("namespace", None, 1) == {"team-a": UsageCounters(1)}


@pytest.mark.parametrize(
    "bad",
    [
        {"minute": 61},
        {"minute": -60},
        {"dimension": "key"},
        {"name": ""},
        {"name": "x" * 257},
        {"requests": -1},
        {"requests": 2**63},
        {"tokens": 5},
    ],
)
async def test_an_invalid_batch_is_refused_whole(
    center: tuple[FastAPI, httpx.AsyncClient], bad: dict[str, Any]
) -> None:
    app, client = center
    good = item(now_minute(), "namespace", "team-a", requests=1)
    answer = await post(client, good, {**good, **bad})
    assert answer.status_code == 422
    assert answer.json()["error"]["type"] == "invalid_request"
    assert await app.state.realtime.totals("namespace", None, 1) == {}


# -- reading ----------------------------------------------------------------------------------


async def test_series_default_to_the_last_hour(center: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = center
    # Start well inside a minute, so "now" is the same minute when the series is read.
    into_minute = time.time() % 60
    if into_minute > 50:
        await asyncio.sleep(60.5 - into_minute)
    minute = now_minute()
    await post(
        client,
        item(minute, "namespace", "team-a", requests=2, prompt_tokens=10),
        item(minute - 120, "namespace", "team-a", requests=1, errors=1),
        item(minute - 3600, "namespace", "team-a", requests=50),  # just outside the hour
    )
    answer = await client.get("/api/v1/usage/series?dimension=namespace&name=team-a")
    assert answer.status_code == 200
    body = answer.json()
    assert body["resolution"] == "minute" and body["step_seconds"] == 60
    assert len(body["points"]) == 60 and body["start"] == iso(minute - 59 * 60)
    assert body["end"] == iso(minute + 60)
    assert body["points"][-1] == {
        "time": iso(minute),
        "requests": 2,
        "errors": 0,
        "prompt_tokens": 10,
        "completion_tokens": 0,
        "cost_micro_usd": 0,
        "latency_ms_total": 0,
    }
    assert body["points"][-3]["errors"] == 1
    assert body["total"]["requests"] == 3


async def test_day_series_and_explicit_ranges(center: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = center
    minute = now_minute()
    day = minute // 86400 * 86400
    await post(
        client,
        item(minute, "model", "gpt-4o", requests=2),
        item(day - 86400, "model", "gpt-4o", requests=5),
    )
    days = await client.get("/api/v1/usage/series?dimension=model&name=gpt-4o&resolution=day")
    assert days.status_code == 200
    points = days.json()["points"]
    assert len(points) == 30 and points[-1]["time"] == iso(day)
    assert [p["requests"] for p in points[-2:]] == [5, 2]

    start = datetime.fromtimestamp(minute - 600, UTC)
    ranged = await client.get(
        "/api/v1/usage/series",
        params={
            "dimension": "model",
            "name": "gpt-4o",
            "start": start.replace(tzinfo=None).isoformat(),  # naive: UTC
            "end": (start + timedelta(minutes=11))
            .astimezone(timezone(timedelta(hours=2)))
            .isoformat(),
        },
    )
    assert ranged.status_code == 200
    assert [p["requests"] for p in ranged.json()["points"]] == [0] * 10 + [2]
    only_start = await client.get(
        "/api/v1/usage/series",
        params={"dimension": "model", "name": "gpt-4o", "start": start.isoformat()},
    )
    assert len(only_start.json()["points"]) == 60


async def test_top_ranks_by_requests(center: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = center
    minute = now_minute()
    await post(
        client,
        item(minute, "namespace", "quiet", requests=1),
        item(minute, "namespace", "busy", requests=9, errors=3),
        item(minute, "namespace", "middle", requests=4),
        item(minute - 30 * 60, "namespace", "earlier", requests=100),
    )
    top = await client.get("/api/v1/usage/top?dimension=namespace&minutes=10&limit=2")
    assert top.status_code == 200
    body = top.json()
    assert body["dimension"] == "namespace" and body["minutes"] == 10
    assert [(i["name"], i["requests"]) for i in body["items"]] == [("busy", 9), ("middle", 4)]
    assert body["items"][0]["errors"] == 3
    default = (await client.get("/api/v1/usage/top?dimension=namespace")).json()
    assert [i["name"] for i in default["items"]] == ["earlier", "busy", "middle", "quiet"]


@pytest.mark.parametrize(
    "query",
    [
        "series?dimension=namespace&name=a&start=2024-01-01T00:00:00Z&end=2024-01-02T00:01:00Z",
        "series?dimension=namespace&name=a&resolution=day&start=2023-01-01&end=2024-03-01",
        "series?dimension=namespace&name=a&start=2024-01-02T00:00:00Z&end=2024-01-01T00:00:00Z",
        "series?dimension=namespace&name=a&resolution=hour",
        "series?dimension=key&name=a",
        "series?dimension=namespace",
        "series?dimension=namespace&name=a&start=yesterday",
        "series?dimension=namespace&name=a&start=9999-12-31T23:59:00Z",
        "top?dimension=namespace&minutes=1441",
        "top?dimension=namespace&minutes=0",
        "top?dimension=namespace&limit=0",
        "top?dimension=namespace&limit=101",
        "top?dimension=region",
    ],
)
async def test_unbounded_or_invalid_queries_are_422(
    center: tuple[FastAPI, httpx.AsyncClient], query: str
) -> None:
    _, client = center
    answer = await client.get(f"/api/v1/usage/{query}")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["type"] == "invalid_request"


async def test_the_largest_ranges_are_allowed(center: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = center
    day = await client.get(
        "/api/v1/usage/series?dimension=namespace&name=a&resolution=day"
        "&start=2024-01-01&end=2025-02-04"
    )
    assert day.status_code == 200 and len(day.json()["points"]) == 400
    minute = await client.get(
        "/api/v1/usage/series?dimension=namespace&name=a"
        "&start=2024-01-01T00:00:00Z&end=2024-01-02T00:00:00Z"
    )
    assert minute.status_code == 200 and len(minute.json()["points"]) == 1440
    assert (await client.get("/api/v1/usage/top?dimension=model&minutes=1440")).status_code == 200


# -- who may read -------------------------------------------------------------------------------


async def test_reading_needs_a_signed_in_user(center: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = center
    for path in ("series?dimension=namespace&name=a", "top?dimension=namespace"):
        assert (
            await client.get(f"/api/v1/usage/{path}", headers={"Authorization": ""})
        ).status_code == 401
        gateway = await client.get(f"/api/v1/usage/{path}", headers=GATEWAY)
        assert gateway.status_code == 401  # the gateway token reads nothing
    act_as(app, Principal("watcher", "viewer"))
    assert (await client.get("/api/v1/usage/series?dimension=model&name=m")).status_code == 200
    assert (await client.get("/api/v1/usage/top?dimension=namespace")).status_code == 200


async def test_namespace_admins_read_only_their_namespace(
    center: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = center
    minute = now_minute()
    await post(
        client,
        item(minute, "namespace", "team-a", requests=3),
        item(minute, "namespace", "team-b", requests=4),
    )
    act_as(app, Principal("tenant", "namespace_admin", "team-a"))
    own = await client.get("/api/v1/usage/series?dimension=namespace&name=team-a")
    assert own.status_code == 200 and own.json()["total"]["requests"] == 3
    for path in (
        "series?dimension=namespace&name=team-b",
        "series?dimension=namespace&name=team-b&resolution=day",
        "series?dimension=model&name=gpt-4o",
        "top?dimension=namespace",
        "top?dimension=model",
    ):
        refused = await client.get(f"/api/v1/usage/{path}")
        assert refused.status_code == 403, path
        assert "team-b" not in refused.text and refused.json()["error"]["type"] == "forbidden"


def test_setup_realtime_picks_redis_when_configured(tmp_path: Path) -> None:
    app = FastAPI()
    settings = CenterSettings(database_url="sqlite://", master_key="k", data_dir=tmp_path)
    assert isinstance(usage.setup_realtime(app, settings), MemoryRealtimeStore)
    assert isinstance(app.state.realtime, MemoryRealtimeStore)
    with_redis = dataclasses.replace(settings, redis_url="redis://127.0.0.1:6379/0")
    store = usage.setup_realtime(app, with_redis)
    assert isinstance(store, RedisRealtimeStore) and app.state.realtime is store
    assert store.url == "redis://127.0.0.1:6379/0" and store.prefix == "aigw:rt"


async def test_a_gateway_recorder_delivers_to_the_config_center(
    center: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """The gateway side (UsageRecorder + HttpSink over real HTTP) against this API.

    A small aiohttp server relays each request, headers and body as sent, to the in-process app.
    """
    from aiohttp import web

    from aigw.gateway.monitoring.metrics import RequestRecord
    from aigw.gateway.monitoring.realtime import HttpSink, UsageRecorder
    from tests.helpers import free_port

    app, client = center

    async def relay(request: web.Request) -> web.Response:
        answer = await client.post(
            request.path,
            content=await request.read(),
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        )
        return web.Response(status=answer.status_code, body=answer.content)

    relay_app = web.Application()
    relay_app.router.add_post("/internal/v1/usage", relay)
    runner = web.AppRunner(relay_app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    recorder = UsageRecorder(HttpSink(f"http://127.0.0.1:{port}", GATEWAY_TOKEN), interval=3600)
    try:
        for status in (200, 200, 502):
            record = RequestRecord("r", "POST", "/v1/chat/completions", status=status)
            record.namespace, record.model = "team-a", "gpt-4o"
            record.prompt_tokens, record.completion_tokens, record.cost_usd = 10, 4, 0.002
            record.duration_ms = 250.0
            recorder.record(record)
        assert await recorder.flush() is True
        totals = await app.state.realtime.totals("namespace", ["team-a"], 2)
        assert totals["team-a"] == UsageCounters(3, 1, 30, 12, 6000, 750)

        wrong = UsageRecorder(HttpSink(f"http://127.0.0.1:{port}", "not-the-token"), interval=3600)
        wrong.record(record)
        assert await wrong.flush() is False and wrong.undelivered().requests() == 1  # kept
        await wrong.close()
    finally:
        await recorder.close()
        await runner.cleanup()
    assert (await app.state.realtime.totals("namespace", ["team-a"], 2))["team-a"].requests == 3
