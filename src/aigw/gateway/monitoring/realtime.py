"""Usage counters of one gateway worker, flushed off the request path into the realtime store.

``record_request`` (``metrics.py``) hands every finished request to :meth:`UsageRecorder.record`:
a synchronous O(1) update of an in-memory :class:`UsageBatch`, in the minute the request
finished. A background task, started lazily on the first record, flushes the batch every second
(``AIGW_USAGE_FLUSH_SECONDS``) to a sink:

- :class:`HttpSink` when ``AIGW_CONFIG_CENTER`` is set (with ``AIGW_GATEWAY_TOKEN``), whether or
  not ``AIGW_REDIS_URL`` is: ``POST /internal/v1/usage`` to the config center, which adds the
  batch to its realtime store (Redis or memory) *and* to the durable per-day ledger in SQL
  (``config_center/accounting.py``). The batch then holds one entry per (minute, namespace,
  model) (dimension ``namespace_model``), from which the config center derives the namespace and
  model series;
- :class:`RedisSink` when only ``AIGW_REDIS_URL`` is set (a gateway serving a static file: there
  is no database in that deployment, so usage is realtime only): one pipelined round trip to
  Redis. The batch holds two entries per request, its namespace and its model;
- otherwise nothing reads the counters, so nothing is kept (:class:`NullRecorder`).

Requests without a namespace (refused before a key matched, health checks) are not counted here;
the access log and Prometheus still see them.

Never drop: a failed flush merges its batch back and is retried on the next tick, with a backoff
doubling up to ``max_backoff``; the failure is logged once per outage and the recovery once.
Delivery is at-least-once (a flush whose answer is lost may be counted twice).

Memory bound: the batch has one entry per (minute, dimension, name), so during an outage it grows
by (active namespaces + active models, or active namespace/model pairs) entries a minute, about
300 bytes each, whatever the request rate. Above ``max_entries`` (default 50,000, ~15 MB) it is
compacted: entries whose minute bucket has expired (older than 48 h) fold into their day, then
entries older than the current minute fold into their hour. Counters are never lost by
compaction, only minute resolution. After compaction the batch holds at most
``names x (48 + days of outage)`` entries.

``await recorder.close()`` stops the task and makes a last flush (bounded by a timeout); the
gateway calls :func:`close_default_recorder` on shutdown (granian runs the ASGI lifespan
shutdown of every worker on SIGTERM/SIGINT), so a gateway that stops delivers its last counts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit, urlunsplit

import orjson

from aigw.gateway.monitoring.center_client import CenterPoster
from aigw.gateway.monitoring.spool import Segment, Spool, read_lines, spool_from_env
from aigw.state.realtime import (
    DEFAULT_PREFIX,
    PAIR,
    Key,
    RedisRealtimeStore,
    UsageBatch,
    UsageCounters,
)
from aigw.state.redis_client import cluster_from_env, url_from_env

if TYPE_CHECKING:
    import aiohttp

    from aigw.gateway.monitoring.metrics import RequestRecord

log = logging.getLogger("aigw.gateway.usage")

CENTER_ENV = "AIGW_CONFIG_CENTER"
TOKEN_ENV = "AIGW_GATEWAY_TOKEN"
FLUSH_ENV = "AIGW_USAGE_FLUSH_SECONDS"
USAGE_PATH = "/internal/v1/usage"
DEFAULT_INTERVAL = 1.0


class UsageSink(Protocol):
    """Where a recorder's batches go. A sink whose receiver keeps the durable ledger sets the
    class attribute ``pairs = True``: the recorder then keeps one entry per (minute, namespace,
    model) (dimension ``namespace_model``) instead of two per request (namespace, model)."""

    async def send(self, batch: UsageBatch) -> None:
        """Deliver the whole batch or raise (:class:`DeliveryError` when only part was)."""

    async def close(self) -> None: ...


class DeliveryError(Exception):
    """Part of a batch was delivered; ``undelivered`` is the rest."""

    def __init__(self, message: str, undelivered: UsageBatch) -> None:
        super().__init__(message)
        self.undelivered = undelivered


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisSink:
    pairs = False

    def __init__(self, store: RedisRealtimeStore) -> None:
        self.store = store

    async def send(self, batch: UsageBatch) -> None:
        await self.store.add(batch)

    async def close(self) -> None:
        await self.store.close()

    def __str__(self) -> str:
        return f"Redis {_redact(self.store.url)}"


class HttpSink(CenterPoster):
    """POSTs the batch to the config center, in chunks of at most ``chunk_size`` entries.

    The config center keeps the per-(namespace, model) entries in SQL as well, so this sink asks
    the recorder for them (``pairs``). A batch sent with a ``batch_id`` is one POST (the recorder
    cuts batches to ``chunk_size``), applied once by the config center whatever the retries."""

    pairs = True
    batch_ids = True

    def __init__(
        self, center_url: str, token: str, *, timeout: float = 5.0, chunk_size: int = 5000
    ) -> None:
        super().__init__(center_url, USAGE_PATH, token, timeout=timeout)
        self.chunk_size = chunk_size

    async def send(self, batch: UsageBatch, batch_id: str | None = None) -> None:
        session = self._client()
        if batch_id is not None:
            await self._post(session, {"batch_id": batch_id, "items": batch.to_items()})
            return
        chunks = list(batch.chunks(self.chunk_size))
        for index, chunk in enumerate(chunks):
            try:
                await self._post(session, {"items": chunk.to_items()})
            except Exception as exc:
                if index == 0:
                    raise
                rest = UsageBatch()
                for undelivered in chunks[index:]:
                    rest.merge(undelivered)
                raise DeliveryError(str(exc), rest) from exc

    async def _post(self, session: aiohttp.ClientSession, body: dict[str, object]) -> None:
        async with session.post(self.url, data=orjson.dumps(body)) as response:
            if response.status >= 300:
                text = (await response.text())[:200]
                raise RuntimeError(f"{self.url} answered {response.status}: {text}")


Pending = list[tuple[str, UsageBatch]]
"""Batches cut for delivery, each with its id, oldest first."""


class UsageRecorder:
    """One gateway worker's usage batch and its background flush (see the module doc)."""

    def __init__(
        self,
        sink: UsageSink,
        *,
        interval: float = 1.0,
        max_backoff: float = 10.0,
        max_entries: int = 50_000,
        close_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        spool: Spool | None = None,
    ) -> None:
        self.sink = sink
        self.pairs = bool(getattr(sink, "pairs", False))
        self._ids = bool(getattr(sink, "batch_ids", False))
        self.chunk_size: int = getattr(sink, "chunk_size", 0) or 0
        self.interval = interval
        self.max_backoff = max_backoff
        self.max_entries = max_entries
        self.close_timeout = close_timeout
        self.spool = spool
        self._time = clock
        self.batch = UsageBatch()
        """Counted since the last cut: what the current spool segment holds."""
        self._pending: Pending = []
        self._pending_segment: Segment | None = None
        self.failed_flushes = 0
        self.recovered_segments = 0
        self._spool_failed = False
        self._down_since: float | None = None
        self._compacted = False
        self._compacted_since_cut = False
        self._flushing = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    # -- the request path: sync, O(1) ---------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        namespace = record.namespace
        if namespace is None:
            return
        minute = int(record.timestamp + record.duration_ms / 1000) // 60 * 60  # when it finished
        values = (
            record.status >= 400,
            record.prompt_tokens,
            record.completion_tokens,
            round(record.cost_usd * 1_000_000),
            round(record.duration_ms),
        )
        if self.pairs:  # one entry, named as state.realtime.pair_name does
            keys = [(minute, PAIR, f"{namespace}/{record.model or ''}")]
        else:
            keys = [(minute, "namespace", namespace)]
            if record.model is not None:
                keys.append((minute, "model", record.model))
        if self.spool is not None:
            self._spool(keys, values)  # on disk before in memory: a SIGKILL loses nothing
        batch = self.batch
        for key in keys:
            counters = batch.get(key)
            if counters is None:
                counters = batch[key] = UsageCounters()
            _count(counters, *values)
        task = self._task
        if task is None or task.done() or self._loop is not _running_loop():
            self._start()

    def _spool(self, keys: list[Key], values: tuple[bool, int, int, int, int]) -> None:
        error, prompt, completion, cost, latency = values
        entries = [(*key, 1, int(error), prompt, completion, cost, latency) for key in keys]
        try:
            self.spool.append(orjson.dumps(entries) + b"\n")  # type: ignore[union-attr]
        except OSError as exc:  # a full disk must not fail requests: memory still has it
            if not self._spool_failed:
                self._spool_failed = True
                log.warning("usage: cannot append to the spool (%s); in memory only", exc)

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a sync caller): the next record in a loop starts it
            return
        self._loop = loop
        self._stop = asyncio.Event()
        self._task = loop.create_task(self._run(self._stop), name="aigw-usage-flush")

    # -- off the request path -----------------------------------------------------------------

    async def start(self) -> None:
        """Recover what dead workers left in the spool, then start the background flush (the
        gateway's startup can call this: otherwise the first record starts it)."""
        await self._recover_orphans()
        task = self._task
        if task is None or task.done() or self._loop is not _running_loop():
            self._start()

    async def _run(self, stop: asyncio.Event) -> None:
        delay = self.interval
        try:
            while True:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return  # close() takes it from here
                except TimeoutError:
                    pass
                delay = self.interval if await self.flush() else min(delay * 2, self.max_backoff)
        except asyncio.CancelledError:
            # The loop is going away without close(): a last flush, and let go of the sink.
            await self._finish()
            raise

    async def flush(self) -> bool:
        """Send what waits now (and what dead workers left in the spool); True when all of it
        was delivered (or there was nothing)."""
        if self._flushing:
            return False
        self._flushing = True
        try:
            await self._recover_orphans()
            for _ in range(2):  # what waited since a failure, then what came meanwhile
                if not self._pending:
                    if not self.batch:
                        break
                    await self._cut()
                if not await self._send_pending():
                    return False
            self._recovered()
            return True
        finally:
            self._flushing = False

    async def _cut(self) -> None:
        """Make the batch counted so far the next to deliver, with the ids it keeps until it is
        delivered: seal its spool segment, name the batch after it, cut it in POST-sized parts.

        A batch that failed is sent again unchanged under the same ids, and new counts wait for
        the next cut, so the config center can apply each id once."""
        self._compact()
        batch, self.batch = self.batch, UsageBatch()
        segment = self._seal()
        if segment is not None and self._compacted_since_cut:
            segment = await self._rewrite(segment, batch)
        self._compacted_since_cut = False
        base = segment.name if segment is not None else uuid.uuid4().hex
        parts = list(batch.chunks(self.chunk_size)) if self.chunk_size else [batch]
        self._pending = [(f"{base}.{i}", part) for i, part in enumerate(parts)]
        self._pending_segment = segment

    def _seal(self) -> Segment | None:
        if self.spool is None:
            return None
        try:
            return self.spool.seal()
        except OSError as exc:
            log.warning("usage: cannot seal the spool segment (%s)", exc)
            return None

    async def _rewrite(self, segment: Segment, batch: UsageBatch) -> Segment | None:
        """The batch was folded (compacted) since its segment began: the segment's records no
        longer cut into the same parts. Replace it with the batch's entries, so a recovery sends
        what this worker sends, under the same ids."""
        assert self.spool is not None
        lines = [orjson.dumps([(*key, *c.values())]) for key, c in batch.items()]
        try:
            return await asyncio.to_thread(self.spool.rewrite, segment, lines)
        except OSError as exc:
            log.warning("usage: cannot rewrite a spool segment (%s)", exc)
            return segment

    async def _send_pending(self) -> bool:
        while self._pending:
            batch_id, part = self._pending[0]
            try:
                if self._ids:
                    await self.sink.send(part, batch_id)  # type: ignore[call-arg]
                else:
                    await self.sink.send(part)
            except BaseException as exc:
                if isinstance(exc, DeliveryError):  # a sink without ids delivered some of it
                    self._pending[0] = (batch_id, exc.undelivered)
                self._compact()
                if not isinstance(exc, Exception):
                    raise
                self._failed(exc)
                return False
            self._pending.pop(0)
        segment, self._pending_segment = self._pending_segment, None
        if segment is not None:
            self._release(segment)
        return True

    def _release(self, segment: Segment) -> None:
        assert self.spool is not None
        try:
            self.spool.release(segment)
        except OSError as exc:  # sent again by whoever recovers it: applied once
            log.warning("usage: cannot delete the delivered spool segment %s: %s", segment, exc)

    async def _recover_orphans(self) -> None:
        """Send, then delete, the segments of dead workers (same host, same config center).
        Their batch ids are the ones the dead worker used, so what it had delivered already is
        not counted twice."""
        if self.spool is None:
            return
        for segment in self.spool.orphans():
            try:
                batch = await asyncio.to_thread(_read_usage_segment, segment)
                parts = list(batch.chunks(self.chunk_size)) if self.chunk_size else [batch]
                for index, part in enumerate(parts):
                    if self._ids:
                        await self.sink.send(part, f"{segment.name}.{index}")  # type: ignore[call-arg]
                    else:
                        await self.sink.send(part)
            except Exception as exc:
                segment.close()  # let go: the next flush (or another worker) tries again
                self._failed(exc)
                return
            self._release(segment)
            self.recovered_segments += 1
            log.warning(
                "usage: recovered %d requests from %s, left by a worker that died",
                batch.requests(),
                segment.path.name,
            )

    def undelivered(self) -> UsageBatch:
        """Everything counted and not delivered yet (a copy)."""
        waiting = UsageBatch()
        for _, part in self._pending:
            waiting.merge(part)
        return waiting.merge(self.batch)

    def _compact(self) -> None:
        folded = self.batch.compact(self._time(), self.max_entries)
        if folded:
            self._compacted_since_cut = True
        if folded and not self._compacted:
            self._compacted = True
            log.warning(
                "usage: %d counters waiting for %s; folding old minutes into hours and days to "
                "bound memory (totals are kept)",
                len(self.batch) + folded,
                self.sink,
            )

    def _failed(self, exc: Exception) -> None:
        self.failed_flushes += 1
        if self._down_since is None:
            self._down_since = self._time()
            log.warning(
                "usage: cannot deliver counters to %s (%s: %s); keeping them in memory and "
                "retrying (logged once until it recovers)",
                self.sink,
                type(exc).__name__,
                exc,
            )

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.warning(
                "usage: delivering to %s again after %.0f s (%d failed flushes, nothing lost)",
                self.sink,
                self._time() - self._down_since,
                self.failed_flushes,
            )
            self._down_since = None
            self._compacted = False
            self.failed_flushes = 0

    async def close(self) -> None:
        """Stop the background flush and make a last one; then release the sink."""
        task, stop, self._task = self._task, self._stop, None
        if task is not None and not task.done() and task.get_loop() is _running_loop():
            assert stop is not None
            stop.set()
            await task
        await self._finish()

    async def _finish(self) -> None:
        try:
            delivered = await asyncio.wait_for(self.flush(), self.close_timeout)
        except TimeoutError:
            delivered = False
        waiting = self.undelivered()
        if not delivered and waiting:
            log.warning(
                "usage: %d requests (%d counters) could not be delivered to %s before shutdown%s",
                waiting.requests(),
                len(waiting),
                self.sink,
                "; they stay in the spool, for the next worker to start to send"
                if self.spool is not None
                else "",
            )
        if self.spool is not None:
            self._close_spool()
        try:
            await self.sink.close()
        except Exception as exc:
            log.warning("usage: closing %s: %s", self.sink, exc)

    def _close_spool(self) -> None:
        assert self.spool is not None
        segment, self._pending_segment = self._pending_segment, None
        if segment is not None:
            segment.close()  # not delivered: left for a recovery
        try:
            self.spool.close()
        except OSError as exc:
            log.warning("usage: closing the spool: %s", exc)


class NullRecorder:
    """No sink configured: nothing reads the counters, so nothing is kept."""

    sink = None

    def record(self, record: RequestRecord) -> None:
        pass

    async def flush(self) -> bool:
        return True

    async def close(self) -> None:
        pass


def _count(
    counters: UsageCounters, error: bool, prompt: int, completion: int, cost: int, latency: int
) -> None:
    counters.requests += 1
    counters.errors += error
    counters.prompt_tokens += prompt
    counters.completion_tokens += completion
    counters.cost_micro_usd += cost
    counters.latency_ms_total += latency


def _running_loop() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()


def _read_usage_segment(segment: Segment) -> UsageBatch:
    """The counters a spool segment holds, in the order they were written (so they cut into the
    parts its writer sent). A torn last line (its writer killed mid-write) is skipped."""
    lines, torn = read_lines(segment)
    if torn:
        log.warning("usage: %s ends with a torn record (%d bytes), skipped", segment.path, torn)
    batch = UsageBatch()
    for number, line in enumerate(lines, 1):
        try:
            for minute, dimension, name, *values in orjson.loads(line):
                batch.add(minute, dimension, name, UsageCounters.from_values(values))
        except (ValueError, TypeError) as exc:
            log.warning("usage: %s line %d is not a record (%s)", segment.path, number, exc)
    return batch


def recorder_from_env(env: Mapping[str, str]) -> UsageRecorder | NullRecorder:
    """Where this worker's usage goes (see the module doc).

    A gateway following a config center (``AIGW_CONFIG_CENTER`` and ``AIGW_GATEWAY_TOKEN``) always
    sends to it, even with ``AIGW_REDIS_URL``: only the config center writes the durable ledger.
    A gateway serving a static file with ``AIGW_REDIS_URL`` writes the realtime series to Redis
    (there is no database in that deployment). Without either, nothing is kept.
    """
    interval = flush_interval(env.get(FLUSH_ENV))
    redis_url = url_from_env(env)
    center = env.get(CENTER_ENV)
    if center:
        token = env.get(TOKEN_ENV)
        if token:
            sink = HttpSink(center, token)
            spool = spool_from_env(env, "usage", sink.url)
            return UsageRecorder(sink, interval=interval, spool=spool)
        log.warning(
            "usage: %s is set but %s is not: usage cannot reach the config center%s",
            CENTER_ENV,
            TOKEN_ENV,
            " and goes to Redis only (realtime, not the durable ledger)"
            if redis_url
            else " and is not recorded",
        )
    if redis_url:
        return UsageRecorder(
            RedisSink(RedisRealtimeStore(redis_url, DEFAULT_PREFIX, cluster=cluster_from_env(env))),
            interval=interval,
        )
    return NullRecorder()


def flush_interval(value: str | None) -> float:
    if not value:
        return DEFAULT_INTERVAL
    try:
        interval = float(value)
    except ValueError:
        interval = 0.0
    if not 0 < interval <= 3600:
        log.warning(
            "usage: %s=%r is not a number of seconds in (0, 3600]; using %s",
            FLUSH_ENV,
            value,
            DEFAULT_INTERVAL,
        )
        return DEFAULT_INTERVAL
    return interval


recorder: UsageRecorder | NullRecorder | None = None
"""This worker's recorder, made from the environment on first use (see ``record_request``)."""


def default_recorder() -> UsageRecorder | NullRecorder:
    global recorder
    if recorder is None:
        recorder = recorder_from_env(os.environ)
    return recorder


async def start_default_recorder() -> None:
    """Recover the spool segments dead workers left and start this worker's flush (for the
    gateway's startup: without it the first record does, and recovery waits for traffic)."""
    current = default_recorder()
    if isinstance(current, UsageRecorder):
        await current.start()


async def close_default_recorder() -> None:
    """Last flush of this worker's counters (the gateway's lifespan shutdown calls this)."""
    global recorder
    current, recorder = recorder, None
    if current is not None:
        await current.close()
