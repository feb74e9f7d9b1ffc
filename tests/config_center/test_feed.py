"""VersionFeed and the gateways' long-poll endpoint, on SQLite, MariaDB and PostgreSQL.

The feed hears of new versions from this process's commits (instantly), from Redis (commits of
other config-center instances) and from a database poll (everything else); these tests take each
path alone, and make Redis and the database fail to show the feed keeps answering.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from aigw.config.keys import hash_key
from aigw.config.secrets import ENCRYPTED_PREFIX, SecretBox
from aigw.config_center.app import create_app
from aigw.config_center.db.engine import make_engine, migrate, sessions
from aigw.config_center.feed import CHANNEL, VersionFeed
from aigw.config_center.settings import CenterSettings
from aigw.config_center.store import ConfigStore
from tests.helpers import free_port

MASTER_KEY = "feed-test-master-key"
GATEWAY_TOKEN = "feed-test-gateway-token"
REDIS_URL = "redis://127.0.0.1:6379/0"
SECRET = "sk-upstream-feed-secret"


def document(*models: str) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "up", "base_url": "http://127.0.0.1:9/v1", "api_key": SECRET},
        ],
        "models": [{"name": m, "targets": [{"provider": "up", "model": m}]} for m in models],
        "namespaces": [{"name": "t", "keys": [{"name": "k", "key_hash": hash_key("sk-feed")}]}],
    }


@pytest.fixture
async def open_store(database_url: str) -> AsyncIterator[Callable[[], ConfigStore]]:
    """Makes stores on the module's database: each is what one config-center process holds."""
    engines = []

    def make() -> ConfigStore:
        engine = make_engine(database_url)
        engines.append(engine)
        return ConfigStore(sessions(engine), SecretBox(MASTER_KEY))

    first = make_engine(database_url)
    await migrate(first)
    await first.dispose()
    try:
        yield make
    finally:
        for engine in engines:
            await engine.dispose()


async def commit(store: ConfigStore, *models: str) -> int:
    return (await store.replace(document(*models), actor="test", action="test")).version


async def test_waiters_wake_on_a_commit_of_this_process(
    open_store: Callable[[], ConfigStore],
) -> None:
    store = open_store()
    feed = VersionFeed(store, poll_interval=60)  # the poll cannot be what wakes them
    await feed.start()
    try:
        head = feed.version
        waiters = [asyncio.create_task(feed.wait_newer(head, 10)) for _ in range(20)]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waiters)
        started = time.monotonic()
        version = await commit(store, "a")
        results = await asyncio.gather(*waiters)
        assert time.monotonic() - started < 0.5
        assert results == [version] * 20
        assert version == head + 1
    finally:
        await feed.stop()


async def test_a_wait_without_change_times_out_with_the_same_version(
    open_store: Callable[[], ConfigStore],
) -> None:
    feed = VersionFeed(open_store(), poll_interval=0.05)
    await feed.start()
    try:
        head = feed.version
        started = time.monotonic()
        assert await feed.wait_newer(head, 0.3) == head
        assert 0.28 <= time.monotonic() - started < 1.0
        # Already newer: no wait at all.
        assert await feed.wait_newer(head - 1, 10) == head
    finally:
        await feed.stop()


async def test_the_database_poll_hears_another_instance(
    open_store: Callable[[], ConfigStore],
) -> None:
    feed = VersionFeed(open_store(), poll_interval=0.1)  # no Redis: only the poll can tell
    await feed.start()
    try:
        head = feed.version
        waiter = asyncio.create_task(feed.wait_newer(head, 5))
        version = await commit(open_store(), "b")  # another process's store, same database
        started = time.monotonic()
        assert await waiter == version
        assert time.monotonic() - started < 1.0
    finally:
        await feed.stop()


@pytest.mark.parametrize("redis_kind", ["single", "cluster"])
async def test_redis_carries_a_commit_to_another_instance_at_once(
    open_store: Callable[[], ConfigStore], redis_kind: str, request: pytest.FixtureRequest
) -> None:
    cluster = redis_kind == "cluster"
    url = request.getfixturevalue("cluster_url") if cluster else REDIS_URL
    # The poll is too slow here: only Redis can deliver within the bound.
    writer = VersionFeed(open_store(), url, redis_cluster=cluster, poll_interval=60)
    reader = VersionFeed(open_store(), url, redis_cluster=cluster, poll_interval=60)
    await writer.start()
    await reader.start()
    try:
        await _subscribed(reader)
        await _subscribed(writer)
        head = reader.version
        waiter = asyncio.create_task(reader.wait_newer(head, 10))
        started = time.monotonic()
        version = await commit(writer.store, "c")
        assert await waiter == version
        assert time.monotonic() - started < 1.0
    finally:
        await writer.stop()
        await reader.stop()


async def test_a_foreign_or_malformed_message_announces_nothing(
    open_store: Callable[[], ConfigStore],
) -> None:
    feed = VersionFeed(open_store(), REDIS_URL, poll_interval=60)
    await feed.start()
    publisher = redis.from_url(REDIS_URL)
    try:
        await _subscribed(feed)
        head = feed.version
        await publisher.publish(CHANNEL, str(head + 1000))  # e.g. another deployment's Redis use
        await publisher.publish(CHANNEL, "not a number")
        # The message only makes the feed read the database, which has no such version.
        assert await feed.wait_newer(head, 0.5) == head
    finally:
        await publisher.aclose()
        await feed.stop()


async def test_an_unreachable_redis_changes_nothing_for_waiters(
    open_store: Callable[[], ConfigStore],
) -> None:
    store = open_store()
    feed = VersionFeed(store, f"redis://127.0.0.1:{free_port()}/0", poll_interval=60)
    await feed.start()
    try:
        head = feed.version
        waiter = asyncio.create_task(feed.wait_newer(head, 5))
        version = await commit(store, "d")  # publishing fails (logged); this process still knows
        assert await waiter == version
    finally:
        await feed.stop()


class FlakyStore:
    """A store whose database is down until ``head`` is set."""

    def __init__(self) -> None:
        self.head: int | None = None
        self.calls = 0

    def on_commit(self, listener: Callable[[int], None]) -> None:
        pass

    async def head_version(self) -> int:
        self.calls += 1
        if self.head is None:
            raise ConnectionError("database is down")
        return self.head


async def test_the_feed_survives_a_database_outage() -> None:
    store = FlakyStore()
    feed = VersionFeed(store, poll_interval=0.05, max_backoff=0.2)  # type: ignore[arg-type]
    await feed.start()  # the head cannot be read: start anyway, keep trying
    try:
        assert feed.version == 0
        assert await feed.wait_newer(0, 0.3) == 0  # waiters are answered meanwhile
        calls = store.calls
        await asyncio.sleep(0.5)
        assert 1 < store.calls - calls < 10  # retried, with backoff (not a hot loop)
        waiter = asyncio.create_task(feed.wait_newer(0, 5))
        store.head = 7  # the database is back
        assert await waiter == 7
    finally:
        await feed.stop()


async def _subscribed(feed: VersionFeed, subscribed: bool = True) -> None:
    deadline = time.monotonic() + 5
    while feed.redis_subscribed != subscribed:
        assert time.monotonic() < deadline, f"redis_subscribed never became {subscribed}"
        await asyncio.sleep(0.01)


class RedisProxy:
    """A TCP proxy in front of the test Redis, to cut and restore the connection at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_the_redis_path_recovers_after_an_outage_and_catches_up(
    open_store: Callable[[], ConfigStore],
) -> None:
    proxy = RedisProxy()
    await proxy.start()
    writer = VersionFeed(open_store(), REDIS_URL, poll_interval=60)
    reader = VersionFeed(open_store(), proxy.url, poll_interval=60, max_backoff=0.2)
    await writer.start()
    await reader.start()
    try:
        await _subscribed(writer)
        await _subscribed(reader)
        head = reader.version
        waiter = asyncio.create_task(reader.wait_newer(head, 5))
        first = await commit(writer.store, "r1")
        assert await waiter == first  # through Redis (the poll is an hour away)

        await proxy.cut()
        await _subscribed(reader, False)
        second = await commit(writer.store, "r1", "r2")  # published while the reader is cut off
        assert await reader.wait_newer(first, 0.5) == first

        await proxy.start()
        started = time.monotonic()
        assert await reader.wait_newer(first, 5) == second  # resubscribed, then read the head
        assert time.monotonic() - started < 2
    finally:
        await writer.stop()
        await reader.stop()
        if proxy._server is not None:
            await proxy.cut()


# -- the endpoint ------------------------------------------------------------------------------


@pytest.fixture
async def center(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = CenterSettings(
        database_url=database_url,
        master_key=MASTER_KEY,
        data_dir=tmp_path,
        gateway_token=GATEWAY_TOKEN,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://cc",
            headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"},
            timeout=40,
        ) as client:
            yield app, client


async def test_the_feed_needs_the_gateway_token(center: tuple[Any, httpx.AsyncClient]) -> None:
    _, client = center
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        for path in ("/internal/v1/config", "/internal/v1/config/version"):
            response = await client.get(path, headers=headers)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["type"] == "unauthenticated"


async def test_the_feed_answers_at_once_waits_and_times_out(
    center: tuple[Any, httpx.AsyncClient],
) -> None:
    app, client = center
    version = await commit(app.state.store, "e1")

    response = await client.get("/internal/v1/config", params={"after": version - 1})
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == version
    assert [m["name"] for m in body["document"]["models"]] == ["e1"]
    # Credentials stay encrypted: only a gateway with the master key reads them.
    assert body["document"]["providers"][0]["api_key"].startswith(ENCRYPTED_PREFIX)
    assert SECRET not in response.text

    started = time.monotonic()
    response = await client.get("/internal/v1/config", params={"after": version, "wait": 0.3})
    assert response.status_code == 204
    assert 0.28 <= time.monotonic() - started < 2

    response = await client.get("/internal/v1/config/version")
    assert response.json() == {"version": version}

    response = await client.get("/internal/v1/config", params={"wait": 31})
    assert response.status_code == 422


async def test_a_long_poll_is_answered_by_the_next_commit(
    center: tuple[Any, httpx.AsyncClient],
) -> None:
    app, client = center
    head = await commit(app.state.store, "f1")
    polls = [
        asyncio.create_task(client.get("/internal/v1/config", params={"after": head, "wait": 20}))
        for _ in range(5)
    ]
    await asyncio.sleep(0.1)
    assert not any(p.done() for p in polls)
    started = time.monotonic()
    version = await commit(app.state.store, "f1", "f2")
    responses = await asyncio.gather(*polls)
    # Answered by the commit, not by the 20 s wait running out (the margin is for slow CI).
    assert time.monotonic() - started < 10
    for response in responses:
        assert response.status_code == 200
        assert response.json()["version"] == version
        assert [m["name"] for m in response.json()["document"]["models"]] == ["f1", "f2"]


async def test_a_gateway_ahead_of_the_database_gets_the_head(
    center: tuple[Any, httpx.AsyncClient],
) -> None:
    app, client = center
    head = await commit(app.state.store, "g1")
    # The gateway followed a database that was since replaced by an older backup.
    response = await client.get("/internal/v1/config", params={"after": head + 50, "wait": 5})
    assert response.status_code == 200
    assert response.json()["version"] == head
