"""Durable accounting: the usage ledger on SQLite, MariaDB and PostgreSQL, and its API.

The ledger (``config_center/accounting.py``) folds the per-(namespace, model) entries of each
batch a gateway posts into ``usage_daily`` rows, adding to their counters with one upsert per
batch. End to end with real processes: ``tests/e2e/test_durable_accounting.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from aigw.config_center.accounting import MAX_DAYS, UsageLedger, daily_rows
from aigw.config_center.auth import Principal
from aigw.config_center.db.engine import make_engine, migrate, sessions
from aigw.gateway.monitoring.metrics import RequestRecord
from aigw.gateway.monitoring.realtime import (
    HttpSink,
    RedisSink,
    UsageRecorder,
    recorder_from_env,
)
from aigw.state.realtime import DAY, PAIR, UsageBatch, UsageCounters, pair_name, split_pair
from tests.config_center.api_client import act_as, config_center
from tests.config_center.databases import database_fixture

# Each test gets its own empty database on each backend.
database_url = database_fixture(scope="function")

GATEWAY_TOKEN = "test-gateway-token-0123456789"
GATEWAY = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}
D0 = date(2026, 3, 1)  # a UTC day
M0 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())  # its first minute


def minute_of(day: date, minute: int = 0) -> int:
    return M0 + (day - D0).days * DAY + minute * 60


def pairs(*entries: tuple[int, str, str | None, UsageCounters]) -> UsageBatch:
    batch = UsageBatch()
    for minute, namespace, model, counters in entries:
        batch.add(minute, PAIR, pair_name(namespace, model), counters)
    return batch


def c(
    requests: int,
    errors: int = 0,
    prompt: int = 0,
    completion: int = 0,
    cost: int = 0,
    latency: int = 0,
) -> UsageCounters:
    return UsageCounters(requests, errors, prompt, completion, cost, latency)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def ledger(engine: AsyncEngine) -> UsageLedger:
    return UsageLedger(sessions(engine))


async def everything(ledger: UsageLedger, **filters: Any) -> dict[tuple[date, str, str], Any]:
    page = await ledger.daily(
        filters.get("namespace"),
        filters.get("model"),
        D0 - timedelta(days=10),
        D0 + timedelta(days=10),
        0,
        500,
    )
    return {(r.day, r.namespace, r.model): r.counters for r in page.items}


# -- the ledger, on every database ----------------------------------------------------------------


async def test_a_batch_becomes_daily_rows_and_the_next_one_adds_up(ledger: UsageLedger) -> None:
    d1 = D0 + timedelta(days=1)
    batch = pairs(
        (minute_of(D0, 1), "team-a", "gpt-4o", c(2, 1, 30, 12, 4500, 900)),
        (minute_of(D0, 1439), "team-a", "gpt-4o", c(1, 0, 5, 5, 100, 10)),  # same day: one row
        (minute_of(d1), "team-a", "gpt-4o", c(1)),  # the next UTC day: another row
        (minute_of(D0, 2), "team-a", None, c(3, 3)),  # refused before a model: model ''
        (minute_of(D0, 2), "team-b", "ft:gpt-4o:org:x@2", c(1, prompt=7)),
    )
    batch.add(minute_of(D0), "namespace", "team-a", c(99))  # not a pair: realtime only
    batch.add(minute_of(D0), "model", "gpt-4o", c(99))
    assert (await ledger.add(batch)).rows == 4
    expected = {
        (D0, "team-a", "gpt-4o"): c(3, 1, 35, 17, 4600, 910),
        (d1, "team-a", "gpt-4o"): c(1),
        (D0, "team-a", ""): c(3, 3),
        (D0, "team-b", "ft:gpt-4o:org:x@2"): c(1, prompt=7),
    }
    assert await everything(ledger) == expected

    # The same batch again (a gateway retrying after a lost answer): every counter adds up.
    assert (await ledger.add(batch)).rows == 4
    doubled = {key: c(*(2 * v for v in counters.values())) for key, counters in expected.items()}
    assert await everything(ledger) == doubled
    assert (await ledger.add(UsageBatch())).rows == 0


async def test_names_are_kept_exactly(ledger: UsageLedger) -> None:
    """Case-distinct names are different rows (MySQL's default collations would merge them),
    and the longest names the configuration allows fit the key."""
    long_namespace, long_model = "n" * 128, "m" * 256
    await ledger.add(
        pairs(
            (M0, "Team", "GPT-4o", c(1)),
            (M0, "team", "gpt-4o", c(2)),
            (M0, long_namespace, long_model, c(3)),
        )
    )
    assert await everything(ledger) == {
        (D0, "Team", "GPT-4o"): c(1),
        (D0, "team", "gpt-4o"): c(2),
        (D0, long_namespace, long_model): c(3),
    }


async def test_a_batch_is_one_statement(ledger: UsageLedger, engine: AsyncEngine) -> None:
    inserts: list[bool] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def count(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO USAGE_DAILY"):
            inserts.append(many)

    batch = pairs(*((minute_of(D0, i), f"ns-{i % 9}", f"m-{i % 31}", c(1)) for i in range(1440)))
    assert (await ledger.add(batch)).rows == len(daily_rows(batch)) > 200
    assert inserts == [True]  # one executemany, not one statement per row
    assert (await ledger.daily(None, None, D0, D0, 0, 1)).sum.requests == 1440


async def test_concurrent_batches_never_lose_counts(ledger: UsageLedger) -> None:
    """Gateways and config-center workers add at the same time to the same rows."""
    keys = [
        (minute_of(D0 + timedelta(days=d)), f"ns-{n}", f"m-{m}")
        for d in range(2)
        for n in range(3)
        for m in range(4)
    ]
    rng = random.Random(7)

    def shuffled() -> UsageBatch:
        order = keys[:]
        rng.shuffle(order)
        return pairs(*((minute, ns, model, c(1, prompt=2)) for minute, ns, model in order))

    await asyncio.gather(*(ledger.add(shuffled()) for _ in range(12)))
    rows = await everything(ledger)
    assert len(rows) == len(keys)
    assert all(counters == c(12, prompt=24) for counters in rows.values())


async def test_daily_filters_orders_and_pages(ledger: UsageLedger) -> None:
    entries = []
    for day in range(5):
        for namespace in ("team-a", "team-b"):
            for model in ("gpt-4o", "mini", None):
                entries.append((minute_of(D0 + timedelta(days=day)), namespace, model, c(day + 1)))
    await ledger.add(pairs(*entries))
    d1, d3 = D0 + timedelta(days=1), D0 + timedelta(days=3)

    page = await ledger.daily(None, None, D0, D0 + timedelta(days=4), 0, 500)
    assert page.total == 30 and page.sum.requests == 6 * (1 + 2 + 3 + 4 + 5)
    assert [(r.day, r.namespace, r.model) for r in page.items[:4]] == [
        (D0, "team-a", ""),
        (D0, "team-a", "gpt-4o"),
        (D0, "team-a", "mini"),
        (D0, "team-b", ""),
    ]

    team_b = await ledger.daily("team-b", None, d1, d3, 0, 500)
    assert team_b.total == 9 and {r.namespace for r in team_b.items} == {"team-b"}
    assert {r.day for r in team_b.items} == {d1, d1 + timedelta(days=1), d3}
    assert team_b.sum.requests == 3 * (2 + 3 + 4)

    mini = await ledger.daily(None, "mini", D0, D0 + timedelta(days=4), 0, 500)
    assert mini.total == 10 and {r.model for r in mini.items} == {"mini"}
    no_model = await ledger.daily("team-a", "", D0, D0, 0, 500)
    assert [(r.model, r.counters.requests) for r in no_model.items] == [("", 1)]
    assert (await ledger.daily("nobody", None, D0, d3, 0, 10)).total == 0
    assert (await ledger.daily("nobody", None, D0, d3, 0, 10)).sum == UsageCounters()

    # Pages: the whole range, 7 at a time, is every row once, in order, with the same totals.
    seen = []
    for offset in range(0, 30, 7):
        chunk = await ledger.daily(None, None, D0, D0 + timedelta(days=4), offset, 7)
        assert chunk.total == 30 and chunk.sum == page.sum
        seen.extend(chunk.items)
    assert seen == page.items
    assert (await ledger.daily(None, None, D0, D0, 100, 7)).items == []


async def test_daily_queries_are_bounded(ledger: UsageLedger) -> None:
    await ledger.add(pairs((M0, "team-a", "gpt-4o", c(1))))
    widest = await ledger.daily(None, None, D0 - timedelta(days=MAX_DAYS - 1), D0, 0, 500)
    assert widest.total == 1
    for start, end, offset, limit, message in (
        (D0 - timedelta(days=MAX_DAYS), D0, 0, 10, "at most 400 days"),
        (D0, D0 - timedelta(days=1), 0, 10, "before start"),
        (D0, D0, -1, 10, "offset"),
        (D0, D0, 0, 0, "limit"),
        (D0, D0, 0, 501, "limit"),
    ):
        with pytest.raises(ValueError, match=message):
            await ledger.daily(None, None, start, end, offset, limit)


def test_pair_names() -> None:
    assert pair_name("team-a", "org/model:x") == "team-a/org/model:x"
    assert split_pair("team-a/org/model:x") == ("team-a", "org/model:x")
    assert split_pair(pair_name("team-a", None)) == ("team-a", "")
    for bad in ("team-a", "/gpt-4o"):
        with pytest.raises(ValueError):
            split_pair(bad)


# -- the API --------------------------------------------------------------------------------------


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An in-process config center on SQLite (the ledger's SQL is tested on all three above)."""
    async with config_center(tmp_path) as (app, client):
        app.state.settings = dataclasses.replace(app.state.settings, gateway_token=GATEWAY_TOKEN)
        yield app, client
        act_as(app, None)


def item(minute: int, dimension: str, name: str, **counters: int) -> dict[str, Any]:
    return {"minute": minute, "dimension": dimension, "name": name, **counters}


async def post(client: httpx.AsyncClient, *items: dict[str, Any]) -> httpx.Response:
    return await client.post("/internal/v1/usage", json={"items": list(items)}, headers=GATEWAY)


def today_minute() -> int:
    return int(time.time()) // 60 * 60


async def test_a_posted_batch_reaches_the_ledger_and_the_realtime_series(
    tmp_path: Path, database_url: str
) -> None:
    async with config_center(tmp_path, database_url) as (app, client):
        app.state.settings = dataclasses.replace(app.state.settings, gateway_token=GATEWAY_TOKEN)
        minute = today_minute()
        answer = await post(
            client,
            item(minute, PAIR, "team-a/gpt-4o", requests=2, errors=1, prompt_tokens=30),
            item(minute, PAIR, "team-a/", requests=1, errors=1),
            item(minute, PAIR, "team-b/gpt-4o", requests=4, cost_micro_usd=99),
        )
        assert answer.status_code == 200 and answer.json() == {"accepted": 3}
        assert (
            await post(client, item(minute, PAIR, "team-a/gpt-4o", requests=1))
        ).status_code == 200

        daily = await client.get("/api/v1/usage/daily")
        assert daily.status_code == 200
        body = daily.json()
        today = datetime.fromtimestamp(minute, UTC).date()
        assert body["end"] == today.isoformat()
        assert body["start"] == (today - timedelta(days=29)).isoformat()
        assert body["total"] == 3 and body["sum"]["requests"] == 8
        assert body["items"][0] == {
            "day": today.isoformat(),
            "namespace": "team-a",
            "model": "",
            "requests": 1,
            "errors": 1,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_micro_usd": 0,
            "latency_ms_total": 0,
        }
        assert [(i["namespace"], i["model"], i["requests"]) for i in body["items"]] == [
            ("team-a", "", 1),
            ("team-a", "gpt-4o", 3),
            ("team-b", "gpt-4o", 4),
        ]
        # The same pairs counted for the realtime namespace and model series.
        namespaces = await app.state.realtime.totals("namespace", None, 5)
        assert {n: t.requests for n, t in namespaces.items()} == {"team-a": 4, "team-b": 4}
        models = await app.state.realtime.totals("model", None, 5)
        assert {n: (t.requests, t.errors) for n, t in models.items()} == {"gpt-4o": (7, 1)}


@pytest.mark.parametrize(
    "name",
    ["team-a", "/gpt-4o", "n" * 129 + "/gpt-4o", "team-a/" + "m" * 257],
)
async def test_an_invalid_pair_is_refused(
    center: tuple[FastAPI, httpx.AsyncClient], name: str
) -> None:
    app, client = center
    minute = today_minute()
    answer = await post(
        client, item(minute, PAIR, "team-a/gpt-4o", requests=1), item(minute, PAIR, name)
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["type"] == "invalid_request"
    assert (await client.get("/api/v1/usage/daily")).json()["total"] == 0
    assert await app.state.realtime.totals("namespace", None, 1) == {}


async def test_a_failed_sql_write_answers_503_and_the_retry_counts_once(
    center: tuple[FastAPI, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = center
    ledger: UsageLedger = app.state.ledger

    async def down(batch: Any, batch_id: str | None = None) -> int:
        raise OperationalError("INSERT ...", {}, ConnectionRefusedError("database is away"))

    monkeypatch.setattr(ledger, "add", down)
    one = item(today_minute(), PAIR, "team-a/gpt-4o", requests=1, prompt_tokens=5)
    refused = await post(client, one)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "unavailable"
    assert (await client.get("/api/v1/usage/daily")).json()["total"] == 0

    monkeypatch.undo()  # the database is back: the gateway sends the batch again
    assert (await post(client, one)).status_code == 200
    body = (await client.get("/api/v1/usage/daily")).json()
    assert body["sum"]["requests"] == 1 and body["sum"]["prompt_tokens"] == 5  # once in SQL
    # The ledger is written first: the failed attempt did not reach the realtime series either.
    assert (await app.state.realtime.totals("namespace", ["team-a"], 1))["team-a"].requests == 1


async def test_daily_is_for_viewers_and_a_namespace_admin_sees_only_its_own(
    center: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = center
    minute = today_minute()
    await post(
        client,
        item(minute, PAIR, "team-a/gpt-4o", requests=1),
        item(minute, PAIR, "team-b/gpt-4o", requests=2),
    )
    assert (
        await client.get("/api/v1/usage/daily", headers={"Authorization": ""})
    ).status_code == 401
    assert (await client.get("/api/v1/usage/daily", headers=GATEWAY)).status_code == 401

    act_as(app, Principal("vera", "viewer"))
    assert (await client.get("/api/v1/usage/daily")).json()["total"] == 2

    act_as(app, Principal("nadia", "namespace_admin", "team-a"))
    own = await client.get("/api/v1/usage/daily", params={"namespace": "team-a"})
    assert own.status_code == 200
    assert [i["namespace"] for i in own.json()["items"]] == ["team-a"]
    for params in ({}, {"namespace": "team-b"}, {"model": "gpt-4o"}):
        refused = await client.get("/api/v1/usage/daily", params=params)
        assert refused.status_code == 403, params
        assert refused.json()["error"]["type"] == "forbidden"


async def test_daily_ranges_and_pages(center: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = center
    today = datetime.now(UTC).date()
    first_minute = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp())
    entries = [
        item(first_minute - days * DAY, PAIR, f"team-{n}/gpt-4o", requests=1)
        for days in (0, 1, 40)
        for n in "abc"
    ]
    assert (await post(client, *entries)).status_code == 200

    default = (await client.get("/api/v1/usage/daily")).json()
    assert default["total"] == 6  # the last 30 days, today included: not 40 days ago
    old_day = (today - timedelta(days=40)).isoformat()
    only_start = (await client.get("/api/v1/usage/daily", params={"start": old_day})).json()
    assert only_start["end"] == (today - timedelta(days=11)).isoformat()
    assert only_start["total"] == 3

    pages = []
    for offset in (0, 4, 8):
        answer = await client.get(
            "/api/v1/usage/daily",
            params={"start": old_day, "end": today.isoformat(), "offset": offset, "limit": 4},
        )
        body = answer.json()
        assert (body["total"], body["offset"], body["limit"]) == (9, offset, 4)
        pages.extend((i["day"], i["namespace"]) for i in body["items"])
    assert len(pages) == len(set(pages)) == 9 and pages == sorted(pages)

    one_model = await client.get(
        "/api/v1/usage/daily", params={"model": "gpt-4o", "namespace": "team-b"}
    )
    assert one_model.json()["sum"]["requests"] == 2
    no_model = await client.get("/api/v1/usage/daily", params={"model": ""})
    assert no_model.status_code == 200 and no_model.json()["total"] == 0

    for params in (
        {"start": (today - timedelta(days=400)).isoformat(), "end": today.isoformat()},
        {"start": today.isoformat(), "end": (today - timedelta(days=1)).isoformat()},
        {"start": "9999-12-31"},
        {"start": "yesterday"},
        {"limit": 501},
        {"limit": 0},
        {"offset": -1},
        {"namespace": ""},
    ):
        refused = await client.get("/api/v1/usage/daily", params=params)
        assert refused.status_code == 422, (params, refused.text)
        assert refused.json()["error"]["type"] == "invalid_request"
    widest = {"start": (today - timedelta(days=399)).isoformat(), "end": today.isoformat()}
    assert (await client.get("/api/v1/usage/daily", params=widest)).json()["total"] == 9


# -- the gateway side -----------------------------------------------------------------------------


def test_a_following_gateway_sends_to_the_config_center_even_with_redis() -> None:
    env = {
        "AIGW_CONFIG_CENTER": "http://cc:8001",
        "AIGW_GATEWAY_TOKEN": "t",
        "AIGW_REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    following = recorder_from_env(env)
    assert isinstance(following, UsageRecorder) and isinstance(following.sink, HttpSink)
    assert following.pairs and following.interval == 1.0
    static = recorder_from_env({"AIGW_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert isinstance(static, UsageRecorder) and isinstance(static.sink, RedisSink)
    assert not static.pairs
    slow = recorder_from_env({**env, "AIGW_USAGE_FLUSH_SECONDS": "30"})
    assert isinstance(slow, UsageRecorder) and slow.interval == 30
    for bad in ("0", "-1", "soon", "nan", "100000"):
        odd = recorder_from_env({**env, "AIGW_USAGE_FLUSH_SECONDS": bad})
        assert isinstance(odd, UsageRecorder) and odd.interval == 1.0, bad


def test_a_recorder_for_the_config_center_keeps_one_entry_per_namespace_and_model() -> None:
    recorder = UsageRecorder(HttpSink("http://cc", "t"))
    t = 1_800_000_000.0
    m = int(t) // 60 * 60

    def request(model: str | None, status: int = 200, **fields: Any) -> RequestRecord:
        record = RequestRecord("id", "POST", "/v1/chat/completions", status=status)
        record.namespace, record.model, record.timestamp = "team-a", model, t
        for name, value in fields.items():
            setattr(record, name, value)
        return record

    recorder.record(request("gpt-4o", prompt_tokens=10, completion_tokens=5, cost_usd=0.001))
    recorder.record(request("gpt-4o", status=429, duration_ms=2.6))
    recorder.record(request(None, status=404))
    assert recorder.batch == {
        (m, PAIR, "team-a/gpt-4o"): UsageCounters(2, 1, 10, 5, 1000, 3),
        (m, PAIR, "team-a/"): UsageCounters(1, 1),
    }
    assert recorder.batch.requests() == 3


# -- exactly once: batch ids ----------------------------------------------------------------------


async def test_a_batch_id_is_applied_once(ledger: UsageLedger) -> None:
    batch = pairs((M0, "team-a", "gpt-4o", c(3, prompt=30)), (M0, "team-b", None, c(1)))
    first = await ledger.add(batch, "usage-abc-host-1-0a1b2c-000001.0")
    again = await ledger.add(batch, "usage-abc-host-1-0a1b2c-000001.0")
    assert (first.rows, first.duplicate) == (2, False)
    assert (again.rows, again.duplicate, again.realtime_done) == (0, True, False)
    await ledger.realtime_done("usage-abc-host-1-0a1b2c-000001.0")
    assert (await ledger.add(batch, "usage-abc-host-1-0a1b2c-000001.0")).realtime_done
    await ledger.add(batch, "usage-abc-host-1-0a1b2c-000002.0")  # another batch: added
    assert (await ledger.daily(None, None, D0, D0)).sum.requests == 8


async def test_concurrent_duplicates_are_applied_once(ledger: UsageLedger) -> None:
    batch = pairs((M0, "team-a", "gpt-4o", c(1)))
    results = await asyncio.gather(*(ledger.add(batch, "same-id.0") for _ in range(8)))
    assert sorted(r.duplicate for r in results) == [False] + [True] * 7
    assert (await ledger.daily(None, None, D0, D0)).sum.requests == 1


async def test_old_batch_ids_are_purged(ledger: UsageLedger) -> None:
    batch = pairs((M0, "team-a", "gpt-4o", c(1)))
    await ledger.add(batch, "old.0")
    assert await ledger.purge_batch_ids(time.time() - 60) == 0  # younger than the cutoff
    assert await ledger.purge_batch_ids(time.time() + 60) == 1
    assert not (await ledger.add(batch, "old.0")).duplicate  # forgotten: applied again


async def test_a_batch_posted_twice_with_its_id_counts_once_everywhere(
    center: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = center
    body = {
        "batch_id": "usage-0123456789-gw-42-a1b2c3d4e5f6-000007.0",
        "items": [item(today_minute(), PAIR, "team-a/gpt-4o", requests=2, prompt_tokens=8)],
    }
    for _ in range(3):  # answers lost: the gateway, or a recovering sibling, sends it again
        answer = await client.post("/internal/v1/usage", json=body, headers=GATEWAY)
        assert answer.status_code == 200, answer.text
    summed = (await client.get("/api/v1/usage/daily")).json()["sum"]
    assert (summed["requests"], summed["prompt_tokens"]) == (2, 8)
    assert (await app.state.realtime.totals("namespace", ["team-a"], 1))["team-a"].requests == 2
    bad = {**body, "batch_id": "no spaces allowed"}
    assert (await client.post("/internal/v1/usage", json=bad, headers=GATEWAY)).status_code == 422
