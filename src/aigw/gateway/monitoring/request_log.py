"""Ship one record per request to the config center's request log, off the request path.

``record_request`` (``metrics.py``) hands every finished request to :meth:`RequestLogShipper.add`:
a synchronous O(1) append of a small tuple to an in-memory buffer. A background task, started
lazily on the first record, turns the buffer into JSON rows every second
(``AIGW_USAGE_FLUSH_SECONDS``, the usage recorder's cadence) and posts them to the config center,
``POST /internal/v1/requests`` with the gateway token, in chunks of at most 1,000 rows / 2 MiB.

What is shipped: requests that matched a key (a namespace), with their metadata (time, request
id, namespace, the key's display prefix, never the key, model, provider, upstream model, status,
error type and code, stream, attempts, duration, time to first byte, tokens, cost). With
``gateway.request_log.bodies`` on, the request body too: redacted (:func:`redact`: API keys,
bearer tokens, secret-looking JSON fields, the configured patterns, all replaced by
``[REDACTED]``) and cut to ``max_body_bytes``, at flush time, in a worker thread when there are
bodies or many rows, never on the event loop of a request. Requests refused before a key matched
(401, health checks, scrapes) are left to the access log and ``/metrics``.

Only a gateway following a config center (``AIGW_CONFIG_CENTER`` and ``AIGW_GATEWAY_TOKEN``)
ships records; one serving a static file has no database to store them in, so there the access
log is the only request log (:class:`NullShipper`).

Never drop while memory allows: a failed post keeps its rows (merged back ahead of newer ones)
and is retried with a backoff doubling up to ``max_backoff``, logged once per outage. Each row
carries a unique ``uid``, so a post retried after a lost answer is stored once. Memory is bounded:
beyond ``max_records`` rows (default 50,000, some 25 MB without bodies) or ``max_buffer_bytes`` of
prepared rows (default 64 MiB, bodies included), the OLDEST rows are dropped, counted in
``dropped`` and logged. A chunk the config center refuses as invalid (422) is dropped as well,
since sending it again cannot help. ``await shipper.close()`` makes a last flush (bounded by a
timeout); the gateway's lifespan shutdown calls :func:`close_default_shipper`.

Crash safety (``spool.py``): with a usable spool directory, :meth:`RequestLogShipper.add` also
appends the record's row, without its body, to this worker's spool segment (its ``uid`` is fixed
then, so the row is stored once whoever sends it). Each flush seals the segment and sends; once
everything sealed is delivered, the sealed segments are deleted. Segments left by a worker that
died (SIGKILL, OOM) are sent by the next flush of any worker of this host following the same
config center, then deleted. Bodies are not spooled: they are redacted off the request path, and
an unredacted body must not reach the disk; a recovered record has its metadata only. Rows
dropped from memory at the bounds above are dropped (counted) even though the spool had them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from aigw.config.snapshot import RequestLogEntry
from aigw.gateway.monitoring.center_client import CenterPoster
from aigw.gateway.monitoring.realtime import CENTER_ENV, FLUSH_ENV, TOKEN_ENV, flush_interval
from aigw.gateway.monitoring.spool import Segment, Spool, read_lines, spool_from_env

if TYPE_CHECKING:
    import aiohttp

    from aigw.gateway.monitoring.metrics import RequestRecord

log = logging.getLogger("aigw.gateway.request_log")

REQUESTS_PATH = "/internal/v1/requests"
REDACTED = "[REDACTED]"
# Longest values shipped; the config center's columns (and its validation) take these.
TEXT_LIMITS = {
    "request_id": 128,
    "namespace": 128,
    "key_prefix": 16,
    "path": 256,
    "model": 256,
    "provider": 128,
    "upstream_model": 256,
    "error_type": 64,
    "error_code": 64,
}
CHUNK_ROWS = 1000
CHUNK_BYTES = 2 * 1024 * 1024
THREAD_ROWS = 500
"""Rows prepared in a worker thread above this many (and whenever some carry a body)."""

# -- redaction -------------------------------------------------------------------------------------

# A JSON field named like a secret, and its string value; also when the JSON is itself quoted
# inside a string (a tool call's arguments, a pasted document): \"password\": \"...\".
_SECRET_FIELD = re.compile(
    r'(\\?"[^"\\]{0,64}?(?:api[_-]?key|apikey|password|passwd|secret|authorization|'
    r'access[_-]?token|refresh[_-]?token|private[_-]?key)[^"\\]{0,64}\\?"\s*:\s*)'
    r'(?:"(?:[^"\\]|\\.)*"|(\\)"(?:[^"\\]|\\[^"])*\\")',
    re.IGNORECASE,
)
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_TOKENS = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{8,}"  # sk-..., sk-proj-..., sk-ant-..., sk-aigw-...
    r"|AKIA[0-9A-Z]{16}"  # AWS access key ids
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r"|gh[pousr]_[A-Za-z0-9]{36,}"  # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9-]{10,})"  # Slack tokens
)


def redact(text: str, patterns: Iterable[re.Pattern[str]] = ()) -> str:
    """``text`` with every secret replaced by ``[REDACTED]``: the values of JSON fields named
    like api_key, password, secret, authorization or *_token, bearer and basic credentials,
    well-known API key formats, then each of ``patterns``."""
    text = _SECRET_FIELD.sub(_redact_field, text)
    text = _AUTH_SCHEME.sub(rf"\1 {REDACTED}", text)
    text = _TOKENS.sub(REDACTED, text)
    for pattern in patterns:
        text = pattern.sub(REDACTED, text)
    return text


def _redact_field(match: re.Match[str]) -> str:
    quote = '\\"' if match.group(2) else '"'  # the value keeps its quoting: the JSON stays valid
    return f"{match.group(1)}{quote}{REDACTED}{quote}"


def body_text(raw: bytes, setting: RequestLogEntry) -> str:
    """The stored form of a request body: redacted, then cut to ``max_body_bytes`` (UTF-8).

    Redaction runs on a generous head of the body (4 x the kept size + 4 KiB), so a secret that
    straddles the final cut is still recognised whole, and a huge body costs bounded work."""
    limit = setting.max_body_bytes
    text = raw[: 4 * limit + 4096].decode("utf-8", "replace")
    text = redact(text, setting.redact)
    encoded = text.encode()
    if len(encoded) > limit:
        text = encoded[:limit].decode("utf-8", "ignore")
    return text


# -- rows ------------------------------------------------------------------------------------------

Fresh = tuple[Any, ...]
"""What :meth:`RequestLogShipper.add` keeps of a record (see :func:`_fresh`)."""


def _fresh(record: RequestRecord) -> Fresh:
    return (
        record.timestamp,
        record.request_id,
        record.namespace,
        record.key,
        record.path,
        record.model,
        record.provider,
        record.upstream_model,
        record.status,
        record.error_type,
        record.error_code,
        record.stream,
        record.attempts,
        record.duration_ms,
        record.ttft_ms,
        record.prompt_tokens,
        record.completion_tokens,
        record.cached_tokens,
        record.cost_usd,
        record.request_body,
    )


def _cut(value: str | None, field: str) -> str | None:
    limit = TEXT_LIMITS[field]
    return value if value is None or len(value) <= limit else value[:limit]


def prepare_rows(fresh: Iterable[Fresh], uid_prefix: str, first: int) -> list[bytes]:
    """Each record as the JSON object the config center takes (bodies redacted and cut)."""
    rows = []
    for number, item in enumerate(fresh, first):
        try:
            rows.append(_row(item, f"{uid_prefix}{number:x}"))
        except Exception:  # a record that cannot be shipped must not hold up the others
            log.exception("request log: cannot prepare the record of request %r", item[1])
    return rows


def _row(item: Fresh, uid: str) -> bytes:
    (ts, request_id, namespace, key, path, model, provider, upstream_model) = item[:8]
    (status, error_type, error_code, stream, attempts, duration_ms, ttft_ms) = item[8:15]
    (prompt, completion, cached, cost, body) = item[15:]
    row: dict[str, Any] = {
        "uid": uid,
        "ts": round(ts * 1_000_000),
        "request_id": _cut(request_id, "request_id"),
        "namespace": _cut(namespace, "namespace"),
        "key_prefix": _cut(key, "key_prefix"),
        "path": _cut(path, "path"),
        "model": _cut(model, "model"),
        "provider": _cut(provider, "provider"),
        "upstream_model": _cut(upstream_model, "upstream_model"),
        "status": status,
        "error_type": _cut(error_type, "error_type"),
        "error_code": _cut(error_code, "error_code"),
        "stream": stream,
        "attempts": attempts,
        "duration_ms": duration_ms,
        "ttft_ms": ttft_ms,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached,
        "cost_usd": cost,
    }
    if body is not None:
        raw, setting = body
        row["request_body"] = body_text(raw, setting)
        row["request_body_bytes"] = len(raw)
    return orjson.dumps(row)


# -- sinks -----------------------------------------------------------------------------------------


class RequestLogSink(Protocol):
    async def send(self, rows: list[bytes]) -> None:
        """Deliver every row or raise (:class:`DeliveryError` when only some were)."""

    async def close(self) -> None: ...


class DeliveryError(Exception):
    """Some rows were delivered; ``undelivered`` are the rest, in order."""

    def __init__(self, message: str, undelivered: list[bytes]) -> None:
        super().__init__(message)
        self.undelivered = undelivered


class Refused(Exception):
    """The config center refused a chunk as invalid: sending it again cannot help."""


def chunks(rows: list[bytes], max_rows: int, max_bytes: int) -> list[list[bytes]]:
    """Consecutive runs of ``rows``, each at most ``max_rows`` rows and about ``max_bytes``."""
    out: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for row in rows:
        if current and (len(current) >= max_rows or size + len(row) > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(row)
        size += len(row) + 1
    if current:
        out.append(current)
    return out


class HttpSink(CenterPoster):
    """POSTs rows to the config center, ``{"items": [...]}``, one chunk at a time."""

    def __init__(self, center_url: str, token: str, *, timeout: float = 10.0) -> None:
        super().__init__(center_url, REQUESTS_PATH, token, timeout=timeout)
        self.refused = 0
        """Rows the config center refused as invalid (422), dropped."""

    async def send(self, rows: list[bytes]) -> None:
        session = self._client()
        parts = chunks(rows, CHUNK_ROWS, CHUNK_BYTES)
        for index, chunk in enumerate(parts):
            try:
                await self._post(session, chunk)
            except Refused as exc:
                self.refused += len(chunk)
                log.error("request log: %s; dropping its %d records", exc, len(chunk))
            except Exception as exc:
                if index == 0:
                    raise
                rest = [row for part in parts[index:] for row in part]
                raise DeliveryError(str(exc), rest) from exc

    async def _post(self, session: aiohttp.ClientSession, chunk: list[bytes]) -> None:
        body = b'{"items":[' + b",".join(chunk) + b"]}"
        async with session.post(self.url, data=body) as response:
            if response.status < 300:
                return
            text = (await response.text())[:300]
            if response.status in (400, 413, 422):
                raise Refused(f"{self.url} refused a chunk ({response.status}: {text})")
            raise RuntimeError(f"{self.url} answered {response.status}: {text}")


class RequestLogShipper:
    """One gateway worker's request records and their background delivery (see the module doc)."""

    def __init__(
        self,
        sink: RequestLogSink,
        *,
        interval: float = 1.0,
        max_backoff: float = 10.0,
        max_records: int = 50_000,
        max_buffer_bytes: int = 64 * 1024 * 1024,
        close_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        spool: Spool | None = None,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self._sealed: list[Segment] = []
        """Sealed segments whose rows wait for delivery (at most one: see :meth:`_seal`)."""
        self._spool_failed = False
        self.recovered = 0
        """Rows sent from the spool segments of dead workers."""
        self.interval = interval
        self.max_backoff = max_backoff
        self.max_records = max_records
        self.max_buffer_bytes = max_buffer_bytes
        self.close_timeout = close_timeout
        self._clock = clock
        self._fresh: deque[Fresh] = deque()
        self._fresh_bodies = 0
        self._pending: deque[bytes] = deque()
        """Prepared rows not yet delivered, oldest first."""
        self._pending_bytes = 0
        self._uid_prefix = secrets.token_hex(8)
        self._next_uid = 0
        self._fresh_first = 0
        """The uid number of ``_fresh[0]``: a record's uid is fixed when it is added."""
        self.dropped = 0
        """Rows dropped, oldest first, because the buffer was full."""
        self.delivered = 0
        self.failed_flushes = 0
        self._dropping = False
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = interval
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def __len__(self) -> int:
        """Records waiting for delivery."""
        return len(self._fresh) + len(self._pending)

    # -- the request path: sync, O(1) ---------------------------------------------------------

    def add(self, record: RequestRecord) -> None:
        if record.namespace is None:
            return
        item = _fresh(record)
        number = self._next_uid
        self._next_uid += 1
        if self.spool is not None:
            self._spool(item, f"{self._uid_prefix}{number:x}")
        self._fresh.append(item)
        if record.request_body is not None:
            self._fresh_bodies += 1
        if len(self._fresh) + len(self._pending) > self.max_records:
            self._drop_oldest()
        task = self._task
        if task is None or task.done() or self._loop is not asyncio._get_running_loop():
            self._start()

    def _spool(self, item: Fresh, uid: str) -> None:
        """The row without its body, on disk before in memory: a SIGKILL loses nothing."""
        try:
            line = _row((*item[:-1], None), uid) + b"\n"
        except Exception:  # prepare_rows logs it; the record is skipped there too
            return
        try:
            self.spool.append(line)  # type: ignore[union-attr]
        except OSError as exc:  # a full disk must not fail requests: memory still has it
            if not self._spool_failed:
                self._spool_failed = True
                log.warning("request log: cannot append to the spool (%s); in memory only", exc)

    def _drop_oldest(self) -> None:
        while len(self._fresh) + len(self._pending) > self.max_records:
            if self._pending:
                self._pending_bytes -= len(self._pending.popleft())
            else:
                item = self._fresh.popleft()
                self._fresh_first += 1
                self._fresh_bodies -= item[-1] is not None
            self._dropped(1)

    def _dropped(self, count: int) -> None:
        self.dropped += count
        if not self._dropping:
            self._dropping = True
            log.warning(
                "request log: buffer full (%d records or %d bytes) while %s does not take them; "
                "dropping the oldest records (counted; logged again when delivery recovers)",
                self.max_records,
                self.max_buffer_bytes,
                self.sink,
            )

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a sync caller): the next record in a loop starts it
            return
        self._loop = loop
        self._stop = asyncio.Event()
        self._task = loop.create_task(self._run(self._stop), name="aigw-request-log-flush")

    # -- off the request path -----------------------------------------------------------------

    async def _run(self, stop: asyncio.Event) -> None:
        try:
            while True:
                try:
                    await asyncio.wait_for(stop.wait(), self.interval)
                    return  # close() takes it from here
                except TimeoutError:
                    pass
                if self._clock() < self._retry_at:
                    await self.prepare()  # backing off: still free the raw bodies
                elif await self.flush():
                    self._backoff, self._retry_at = self.interval, 0.0
                else:
                    self._backoff = min(self._backoff * 2, self.max_backoff)
                    self._retry_at = self._clock() + self._backoff
        except asyncio.CancelledError:
            await self._finish()
            raise

    async def prepare(self) -> None:
        """Turn the fresh records into JSON rows (redacting and cutting bodies) now."""
        if self._busy or not self._fresh:
            return
        self._busy = True
        try:
            await self._prepare()
        finally:
            self._busy = False

    async def _prepare(self) -> None:
        fresh, bodies = self._fresh, self._fresh_bodies
        if not fresh:
            return
        self._fresh, self._fresh_bodies = deque(), 0
        first, self._fresh_first = self._fresh_first, self._next_uid
        try:
            if bodies or len(fresh) > THREAD_ROWS:
                rows = await asyncio.to_thread(prepare_rows, fresh, self._uid_prefix, first)
            else:
                rows = prepare_rows(fresh, self._uid_prefix, first)
        except BaseException:
            fresh.extend(self._fresh)  # put them back ahead of what came meanwhile
            self._fresh, self._fresh_bodies = fresh, bodies + self._fresh_bodies
            self._fresh_first = first
            raise
        self._pending.extend(rows)
        self._pending_bytes += sum(len(row) for row in rows)
        self._bound()

    def _bound(self) -> None:
        self._drop_oldest()
        while self._pending_bytes > self.max_buffer_bytes and self._pending:
            self._pending_bytes -= len(self._pending.popleft())
            self._dropped(1)

    async def flush(self) -> bool:
        """Prepare and send everything now; True when it was delivered (or there was nothing)."""
        if self._busy:
            return False
        self._busy = True
        try:
            await self._recover_orphans()
            self._seal()
            await self._prepare()
            rows = self._pending
            if not rows:
                self._release_sealed()
                return True
            self._pending, self._pending_bytes = deque(), 0
            batch = list(rows)
            try:
                await self.sink.send(batch)
            except BaseException as exc:
                undelivered = exc.undelivered if isinstance(exc, DeliveryError) else batch
                self.delivered += len(batch) - len(undelivered)
                self._pending.extendleft(reversed(undelivered))  # older than what came since
                self._pending_bytes += sum(len(row) for row in undelivered)
                self._bound()
                if not isinstance(exc, Exception):
                    raise
                self._failed(exc)
                return False
            self.delivered += len(batch)
            self._release_sealed()
            self._recovered()
            return True
        finally:
            self._busy = False

    # -- the spool ----------------------------------------------------------------------------

    def _seal(self) -> None:
        """Seal the current segment: what it holds is in memory, about to be sent. Only when no
        sealed segment waits already (a failed flush): the current one then keeps growing, so a
        long outage holds two segments, not one per attempt. Once everything sent is delivered
        the sealed segments go; a later segment may then repeat rows already delivered, which the
        config center stores once (by uid)."""
        if self.spool is None or self._sealed:
            return
        try:
            segment = self.spool.seal()
        except OSError as exc:
            log.warning("request log: cannot seal the spool segment (%s)", exc)
            return
        if segment is not None:
            self._sealed.append(segment)

    def _release_sealed(self) -> None:
        sealed, self._sealed = self._sealed, []
        for segment in sealed:
            try:
                self.spool.release(segment)  # type: ignore[union-attr]
            except OSError as exc:  # sent again by whoever recovers it: stored once
                log.warning("request log: cannot delete the delivered segment %s: %s", segment, exc)

    async def _recover_orphans(self) -> None:
        """Send, then delete, the segments of dead workers (same host, same config center)."""
        if self.spool is None:
            return
        for segment in self.spool.orphans():
            try:
                rows = await asyncio.to_thread(_read_request_segment, segment)
                if rows:
                    await self.sink.send(rows)
            except Exception as exc:
                segment.close()  # let go: the next flush (or another worker) tries again
                self._failed(exc)
                return
            self.spool.release(segment)
            self.recovered += len(rows)
            log.warning(
                "request log: recovered %d records from %s, left by a worker that died",
                len(rows),
                segment.path.name,
            )

    async def start(self) -> None:
        """Recover what dead workers left in the spool, then start the background flush (the
        gateway's startup can call this: otherwise the first record starts it)."""
        if not self._busy:
            self._busy = True
            try:
                await self._recover_orphans()
            finally:
                self._busy = False
        task = self._task
        if task is None or task.done() or self._loop is not _running_loop():
            self._start()

    def _failed(self, exc: Exception) -> None:
        self.failed_flushes += 1
        if self._down_since is None:
            self._down_since = self._clock()
            log.warning(
                "request log: cannot deliver records to %s (%s: %s); keeping them in memory "
                "and retrying (logged once until it recovers)",
                self.sink,
                type(exc).__name__,
                exc,
            )

    def _recovered(self) -> None:
        if self._down_since is not None or self._dropping:
            log.warning(
                "request log: delivering to %s again after %.0f s (%d failed flushes, %d "
                "records dropped in total)",
                self.sink,
                self._clock() - (self._down_since or self._clock()),
                self.failed_flushes,
                self.dropped,
            )
            self._down_since = None
            self._dropping = False
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
        deadline = self._clock() + self.close_timeout
        for attempt in range(3):  # a transient failure gets two more tries, within the timeout
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            if attempt:
                await asyncio.sleep(min(0.2, remaining))
            try:
                if await asyncio.wait_for(self.flush(), max(deadline - self._clock(), 0.01)):
                    break
            except TimeoutError:
                break
        if len(self):
            log.warning(
                "request log: %d records could not be delivered to %s before shutdown",
                len(self),
                self.sink,
            )
        if self.dropped:
            log.warning("request log: %d records were dropped (buffer full)", self.dropped)
        if self.spool is not None:
            self._close_spool()
        try:
            await self.sink.close()
        except Exception as exc:
            log.warning("request log: closing %s: %s", self.sink, exc)

    def _close_spool(self) -> None:
        """What was not delivered stays on disk, for the next worker to start (or a sibling)."""
        sealed, self._sealed = self._sealed, []
        for segment in sealed:
            segment.close()
        try:
            self.spool.close()  # type: ignore[union-attr]
        except OSError as exc:
            log.warning("request log: closing the spool: %s", exc)


def _read_request_segment(segment: Segment) -> list[bytes]:
    """The rows of a spool segment; a torn last line (its writer killed mid-write) or a line
    that is not a JSON object is skipped, with a warning."""
    lines, torn = read_lines(segment)
    if torn:
        log.warning("request log: %s ends with a torn record (%d bytes)", segment.path, torn)
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            if isinstance(orjson.loads(line), dict):
                rows.append(line)
                continue
        except orjson.JSONDecodeError:
            pass
        log.warning("request log: %s line %d is not a record, skipped", segment.path, number)
    return rows


class NullShipper:
    """No config center to ship to (a gateway serving a static file): records are not kept."""

    sink = None
    dropped = 0

    def __len__(self) -> int:
        return 0

    def add(self, record: RequestRecord) -> None:
        pass

    async def flush(self) -> bool:
        return True

    async def close(self) -> None:
        pass


def _running_loop() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()


def shipper_from_env(env: Mapping[str, str]) -> RequestLogShipper | NullShipper:
    """A shipper to the config center this gateway follows, else one that keeps nothing."""
    center, token = env.get(CENTER_ENV), env.get(TOKEN_ENV)
    if center and token:
        sink = HttpSink(center, token)
        return RequestLogShipper(
            sink,
            interval=flush_interval(env.get(FLUSH_ENV)),
            spool=spool_from_env(env, "requests", sink.url),
        )
    return NullShipper()


shipper: RequestLogShipper | NullShipper | None = None
"""This worker's shipper, made from the environment on first use (see :func:`ship`)."""


def ship(record: RequestRecord) -> None:
    """Hand a finished request to this worker's shipper (``record_request`` calls this)."""
    global shipper
    current = shipper
    if current is None:
        current = shipper = shipper_from_env(os.environ)
    current.add(record)


async def start_default_shipper() -> None:
    """Recover the spool segments dead workers left and start this worker's flush (for the
    gateway's startup: without it the first record does, and recovery waits for traffic)."""
    global shipper
    if shipper is None:
        shipper = shipper_from_env(os.environ)
    if isinstance(shipper, RequestLogShipper):
        await shipper.start()


async def close_default_shipper() -> None:
    """Last flush of this worker's records (the gateway's lifespan shutdown calls this)."""
    global shipper
    current, shipper = shipper, None
    if current is not None:
        await current.close()
