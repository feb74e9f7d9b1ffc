"""Realtime usage: per-minute and per-day counters per namespace and per model.

The model
---------
:class:`UsageCounters` are six integers (requests, errors, prompt and completion tokens, cost in
micro-USD, total latency in ms). A :class:`UsageBatch` maps ``(minute, dimension, name)`` to
counters, where ``minute`` is the Unix time in seconds of the minute's start (UTC, a multiple of
60), ``dimension`` is ``"namespace"`` or ``"model"`` and ``name`` is the namespace's or model's
name. Batches are additive: merging two adds their counters. That is what makes "never drop"
cheap for the gateways: a batch that failed to flush is merged back into the next one.

A batch may also hold entries of the write-only dimension ``"namespace_model"`` (:data:`PAIR`)
whose name is ``"{namespace}/{model}"`` (:func:`pair_name`; ``model`` is empty for a request
without one, and a namespace name cannot contain ``/``). Gateways that follow a config center
send only these: the config center keeps them per day in SQL (``config_center/accounting.py``)
and the stores below count each one for its namespace and, when it has one, its model, so the
namespace and model series are the same as from the two separate entries. They cannot be
queried here.

The stores
----------
Both stores answer the same :class:`RealtimeStore` interface (one contract test suite runs
against both) and keep two series per (dimension, name):

- minute buckets, kept 48 hours (:data:`MINUTE_RETENTION`);
- day buckets (UTC days), kept 400 days (:data:`DAY_RETENTION`).

A bucket expires ``retention`` after its end. Writes to buckets that are already expired are
skipped, so a batch delayed by a long outage still lands in its day bucket. Every query is
bounded: at most 1,440 minute buckets (24 h) or 400 day buckets; a larger range is a
``ValueError`` (the API answers 422).

:class:`RedisRealtimeStore` keeps minute buckets as hashes ``{prefix}:m:{YYYYMMDDHHMM}`` and day
buckets as ``{prefix}:d:{YYYYMMDD}``, with fields ``{dimension}:{name}:{counter}``. ``add`` is
one pipeline (no transaction) of HINCRBY + EXPIREAT, sent in one round trip; reads pipeline one
HMGET or HGETALL per bucket, also in one round trip. Every command touches one key, so it works
unchanged on Redis Cluster (a cluster pipeline splits by slot). Delivery is at-least-once: a
flush whose answer is lost is retried and may be counted twice; it is never dropped.

:class:`MemoryRealtimeStore` is the embedded default (in the config center process). It holds
about 250 bytes per (bucket, dimension, name) with data, so roughly
``250 B x active names x 2,880 minutes`` at most; larger deployments should use Redis (which is
also required when the config center runs more than one worker process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aigw.state.redis_client import connect

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

Dimension = Literal["namespace", "model"]
Resolution = Literal["minute", "day"]
DIMENSIONS: tuple[Dimension, ...] = ("namespace", "model")
PAIR = "namespace_model"
"""The write-only dimension of per-(namespace, model) entries, named ``namespace/model``."""
RESOLUTIONS: tuple[Resolution, ...] = ("minute", "day")

MINUTE = 60
DAY = 86_400
MINUTE_RETENTION = 48 * 3600
"""Minute buckets are kept 48 hours after their end."""
DAY_RETENTION = 400 * DAY
"""Day buckets are kept 400 days after their end."""
MAX_MINUTE_BUCKETS = 1440
"""A minute-resolution query covers at most 24 hours."""
MAX_DAY_BUCKETS = 400
"""A day-resolution query covers at most 400 days."""

STEP: dict[str, int] = {"minute": MINUTE, "day": DAY}
RETENTION: dict[str, int] = {"minute": MINUTE_RETENTION, "day": DAY_RETENTION}
MAX_BUCKETS: dict[str, int] = {"minute": MAX_MINUTE_BUCKETS, "day": MAX_DAY_BUCKETS}
DEFAULT_PREFIX = "aigw:rt"

Clock = Callable[[], float]


@dataclass(slots=True)
class UsageCounters:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micro_usd: int = 0
    latency_ms_total: int = 0

    def add(self, other: UsageCounters) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_micro_usd += other.cost_micro_usd
        self.latency_ms_total += other.latency_ms_total

    def copy(self) -> UsageCounters:
        return UsageCounters(*astuple(self))

    def values(self) -> tuple[int, ...]:
        return astuple(self)

    def as_dict(self) -> dict[str, int]:
        return dict(zip(COUNTERS, astuple(self), strict=True))

    def is_zero(self) -> bool:
        return not any(astuple(self))

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> UsageCounters:
        """From values in :data:`COUNTERS` order (Redis answers: strings, or None for absent)."""
        return cls(*(int(v) if v is not None else 0 for v in values))


COUNTERS: tuple[str, ...] = tuple(f.name for f in fields(UsageCounters))

Key = tuple[int, str, str]
"""(minute: Unix seconds of the minute's start, dimension, name)."""


class UsageBatch(dict[Key, UsageCounters]):
    """``(minute, dimension, name) -> UsageCounters``; additive."""

    def add(self, minute: int, dimension: str, name: str, counters: UsageCounters) -> None:
        key = (minute, dimension, name)
        mine = self.get(key)
        if mine is None:
            self[key] = counters.copy()
        else:
            mine.add(counters)

    def merge(self, other: Mapping[Key, UsageCounters]) -> UsageBatch:
        """Add every counter of ``other`` into this batch (in place); returns self."""
        for key, counters in other.items():
            mine = self.get(key)
            if mine is None:
                self[key] = counters.copy()
            else:
                mine.add(counters)
        return self

    def requests(self, dimension: str | None = None) -> int:
        """Requests in ``dimension``; by default every request once (namespace and pair entries,
        since each request has exactly one of them)."""
        wanted = (dimension,) if dimension is not None else ("namespace", PAIR)
        return sum(c.requests for (_, d, _), c in self.items() if d in wanted)

    def chunks(self, size: int) -> Iterator[UsageBatch]:
        chunk = UsageBatch()
        for key, counters in self.items():
            chunk[key] = counters
            if len(chunk) >= size:
                yield chunk
                chunk = UsageBatch()
        if chunk:
            yield chunk

    def to_items(self) -> list[dict[str, Any]]:
        """The wire form: ``[{"minute", "dimension", "name", <counters>...}]``."""
        return [
            {"minute": m, "dimension": d, "name": n, **c.as_dict()} for (m, d, n), c in self.items()
        ]

    @classmethod
    def from_items(cls, items: Iterable[Mapping[str, Any]]) -> UsageBatch:
        batch = cls()
        for item in items:
            counters = UsageCounters.from_values(item.get(c, 0) for c in COUNTERS)
            batch.add(int(item["minute"]), str(item["dimension"]), str(item["name"]), counters)
        return batch

    def compact(self, now: float, max_entries: int) -> int:
        """Bound the batch's size while keeping every counter; returns entries folded away.

        Only needed while a sink is down. Entries whose minute bucket has already expired only
        matter for their day bucket, so they are folded into the day's first minute. If the
        batch is still above ``max_entries``, every entry older than the current minute is
        folded into its hour's first minute (the minute series loses its shape for that span,
        the hour and day totals stay exact).
        """
        if len(self) <= max_entries:
            return 0
        before = len(self)
        expired = now - MINUTE_RETENTION - MINUTE
        self._refold(lambda m: m - m % DAY if m < expired else m)
        if len(self) > max_entries:
            current = int(now) - int(now) % MINUTE
            self._refold(lambda m: m - m % 3600 if m < current else m)
        return before - len(self)

    def _refold(self, bucket: Callable[[int], int]) -> None:
        old = dict(self)
        self.clear()
        for (minute, dimension, name), counters in old.items():
            self.add(bucket(minute), dimension, name, counters)


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    time: datetime
    """The bucket's start (UTC)."""
    counters: UsageCounters


@dataclass(frozen=True, slots=True)
class TopEntry:
    name: str
    counters: UsageCounters


class RealtimeStore(Protocol):
    async def add(self, batch: Mapping[Key, UsageCounters]) -> None:
        """Add every counter of ``batch`` to its minute and day buckets."""

    async def series(
        self, dimension: str, name: str, resolution: str, start: datetime, end: datetime
    ) -> list[SeriesPoint]:
        """One point per bucket from the one holding ``start`` up to ``end`` (exclusive),
        zero-filled."""

    async def totals(
        self, dimension: str, names: Collection[str] | None, minutes: int
    ) -> dict[str, UsageCounters]:
        """Counters summed over the last ``minutes`` minute buckets (the current one included),
        per name: the given ``names`` (zero-filled), or every name with data."""

    async def top(self, dimension: str, minutes: int, limit: int) -> list[TopEntry]:
        """The ``limit`` names with the most requests in the last ``minutes`` minutes."""

    async def close(self) -> None: ...


# -- what both stores share ---------------------------------------------------------------------


def check_dimension(dimension: str) -> None:
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension must be one of {', '.join(DIMENSIONS)}, not {dimension!r}")


def pair_name(namespace: str, model: str | None) -> str:
    """The name of a :data:`PAIR` entry: ``namespace/model`` (``namespace/`` without a model)."""
    return f"{namespace}/{model or ''}"


def split_pair(name: str) -> tuple[str, str]:
    """``(namespace, model)`` of a :data:`PAIR` entry's name (``model`` may be empty)."""
    namespace, slash, model = name.partition("/")
    if not slash or not namespace:
        raise ValueError(f"a {PAIR} name is 'namespace/model' (model may be empty), not {name!r}")
    return namespace, model


def _dimensions(dimension: str, name: str) -> tuple[tuple[str, str], ...]:
    """The (dimension, name) series an entry counts for."""
    if dimension == PAIR:
        namespace, model = split_pair(name)
        if model:
            return (("namespace", namespace), ("model", model))
        return (("namespace", namespace),)
    check_dimension(dimension)
    return ((dimension, name),)


def epoch(moment: datetime) -> float:
    """Unix seconds of ``moment``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def bucket_starts(resolution: str, start: datetime, end: datetime) -> list[int]:
    """The starts of the buckets from the one holding ``start`` up to ``end`` (exclusive)."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, not {resolution!r}")
    step = STEP[resolution]
    first = int(epoch(start) // step) * step
    stop = epoch(end)
    if stop <= epoch(start):
        raise ValueError("end must be after start")
    count = -int(-(stop - first) // step)  # ceil
    if count > MAX_BUCKETS[resolution]:
        span = "24 hours" if resolution == "minute" else f"{MAX_DAY_BUCKETS} days"
        raise ValueError(
            f"{resolution} resolution covers at most {MAX_BUCKETS[resolution]} buckets ({span}); "
            f"this range needs {count}"
        )
    return [first + i * step for i in range(count)]


def window(now: float, minutes: int) -> list[int]:
    """The starts of the last ``minutes`` minute buckets, the current one included."""
    if not 1 <= minutes <= MAX_MINUTE_BUCKETS:
        raise ValueError(f"minutes must be between 1 and {MAX_MINUTE_BUCKETS}, not {minutes}")
    current = int(now // MINUTE) * MINUTE
    return [current - i * MINUTE for i in range(minutes - 1, -1, -1)]


def alive(resolution: str, start: int, now: float) -> bool:
    return start + STEP[resolution] + RETENTION[resolution] > now


Plan = dict[tuple[str, int], dict[tuple[str, str], UsageCounters]]


def plan(batch: Mapping[Key, UsageCounters], now: float) -> Plan:
    """The batch summed per (resolution, bucket start) -> (dimension, name); expired skipped."""
    buckets: Plan = {}
    for (minute, dimension, name), counters in batch.items():
        series = _dimensions(dimension, name)
        if minute % MINUTE:
            raise ValueError(f"minute {minute} is not the start of a minute")
        for resolution, start in (("minute", minute), ("day", minute - minute % DAY)):
            if not alive(resolution, start, now):
                continue
            entries = buckets.setdefault((resolution, start), {})
            for key in series:
                mine = entries.get(key)
                if mine is None:
                    entries[key] = counters.copy()
                else:
                    mine.add(counters)
    return buckets


def _utc(start: int) -> datetime:
    return datetime.fromtimestamp(start, UTC)


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")


def _ranked(totals: dict[str, UsageCounters], limit: int) -> list[TopEntry]:
    ranked = sorted(totals.items(), key=lambda item: (-item[1].requests, item[0]))
    return [TopEntry(name, counters) for name, counters in ranked[:limit] if counters.requests]


# -- in process -----------------------------------------------------------------------------


class MemoryRealtimeStore:
    """The embedded default: buckets in a dict, pruned by retention (at most once a minute)."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._buckets: Plan = {}
        self._pruned = 0.0

    async def add(self, batch: Mapping[Key, UsageCounters]) -> None:
        now = self._clock()
        for bucket, entries in plan(batch, now).items():
            mine = self._buckets.setdefault(bucket, {})
            for key, counters in entries.items():
                existing = mine.get(key)
                if existing is None:
                    mine[key] = counters
                else:
                    existing.add(counters)
        if now - self._pruned >= MINUTE:
            self._prune(now)

    def _prune(self, now: float) -> None:
        self._pruned = now
        for bucket in [b for b in self._buckets if not alive(*b, now)]:
            del self._buckets[bucket]

    def _bucket(self, resolution: str, start: int, now: float) -> dict[tuple[str, str], Any]:
        if not alive(resolution, start, now):
            return {}
        return self._buckets.get((resolution, start), {})

    async def series(
        self, dimension: str, name: str, resolution: str, start: datetime, end: datetime
    ) -> list[SeriesPoint]:
        check_dimension(dimension)
        now = self._clock()
        points = []
        for bucket in bucket_starts(resolution, start, end):
            counters = self._bucket(resolution, bucket, now).get((dimension, name))
            points.append(
                SeriesPoint(_utc(bucket), counters.copy() if counters else UsageCounters())
            )
        return points

    async def totals(
        self, dimension: str, names: Collection[str] | None, minutes: int
    ) -> dict[str, UsageCounters]:
        check_dimension(dimension)
        now = self._clock()
        found: dict[str, UsageCounters] = {n: UsageCounters() for n in names or ()}
        for bucket in window(now, minutes):
            for (d, name), counters in self._bucket("minute", bucket, now).items():
                if d != dimension or (names is not None and name not in found):
                    continue
                found.setdefault(name, UsageCounters()).add(counters)
        return found

    async def top(self, dimension: str, minutes: int, limit: int) -> list[TopEntry]:
        _check_limit(limit)
        return _ranked(await self.totals(dimension, None, minutes), limit)

    async def close(self) -> None:
        pass


# -- Redis ----------------------------------------------------------------------------------


class RedisRealtimeStore:
    """Buckets as Redis hashes; see the module documentation for the layout."""

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        clock: Clock = time.time,
        timeout: float = 5.0,
        cluster: bool = False,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.cluster = cluster
        self._clock = clock
        self._timeout = timeout
        self._redis: Redis | RedisCluster | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> Redis | RedisCluster:
        """The client of the running loop (a redis.asyncio connection belongs to one loop)."""
        loop = asyncio.get_running_loop()
        if self._redis is None or self._loop is not loop:
            self._redis = connect(
                self.url,
                cluster=self.cluster,
                decode_responses=True,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
            )
            self._loop = loop
        return self._redis

    def key(self, resolution: str, start: int) -> str:
        if resolution == "minute":
            return f"{self.prefix}:m:{time.strftime('%Y%m%d%H%M', time.gmtime(start))}"
        return f"{self.prefix}:d:{time.strftime('%Y%m%d', time.gmtime(start))}"

    async def add(self, batch: Mapping[Key, UsageCounters]) -> None:
        buckets = plan(batch, self._clock())
        if not buckets:
            return
        pipe = self._client().pipeline(transaction=False)
        for (resolution, start), entries in buckets.items():
            key = self.key(resolution, start)
            for (dimension, name), counters in entries.items():
                for counter, value in zip(COUNTERS, counters.values(), strict=True):
                    if value:
                        pipe.hincrby(key, f"{dimension}:{name}:{counter}", value)
            pipe.expireat(key, start + STEP[resolution] + RETENTION[resolution])
        await pipe.execute()

    async def series(
        self, dimension: str, name: str, resolution: str, start: datetime, end: datetime
    ) -> list[SeriesPoint]:
        check_dimension(dimension)
        buckets = bucket_starts(resolution, start, end)
        names = [f"{dimension}:{name}:{counter}" for counter in COUNTERS]
        pipe = self._client().pipeline(transaction=False)
        for bucket in buckets:
            pipe.hmget(self.key(resolution, bucket), names)
        answers = await pipe.execute()
        return [
            SeriesPoint(_utc(bucket), UsageCounters.from_values(values))
            for bucket, values in zip(buckets, answers, strict=True)
        ]

    async def totals(
        self, dimension: str, names: Collection[str] | None, minutes: int
    ) -> dict[str, UsageCounters]:
        check_dimension(dimension)
        buckets = window(self._clock(), minutes)
        pipe = self._client().pipeline(transaction=False)
        if names is not None:
            wanted = list(dict.fromkeys(names))
            if not wanted:
                return {}
            fields_ = [f"{dimension}:{n}:{c}" for n in wanted for c in COUNTERS]
            for bucket in buckets:
                pipe.hmget(self.key("minute", bucket), fields_)
            found = {n: UsageCounters() for n in wanted}
            width = len(COUNTERS)
            for values in await pipe.execute():
                for i, name in enumerate(wanted):
                    found[name].add(UsageCounters.from_values(values[i * width : (i + 1) * width]))
            return found
        for bucket in buckets:
            pipe.hgetall(self.key("minute", bucket))
        found = {}
        position = {c: i for i, c in enumerate(COUNTERS)}
        for answer in await pipe.execute():
            for field, value in answer.items():
                d, _, rest = field.partition(":")
                name, _, counter = rest.rpartition(":")
                if d != dimension or counter not in position:
                    continue
                counters = found.get(name)
                if counters is None:
                    counters = found[name] = UsageCounters()
                setattr(counters, counter, getattr(counters, counter) + int(value))
        return found

    async def top(self, dimension: str, minutes: int, limit: int) -> list[TopEntry]:
        _check_limit(limit)
        return _ranked(await self.totals(dimension, None, minutes), limit)

    async def close(self) -> None:
        redis, self._redis, self._loop = self._redis, None, None
        if redis is not None:
            await redis.aclose()


def store_for(
    redis_url: str | None, prefix: str = DEFAULT_PREFIX, *, cluster: bool = False
) -> RealtimeStore:
    """Redis (a cluster when ``cluster``) when a URL is given, else the in-process store."""
    if redis_url:
        return RedisRealtimeStore(redis_url, prefix, cluster=cluster)
    return MemoryRealtimeStore()
