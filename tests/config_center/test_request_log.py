"""The request log on SQLite, MariaDB and PostgreSQL, its API, and the config center's /metrics.

The store (``config_center/request_log.py``) takes each batch a gateway posts in one statement,
skipping rows it already has, pages newest first with a keyset cursor, and deletes rows past the
retention period in chunks. End to end with real processes: ``tests/e2e/test_request_log.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from aigw.config_center.auth import Principal
from aigw.config_center.db.engine import make_engine, migrate, sessions
from aigw.config_center.db.tables import RequestLog
from aigw.config_center.request_log import (
    COLUMNS,
    RequestFilter,
    RequestLogStore,
    Retention,
    retention_days_from,
)
from aigw.gateway.monitoring import request_log as gateway_request_log
from tests.config_center.api_client import act_as, config_center
from tests.config_center.databases import database_fixture

database_url = database_fixture(scope="function")

GATEWAY_TOKEN = "test-gateway-token-0123456789"
GATEWAY = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}
T0 = 1_800_000_000_000_000  # Unix microseconds
SECOND = 1_000_000
DAY = 86_400 * SECOND


def row(number: int, ts: int, **fields: Any) -> dict[str, Any]:
    """A row as the store takes it: every column, defaults for the unset ones."""
    values: dict[str, Any] = {
        "uid": f"u{number}",
        "ts": ts,
        "request_id": f"req-{number}",
        "namespace": "team-a",
        "key_prefix": "sk-aigw-AbCd",
        "path": "/v1/chat/completions",
        "model": "gpt-4o",
        "provider": "mock",
        "upstream_model": "gpt-4o-2024",
        "status": 200,
        "error_type": None,
        "error_code": None,
        "stream": False,
        "attempts": 1,
        "duration_ms": 12.5,
        "ttft_ms": None,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 0,
        "cost_usd": 0.001,
        "request_body": None,
        "request_body_bytes": None,
    }
    values.update(fields)
    assert set(values) == set(COLUMNS)
    return values


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> RequestLogStore:
    return RequestLogStore(sessions(engine))


async def everything(store: RequestLogStore, where: RequestFilter | None = None) -> list[str]:
    """Request ids of every matching row, newest first, read page by page."""
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.page(where or RequestFilter(), 1000, cursor)
        seen.extend(r["request_id"] for r in page.items)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


async def count(engine: AsyncEngine) -> int:
    async with sessions(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(RequestLog)) or 0)


# -- the store, on every database ----------------------------------------------------------------


async def test_a_batch_is_one_statement_and_a_resent_row_is_stored_once(
    store: RequestLogStore, engine: AsyncEngine
) -> None:
    inserts: list[bool] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def watch(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO REQUEST_LOG"):
            inserts.append(many)

    batch = [row(i, T0 + i) for i in range(500)]
    assert await store.add(batch) == 500
    assert inserts == [True]  # one executemany, not a statement per row
    # The gateway sends the batch again (its answer was lost), with two new rows.
    assert await store.add([*batch[-3:], row(500, T0 + 500), row(501, T0 + 501)]) == 5
    assert await count(engine) == 502
    assert await store.add([]) == 0


async def test_rows_keep_every_field_and_the_body_only_in_the_detail(
    store: RequestLogStore,
) -> None:
    body = "é" * 70_000 + "😀"  # beyond MySQL's TEXT, multi-byte
    await store.add(
        [
            row(1, T0, request_body=body, request_body_bytes=999_999, ttft_ms=3.5, stream=True),
            row(2, T0 + 1, model=None, provider=None, upstream_model=None, status=404,
                error_type="invalid_request_error", error_code="model_not_found",
                prompt_tokens=0, completion_tokens=0, cost_usd=0.0),
        ]
    )  # fmt: skip
    page = await store.page(RequestFilter(), 10)
    assert [r["request_id"] for r in page.items] == ["req-2", "req-1"]
    assert "request_body" not in page.items[0] and "uid" not in page.items[0]
    first = page.items[1]
    assert first["ts"] == T0 and first["stream"] is True and first["ttft_ms"] == 3.5
    assert first["request_body_bytes"] == 999_999 and first["cost_usd"] == 0.001
    refused = page.items[0]
    assert (refused["status"], refused["model"], refused["error_code"]) == (
        404,
        None,
        "model_not_found",
    )
    detail = await store.get("req-1")
    assert detail is not None and detail["request_body"] == body
    assert (await store.get("req-2"))["request_body"] is None  # type: ignore[index]
    assert await store.get("req-1", namespace="team-b") is None
    assert await store.get("nope") is None


async def test_filters(store: RequestLogStore) -> None:
    rows = [
        row(1, T0, path="/u1", namespace="team-a", status=200),
        row(2, T0 + SECOND, path="/u2", namespace="team-b", status=429, key_prefix="sk-aigw-Zzzz"),
        row(3, T0 + 2 * SECOND, path="/u3", namespace="Team-A", status=404, model=None),
        row(4, T0 + 3 * SECOND, path="/u4", namespace="team-a", status=502, model="claude"),
        row(5, T0 + 4 * SECOND, path="/u5", namespace="team-a", status=200, request_id="req-1"),
    ]
    await store.add(rows)

    async def ids(**where: Any) -> list[str]:
        page = await store.page(RequestFilter(**where), 100)
        return [r["path"].removeprefix("/") for r in page.items]

    assert await ids() == ["u5", "u4", "u3", "u2", "u1"]
    assert await ids(namespace="team-a") == ["u5", "u4", "u1"]  # names compared exactly
    assert await ids(model="claude") == ["u4"]
    assert await ids(status=200) == ["u5", "u1"]
    assert await ids(status_class=4) == ["u3", "u2"]
    assert await ids(status_class=5, namespace="team-a") == ["u4"]
    assert await ids(key_prefix="sk-aigw-Zzzz") == ["u2"]
    assert await ids(request_id="req-1") == ["u5", "u1"]  # a caller may reuse an id
    assert await ids(since_us=T0 + SECOND, until_us=T0 + 3 * SECOND) == ["u3", "u2"]
    assert await ids(since_us=T0 + 10 * SECOND) == []
    assert (await store.get("req-1"))["ts"] == T0 + 4 * SECOND  # type: ignore[index]


async def test_pages_are_stable_whatever_arrives_meanwhile(store: RequestLogStore) -> None:
    """Keyset pages over many rows sharing timestamps: each row once, newest first, and rows
    inserted between pages (newer ones, or late ones of an older second) never shift a page."""
    rng = random.Random(11)
    rows = [row(i, T0 + rng.randrange(40) * SECOND) for i in range(700)]
    rng.shuffle(rows)
    await store.add(rows)
    expected = sorted(rows, key=lambda r: r["ts"], reverse=True)

    seen: list[dict[str, Any]] = []
    cursor = None
    for page_number in range(1000):
        page = await store.page(RequestFilter(), 37, cursor)
        seen.extend(page.items)
        if page_number == 3:  # meanwhile: newer rows arrive
            await store.add([row(1000 + i, T0 + 100 * SECOND) for i in range(20)])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 700 and len({r["id"] for r in seen}) == 700
    assert [r["ts"] for r in seen] == [r["ts"] for r in expected]
    keys = [(r["ts"], r["id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)
    assert (await store.page(RequestFilter(), 700)).next_cursor is not None  # 720 now
    last = await store.page(RequestFilter(), 720)
    assert len(last.items) == 720 and last.next_cursor is None
    # A filtered walk too.
    team = [row(2000 + i, T0 + (i % 5) * SECOND, namespace="team-z") for i in range(30)]
    await store.add(team)
    assert len(await everything(store, RequestFilter(namespace="team-z"))) == 30


async def test_page_arguments_are_checked(store: RequestLogStore) -> None:
    for limit, cursor in ((0, None), (1001, None), (10, "nope"), (10, "1_x"), (10, "")):
        with pytest.raises(ValueError):
            await store.page(RequestFilter(), limit, cursor)


async def test_retention_deletes_old_rows_in_chunks(
    store: RequestLogStore, engine: AsyncEngine
) -> None:
    now = T0 / SECOND
    old = [row(i, T0 - 8 * DAY - i) for i in range(23)]
    young = [row(100 + i, T0 - 6 * DAY + i) for i in range(5)]
    await store.add(old + young)
    deletes: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def watch(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(statement)

    purged: list[int] = []
    retention = Retention(store, 7, chunk=5, clock=lambda: now, purged=purged.append)
    assert await retention.run_once() == 23
    assert len(deletes) == 5  # 5 + 5 + 5 + 5 + 3: bounded chunks
    assert purged == [23]
    assert sorted(await everything(store)) == sorted(r["request_id"] for r in young)
    assert await retention.run_once() == 0 and purged == [23]
    assert await Retention(store, 5, clock=lambda: now).run_once() == 5


def test_retention_settings_from_the_environment() -> None:
    assert retention_days_from({}) == 7
    assert retention_days_from({"AIGW_REQUEST_LOG_RETENTION_DAYS": "30"}) == 30
    assert retention_days_from({"AIGW_REQUEST_LOG_RETENTION_DAYS": "0"}) == 0  # forever
    for bad in ("-1", "week", "inf", "nan", "100000"):
        assert retention_days_from({"AIGW_REQUEST_LOG_RETENTION_DAYS": bad}) == 7


# -- the API --------------------------------------------------------------------------------------


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An in-process config center on SQLite (the store's SQL is tested on all three above)."""
    async with config_center(tmp_path) as (app, client):
        app.state.settings = dataclasses.replace(app.state.settings, gateway_token=GATEWAY_TOKEN)
        yield app, client
        act_as(app, None)


def item(number: int, ts: int | None = None, **fields: Any) -> dict[str, Any]:
    """A record as a gateway posts it."""
    values = row(number, T0 + number if ts is None else ts, **fields)
    return {k: v for k, v in values.items() if v is not None}


async def post(client: httpx.AsyncClient, *items: dict[str, Any]) -> httpx.Response:
    return await client.post("/internal/v1/requests", json={"items": list(items)}, headers=GATEWAY)


async def test_posted_records_are_listed_and_read(tmp_path: Path, database_url: str) -> None:
    async with config_center(tmp_path, database_url) as (app, client):
        app.state.settings = dataclasses.replace(app.state.settings, gateway_token=GATEWAY_TOKEN)
        answer = await post(
            client,
            item(1, request_body='{"k": "[REDACTED]"}', request_body_bytes=40, ttft_ms=2.0),
            item(2, status=404, error_type="invalid_request_error", error_code="model_not_found"),
            {**item(3), "a_field_of_a_newer_gateway": 1},
        )
        assert answer.status_code == 200 and answer.json() == {"accepted": 3}
        assert (await post(client, item(3))).json() == {"accepted": 1}  # sent again: kept once

        listed = await client.get("/api/v1/requests")
        assert listed.status_code == 200
        body = listed.json()
        assert body["next_cursor"] is None and body["limit"] == 100
        assert [i["request_id"] for i in body["items"]] == ["req-3", "req-2", "req-1"]
        first = body["items"][2]
        assert first["timestamp"] == "2027-01-15T08:00:00.000001Z"
        assert first["request_body_bytes"] == 40 and "request_body" not in first
        assert first["key_prefix"] == "sk-aigw-AbCd" and first["ttft_ms"] == 2.0

        detail = (await client.get("/api/v1/requests/req-1")).json()
        assert detail["request_body"] == '{"k": "[REDACTED]"}'
        assert {k: v for k, v in detail.items() if k != "request_body"} == first
        assert (await client.get("/api/v1/requests/req-2")).json()["request_body"] is None
        missing = await client.get("/api/v1/requests/nope")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"


async def test_list_filters_and_cursor_over_http(
    center: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = center
    items = [
        item(i, T0 + i * SECOND, status=(200, 404, 503)[i % 3], namespace=f"team-{'ab'[i % 2]}")
        for i in range(30)
    ]
    assert (await post(client, *items)).status_code == 200

    async def walk(**params: Any) -> list[str]:
        seen, cursor = [], None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            answer = await client.get("/api/v1/requests", params=query)
            assert answer.status_code == 200, answer.text
            seen.extend(i["request_id"] for i in answer.json()["items"])
            cursor = answer.json()["next_cursor"]
            if cursor is None:
                return seen

    assert await walk(limit=7) == [f"req-{i}" for i in reversed(range(30))]
    assert await walk(limit=4, status="4xx") == [f"req-{i}" for i in reversed(range(1, 30, 3))]
    assert await walk(status="503", namespace="team-a") == [
        f"req-{i}" for i in reversed(range(2, 30, 6))
    ]
    assert await walk(
        since="2027-01-15T08:00:10Z",
        until="2027-01-15T08:00:13",  # no offset: UTC
    ) == ["req-12", "req-11", "req-10"]
    assert await walk(request_id="req-7", model="gpt-4o", key_prefix="sk-aigw-AbCd") == ["req-7"]
    for params in (
        {"limit": 1001},
        {"limit": 0},
        {"status": "2x"},
        {"status": "6xx"},
        {"cursor": "garbage"},
        {"since": "yesterday"},
        {"namespace": ""},
    ):
        refused = await client.get("/api/v1/requests", params=params)
        assert refused.status_code == 422, (params, refused.text)
        assert refused.json()["error"]["type"] == "invalid_request"


async def test_who_may_write_and_read(center: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = center
    await post(client, item(1, namespace="team-a"), item(2, namespace="team-b"))
    admin = {"Authorization": "Bearer test-admin-token-0123456789"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, admin):
        refused = await client.post("/internal/v1/requests", json={"items": []}, headers=headers)
        assert refused.status_code == 401
    assert (await client.get("/api/v1/requests", headers=GATEWAY)).status_code == 401

    act_as(app, Principal("vera", "viewer"))
    assert len((await client.get("/api/v1/requests")).json()["items"]) == 2
    assert (await client.get("/api/v1/requests/req-2")).status_code == 200

    act_as(app, Principal("nadia", "namespace_admin", "team-a"))
    own = (await client.get("/api/v1/requests")).json()["items"]
    assert [i["namespace"] for i in own] == ["team-a"]
    named = await client.get("/api/v1/requests", params={"namespace": "team-a"})
    assert [i["request_id"] for i in named.json()["items"]] == ["req-1"]
    other = await client.get("/api/v1/requests", params={"namespace": "team-b"})
    assert other.status_code == 403 and other.json()["error"]["type"] == "forbidden"
    by_id = await client.get("/api/v1/requests", params={"request_id": "req-2"})
    assert by_id.json()["items"] == []
    assert (await client.get("/api/v1/requests/req-1")).status_code == 200
    assert (await client.get("/api/v1/requests/req-2")).status_code == 404  # not disclosed


async def test_invalid_batches_are_refused_whole(center: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = center
    for bad in (
        {"namespace": ""},
        {"namespace": "n" * 129},
        {"uid": "has space"},
        {"ts": -1},
        {"status": 1000},
        {"prompt_tokens": -1},
        {"duration_ms": "fast"},
        {"request_body": "x" * (1024 * 1024 + 1025)},
    ):
        refused = await post(client, item(1), {**item(2), **bad})
        assert refused.status_code == 422, bad
    assert (await client.get("/api/v1/requests")).json()["items"] == []
    too_many = await client.post(
        "/internal/v1/requests", json={"items": [item(i) for i in range(5001)]}, headers=GATEWAY
    )
    assert too_many.status_code == 422
    # Text any database stores: NUL (PostgreSQL refuses it) and lone surrogates are replaced.
    escaped = json.dumps({"items": [item(1, request_body="a\x00b\ud800c")]})  # as \u escapes
    stored_ok = await client.post(
        "/internal/v1/requests",
        content=escaped,
        headers={**GATEWAY, "Content-Type": "application/json"},
    )
    assert stored_ok.status_code == 200, stored_ok.text
    stored = (await client.get("/api/v1/requests/req-1")).json()["request_body"]
    assert stored == "a\ufffdb?c"


async def test_a_database_outage_answers_503_and_the_resend_is_stored_once(
    center: tuple[FastAPI, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = center
    store: RequestLogStore = app.state.request_log

    async def down(rows: Any) -> int:
        raise OperationalError("INSERT ...", {}, ConnectionRefusedError("database is away"))

    monkeypatch.setattr(store, "add", down)
    refused = await post(client, item(1))
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    monkeypatch.undo()
    assert (await post(client, item(1))).status_code == 200
    assert len((await client.get("/api/v1/requests")).json()["items"]) == 1


def test_the_gateway_and_the_config_center_agree_on_field_sizes() -> None:
    columns = RequestLog.__table__.columns
    for field, limit in gateway_request_log.TEXT_LIMITS.items():
        assert columns[field].type.length == limit, field  # type: ignore[attr-defined]


async def test_the_retention_task_runs_in_the_app(tmp_path: Path) -> None:
    async with config_center(tmp_path) as (app, client):
        app.state.settings = dataclasses.replace(app.state.settings, gateway_token=GATEWAY_TOKEN)
        now = int(time.time() * SECOND)
        await post(client, item(1, now - 10 * DAY), item(2, now - DAY), item(3, now))
        retention = Retention(
            app.state.request_log, 7, 0.05, purged=app.state.metrics.request_log_purged.inc
        )
        retention.start()
        try:
            deadline = time.monotonic() + 5
            while len((await client.get("/api/v1/requests")).json()["items"]) != 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
        finally:
            await retention.stop()
        assert "config_center_request_log_purged_total 1.0" in (await client.get("/metrics")).text


# -- /metrics -------------------------------------------------------------------------------------


async def test_metrics_count_api_requests_ingest_and_long_polls(
    center: tuple[FastAPI, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, client = center
    await post(client, item(1), item(2))
    await client.post(
        "/internal/v1/usage",
        json={"items": [{"minute": 60, "dimension": "namespace_model", "name": "a/b"}]},
        headers=GATEWAY,
    )
    await client.get("/api/v1/requests")
    await client.get("/api/v1/requests/req-1")
    await client.get("/api/v1/requests/nope")
    await client.get("/api/v1/nothing-here")
    text = (await client.get("/metrics")).text
    assert (
        'config_center_api_requests_total{method="GET",route="/api/v1/requests",'
        'status_class="2xx"} 1.0' in text
    )
    assert (
        'config_center_api_requests_total{method="GET",route="/api/v1/requests/{request_id}",'
        'status_class="4xx"} 1.0' in text
    )
    assert 'route="unmatched",status_class="4xx"} 1.0' in text
    assert "config_center_request_log_records_total 2.0" in text
    assert "config_center_usage_batches_total 1.0" in text
    assert "config_center_feed_long_polls 0.0" in text
    assert "/metrics" not in (await client.get("/openapi.json")).text

    version = (await client.get("/internal/v1/config/version", headers=GATEWAY)).json()
    poll = asyncio.create_task(
        client.get(
            "/internal/v1/config",
            params={"after": version["version"], "wait": 2},
            headers=GATEWAY,
        )
    )
    deadline = time.monotonic() + 2
    while "config_center_feed_long_polls 1.0" not in (await client.get("/metrics")).text:
        assert time.monotonic() < deadline, "the waiting long-poll was not counted"
        await asyncio.sleep(0.01)
    assert (await poll).status_code == 204
    assert "config_center_feed_long_polls 0.0" in (await client.get("/metrics")).text

    monkeypatch.setenv("AIGW_METRICS_TOKEN", "scrape-token")
    assert (await client.get("/metrics")).status_code == 401
    scraped = await client.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")


async def test_the_migration_makes_the_table_the_code_describes(engine: AsyncEngine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from aigw.config_center.db.tables import Base

    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": _request_log_only}
        )
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []


def _request_log_only(item: Any, name: str | None, kind: str, *_: Any) -> bool:
    table = item if kind == "table" else getattr(item, "table", None)
    return getattr(table, "name", None) == "request_log"
