"""Tenant limits: one behavioural suite, run against the in-process store and real Redis
(``tests/state/test_limits_cluster.py`` runs it again against a 3-master Redis Cluster).

Redis is expected on 127.0.0.1:6379; the suite uses db 11 with a random key prefix per test and
deletes its keys afterwards. The breaker and command-counting tests start their own
``redis-server`` on a free port (never touching the machine's 6379). Time is a :class:`Clock`
the stores are given, so days and months roll over on demand; every expiry the Redis store sets
is relative to that clock, so Redis's own clock does not get in the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import secrets
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from aigw.state.breaker import BreakerLimitStore, CircuitBreaker
from aigw.state.limits import (
    KINDS,
    Admission,
    LimitCheck,
    LimitPlan,
    format_duration,
    key_scope,
    limit_kinds,
    limit_store_for,
    namespace_scope,
    period_of,
)
from aigw.state.limits_memory import MemoryLimitStore
from aigw.state.limits_redis import RedisLimitStore, limit_key, pending_key
from aigw.state.redis_cluster_pipe import ClusterPipes
from aigw.state.redis_pipe import PipelinedRedis
from tests.redis_servers import RedisServer

REDIS_URL = "redis://127.0.0.1:6379/11"
NS = "team"
NS_SCOPE = namespace_scope(NS)
KEY_SCOPE = key_scope(NS, "ci")


def _epoch(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


START = _epoch(2031, 3, 15, 12, 0, 0) + 0.25
"""Mid-month, mid-day, a quarter into a second: the suite's "now"."""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, *args: int, offset: float = 0.0) -> None:
        self.now = _epoch(*args) + offset


def plan(*checks: tuple[str, str, int], tokens: int = 0, cost: int = 0, ns: str = NS) -> LimitPlan:
    return LimitPlan(ns, tuple(LimitCheck(s, k, n) for s, k, n in checks), tokens, cost)  # type: ignore[arg-type]


async def admit_n(store: Any, limit_plan: LimitPlan, n: int) -> list[Admission]:
    return [await store.admit(limit_plan) for _ in range(n)]


def allowed(admissions: list[Admission]) -> int:
    return sum(a.allowed for a in admissions)


# -- backends ---------------------------------------------------------------------------------


class Env:
    """How a test gets stores of one backend that share their state."""

    def __init__(self, backend: str, clock: Clock, url: str | None, prefix: str) -> None:
        self.backend = backend
        self.clock = clock
        self.url = url
        self.prefix = prefix
        self.cluster = backend == "cluster"
        self._memory: MemoryLimitStore | None = None
        self._stores: list[RedisLimitStore] = []

    @property
    def is_redis(self) -> bool:
        return self.backend != "memory"

    def make(self, *, real_time: bool = False, **options: Any) -> Any:
        """A store on the shared state. Memory: the one instance (a process has one); Redis: a
        new instance with its own connections each time. ``real_time``: the store's default
        clock (Redis's ``TIME``) instead of the test's."""
        clock = None if real_time else self.clock
        if not self.is_redis:
            if self._memory is None:
                self._memory = MemoryLimitStore(clock=clock or time.time, **options)
            return self._memory
        assert self.url is not None
        store = RedisLimitStore(self.url, self.prefix, cluster=self.cluster, clock=clock, **options)
        self._stores.append(store)
        return store

    def client(self) -> Any:
        assert self.url is not None
        if self.cluster:
            from redis.asyncio.cluster import RedisCluster

            return RedisCluster.from_url(self.url)
        return redis.from_url(self.url)

    async def close(self) -> None:
        for store in self._stores:
            await store.close()
        if self.is_redis and not self.cluster:
            client = self.client()
            try:
                keys = [k async for k in client.scan_iter(match=f"{self.prefix}:*", count=1000)]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def env(backend: str, clock: Clock, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with _environment(backend, clock, request) as environment:
        yield environment


@pytest.fixture(params=["redis"])
def redis_backend(request: pytest.FixtureRequest) -> str:
    """For tests about Redis itself (the cluster module runs them on the cluster too)."""
    return request.param


@pytest.fixture
async def redis_env(
    redis_backend: str, clock: Clock, request: pytest.FixtureRequest
) -> AsyncIterator[Env]:
    async with _environment(redis_backend, clock, request) as environment:
        yield environment


@contextlib.asynccontextmanager
async def _environment(
    backend: str, clock: Clock, request: pytest.FixtureRequest
) -> AsyncIterator[Env]:
    url = None
    if backend == "redis":
        url = REDIS_URL
    elif backend == "cluster":
        url = request.getfixturevalue("cluster_url")
    environment = Env(backend, clock, url, f"aigw:test:lim:{secrets.token_hex(6)}")
    try:
        yield environment
    finally:
        await environment.close()


# -- each kind --------------------------------------------------------------------------------


async def test_rpm_admits_up_to_the_limit_exactly(env: Env) -> None:
    store = env.make()
    rpm3 = plan((NS_SCOPE, "rpm", 3))
    answers = await admit_n(store, rpm3, 4)
    assert [a.allowed for a in answers] == [True, True, True, False]  # used + 1 <= 3
    refused = answers[3]
    assert refused.exceeded is not None
    assert (refused.exceeded.kind, refused.exceeded.scope) == ("rpm", NS_SCOPE)
    assert (refused.exceeded.limit, refused.exceeded.current, refused.exceeded.cost) == (3, 3, 1)
    # The three requests sit in the bucket of second S, which counts until S + 61.
    assert refused.retry_after_seconds == pytest.approx(60.75)
    assert answers[2].requests is not None and answers[2].requests.remaining == 0
    env.clock.advance(60.0)  # S + 60.25: still inside
    assert not (await store.admit(rpm3)).allowed
    env.clock.advance(1.0)  # S + 61.25: the bucket left the window
    assert allowed(await admit_n(store, rpm3, 4)) == 3


async def test_rpm_window_slides_second_by_second(env: Env) -> None:
    store = env.make()
    rpm3 = plan((NS_SCOPE, "rpm", 3))
    assert allowed(await admit_n(store, rpm3, 2)) == 2  # second S
    env.clock.advance(30)
    assert (await store.admit(rpm3)).allowed  # second S + 30
    env.clock.advance(10)
    refused = await store.admit(rpm3)
    assert not refused.allowed
    assert refused.retry_after_seconds == pytest.approx(20.75)  # until S + 61
    env.clock.advance(21)  # S + 61.25: the two of second S are gone, the one of S + 30 is not
    assert [a.allowed for a in await admit_n(store, rpm3, 3)] == [True, True, False]
    env.clock.advance(30)  # S + 91.25: S + 30 left too; the two of S + 61 have not
    assert [a.allowed for a in await admit_n(store, rpm3, 2)] == [True, False]


async def test_rpd_is_a_utc_day(env: Env) -> None:
    env.clock.set(2031, 3, 15, 23, 59, 0)
    store = env.make()
    rpd2 = plan((NS_SCOPE, "rpd", 2))
    answers = await admit_n(store, rpd2, 3)
    assert [a.allowed for a in answers] == [True, True, False]
    assert answers[2].retry_after_seconds == pytest.approx(60.0)  # midnight UTC
    assert answers[1].requests is not None and answers[1].requests.reset_seconds == 60.0
    env.clock.set(2031, 3, 16, 0, 0, 0)
    assert [a.allowed for a in await admit_n(store, rpd2, 3)] == [True, True, False]


async def test_tpm_reserves_the_estimate(env: Env) -> None:
    store = env.make()
    assert allowed(await admit_n(store, plan((NS_SCOPE, "tpm", 1000), tokens=400), 3)) == 2
    exact = await store.admit(plan((NS_SCOPE, "tpm", 1000), tokens=200))
    assert exact.allowed  # 800 + 200 == 1000: reaching the limit is allowed
    assert exact.tokens is not None and exact.tokens.remaining == 0
    refused = await store.admit(plan((NS_SCOPE, "tpm", 1000), tokens=1))
    assert not refused.allowed and refused.exceeded is not None
    assert (refused.exceeded.kind, refused.exceeded.current) == ("tpm", 1000)
    assert refused.retry_after_seconds == pytest.approx(60.75)
    free = await store.admit(plan((NS_SCOPE, "tpm", 1000), tokens=0))
    assert free.allowed  # costs nothing on a token limit


async def test_a_request_larger_than_the_limit_can_never_pass(env: Env) -> None:
    store = env.make()
    huge = await store.admit(plan((NS_SCOPE, "tpm", 1000), tokens=1001))
    assert not huge.allowed and huge.exceeded is not None
    assert huge.exceeded.retry_after_seconds is None and huge.retry_after_seconds is None
    assert "retry-after" not in huge.headers()
    day = await store.admit(plan((NS_SCOPE, "tokens_per_day", 10), tokens=11))
    assert not day.allowed and day.retry_after_seconds is None


async def test_concurrency_is_acquired_and_released(env: Env) -> None:
    store = env.make()
    two = plan((NS_SCOPE, "concurrency", 2))
    first, second, third = await admit_n(store, two, 3)
    assert first.allowed and second.allowed and not third.allowed
    assert third.exceeded is not None and third.exceeded.kind == "concurrency"
    assert third.retry_after_seconds == 1.0
    assert await store.settle(first, 0, 0)
    assert (await store.admit(two)).allowed
    assert not (await store.admit(two)).allowed


async def test_token_quotas_per_day_and_month(env: Env) -> None:
    env.clock.set(2031, 3, 30, 12, 0, 0)
    store = env.make()
    quotas = ((NS_SCOPE, "tokens_per_day", 1000), (NS_SCOPE, "tokens_per_month", 1500))
    assert allowed(await admit_n(store, plan(*quotas, tokens=500), 3)) == 2
    env.clock.set(2031, 3, 31, 0, 0, 1)  # a new day, the same month
    answers = await admit_n(store, plan(*quotas, tokens=500), 2)
    assert [a.allowed for a in answers] == [True, False]
    refused = answers[1]
    assert refused.exceeded is not None and refused.exceeded.kind == "tokens_per_month"
    assert refused.retry_after_seconds == pytest.approx(86_399)  # until April 1st, 00:00 UTC
    assert refused.tokens is not None and refused.tokens.kind == "tokens_per_month"
    assert refused.tokens.remaining == 0
    env.clock.set(2031, 4, 1, 0, 0, 0)
    assert allowed(await admit_n(store, plan(*quotas, tokens=500), 3)) == 2  # day limit again


async def test_spend_budgets_in_micro_usd(env: Env) -> None:
    store = env.make()
    budget = (
        (NS_SCOPE, "spend_per_day_usd", 1_000_000),
        (KEY_SCOPE, "spend_per_month_usd", 5_000_000),
    )
    answers = await admit_n(store, plan(*budget, cost=300_000), 4)
    assert [a.allowed for a in answers] == [True, True, True, False]
    assert answers[3].exceeded is not None and answers[3].exceeded.kind == "spend_per_day_usd"
    assert answers[3].exceeded.current == 900_000
    assert await store.settle(answers[0], 0, 100_000)  # it really cost 0.10 USD
    assert (await store.admit(plan(*budget, cost=300_000))).allowed  # 700k + 300k == 1M
    assert not (await store.admit(plan(*budget, cost=1))).allowed
    env.clock.advance(86_400)  # tomorrow: the daily budget is back, the monthly keeps counting
    month = await store.peek(plan((KEY_SCOPE, "spend_per_month_usd", 5_000_000), cost=1))
    assert month.checks[0].used == 1_000_000


# -- all or nothing ---------------------------------------------------------------------------


async def test_admission_is_all_or_nothing(env: Env) -> None:
    store = env.make()
    both = plan(
        (NS_SCOPE, "rpm", 10),
        (NS_SCOPE, "tpm", 10_000),
        (NS_SCOPE, "concurrency", 10),
        (NS_SCOPE, "tokens_per_day", 10_000),
        (KEY_SCOPE, "rpm", 2),  # the key is stricter than its namespace
        tokens=100,
    )
    answers = await admit_n(store, both, 5)
    assert [a.allowed for a in answers] == [True, True, False, False, False]
    assert answers[2].exceeded is not None and answers[2].exceeded.scope == KEY_SCOPE
    # The refusals reserved nothing on the namespace's limits.
    namespace_only = plan(
        (NS_SCOPE, "rpm", 10),
        (NS_SCOPE, "tpm", 10_000),
        (NS_SCOPE, "concurrency", 10),
        (NS_SCOPE, "tokens_per_day", 10_000),
        tokens=100,
    )
    view = await store.peek(namespace_only)
    assert [c.used for c in view.checks] == [2, 200, 2, 200]
    # Nor does a refusal by the namespace reserve on the key.
    tiny = plan((NS_SCOPE, "tokens_per_day", 250), (KEY_SCOPE, "rpm", 100), tokens=100)
    assert not (await store.admit(tiny)).allowed
    view = await store.peek(plan((KEY_SCOPE, "rpm", 100)))
    assert view.checks[0].used == 2  # the two admitted above, not the refused ones


async def test_the_failing_limit_with_the_longest_wait_is_reported(env: Env) -> None:
    env.clock.set(2031, 3, 15, 22, 0, 0, offset=0.25)
    store = env.make()
    limits = plan((NS_SCOPE, "rpm", 1), (NS_SCOPE, "rpd", 1), (KEY_SCOPE, "concurrency", 5))
    assert (await store.admit(limits)).allowed
    refused = await store.admit(limits)
    assert refused.exceeded is not None and refused.exceeded.kind == "rpd"
    assert refused.retry_after_seconds == pytest.approx(7199.75)  # midnight, not the minute


# -- headers ----------------------------------------------------------------------------------


async def test_headers_show_the_tightest_request_and_token_limits(env: Env) -> None:
    env.clock.set(2031, 3, 15, 23, 0, 0, offset=0.25)
    store = env.make()
    limits = plan(
        (NS_SCOPE, "rpm", 100),
        (NS_SCOPE, "rpd", 1000),
        (KEY_SCOPE, "rpm", 10),
        (NS_SCOPE, "tpm", 10_000),
        (KEY_SCOPE, "tokens_per_day", 500),
        (NS_SCOPE, "concurrency", 1),
        tokens=100,
    )
    first = await store.admit(limits)
    assert first.allowed
    assert first.requests is not None and first.tokens is not None
    assert (first.requests.scope, first.requests.kind) == (KEY_SCOPE, "rpm")
    assert (first.tokens.scope, first.tokens.kind) == (KEY_SCOPE, "tokens_per_day")
    assert first.headers() == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "1m0.75s",
        "x-ratelimit-limit-tokens": "500",
        "x-ratelimit-remaining-tokens": "400",
        "x-ratelimit-reset-tokens": "59m59.75s",
    }
    refused = await store.admit(limits)  # the concurrency slot is taken
    assert not refused.allowed
    headers = refused.headers()
    assert headers["x-ratelimit-remaining-requests"] == "9"  # nothing was reserved
    assert headers["x-ratelimit-remaining-tokens"] == "400"
    assert headers["retry-after"] == "1" and headers["retry-after-ms"] == "1000"


async def test_no_header_family_without_its_limits(env: Env) -> None:
    store = env.make()
    answer = await store.admit(plan((NS_SCOPE, "concurrency", 3)))
    assert answer.allowed and answer.requests is None and answer.tokens is None
    assert answer.headers() == {}


def test_durations_are_formatted_like_openai() -> None:
    assert format_duration(0.02) == "20ms"
    assert format_duration(1) == "1s"
    assert format_duration(59.5) == "59.5s"
    assert format_duration(360) == "6m0s"
    assert format_duration(7322.25) == "2h2m2.25s"
    assert format_duration(-3) == "0ms"


# -- settle -----------------------------------------------------------------------------------


async def test_settle_corrects_the_reservation_down_and_up(env: Env) -> None:
    store = env.make()
    limits = (
        (NS_SCOPE, "tpm", 1000),
        (NS_SCOPE, "tokens_per_day", 5000),
        (NS_SCOPE, "concurrency", 5),
    )
    first = await store.admit(plan(*limits, tokens=500))
    assert await store.settle(first, 100, 0)  # used less than estimated
    view = await store.peek(plan(*limits))
    assert [c.used for c in view.checks] == [100, 100, 0]
    second = await store.admit(plan(*limits, tokens=500))
    assert second.allowed
    env.clock.advance(5)
    assert await store.settle(second, 900, 0)  # used more than estimated
    view = await store.peek(plan(*limits))
    assert [c.used for c in view.checks] == [1000, 1000, 0]
    refused = await store.admit(plan(*limits, tokens=1))
    assert not refused.allowed and refused.exceeded is not None
    assert refused.exceeded.kind == "tpm"


async def test_settle_is_idempotent(env: Env) -> None:
    store = env.make()
    limits = (
        (NS_SCOPE, "tpm", 1000),
        (NS_SCOPE, "spend_per_day_usd", 10**6),
        (NS_SCOPE, "concurrency", 2),
    )
    mine = await store.admit(plan(*limits, tokens=500, cost=500))
    other = await store.admit(plan(*limits, tokens=100, cost=100))
    assert await store.settle(mine, 200, 200)
    assert not await store.settle(mine, 200, 200)  # a retried settle changes nothing
    assert not await store.settle(mine, 900, 900)
    view = await store.peek(plan(*limits))
    assert [c.used for c in view.checks] == [300, 300, 1]  # `other` still holds its slot
    assert await store.settle(other, 150, 150)
    assert [c.used for c in (await store.peek(plan(*limits))).checks] == [350, 350, 0]


async def test_settling_a_refused_admission_does_nothing(env: Env) -> None:
    store = env.make()
    one = plan((NS_SCOPE, "concurrency", 1), tokens=10)
    holder = await store.admit(one)
    refused = await store.admit(one)
    assert holder.allowed and not refused.allowed
    assert not await store.settle(refused, 0, 0)
    assert not (await store.admit(one)).allowed  # the holder's slot was not released


async def test_a_concurrency_lease_expires_if_never_settled(env: Env) -> None:
    store = env.make()
    one = plan((NS_SCOPE, "concurrency", 1), (NS_SCOPE, "tokens_per_day", 10_000), tokens=10)
    lost = await store.admit(one)  # its gateway dies: no settle
    assert lost.allowed
    env.clock.advance(599)
    assert not (await store.admit(one)).allowed
    env.clock.advance(2)  # 601 s: the 10-minute lease is over
    taker = await store.admit(one)
    assert taker.allowed
    # The late settle of the lost request corrects its usage but cannot free the new holder.
    assert await store.settle(lost, 3, 0)
    assert not (await store.admit(one)).allowed
    view = await store.peek(plan((NS_SCOPE, "tokens_per_day", 10_000)))
    assert view.checks[0].used == 13


async def test_a_settle_after_its_ttl_only_releases(env: Env) -> None:
    store = env.make()
    limits = plan((NS_SCOPE, "tokens_per_day", 10_000), (NS_SCOPE, "concurrency", 1), tokens=100)
    env.clock.set(2031, 3, 15, 0, 0, 0)
    admission = await store.admit(limits)
    env.clock.advance(3601)  # past the one-hour settle TTL (the lease has expired as well)
    assert not await store.settle(admission, 5000, 0)
    view = await store.peek(plan((NS_SCOPE, "tokens_per_day", 10_000)))
    assert view.checks[0].used == 100


async def test_usage_after_the_period_ended_stays_in_its_period(env: Env) -> None:
    env.clock.set(2031, 3, 15, 23, 59, 59)
    store = env.make()
    day = ((NS_SCOPE, "tokens_per_day", 1000),)
    admission = await store.admit(plan(*day, tokens=100))
    env.clock.set(2031, 3, 16, 0, 0, 5)
    assert await store.settle(admission, 900, 0)  # yesterday's usage: not today's
    assert (await store.peek(plan(*day))).checks[0].used == 0


async def test_plans_without_settled_kinds_need_no_settle(env: Env) -> None:
    store = env.make()
    admission = await store.admit(plan((NS_SCOPE, "rpm", 5), (NS_SCOPE, "rpd", 5)))
    assert admission.allowed and not admission.plan.needs_settle()
    assert not await store.settle(admission, 10, 10)


async def test_a_plan_without_checks_is_allowed(env: Env) -> None:
    store = env.make()
    answer = await store.admit(LimitPlan(NS, ()))
    assert answer.allowed and answer.headers() == {}


# -- day and month rollover -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "period_end"),
    [
        ((2031, 1, 31, 23, 59, 59), (2031, 2, 1, 0, 0, 0), (2031, 2, 1)),
        ((2031, 12, 31, 23, 0, 0), (2032, 1, 1, 0, 0, 0), (2032, 1, 1)),
        ((2032, 2, 29, 12, 0, 0), (2032, 3, 1, 0, 0, 0), (2032, 3, 1)),  # leap day
        ((2031, 2, 28, 12, 0, 0), (2031, 3, 1, 0, 0, 0), (2031, 3, 1)),
    ],
)
async def test_months_roll_over_at_utc_midnight(
    env: Env, before: tuple[int, ...], after: tuple[int, ...], period_end: tuple[int, ...]
) -> None:
    env.clock.set(*before)
    store = env.make()
    monthly = plan((NS_SCOPE, "tokens_per_month", 100), (KEY_SCOPE, "rpd", 1000), tokens=100)
    first = await store.admit(monthly)
    assert first.allowed
    assert first.tokens is not None
    assert first.tokens.reset_seconds == pytest.approx(_epoch(*period_end) - _epoch(*before))
    refused = await store.admit(monthly)
    assert not refused.allowed
    assert refused.retry_after_seconds == pytest.approx(_epoch(*period_end) - _epoch(*before))
    env.clock.set(*after)
    assert (await store.admit(monthly)).allowed


def test_periods_are_utc_days_and_calendar_months() -> None:
    ms = int(_epoch(2031, 12, 31, 23, 59, 59) * 1000)
    day, day_end = period_of("rpd", ms)
    assert day_end == int(_epoch(2032, 1, 1) * 1000) and day == ms // 86_400_000
    month, month_end = period_of("tokens_per_month", ms)
    assert month == 2031 * 12 + 11 and month_end == int(_epoch(2032, 1, 1) * 1000)
    assert period_of("spend_per_month_usd", int(_epoch(2032, 2, 10) * 1000))[1] == int(
        _epoch(2032, 3, 1) * 1000
    )


# -- exactness under concurrency --------------------------------------------------------------

RACE = plan(("ns:race", "rpm", 60), ns="race")


async def test_exactly_60_of_200_concurrent_requests_from_two_stores(env: Env) -> None:
    one, two = env.make(real_time=True), env.make(real_time=True)
    answers = await asyncio.gather(*(store.admit(RACE) for _ in range(100) for store in (one, two)))
    assert allowed(list(answers)) == 60


def test_exactly_60_of_200_from_two_threads_of_one_memory_store() -> None:
    store = MemoryLimitStore()
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        async def main() -> int:
            barrier.wait()
            return allowed(list(await asyncio.gather(*(store.admit(RACE) for _ in range(100)))))

        counts.append(asyncio.run(main()))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 60


_CHILD = r"""
import asyncio, sys, time
from aigw.state.limits import LimitCheck, LimitPlan
from aigw.state.limits_redis import RedisLimitStore

url, prefix, cluster, start = sys.argv[1], sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])

async def main():
    store = RedisLimitStore(url, prefix, cluster=cluster)
    plan = LimitPlan("race", (LimitCheck("ns:race", "rpm", 60),))
    await store.peek(plan)  # connected, script loaded
    await asyncio.sleep(max(0.0, start - time.time()))
    answers = await asyncio.gather(*(store.admit(plan) for _ in range(100)))
    print(sum(a.allowed for a in answers), flush=True)
    await store.close()

asyncio.run(main())
"""


async def test_exactly_60_of_200_from_two_processes(redis_env: Env) -> None:
    env = redis_env  # the in-process store has no such behaviour to test
    assert env.url is not None
    start = time.time() + 3
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            env.url,
            env.prefix,
            "1" if env.cluster else "0",
            str(start),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [await child.communicate() for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err.decode()
    counts = [int(out.decode().strip()) for out, _ in outputs]
    assert sum(counts) == 60, counts


# -- the two implementations agree ------------------------------------------------------------

LIMITS = {
    "rpm": (1, 8),
    "rpd": (3, 30),
    "tpm": (200, 1500),
    "concurrency": (1, 4),
    "tokens_per_day": (500, 4000),
    "tokens_per_month": (1000, 8000),
    "spend_per_day_usd": (1000, 9000),
    "spend_per_month_usd": (2000, 20000),
}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_redis_answers_exactly_like_the_memory_store(redis_env: Env, seed: int) -> None:
    """A random workload (admits, settles, retried settles, lost settles, time passing by
    seconds, minutes, hours and days across a month's end) gets identical answers from this
    backend and from the reference in-process store."""
    env = redis_env  # the in-process store has no such behaviour to test
    import random

    rng = random.Random(seed)
    env.clock.set(2031, 1, 30, 20, 0, 0, offset=0.123)
    subject = env.make()
    reference = MemoryLimitStore(clock=env.clock)
    scopes = [NS_SCOPE, KEY_SCOPE, key_scope(NS, "batch")]
    limits = {(s, k): rng.randint(*bounds) for s in scopes for k, bounds in LIMITS.items()}
    admitted: list[tuple[Admission, Admission]] = []
    for _ in range(400):
        roll = rng.random()
        if roll < 0.6:
            chosen = rng.sample(sorted(limits), rng.randint(1, 6))
            request = plan(
                *((s, k, limits[(s, k)]) for s, k in chosen),
                tokens=rng.choice([0, rng.randint(1, 400)]),
                cost=rng.choice([0, rng.randint(1, 3000)]),
            )
            admission_id = secrets.token_hex(8)
            mine = await subject.admit(request, admission_id=admission_id)
            theirs = await reference.admit(request, admission_id=admission_id)
            assert mine == theirs
            if mine.allowed:
                admitted.append((mine, theirs))
        elif roll < 0.85 and admitted:
            mine, theirs = rng.choice(admitted)
            tokens, cost = rng.randint(0, 600), rng.randint(0, 4000)
            assert await subject.settle(mine, tokens, cost) == await reference.settle(
                theirs, tokens, cost
            )
        else:
            env.clock.advance(
                rng.choice(
                    [rng.uniform(0, 2), rng.uniform(0, 2), rng.uniform(20, 70), 3600, 6 * 3600]
                )
            )


# -- Redis specifics (Redis and the cluster only) ------------------------------------------


def _connection(store: RedisLimitStore, limit_plan: LimitPlan) -> PipelinedRedis | None:
    """The pipelined connection ``limit_plan``'s commands go over (on a cluster: its slot's
    master's), once the store has used it; None through redis-py (TLS)."""
    pipe = store._pipe
    if isinstance(pipe, ClusterPipes):
        assert pipe._slots is not None
        node = pipe._slots[store._packed_plan(limit_plan).slot]
        assert node is not None
        return pipe._pipes[node]
    return pipe


class CommandCounter:
    """Counts the commands a store's client sends (each is one round trip)."""

    def __init__(self, store: RedisLimitStore, limit_plan: LimitPlan) -> None:
        self.names: list[str] = []
        pipe = _connection(store, limit_plan)
        if pipe is not None:  # the pipelined client
            original_send = pipe._send

            def sent(command: bytes, **options: Any) -> Any:
                self.names.append(command.split(b"\r\n")[2].decode().upper())
                return original_send(command, **options)

            pipe._send = sent  # type: ignore[method-assign]
            return
        client = store._redis
        assert client is not None
        original = client.execute_command

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.names.append(str(args[0]).upper())
            return await original(*args, **kwargs)

        client.execute_command = counted


async def test_one_round_trip_per_admit_and_per_settle(redis_env: Env) -> None:
    env = redis_env  # the in-process store has no such behaviour to test
    store = env.make()
    limits = plan(
        (NS_SCOPE, "rpm", 100),
        (NS_SCOPE, "tpm", 100_000),
        (NS_SCOPE, "concurrency", 100),
        (NS_SCOPE, "tokens_per_month", 10**6),
        (KEY_SCOPE, "rpd", 100),
        (KEY_SCOPE, "spend_per_day_usd", 10**6),
        tokens=10,
        cost=10,
    )
    await store.peek(limits)  # connects and loads the scripts
    await store.settle(await store.admit(limits), 1, 1)
    counter = CommandCounter(store, limits)
    admissions = [await store.admit(limits) for _ in range(10)]
    assert counter.names == ["EVALSHA"] * 10
    for admission in admissions:
        await store.settle(admission, 5, 5)
    assert counter.names == ["EVALSHA"] * 20


async def test_background_settles_land_and_are_batched_into_one_write(redis_env: Env) -> None:
    env = redis_env
    store = env.make()
    limits = plan((NS_SCOPE, "tpm", 100_000), (NS_SCOPE, "concurrency", 100), tokens=10)
    admissions = [await store.admit(limits) for _ in range(20)]
    writes: list[bytes] = []
    pipe = _connection(store, limits)
    if pipe is not None:
        assert pipe._protocol is not None and pipe._protocol.transport is not None
        transport = pipe._protocol.transport
        original_write = transport.write
        transport.write = lambda data: (writes.append(data), original_write(data))[1]
    outcomes: list[bool] = []
    for admission in admissions:
        store.settle_soon(admission, 4, 0, done=lambda f: outcomes.append(f.result()))
    assert writes == []  # lazy: waiting for company or for a short delay
    await store.close()  # drains: nothing on its way is lost
    if pipe is not None:
        assert len(writes) == 1 and writes[0].count(b"EVALSHA") == 20
    assert outcomes == [True] * 20
    after = await env.make().peek(limits)
    assert after.checks[0].used == 20 * 4 and after.checks[1].used == 0


async def test_background_settles_apply_once_and_report_each_outcome(env: Env) -> None:
    """Settles sent together apply once each: the same admission settled twice counts once,
    and each caller hears its own settle's outcome."""
    store = env.make()
    limits = plan((NS_SCOPE, "tpm", 100_000), (NS_SCOPE, "concurrency", 100), tokens=10)
    first, second = await store.admit(limits), await store.admit(limits)
    outcomes: list[tuple[str, bool]] = []

    def report(name: str) -> Callable[[asyncio.Future[Any]], None]:
        return lambda future: outcomes.append((name, future.result()))

    store.settle_soon(first, 4, 0, done=report("first"))
    store.settle_soon(first, 4, 0, done=report("first again"))
    store.settle_soon(second, 2, 0, done=report("second"))
    await store.close()
    assert outcomes == [("first", True), ("first again", False), ("second", True)]
    after = await env.make().peek(limits)
    assert after.checks[0].used == 4 + 2 and after.checks[1].used == 0


async def test_a_settle_goes_out_before_the_next_admit(redis_env: Env) -> None:
    """One pipelined connection per worker (per master on a cluster): a worker's settle is ahead
    of its next admit on the connection, so a caller that waits for its answer before asking
    again never finds its own slot still taken."""
    store = redis_env.make()
    one_at_a_time = plan((NS_SCOPE, "concurrency", 1))
    for _ in range(5):
        admission = await store.admit(one_at_a_time)
        assert admission.allowed
        store.settle_soon(admission, 0, 0)


async def test_every_key_expires(redis_env: Env) -> None:
    env = redis_env  # the in-process store has no such behaviour to test
    store = env.make()
    checks = [(scope, kind, 10**6) for scope in (NS_SCOPE, KEY_SCOPE) for kind in KINDS]
    assert (await store.admit(plan(*checks, tokens=5, cost=5))).allowed
    keys = [limit_key(env.prefix, NS, s, k) for s, k, _ in checks] + [pending_key(env.prefix, NS)]
    client = env.client()
    try:
        ttls = {key: await client.pttl(key) for key in keys}
    finally:
        await client.aclose()
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    assert ttls[limit_key(env.prefix, NS, NS_SCOPE, "rpm")] <= 62_000
    assert ttls[limit_key(env.prefix, NS, NS_SCOPE, "concurrency")] <= 601_000
    # The clock is 2031-03-15 12:00:00.25: the day ends in 12 h, the month in 16.5 days.
    assert ttls[limit_key(env.prefix, NS, NS_SCOPE, "rpd")] == pytest.approx(43_200_750, abs=2000)
    month = ttls[limit_key(env.prefix, NS, KEY_SCOPE, "tokens_per_month")]
    assert month == pytest.approx(1_425_600_750, abs=2000)


def test_keys_of_a_namespace_share_one_cluster_slot() -> None:
    from redis.crc import key_slot

    keys = [limit_key("aigw:lim", "team", s, "rpm") for s in (NS_SCOPE, KEY_SCOPE)]
    keys.append(pending_key("aigw:lim", "team"))
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert keys[1] == "aigw:lim:{ns:team}:key:team/ci:rpm"


async def test_the_memory_store_forgets_what_can_no_longer_count(clock: Clock) -> None:
    store = MemoryLimitStore(clock=clock)
    for i in range(50):
        name = f"tenant-{i}"
        every = [(namespace_scope(name), kind, 10**6) for kind in LIMITS]
        assert (await store.admit(plan(*every, tokens=1, cost=1, ns=name))).allowed
    assert len(store._sliding) == 100 and len(store._leases) == 50
    clock.advance(40 * 86_400)  # every window, day, month, lease and settle TTL is over
    await store.admit(plan((NS_SCOPE, "rpm", 5)))
    assert len(store._sliding) == 1
    assert not store._fixed and not store._leases and not store._pending


def test_the_store_for_a_deployment() -> None:
    assert isinstance(limit_store_for(None), MemoryLimitStore)
    store = limit_store_for(REDIS_URL, fail_mode="closed")
    assert isinstance(store, BreakerLimitStore) and store.fail_mode == "closed"
    assert isinstance(store.primary, RedisLimitStore) and store.timeout == 0.25
    assert limit_store_for(REDIS_URL, timeout=0.1).timeout == 0.1  # type: ignore[attr-defined]


# -- the plan ---------------------------------------------------------------------------------


def test_plans_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown limit kind"):
        LimitCheck(NS_SCOPE, "rph", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="integer >= 0"):
        LimitCheck(NS_SCOPE, "rpm", -1)
    with pytest.raises(ValueError, match="twice"):
        plan((NS_SCOPE, "rpm", 1), (NS_SCOPE, "rpm", 2))
    with pytest.raises(ValueError, match="namespace"):
        LimitPlan("a{b}", ())
    with pytest.raises(ValueError, match="estimated_tokens"):
        LimitPlan(NS, (), estimated_tokens=-1)


def test_configured_limits_become_kinds() -> None:
    from aigw.config.schema import Limits

    configured = Limits(
        requests_per_minute=60,
        concurrent_requests=4,
        tokens_per_minute=90_000,
        spend_per_month_usd=12.5,
    )
    assert limit_kinds(configured) == {
        "rpm": 60,
        "tpm": 90_000,
        "concurrency": 4,
        "spend_per_month_usd": 12_500_000,
    }
    assert limit_kinds(Limits()) == {}


def test_a_plan_for_a_request_has_both_scopes() -> None:
    built = LimitPlan.for_request(
        "team",
        "ci",
        namespace_limits={"rpm": 600, "tpm": None},
        key_limits={"rpm": 60, "concurrency": 4},
        estimated_tokens=1200,
        estimated_cost_micro=3000,
    )
    assert built.checks == (
        LimitCheck("ns:team", "rpm", 600),
        LimitCheck("key:team/ci", "rpm", 60),
        LimitCheck("key:team/ci", "concurrency", 4),
    )
    assert built.needs_settle()


# -- the circuit breaker ----------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _breaker_store(server: RedisServer, **options: Any) -> BreakerLimitStore:
    defaults: dict[str, Any] = {"cooldown": 0.3, "failure_threshold": 1}
    return BreakerLimitStore(RedisLimitStore(server.url, "aigw:test"), **{**defaults, **options})


FIVE_RPM = plan((NS_SCOPE, "rpm", 5))


async def _until_closed(store: BreakerLimitStore, limit_plan: LimitPlan) -> Admission:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer = await store.admit(limit_plan)
        if store.state == "closed" and not answer.local and not answer.unavailable:
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"breaker still {store.state}")


async def test_the_breaker_fails_open_to_local_limits_and_recovers(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = _breaker_store(private_redis)
    try:
        shared = await store.admit(FIVE_RPM)
        assert shared.allowed and not shared.local and store.state == "closed"
        private_redis.stop()
        answers = await admit_n(store, FIVE_RPM, 7)
        assert all(a.local for a in answers)
        assert [a.allowed for a in answers] == [True] * 5 + [False] * 2  # limits still hold locally
        assert store.state == "open"
        assert store.fail_open_admissions == 7
        opened = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(opened) == 1  # logged once, not per request
        started = time.monotonic()
        assert (await store.admit(FIVE_RPM)).local
        assert time.monotonic() - started < 0.02  # open: fails fast, no connection attempt
        assert await store.settle(answers[0], 0, 0) is False  # local, nothing to settle here
        private_redis.start()
        back = await _until_closed(store, FIVE_RPM)
        assert back.allowed
        assert any("back after" in r.getMessage() for r in caplog.records)
    finally:
        await store.close()


async def test_the_breaker_fails_closed_when_asked(private_redis: RedisServer) -> None:
    store = _breaker_store(private_redis, fail_mode="closed")
    try:
        assert (await store.admit(FIVE_RPM)).allowed
        private_redis.stop()
        refused = await store.admit(FIVE_RPM)
        assert not refused.allowed and refused.unavailable and refused.exceeded is None
        assert refused.retry_after_seconds is not None and refused.retry_after_seconds >= 1
        assert store.fail_closed_refusals == 1 and store.fail_open_admissions == 0
        assert not (await store.admit(FIVE_RPM)).allowed
        private_redis.start()
        assert (await _until_closed(store, FIVE_RPM)).allowed
    finally:
        await store.close()


async def test_the_breaker_times_out_a_hung_redis(private_redis: RedisServer) -> None:
    store = _breaker_store(private_redis, timeout=0.05)
    try:
        assert not (await store.admit(FIVE_RPM)).local
        private_redis.pause()  # accepts nothing, answers nothing
        started = time.monotonic()
        hung = await store.admit(FIVE_RPM)
        assert time.monotonic() - started < 0.5
        assert hung.allowed and hung.local and store.state == "open"
        private_redis.resume()
        assert not (await _until_closed(store, FIVE_RPM)).local
    finally:
        private_redis.resume()
        await store.close()


async def test_settles_that_fail_are_retried_when_redis_is_back(private_redis: RedisServer) -> None:
    store = _breaker_store(private_redis)
    one = plan((NS_SCOPE, "concurrency", 1), (NS_SCOPE, "tpm", 1000), tokens=100)
    try:
        holder = await store.admit(one)
        assert holder.allowed and not holder.local
        private_redis.pause()  # Redis keeps its data; the settle cannot reach it
        store.settle_timeout = 0.05
        assert not await store.settle(holder, 10, 0)
        assert store.queued_settles == 1
        private_redis.resume()
        probe = await _until_closed(store, one)  # refused: the slot is still held in Redis
        assert not probe.allowed and probe.exceeded is not None
        for _ in range(100):
            if store.queued_settles == 0:
                break
            await asyncio.sleep(0.01)
        assert store.queued_settles == 0
        assert (await store.admit(one)).allowed  # the slot was released, 10 tokens counted
        assert (await store.peek(plan((NS_SCOPE, "tpm", 1000)))).checks[0].used == 110
    finally:
        private_redis.resume()
        await store.close()


def test_the_breaker_state_machine() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, cooldown=5, clock=lambda: now[0])
    assert breaker.allow() and not breaker.failure()  # one failure: still closed
    assert breaker.state == "closed"
    assert breaker.success() is False and breaker.state == "closed"  # a success resets the count
    assert not breaker.failure() and breaker.failure()  # two in a row: open
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.retry_after() == 5
    now[0] = 5.0
    assert breaker.allow() and breaker.state == "half_open"  # the probe
    assert not breaker.allow()  # only one probe at a time
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow()
    assert breaker.success() and breaker.state == "closed"
    assert breaker.opened_count == 1


# -- what the server sees (MONITOR on a private server) ----------------------------------------

_MONITOR_LINE = re.compile(r'^\+[\d.]+ \[\d+ (?P<client>[^\]]+)\] "(?P<command>[^"]+)"')


async def test_the_server_sees_one_command_per_admit_and_per_settle(
    private_redis: RedisServer,
) -> None:
    """MONITOR shows every command with its origin: a client's address, or ``lua`` for those
    a script runs. The store's client must send exactly one command per admit and settle."""
    store = RedisLimitStore(private_redis.url, "aigw:test")
    limits = plan(
        (NS_SCOPE, "rpm", 100),
        (NS_SCOPE, "concurrency", 10),
        (KEY_SCOPE, "tpm", 100_000),
        (KEY_SCOPE, "spend_per_month_usd", 10**9),
        tokens=100,
        cost=100,
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", private_redis.port)
    try:
        await store.settle(await store.admit(limits), 1, 1)  # connect, load the scripts
        writer.write(b"MONITOR\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"+OK")
        for _ in range(10):
            await store.settle(await store.admit(limits), 50, 50)
        _, marker = await asyncio.open_connection("127.0.0.1", private_redis.port)
        marker.write(b"ECHO end-of-test\r\n")
        await marker.drain()
        sent, inside = [], 0
        while True:
            line = (await asyncio.wait_for(reader.readline(), 5)).decode()
            match = _MONITOR_LINE.match(line)
            assert match, line
            command = match["command"].upper()
            if command == "ECHO":
                break
            if match["client"] == "lua":
                inside += 1
            else:
                sent.append(command)
        marker.close()
    finally:
        writer.close()
        await store.close()
    assert sent == ["EVALSHA"] * 20
    assert inside > 20  # the work happens inside the scripts


SUITE = sorted(
    name
    for name, value in dict(globals()).items()
    if name.startswith("test_") and {"env", "redis_env"} & set(inspect.signature(value).parameters)
)
"""The backend-parametrised tests (the cluster module runs them again)."""
