"""One pipelined Redis connection for the limits' hot path.

Every admitted request makes one ``EVALSHA`` before it is forwarded and one after it is answered.
Through redis-py's asyncio client each call costs the gateway ~100 µs of CPU (a pooled
connection checked out and back under a condition variable, a retry wrapper, a pure-Python
packer, a reader per reply element); that was most of what the policy chain cost
(``docs/benchmarks.md``). This client does only what the limits need, on one connection per
event loop:

- commands are packed once into RESP bytes, queued, and everything queued during one loop
  iteration goes out in one ``write`` (pipelining: 32 concurrent admits cost one write and one
  read, not 32 of each); replies come back in order and are matched to callers by position;
- replies are parsed by ``hiredis`` (the C reader redis-py itself uses when installed);
- *lazy* commands (settles) wait in the queue for the next eager command or at most
  ``lazy_delay`` seconds, so they are batched with other traffic and, being ahead of it on the
  same connection, Redis runs a request's settle before the same worker's next admit;
- **no retries**: an admit that may have run must not run twice. The one exception is a
  ``NOSCRIPT`` answer to ``EVALSHA``, which means nothing ran: the script is loaded and sent again;
- every call has a deadline (``TimeoutError`` when it passes; its late reply is discarded),
  enforced by one watchdog timer that ticks while calls are outstanding, not by a timer per
  call; a deadline is therefore kept to within one tick (:data:`WATCHDOG_TICK`);
- a reply outstanding longer than ``timeout`` means the connection is dead (or Redis hangs):
  the connection is dropped and every waiting call fails with ``ConnectionError`` at once; the
  next call reconnects.

Errors are redis-py's exception classes, so callers handle both clients the same way.
Standalone Redis over TCP or a Unix socket only; a Redis Cluster is one of these per master
(:mod:`aigw.state.redis_cluster_pipe`); TLS (``rediss://``) goes through redis-py
(:class:`~aigw.state.limits_redis.RedisLimitStore` picks).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import hiredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

Arg = bytes | str | int
Callback = Callable[["asyncio.Future[Any]"], None]

# Settles may wait this long for company before they are written on their own.
DEFAULT_LAZY_DELAY = 0.002
# How often outstanding calls are checked against their deadlines.
WATCHDOG_TICK = 0.02


def pack(*args: Arg) -> bytes:
    """One command in RESP: ``*N`` then each argument as a bulk string."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def pack_args(args: Sequence[Arg]) -> bytes:
    """Arguments in RESP without the ``*N`` header: to join pre-packed parts of a command."""
    parts = []
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


class Script:
    """A Lua script and its SHA1, as ``EVALSHA`` needs it."""

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


class _Protocol(asyncio.Protocol):
    """Reads replies and hands each to the oldest waiting call."""

    def __init__(self, client: PipelinedRedis) -> None:
        self.client = client
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.client._waiting
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self.client._drop(self, RedisConnectionError("unexpected reply from Redis"))
                return
            future = waiting.popleft()[0]
            if future.done():  # its caller gave up (deadline); the reply is discarded
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(_specific(reply))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._drop(self, RedisConnectionError(f"connection to Redis lost: {exc or 'EOF'}"))


class PipelinedRedis:
    """A pipelining client on one connection, bound to the event loop that first uses it."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 1.0,
        lazy_delay: float = DEFAULT_LAZY_DELAY,
    ) -> None:
        options = parse_url(url)
        if "connection_class" in options and "path" not in options:
            raise ValueError("PipelinedRedis speaks plain TCP or Unix sockets, not TLS")
        self._path: str | None = options.get("path")
        self._host: str = options.get("host", "127.0.0.1")
        self._port: int = int(options.get("port", 6379))
        self._db = int(options.get("db", 0))
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self.timeout = timeout
        self.lazy_delay = lazy_delay
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        # (future, sent at, deadline) per call, in the order the replies will come
        self._waiting: deque[tuple[asyncio.Future[Any], float, float]] = deque()
        self._outgoing: list[bytes] = []
        self._flush_scheduled = False
        self._lazy_timer: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # lazy calls sent again (NOSCRIPT) or late
        self.connections_made = 0

    # -- calls --------------------------------------------------------------------------------

    async def execute(self, *args: Arg, deadline: float | None = None) -> Any:
        """Run one command and return its reply (``ResponseError`` subclasses raised)."""
        await self._connected(deadline)
        return await self._send(pack(*args), lazy=False, deadline=deadline)

    async def evalsha(
        self,
        script: Script,
        command: bytes,
        deadline: float | None = None,
        *,
        slot: int | None = None,
    ) -> Any:
        """Run ``command`` (an ``EVALSHA`` of ``script`` packed by the caller, see
        :func:`pack`); loads the script and runs it again only if Redis does not know it.
        ``deadline`` (seconds, default ``timeout``) bounds the wait. ``slot`` is for
        :class:`~aigw.state.redis_cluster_pipe.ClusterPipes`' sake: one server has them all."""
        await self._connected(deadline)
        try:
            return await self._send(command, lazy=False, deadline=deadline)
        except NoScriptError:
            await self._send(pack(b"SCRIPT", b"LOAD", script.source), lazy=False)
            return await self._send(command, lazy=False, deadline=deadline)

    def evalsha_soon(
        self, script: Script, command: bytes, done: Callback, *, slot: int | None = None
    ) -> None:
        """Queue ``command`` lazily (see the module documentation) and call ``done(future)``
        with its outcome; ``NOSCRIPT`` is handled as in :meth:`evalsha`.

        On a live connection this costs a future and a callback, no task: settles are one per
        request."""
        if self._protocol is None or self._loop is not asyncio.get_running_loop():
            self._later(self._evalsha_lazily(script, command), done)
            return

        def landed(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and isinstance(future.exception(), NoScriptError):
                self._later(self.evalsha(script, command), done)
            else:
                done(future)

        self._send(command, lazy=True).add_done_callback(landed)

    def _later(self, call: Coroutine[Any, Any, Any], done: Callback) -> None:
        """Run ``call`` as a task that :meth:`drain` (so :meth:`close`) waits for too."""
        task = asyncio.get_running_loop().create_task(call)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(done)

    async def _evalsha_lazily(self, script: Script, command: bytes) -> Any:
        await self._connected()
        try:
            return await self._send(command, lazy=True)
        except NoScriptError:
            await self._send(pack(b"SCRIPT", b"LOAD", script.source), lazy=False)
            return await self._send(command, lazy=False)

    def _send(
        self, command: bytes, *, lazy: bool, deadline: float | None = None
    ) -> asyncio.Future[Any]:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        future: asyncio.Future[Any] = loop.create_future()
        self._outgoing.append(command)
        self._waiting.append((future, now, now + (deadline or self.timeout)))
        if self._watchdog is None:
            self._watchdog = loop.call_later(WATCHDOG_TICK, self._watch)
        if lazy:
            if self._lazy_timer is None and not self._flush_scheduled:
                self._lazy_timer = loop.call_later(self.lazy_delay, self._flush)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _watch(self) -> None:
        """Fail the calls whose deadline passed; drop a connection whose oldest reply is
        overdue by ``timeout``; tick again while anything is outstanding."""
        self._watchdog = None
        waiting = self._waiting
        if not waiting:
            return
        loop = self._loop
        assert loop is not None
        now = loop.time()
        if now - waiting[0][1] > self.timeout and self._protocol is not None:
            self._drop(self._protocol, RedisConnectionError("Redis did not answer in time"))
            return
        for future, _, deadline in waiting:
            if deadline <= now and not future.done():
                future.set_exception(TimeoutError("Redis did not answer within the deadline"))
        self._watchdog = loop.call_later(WATCHDOG_TICK, self._watch)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        if not self._outgoing:
            return
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            return  # _drop already failed their futures
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        protocol.transport.write(data)

    async def drain(self) -> None:
        """Send whatever is queued and wait until every outstanding call has its answer, lazy
        ones sent again after ``NOSCRIPT`` included."""
        while True:
            if self._outgoing:
                self._flush()
            pending = [entry[0] for entry in self._waiting] + list(self._tasks)
            if not pending:
                return
            _, late = await asyncio.wait(pending, timeout=self.timeout)
            if late:
                return

    # -- the connection -----------------------------------------------------------------------

    async def _connected(self, deadline: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): the old connection is unusable
            self._forget_loop()
            self._loop = loop
        if self._protocol is not None:
            return
        if self._connecting is None:
            self._connecting = loop.create_future()
            connecting = self._connecting
            try:
                protocol = await asyncio.wait_for(self._open(loop), deadline or self.timeout)
            except BaseException as error:
                self._connecting = None
                failure = (
                    error
                    if isinstance(error, RedisConnectionError | ResponseError)
                    else RedisConnectionError(f"cannot connect to Redis: {error or type(error)}")
                )
                connecting.set_exception(failure)
                connecting.exception()  # retrieved: other waiters may be none
                raise failure from None
            self._protocol = protocol
            self._connecting = None
            connecting.set_result(protocol)
            return
        await asyncio.wait_for(asyncio.shield(self._connecting), deadline or self.timeout)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        if self._path is not None:
            _, protocol = await loop.create_unix_connection(lambda: _Protocol(self), self._path)
        else:
            _, protocol = await loop.create_connection(
                lambda: _Protocol(self), self._host, self._port
            )
        self.connections_made += 1
        # The handshake goes through the protocol before it is shared: nothing else is queued.
        self._protocol = protocol
        try:
            if self._password is not None:
                auth = (self._username, self._password) if self._username else (self._password,)
                await self._send(pack(b"AUTH", *auth), lazy=False)
            if self._db:
                await self._send(pack(b"SELECT", self._db), lazy=False)
        except BaseException:
            self._drop(protocol, RedisConnectionError("Redis refused the connection handshake"))
            raise
        finally:
            self._protocol = None
        return protocol

    def _forget_loop(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            try:
                self._protocol.transport.abort()
            except RuntimeError:  # its loop is closed
                pass
        self._protocol = None
        self._connecting = None
        self._lazy_timer = self._watchdog = None
        self._flush_scheduled = False
        self._outgoing.clear()
        self._waiting.clear()

    def _drop(self, protocol: _Protocol, error: Exception) -> None:
        """Forget ``protocol``'s connection and fail every call waiting on it."""
        if self._protocol is protocol:
            self._protocol = None
        if protocol.transport is not None:
            protocol.transport.abort()
            protocol.transport = None
        for timer in (self._lazy_timer, self._watchdog):
            if timer is not None:
                timer.cancel()
        self._lazy_timer = self._watchdog = None
        self._outgoing.clear()
        waiting, self._waiting = self._waiting, deque()
        for future, _, _ in waiting:
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        await self.drain()
        protocol = self._protocol
        if protocol is not None:
            self._drop(protocol, RedisConnectionError("client closed"))


def _specific(error: ResponseError) -> ResponseError:
    message = str(error)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return error
