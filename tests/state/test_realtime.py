"""The realtime usage stores: one contract, run against the in-process store and real Redis.

Redis is expected on 127.0.0.1:6379; each test uses its own random key prefix and deletes its
keys afterwards. The stores' clock is a :class:`Clock` starting at the real time (Redis expires
keys on its own clock, so Redis tests cannot move far from now).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis
from redis.asyncio.client import Pipeline

from aigw.state.realtime import (
    COUNTERS,
    DAY,
    DAY_RETENTION,
    MINUTE_RETENTION,
    MemoryRealtimeStore,
    RealtimeStore,
    RedisRealtimeStore,
    UsageBatch,
    UsageCounters,
)
from aigw.state.redis_client import connect

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _minute(t: float) -> int:
    return int(t) // 60 * 60


def _day(t: float) -> int:
    return int(t) // DAY * DAY


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def counters(requests: int = 1, **values: int) -> UsageCounters:
    return UsageCounters(requests=requests, **values)


def batch(*entries: tuple[int, str, str, UsageCounters]) -> UsageBatch:
    result = UsageBatch()
    for minute, dimension, name, c in entries:
        result.add(minute, dimension, name, c)
    return result


async def _delete_prefix(prefix: str, url: str = REDIS_URL, cluster: bool = False) -> None:
    client = connect(url, cluster=cluster)
    try:
        # One key per DELETE: a cluster refuses keys of several slots in one command.
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture
def clock() -> Clock:
    # Mid-minute, and far enough from midnight UTC that "an hour ago" is the same day.
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    if now.hour < 2:
        now = now.replace(hour=2)  # still within today, in the future: fine for both stores
    return Clock(now.timestamp())


@pytest.fixture
def prefix() -> str:
    return f"aigw:test:{secrets.token_hex(6)}"


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest, clock: Clock, prefix: str) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryRealtimeStore(clock=clock)
        return
    cluster = request.param == "cluster"
    url = request.getfixturevalue("cluster_url") if cluster else REDIS_URL
    store = RedisRealtimeStore(url, prefix, clock=clock, cluster=cluster)
    try:
        yield store
    finally:
        await store.close()
        await _delete_prefix(prefix, url, cluster)


# -- the model --------------------------------------------------------------------------------


def test_batches_are_additive() -> None:
    a = batch((60, "namespace", "team-a", counters(2, errors=1, prompt_tokens=10)))
    b = batch(
        (60, "namespace", "team-a", counters(3, completion_tokens=5, cost_micro_usd=7)),
        (120, "model", "gpt-4o", counters(1, latency_ms_total=40)),
    )
    a.merge(b)
    assert a[(60, "namespace", "team-a")] == UsageCounters(5, 1, 10, 5, 7, 0)
    assert a[(120, "model", "gpt-4o")] == UsageCounters(1, 0, 0, 0, 0, 40)
    b[(120, "model", "gpt-4o")].requests += 100  # merged counters are copies, not shared
    assert a[(120, "model", "gpt-4o")].requests == 1
    assert a.requests() == 5 and a.requests("model") == 1


def test_the_wire_form_round_trips() -> None:
    original = batch(
        (60, "namespace", "team-a", UsageCounters(1, 2, 3, 4, 5, 6)),
        (60, "model", "ft:gpt-4o:org:x", counters(7)),
    )
    items = original.to_items()
    assert items[0] == {
        "minute": 60,
        "dimension": "namespace",
        "name": "team-a",
        **dict(zip(COUNTERS, (1, 2, 3, 4, 5, 6), strict=True)),
    }
    assert UsageBatch.from_items(items) == original
    chunks = list(original.chunks(1))
    assert len(chunks) == 2 and UsageBatch().merge(chunks[0]).merge(chunks[1]) == original


def test_compaction_bounds_the_batch_and_keeps_every_counter() -> None:
    now = float(_day(1_800_000_000) + 12 * 3600 + 30)
    old = batch(
        *(
            (_minute(now - MINUTE_RETENTION - 3600 - i * 60), "namespace", f"ns{i % 3}", counters())
            for i in range(120)
        ),
        *((_minute(now - i * 60), "model", "m", counters(2)) for i in range(300)),
    )
    compacted = UsageBatch().merge(old)
    assert compacted.compact(now, max_entries=1000) == 0  # under the bound: untouched
    folded = compacted.compact(now, max_entries=100)
    assert folded > 0 and len(compacted) == len(old) - folded
    assert len(compacted) <= 3 * 2 + 6  # ns*: one or two days each; m: ~5 hours + this minute
    assert compacted.requests() == old.requests() and compacted.requests("model") == 600
    assert (_minute(now), "model", "m") in compacted  # the current minute keeps its resolution


# -- the contract -----------------------------------------------------------------------------


async def test_add_merges_into_minute_and_day_buckets(store: RealtimeStore, clock: Clock) -> None:
    minute = _minute(clock.now)
    await store.add(batch((minute, "namespace", "team-a", counters(2, prompt_tokens=10))))
    await store.add(
        batch(
            (minute, "namespace", "team-a", counters(1, errors=1, cost_micro_usd=1500)),
            (minute - 60, "namespace", "team-a", counters(4, latency_ms_total=400)),
            (minute, "model", "gpt-4o", counters(3)),
        )
    )
    points = await store.series("namespace", "team-a", "minute", _at(minute - 60), _at(minute + 60))
    assert [p.time for p in points] == [_at(minute - 60), _at(minute)]
    assert points[0].counters == UsageCounters(4, 0, 0, 0, 0, 400)
    assert points[1].counters == UsageCounters(3, 1, 10, 0, 1500, 0)

    days = await store.series("namespace", "team-a", "day", _at(minute), _at(minute + 1))
    assert [p.time for p in days] == [_at(_day(minute))]
    assert days[0].counters == UsageCounters(7, 1, 10, 0, 1500, 400)

    model = await store.series("model", "gpt-4o", "minute", _at(minute), _at(minute + 60))
    assert model[0].counters.requests == 3
    assert (await store.series("model", "team-a", "minute", _at(minute), _at(minute + 60)))[
        0
    ].counters.is_zero()


async def test_series_are_zero_filled(store: RealtimeStore, clock: Clock) -> None:
    minute = _minute(clock.now)
    await store.add(
        batch(
            (minute - 5 * 60, "namespace", "team-a", counters(1)),
            (minute - 2 * 60, "namespace", "team-a", counters(2)),
        )
    )
    # From inside a bucket (the bucket holding start is the first) to a non-boundary end.
    points = await store.series(
        "namespace", "team-a", "minute", _at(minute - 9 * 60 + 17), _at(minute + 1)
    )
    assert len(points) == 10
    assert [p.time for p in points] == [_at(minute - (9 - i) * 60) for i in range(10)]
    assert [p.counters.requests for p in points] == [0, 0, 0, 0, 1, 0, 0, 2, 0, 0]

    nothing = await store.series("namespace", "nobody", "day", _at(minute - 6 * DAY), _at(minute))
    assert len(nothing) == 7 and all(p.counters.is_zero() for p in nothing)


async def test_naive_datetimes_are_utc(store: RealtimeStore, clock: Clock) -> None:
    minute = _minute(clock.now)
    await store.add(batch((minute, "namespace", "team-a", counters(5))))
    naive = _at(minute).replace(tzinfo=None)
    points = await store.series(
        "namespace", "team-a", "minute", naive, naive + timedelta(minutes=1)
    )
    assert [p.counters.requests for p in points] == [5]


async def test_top_orders_by_requests_within_the_window(store: RealtimeStore, clock: Clock) -> None:
    minute = _minute(clock.now)
    await store.add(
        batch(
            (minute, "namespace", "b", counters(5)),
            (minute - 60, "namespace", "b", counters(1)),
            (minute, "namespace", "a", counters(6, errors=2)),
            (minute, "namespace", "c", counters(3)),
            (minute, "namespace", "tie", counters(3)),
            (minute - 30 * 60, "namespace", "old", counters(100)),
            (minute, "model", "gpt-4o", counters(50)),
        )
    )
    top = await store.top("namespace", minutes=10, limit=10)
    assert [(e.name, e.counters.requests) for e in top] == [
        ("a", 6),
        ("b", 6),
        ("c", 3),
        ("tie", 3),
    ]
    assert top[0].counters.errors == 2
    assert [e.name for e in await store.top("namespace", minutes=10, limit=2)] == ["a", "b"]
    assert (await store.top("namespace", minutes=31, limit=1))[0].name == "old"
    assert [e.name for e in await store.top("model", minutes=1, limit=5)] == ["gpt-4o"]
    assert await store.top("namespace", minutes=1, limit=5) != []


async def test_totals_for_given_names_are_zero_filled(store: RealtimeStore, clock: Clock) -> None:
    minute = _minute(clock.now)
    await store.add(
        batch(
            (minute, "model", "ft:gpt-4o:org:custom", counters(2, completion_tokens=9)),
            (minute - 60, "model", "ft:gpt-4o:org:custom", counters(1)),
            (minute, "model", "other", counters(1)),
        )
    )
    every = await store.totals("model", None, 5)
    assert every == {
        "ft:gpt-4o:org:custom": UsageCounters(3, 0, 0, 9, 0, 0),
        "other": UsageCounters(1),
    }
    some = await store.totals("model", ["ft:gpt-4o:org:custom", "absent"], 1)
    assert some == {
        "ft:gpt-4o:org:custom": UsageCounters(2, 0, 0, 9, 0, 0),
        "absent": UsageCounters(),
    }
    assert await store.totals("namespace", None, 5) == {}


async def test_every_query_is_bounded(store: RealtimeStore, clock: Clock) -> None:
    end = _at(_minute(clock.now))
    assert (
        len(await store.series("namespace", "a", "minute", end - timedelta(hours=24), end)) == 1440
    )
    with pytest.raises(ValueError, match="at most 1440"):
        await store.series("namespace", "a", "minute", end - timedelta(minutes=1441), end)
    day_end = _at(_day(clock.now))
    assert (
        len(await store.series("namespace", "a", "day", day_end - timedelta(days=400), day_end))
        == 400
    )
    with pytest.raises(ValueError, match="at most 400"):
        await store.series("namespace", "a", "day", day_end - timedelta(days=401), day_end)
    with pytest.raises(ValueError, match="after start"):
        await store.series("namespace", "a", "minute", end, end)
    with pytest.raises(ValueError, match="resolution"):
        await store.series("namespace", "a", "hour", end - timedelta(hours=1), end)
    with pytest.raises(ValueError, match="dimension"):
        await store.series("key", "a", "minute", end - timedelta(hours=1), end)
    for minutes in (0, 1441):
        with pytest.raises(ValueError, match="minutes"):
            await store.top("namespace", minutes, 10)
    with pytest.raises(ValueError, match="limit"):
        await store.top("namespace", 10, 0)
    with pytest.raises(ValueError, match="dimension"):
        await store.add(batch((_minute(clock.now), "key", "a", counters())))


async def test_a_late_batch_still_counts_for_its_day(store: RealtimeStore, clock: Clock) -> None:
    """Minutes past their 48 h retention (a long outage) are not written, their days are."""
    late = _minute(clock.now - MINUTE_RETENTION - 3 * 3600)
    ancient = _minute(clock.now - DAY_RETENTION - 2 * DAY)
    await store.add(
        batch(
            (late, "namespace", "team-a", counters(4)),
            (ancient, "namespace", "team-a", counters(9)),
        )
    )
    minutes = await store.series("namespace", "team-a", "minute", _at(late), _at(late + 60))
    assert minutes[0].counters.is_zero()
    days = await store.series("namespace", "team-a", "day", _at(late), _at(late + 1))
    assert days[0].counters.requests == 4
    gone = await store.series("namespace", "team-a", "day", _at(ancient), _at(ancient + 1))
    assert gone[0].counters.is_zero()


# -- retention -------------------------------------------------------------------------------


async def test_memory_store_forgets_buckets_past_their_retention(clock: Clock) -> None:
    store = MemoryRealtimeStore(clock=clock)
    minute = _minute(clock.now)
    await store.add(batch((minute, "namespace", "team-a", counters(3))))
    clock.now = minute + 60 + MINUTE_RETENTION - 1  # the bucket ended 48 h - 1 s ago: kept
    assert (await store.series("namespace", "team-a", "minute", _at(minute), _at(minute + 1)))[
        0
    ].counters.requests == 3
    clock.now += 1
    assert (await store.series("namespace", "team-a", "minute", _at(minute), _at(minute + 1)))[
        0
    ].counters.is_zero()
    assert (await store.series("namespace", "team-a", "day", _at(minute), _at(minute + 1)))[
        0
    ].counters.requests == 3
    await store.add(batch((_minute(clock.now), "namespace", "team-b", counters())))  # prunes
    assert ("minute", minute) not in store._buckets and ("day", _day(minute)) in store._buckets
    clock.now = _day(minute) + DAY + DAY_RETENTION + 1
    await store.add(batch((_minute(clock.now), "namespace", "team-b", counters())))
    assert ("day", _day(minute)) not in store._buckets


async def test_redis_keys_carry_their_retention(clock: Clock, prefix: str) -> None:
    store = RedisRealtimeStore(REDIS_URL, prefix, clock=clock)
    client = redis.from_url(REDIS_URL, decode_responses=True)
    try:
        minute = _minute(clock.now)
        await store.add(batch((minute, "model", "gpt-4o", counters(2, prompt_tokens=5))))
        stamp = _at(minute)
        minute_key = f"{prefix}:m:{stamp:%Y%m%d%H%M}"
        day_key = f"{prefix}:d:{stamp:%Y%m%d}"
        assert sorted(await client.keys(f"{prefix}:*")) == sorted([minute_key, day_key])
        assert await client.hgetall(minute_key) == {
            "model:gpt-4o:requests": "2",
            "model:gpt-4o:prompt_tokens": "5",
        }
        assert await client.expiretime(minute_key) == minute + 60 + MINUTE_RETENTION
        assert await client.expiretime(day_key) == _day(minute) + DAY + DAY_RETENTION
        ttl = await client.ttl(minute_key)
        assert MINUTE_RETENTION - 3600 < ttl <= MINUTE_RETENTION + 60 + 3600 * 2
    finally:
        await client.aclose()
        await store.close()
        await _delete_prefix(prefix)


class RoundTrips:
    """Counts what reaches Redis: pipeline executions and single commands."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pipelines: list[int] = []
        self.commands: list[str] = []
        self.transactions: list[bool] = []
        real_execute = Pipeline.execute
        real_command = redis.Redis.execute_command
        real_pipeline = redis.Redis.pipeline

        async def execute(pipe: Pipeline, *args: Any, **kwargs: Any) -> Any:
            self.pipelines.append(len(pipe.command_stack))
            return await real_execute(pipe, *args, **kwargs)

        async def command(client: Any, *args: Any, **kwargs: Any) -> Any:
            self.commands.append(str(args[0]))
            return await real_command(client, *args, **kwargs)

        def pipeline(client: Any, transaction: bool = True, **kwargs: Any) -> Any:
            self.transactions.append(transaction)
            return real_pipeline(client, transaction, **kwargs)

        monkeypatch.setattr(Pipeline, "execute", execute)
        monkeypatch.setattr(redis.Redis, "execute_command", command)
        monkeypatch.setattr(redis.Redis, "pipeline", pipeline)

    def reset(self) -> None:
        self.pipelines.clear()
        self.commands.clear()
        self.transactions.clear()


async def test_redis_add_and_reads_are_one_round_trip_each(
    clock: Clock, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = RoundTrips(monkeypatch)
    store = RedisRealtimeStore(REDIS_URL, prefix, clock=clock)
    try:
        minute = _minute(clock.now)
        many = batch(
            *(
                (minute - i * 60, dimension, f"{dimension}-{n}", counters(1, prompt_tokens=3))
                for i in range(30)
                for n in range(5)
                for dimension in ("namespace", "model")
            )
        )
        await store.add(many)
        assert len(trips.pipelines) == 1 and not trips.commands
        assert trips.transactions == [False]
        # 300 entries x 2 counters into 30 minute buckets + 1 day bucket (summed), + 31 EXPIREATs
        assert trips.pipelines[0] == 300 * 2 + 10 * 2 + 31

        trips.reset()
        await store.series("model", "model-1", "minute", _at(minute - 3600), _at(minute + 60))
        await store.totals("namespace", None, 30)
        await store.top("model", 1440, 10)
        await store.totals("model", ["model-1"], 30)
        assert len(trips.pipelines) == 4 and not trips.commands
        assert set(trips.transactions) == {False}

        trips.reset()
        await store.add(UsageBatch())  # nothing to say: no round trip
        assert trips.pipelines == [] and trips.commands == []
    finally:
        await store.close()
        await _delete_prefix(prefix)
