"""The newest configuration version, and the long-polls of gateways waiting for a newer one.

A :class:`VersionFeed` per config-center process knows the newest version and wakes every waiter
when it changes. It hears of new versions from three sources, fastest first:

- ``ConfigStore.on_commit``: a change committed by this process (instant);
- Redis pub/sub on :data:`CHANNEL` (when ``redis_url`` is set): each commit is published there,
  so other config-center instances on the same database hear of it within milliseconds. A message
  is only a hint to read the head version from the database now: the database stays the one
  truth, so a stray or foreign message can never make the feed announce a version that is not
  there;
- a poll of ``store.head_version()`` every ``poll_interval`` seconds: the fallback that catches
  whatever the other two miss (no Redis, a lost message, a writer that does not publish).

Redis and the database may go away at any time: each loop logs once, retries with a capped
backoff, and meanwhile waiters keep being answered with what the feed knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson

from aigw.config_center.store import ConfigStore
from aigw.state.redis_client import connect

log = logging.getLogger("aigw.config_center.feed")

CHANNEL = "aigw:config:version"
POLL_INTERVAL = 1.0
MAX_BACKOFF = 5.0


class VersionFeed:
    def __init__(
        self,
        store: ConfigStore,
        redis_url: str | None = None,
        *,
        redis_cluster: bool = False,
        poll_interval: float = POLL_INTERVAL,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.store = store
        self.redis_url = redis_url
        self.redis_cluster = redis_cluster
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.version = 0
        """The newest version this process knows of (never goes down)."""
        self.redis_subscribed = False
        """Whether the Redis subscription is up now (False without Redis)."""
        self._changed = asyncio.Event()
        self._check_now = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._redis: Any = None  # redis.asyncio.Redis or RedisCluster, for publishing
        self._head: tuple[int, bytes] | None = None  # the newest version's response body
        self._head_lock = asyncio.Lock()
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self.advance(await self.store.head_version())
        except Exception as exc:  # the poll loop keeps trying
            log.warning("config feed: cannot read the head version yet (%s); retrying", exc)
        self.store.on_commit(self._committed)
        self._spawn(self._poll_loop())
        if self.redis_url:
            # The health check PINGs an idle subscription, so a dead connection raises instead
            # of staying silent. On a cluster, classic PUBLISH reaches subscribers on every node.
            self._redis = connect(
                self.redis_url,
                cluster=self.redis_cluster,
                socket_connect_timeout=2,
                socket_timeout=5,
                health_check_interval=5,
            )
            self._spawn(self._subscribe_loop())

    def drain(self) -> None:
        """The process is stopping: release every waiter now and keep no one waiting after."""
        self._stopped = True
        self._wake()

    async def stop(self) -> None:
        """Stop listening and release every waiter."""
        self.drain()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None

    # -- what waiters use ------------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        return self._stopped

    def advance(self, version: int) -> None:
        """Record ``version`` if it is newer than what is known, and wake the waiters."""
        if version > self.version:
            self.version = version
            self._wake()

    async def wait_newer(self, after: int, seconds: float) -> int:
        """The newest known version once it is above ``after``, or after ``seconds``."""
        deadline = time.monotonic() + seconds
        while self.version <= after and not self._stopped:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return self.version

    async def head_body(self) -> tuple[int, bytes]:
        """The head version and its JSON body ``{"version", "document"}``, read at most once.

        Concurrent long-polls woken by one change share a single database read; the document is
        as stored (provider credentials encrypted).
        """
        cached = self._head
        if cached is not None and cached[0] >= self.version:
            return cached
        async with self._head_lock:
            cached = self._head
            if cached is not None and cached[0] >= self.version:
                return cached
            head = await self.store.head()
            body = orjson.dumps({"version": head.version, "document": head.document})
            self._head = (head.version, body)
            self.advance(head.version)
            return self._head

    # -- sources ---------------------------------------------------------------------------------

    def _committed(self, version: int) -> None:
        self.advance(version)
        if self._redis is not None and not self._stopped:
            self._spawn(self._publish(version))

    async def _publish(self, version: int) -> None:
        try:
            await self._redis.publish(CHANNEL, str(version))
        except Exception as exc:  # the others' DB poll still sees the version within a second
            log.warning("config feed: cannot publish version %s to Redis: %s", version, exc)

    async def _poll_loop(self) -> None:
        failures = 0
        while True:
            try:
                self.advance(await self.store.head_version())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("config feed: database poll failed (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    delay = _backoff(failures, self.poll_interval, self.max_backoff)
                    await asyncio.wait_for(self._check_now.wait(), delay)
                self._check_now.clear()
                continue
            if failures:
                log.info("config feed: database reachable again")
                failures = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_now.wait(), self.poll_interval)
            self._check_now.clear()

    async def _subscribe_loop(self) -> None:
        failures = 0
        while True:
            pubsub = None
            try:
                if self.redis_cluster:
                    await self._redis.initialize()  # the pubsub picks its node from the slot map
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(CHANNEL)
                self.redis_subscribed = True
                if failures:
                    log.info("config feed: Redis reachable again")
                    self._check_now.set()  # a message may have been missed meanwhile
                failures = 0
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._heard(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.redis_subscribed = False
                failures += 1
                if failures == 1:
                    log.warning("config feed: Redis subscription failed (%s); retrying", exc)
                await asyncio.sleep(_backoff(failures, 0.2, self.max_backoff))
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    def _heard(self, data: Any) -> None:
        try:
            version = int(data)
        except (TypeError, ValueError):
            log.warning("config feed: ignoring a malformed message on %s: %r", CHANNEL, data)
            return
        if version > self.version:
            self._check_now.set()  # the poll loop reads the head version at once

    # -- helpers ---------------------------------------------------------------------------------

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _backoff(failures: int, base: float, cap: float) -> float:
    return min(cap, base * 2 ** (failures - 1))
