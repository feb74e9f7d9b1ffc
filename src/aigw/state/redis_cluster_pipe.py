"""The limits' pipelined client for a Redis Cluster: one :class:`PipelinedRedis` per master.

A limit plan's keys share one hash tag (``{ns:<namespace>}``), so each admit and settle goes to
one hash slot, and so to one master. This router keeps the cluster's slot map (from
``CLUSTER SLOTS``), sends each command over the pipelined connection of its slot's master, and
follows the cluster when it changes:

- ``MOVED slot host:port`` means the command did not run: the slot is pointed at its new owner,
  the command is sent there, and the whole map is reloaded in the background;
- a connection that fails makes the next command reload the map first (a replica may have been
  promoted); the failed command is not retried, since it may have run (the same rule as
  :class:`PipelinedRedis`);
- ``ASK`` (a slot half-way through a migration) and ``TRYAGAIN``/``CLUSTERDOWN`` are answered
  as errors: the limits' breaker decides (fail open or closed) for those few calls.

The map is loaded from any node this router knows, the configured seed first. Without it,
redis-py's cluster client took ~1 ms of event-loop time per call and, with hundreds of requests
in flight, missed the breaker's deadline (limits then failed open).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import quote

from redis.connection import parse_url
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from aigw.state.redis_pipe import DEFAULT_LAZY_DELAY, Callback, PipelinedRedis, Script

SLOTS = 16384
# A command follows at most this many MOVED answers (a map reload fixes the rest).
MAX_REDIRECTS = 3

Node = tuple[str, int]


def slot_of(key: str | bytes) -> int:
    """The cluster hash slot of ``key`` (its ``{hash tag}`` when it has one)."""
    return int(key_slot(key.encode() if isinstance(key, str) else key))


class ClusterPipes:
    """Pipelined connections to every master of a Redis Cluster, commands routed by slot."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 1.0,
        lazy_delay: float = DEFAULT_LAZY_DELAY,
    ) -> None:
        options = parse_url(url)
        if "path" in options:
            raise ValueError("a Redis Cluster is reached over TCP, not a Unix socket")
        if "connection_class" in options:
            raise ValueError("ClusterPipes speaks plain TCP, not TLS")
        if options.get("db", 0):
            raise ValueError("a Redis Cluster has only database 0")
        username, password = options.get("username"), options.get("password")
        self._userinfo = ""
        if password is not None:
            self._userinfo = f"{quote(username or '', safe='')}:{quote(password, safe='')}@"
        self._seed: Node = (options.get("host", "127.0.0.1"), int(options.get("port", 6379)))
        self.timeout = timeout
        self.lazy_delay = lazy_delay
        self._slots: list[Node | None] | None = None
        self._pipes: dict[Node, PipelinedRedis] = {}
        self._loading: asyncio.Future[None] | None = None
        self._stale = False
        self.map_loads = 0

    # -- calls --------------------------------------------------------------------------------

    async def evalsha(
        self, script: Script, command: bytes, deadline: float | None = None, *, slot: int
    ) -> Any:
        """:meth:`PipelinedRedis.evalsha` on the master of ``slot``, following ``MOVED``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + (deadline or self.timeout)
        for _ in range(MAX_REDIRECTS):
            node = await self._node_of(slot, max(end - loop.time(), 0.001))
            try:
                return await self._pipe(node).evalsha(
                    script, command, max(end - loop.time(), 0.001)
                )
            except ResponseError as error:
                if not self._redirected(slot, error):
                    raise
            except RedisConnectionError:
                self._stale = True
                raise
        raise RedisConnectionError(f"slot {slot} moved more than {MAX_REDIRECTS} times")

    def evalsha_soon(self, script: Script, command: bytes, done: Callback, *, slot: int) -> None:
        """:meth:`PipelinedRedis.evalsha_soon` on the master of ``slot``; a ``MOVED`` answer
        sends it again, eagerly, to the new owner."""
        node = None if self._slots is None or self._stale else self._slots[slot]
        if node is None:
            task = asyncio.get_running_loop().create_task(self.evalsha(script, command, slot=slot))
            task.add_done_callback(done)
            return

        def landed(future: asyncio.Future[Any]) -> None:
            error = None if future.cancelled() else future.exception()
            if isinstance(error, ResponseError) and self._redirected(slot, error):
                again = asyncio.ensure_future(self.evalsha(script, command, slot=slot))
                again.add_done_callback(done)
                return
            if isinstance(error, RedisConnectionError):
                self._stale = True
            done(future)

        self._pipe(node).evalsha_soon(script, command, landed)

    async def drain(self) -> None:
        """Send whatever is queued on every connection and wait for the answers."""
        await asyncio.gather(*(pipe.drain() for pipe in list(self._pipes.values())))

    async def close(self) -> None:
        await asyncio.gather(*(pipe.close() for pipe in list(self._pipes.values())))

    # -- the slot map --------------------------------------------------------------------------

    def _pipe(self, node: Node) -> PipelinedRedis:
        pipe = self._pipes.get(node)
        if pipe is None:
            host, port = node
            url = f"redis://{self._userinfo}{host}:{port}/0"
            pipe = self._pipes[node] = PipelinedRedis(
                url, timeout=self.timeout, lazy_delay=self.lazy_delay
            )
        return pipe

    async def _node_of(self, slot: int, deadline: float) -> Node:
        if self._slots is None or self._stale:
            await self._load_map(deadline)
        assert self._slots is not None
        node = self._slots[slot]
        if node is None:
            raise RedisConnectionError(f"no master serves slot {slot} (CLUSTERDOWN?)")
        return node

    def _redirected(self, slot: int, error: ResponseError) -> bool:
        """Whether ``error`` is a ``MOVED`` (the command did not run); points ``slot`` at its
        new owner and reloads the whole map in the background."""
        parts = str(error).split()
        if len(parts) != 3 or parts[0] != "MOVED":
            return False
        host, _, port = parts[2].rpartition(":")
        if self._slots is not None:
            self._slots[slot] = (host or self._seed[0], int(port))
        self._spawn_load()
        return True

    def _spawn_load(self) -> None:
        if self._loading is None or self._loading.done():
            self._loading = asyncio.ensure_future(self._fetch_map())
            self._loading.add_done_callback(_retrieve)

    async def _load_map(self, deadline: float) -> None:
        """The slot map, loaded once for all callers waiting on it."""
        self._spawn_load()
        assert self._loading is not None
        await asyncio.wait_for(asyncio.shield(self._loading), deadline)

    async def _fetch_map(self) -> None:
        known = [self._seed, *(node for node in self._pipes if node != self._seed)]
        failure: Exception | None = None
        for node in known:
            try:
                reply = await self._pipe(node).execute(b"CLUSTER", b"SLOTS")
            except (RedisError, OSError, TimeoutError) as error:
                failure = error
                continue
            self._slots = _slot_table(reply, node)
            self._stale = False
            self.map_loads += 1
            return
        raise RedisConnectionError(f"no cluster node answered CLUSTER SLOTS: {failure}")


def _slot_table(reply: list[Any], asked: Node) -> list[Node | None]:
    """``CLUSTER SLOTS`` as one entry per slot: the master's (host, port)."""
    table: list[Node | None] = [None] * SLOTS
    for start, end, master, *_replicas in reply:
        host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
        node = (host if host and host != "?" else asked[0], int(master[1]))
        table[int(start) : int(end) + 1] = [node] * (int(end) - int(start) + 1)
    return table


def _retrieve(future: asyncio.Future[None]) -> None:
    # A failed background load is reported to the callers awaiting it, if any; never logged
    # as "exception never retrieved".
    with contextlib.suppress(asyncio.CancelledError):
        future.exception()
