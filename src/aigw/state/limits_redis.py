"""Limits in Redis: one Lua script per admit and one per settle, standalone or Redis Cluster.

Key layout (``P`` is the prefix, ``aigw:lim`` by default; ``{ns:NAME}`` is the hash tag, so all
of a namespace's keys, its keys' limits included, live in one cluster slot)::

    P:{ns:NAME}:SCOPE:rpm               hash   sliding window: t (total), o (oldest bucket that
    P:{ns:NAME}:SCOPE:tpm               hash     may hold something), n (newest bucket), and one
                                                 field per second: <unix second> -> amount
    P:{ns:NAME}:SCOPE:rpd               hash   p (UTC day number), v (count in that day)
    P:{ns:NAME}:SCOPE:tokens_per_day    hash   p, v
    P:{ns:NAME}:SCOPE:spend_per_day_usd hash   p, v (micro-USD)
    P:{ns:NAME}:SCOPE:tokens_per_month  hash   p (year * 12 + month - 1), v
    P:{ns:NAME}:SCOPE:spend_per_month_usd hash p, v (micro-USD)
    P:{ns:NAME}:SCOPE:concurrency       zset   admission id -> lease expiry (Unix ms)
    P:{ns:NAME}:pending                 zset   admission id -> settle deadline (Unix ms)

Every write sets a relative expiry (PEXPIRE) from the script's own clock: a window key lives
61 s after its newest bucket, a period key until its day or month ends, a concurrency key one
lease after its newest lease, the pending set one settle TTL after its newest admission (each
plus one second). Nothing grows without bound, and nothing depends on the gateway's and Redis's
clocks agreeing.

The clock is Redis's (``TIME`` inside the script) unless a ``clock`` is given (tests): one clock
for every gateway is what makes windows exact across machines.

The scripts are exact mirrors of :class:`~aigw.state.limits_memory.MemoryLimitStore`'s
``_admit`` and ``_settle``; change both together.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aigw.state.limits import (
    CONCURRENCY_RETRY_MS,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_PREFIX,
    DEFAULT_SETTLE_TTL_SECONDS,
    WINDOW_SECONDS,
    Admission,
    CheckResult,
    Clock,
    LimitCheck,
    LimitPlan,
    build_admission,
    new_admission_id,
    unchecked_admission,
)
from aigw.state.redis_cluster_pipe import ClusterPipes, slot_of
from aigw.state.redis_pipe import PipelinedRedis, Script, pack_args

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

log = logging.getLogger("aigw.state.limits")

_COMMON = """
local W = %(window)d
local DAY = 86400000
local MARGIN = 1000
local CONCURRENCY_RETRY = %(concurrency_retry)d

local SLIDING = {rpm = true, tpm = true}
local DAILY = {rpd = true, tokens_per_day = true, spend_per_day_usd = true}
local TOKENS = {tpm = true, tokens_per_day = true, tokens_per_month = true}
local SPEND = {spend_per_day_usd = true, spend_per_month_usd = true}

local function fmt(n) return string.format('%%d', n) end

local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- days since 1970-01-01 <-> proleptic Gregorian (y, m, d); H. Hinnant's algorithms
local function civil(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- (period id, end in ms) of the UTC day or month holding `now`
local function period(kind, now)
  local day = math.floor(now / DAY)
  if DAILY[kind] then return day, (day + 1) * DAY end
  local y, m = civil(day)
  local ny, nm = y, m + 1
  if nm > 12 then ny, nm = y + 1, 1 end
  return y * 12 + m - 1, days_from_civil(ny, nm, 1) * DAY
end

-- drop the buckets that left the window ending at second `sec`; total and newest, or nil
local function slide(key, sec)
  local st = redis.call('HMGET', key, 't', 'o', 'n')
  if not st[1] then return nil end
  local t, o, n = tonumber(st[1]), tonumber(st[2]), tonumber(st[3])
  local low = sec - W
  if n < low then
    redis.call('DEL', key)
    return nil
  end
  if o < low then
    local names = {}
    for b = o, low - 1 do names[#names + 1] = fmt(b) end
    local values = redis.call('HMGET', key, unpack(names))
    local gone = {}
    for i = 1, #names do
      if values[i] then
        t = t - tonumber(values[i])
        gone[#gone + 1] = names[i]
      end
    end
    if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
    if t < 0 then t = 0 end
    redis.call('HSET', key, 't', fmt(t), 'o', fmt(low))
  end
  return t, n
end
"""

_ADMIT = """
-- when the oldest buckets will have drained enough for `cost` to fit
local function sliding_retry(key, sec, n, used, cost, limit, now)
  if cost > limit then return -1 end
  local need = used + cost - limit
  local last = math.max(sec, n)
  local first = sec - W
  local names = {}
  for b = first, math.min(last, sec + W) do names[#names + 1] = fmt(b) end
  local values = redis.call('HMGET', key, unpack(names))
  for i = 1, #names do
    if values[i] then need = need - tonumber(values[i]) end
    if need <= 0 then return (first + i - 1 + W + 1) * 1000 - now end
  end
  return (last + W + 1) * 1000 - now
end

local now = clock(ARGV[1])
local id = ARGV[2]
local tokens = tonumber(ARGV[3])
local micro = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
local dry = ARGV[7] == '1'
local needs_settle = ARGV[8] == '1'
local count = #KEYS - 1
local sec = math.floor(now / 1000)

local kinds, limits, costs, used, newest, same = {}, {}, {}, {}, {}, {}
local allowed = true
for i = 1, count do
  local key = KEYS[i]
  local kind = ARGV[7 + 2 * i]
  local u = 0
  if SLIDING[kind] then
    local t, n = slide(key, sec)
    if t then
      u = t
      newest[i] = n
    end
  elseif kind == 'concurrency' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))
    u = redis.call('ZCARD', key)
  else
    local p = period(kind, now)
    local st = redis.call('HMGET', key, 'p', 'v')
    if st[1] and tonumber(st[1]) == p then
      u = tonumber(st[2])
      same[i] = true
    end
  end
  kinds[i] = kind
  limits[i] = tonumber(ARGV[8 + 2 * i])
  costs[i] = 1
  if TOKENS[kind] then costs[i] = tokens elseif SPEND[kind] then costs[i] = micro end
  used[i] = u
  if u + costs[i] > limits[i] then allowed = false end
end

local reserve = allowed and not dry
local out = {allowed and 1 or 0, now}
for i = 1, count do
  local key, kind, limit, u, c = KEYS[i], kinds[i], limits[i], used[i], costs[i]
  local fits = u + c <= limit
  local after = u
  if reserve then after = u + c end
  local reset, retry = 0, 0
  if SLIDING[kind] then
    local n = newest[i]
    if reserve and c > 0 then
      -- the key's expiry only moves when a new second starts being written
      local b = sec
      if n then
        b = math.max(sec, n)
        redis.call('HINCRBY', key, fmt(b), fmt(c))
        if b == n then
          redis.call('HSET', key, 't', fmt(u + c))
        else
          redis.call('HSET', key, 't', fmt(u + c), 'n', fmt(b))
          redis.call('PEXPIRE', key, fmt((b + W + 1) * 1000 - now + MARGIN))
        end
      else
        redis.call('HSET', key, fmt(b), fmt(c), 't', fmt(c), 'o', fmt(b), 'n', fmt(b))
        redis.call('PEXPIRE', key, fmt((b + W + 1) * 1000 - now + MARGIN))
      end
      n = b
    end
    if n and after > 0 then reset = (n + W + 1) * 1000 - now end
    if not fits then
      if n then retry = sliding_retry(key, sec, n, u, c, limit, now) else retry = -1 end
    end
  elseif kind == 'concurrency' then
    if reserve then
      redis.call('ZADD', key, fmt(now + lease), id)
      redis.call('PEXPIRE', key, fmt(lease + MARGIN))
    end
    if not fits then
      if c > limit then retry = -1 else retry = CONCURRENCY_RETRY end
    end
  else
    local p, e = period(kind, now)
    if reserve and c > 0 then
      -- the key expires when its period ends: set once, when the period starts being counted
      if same[i] then
        redis.call('HINCRBY', key, 'v', fmt(c))
      else
        redis.call('HSET', key, 'p', fmt(p), 'v', fmt(c))
        redis.call('PEXPIRE', key, fmt(e - now + MARGIN))
      end
    end
    if after > 0 then reset = e - now end
    if not fits then
      if c > limit then retry = -1 else retry = e - now end
    end
  end
  out[#out + 1] = u
  out[#out + 1] = reset
  out[#out + 1] = retry
end

if reserve and needs_settle then
  local pending = KEYS[count + 1]
  redis.call('ZREMRANGEBYSCORE', pending, '-inf', fmt(now))
  redis.call('ZADD', pending, fmt(now + ttl), id)
  redis.call('PEXPIRE', pending, fmt(ttl + MARGIN))
end
return out
"""

_SETTLE = """
local now = clock(ARGV[1])
local id = ARGV[2]
local at = tonumber(ARGV[3])
local token_delta = tonumber(ARGV[4])
local cost_delta = tonumber(ARGV[5])
local count = #KEYS - 1
local sec = math.floor(now / 1000)

local pending = KEYS[count + 1]
redis.call('ZREMRANGEBYSCORE', pending, '-inf', fmt(now))
local first = redis.call('ZREM', pending, id) == 1

for i = 1, count do
  local key = KEYS[i]
  local kind = ARGV[5 + i]
  if kind == 'concurrency' then
    redis.call('ZREM', key, id)
  elseif first and kind ~= 'rpm' and kind ~= 'rpd' then
    local d = cost_delta
    if TOKENS[kind] then d = token_delta end
    if d ~= 0 then
      if SLIDING[kind] then
        local t = slide(key, sec)
        local b = math.floor(at / 1000)
        if t and b >= sec - W then
          local v = redis.call('HGET', key, fmt(b))
          if v then
            local old = tonumber(v)
            local new = math.max(0, old + d)
            redis.call('HSET', key, fmt(b), fmt(new), 't', fmt(math.max(0, t + new - old)))
          end
        end
      else
        local p = period(kind, at)
        local st = redis.call('HMGET', key, 'p', 'v')
        if st[1] and tonumber(st[1]) == p then
          redis.call('HSET', key, 'v', fmt(math.max(0, tonumber(st[2]) + d)))
        end
      end
    end
  end
end
if first then return 1 end
return 0
"""

_PARAMS = {"window": WINDOW_SECONDS, "concurrency_retry": CONCURRENCY_RETRY_MS}
ADMIT_SCRIPT = (_COMMON % _PARAMS) + _ADMIT
SETTLE_SCRIPT = (_COMMON % _PARAMS) + _SETTLE


def limit_key(prefix: str, namespace: str, scope: str, kind: str) -> str:
    return f"{prefix}:{{ns:{namespace}}}:{scope}:{kind}"


def pending_key(prefix: str, namespace: str) -> str:
    return f"{prefix}:{{ns:{namespace}}}:pending"


ADMIT = Script(ADMIT_SCRIPT)
SETTLE = Script(SETTLE_SCRIPT)
_ADMIT_VARIABLE_ARGS = 8
_SETTLE_VARIABLE_ARGS = 5
_MAX_PACKED_PLANS = 10_000


@dataclass(frozen=True, slots=True)
class _Packed:
    """The constant parts of one plan's two commands, packed in RESP once: only the per-request
    arguments between them are packed per call."""

    keys: list[str]
    slot: int
    """The cluster hash slot of every key (they share the namespace's hash tag)."""
    admit_head: bytes
    admit_tail: bytes
    settle_head: bytes
    settle_tail: bytes

    @classmethod
    def of(cls, keys: list[str], checks: tuple[LimitCheck, ...]) -> _Packed:
        numkeys = len(keys)
        pairs: list[str | int] = []
        for check in checks:
            pairs += [check.kind, check.limit]
        admit_count = 3 + numkeys + _ADMIT_VARIABLE_ARGS + len(pairs)
        settle_count = 3 + numkeys + _SETTLE_VARIABLE_ARGS + len(checks)
        return cls(
            keys=keys,
            slot=slot_of(keys[0]),
            admit_head=b"*%d\r\n" % admit_count
            + pack_args([b"EVALSHA", ADMIT.sha, numkeys, *keys]),
            admit_tail=pack_args(pairs),
            settle_head=b"*%d\r\n" % settle_count
            + pack_args([b"EVALSHA", SETTLE.sha, numkeys, *keys]),
            settle_tail=pack_args([check.kind for check in checks]),
        )


class RedisLimitStore:
    """Limits shared by every gateway through Redis (standalone or cluster).

    Standalone Redis over TCP or a Unix socket is spoken to by :class:`PipelinedRedis` (one
    pipelined connection per worker, commands packed once per plan), a Redis Cluster by
    :class:`ClusterPipes` (one such connection per master, routed by slot); TLS goes through
    redis-py. ``timeout`` bounds how long a reply may be outstanding; the breaker
    (:mod:`aigw.state.breaker`) puts its own, shorter, deadline on top. Commands are never retried
    by the client: a timed-out admit may have run, and running it twice would reserve twice.
    """

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        cluster: bool = False,
        clock: Clock | None = None,
        timeout: float = 1.0,
        max_connections: int = 256,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        settle_ttl_seconds: float = DEFAULT_SETTLE_TTL_SECONDS,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.cluster = cluster
        self._clock = clock
        self._timeout = timeout
        self._max_connections = max_connections
        self._lease_ms = int(lease_seconds * 1000)
        self._settle_ttl_ms = int(settle_ttl_seconds * 1000)
        self._lease_arg = pack_args([self._lease_ms, self._settle_ttl_ms])
        self._admit_deadline: float | None = None
        self._settle_deadline: float | None = None
        self._pipe: PipelinedRedis | ClusterPipes | None = None
        if cluster and not url.startswith("rediss://"):
            self._pipe = ClusterPipes(url, timeout=timeout)
        elif not url.startswith("rediss://"):
            self._pipe = PipelinedRedis(url, timeout=timeout)
        self._packed: dict[tuple[str, tuple[LimitCheck, ...]], _Packed] = {}
        self._settling: set[asyncio.Task[Any]] = set()
        self._redis: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: tuple[AsyncScript, AsyncScript] | None = None
        self._ready = False
        self._ready_lock: asyncio.Lock | None = None

    def set_deadlines(self, admit: float, settle: float) -> bool:
        """Bound each admit and settle to these many seconds, raising ``TimeoutError`` past
        them. Returns whether this store enforces them itself (the pipelined client does, with
        one timer for all calls); otherwise the caller must."""
        self._admit_deadline, self._settle_deadline = admit, settle
        return self._pipe is not None

    def _client(self) -> tuple[AsyncScript, AsyncScript]:
        """redis-py's scripts bound to the running loop's client (a connection belongs to one
        loop)."""
        loop = asyncio.get_running_loop()
        if self._scripts is None or self._loop is not loop:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            no_retry = Retry(NoBackoff(), 0)
            if self.cluster:
                from redis.asyncio.cluster import RedisCluster

                client: Any = RedisCluster.from_url(
                    self.url,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    max_connections=self._max_connections,
                    retry=no_retry,
                )
            else:
                from redis.asyncio import BlockingConnectionPool, Redis

                pool = BlockingConnectionPool.from_url(
                    self.url,
                    max_connections=self._max_connections,
                    timeout=self._timeout,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    retry=no_retry,
                )
                client = Redis.from_pool(pool)  # closes the pool with the client
            self._redis = client
            self._loop = loop
            self._ready = not self.cluster
            self._ready_lock = asyncio.Lock()
            self._scripts = (
                client.register_script(ADMIT_SCRIPT),
                client.register_script(SETTLE_SCRIPT),
            )
        return self._scripts

    async def _ready_scripts(self) -> tuple[AsyncScript, AsyncScript]:
        """The scripts, once the client can run them. An asyncio cluster client must learn
        the topology before its first command: concurrent first commands that each start doing
        so lose connections to one another (redis-py's advice: ``initialize()`` first)."""
        scripts = self._client()
        if not self._ready:
            lock = self._ready_lock
            assert lock is not None
            async with lock:
                if not self._ready:
                    await self._redis.initialize()
                    self._ready = True
        return scripts

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(math.floor(self._clock() * 1000))

    def _keys(self, plan: LimitPlan) -> list[str]:
        return self._packed_plan(plan).keys

    def _packed_plan(self, plan: LimitPlan) -> _Packed:
        """The plan's keys and constant command parts; plans of one key share them (the checks
        are the snapshot's, only the estimates change per request)."""
        cache_key = (plan.namespace, plan.checks)
        packed = self._packed.get(cache_key)
        if packed is None:
            keys = [limit_key(self.prefix, plan.namespace, c.scope, c.kind) for c in plan.checks]
            keys.append(pending_key(self.prefix, plan.namespace))
            if len(self._packed) >= _MAX_PACKED_PLANS:  # configurations churned a lot
                self._packed.clear()
            packed = self._packed[cache_key] = _Packed.of(keys, plan.checks)
        return packed

    async def admit(self, plan: LimitPlan, *, admission_id: str | None = None) -> Admission:
        if not plan.checks:
            return unchecked_admission(plan, admission_id, self._local_ms())
        return await self._admit(plan, admission_id or new_admission_id(), dry_run=False)

    async def peek(self, plan: LimitPlan) -> Admission:
        if not plan.checks:
            return unchecked_admission(plan, None, self._local_ms())
        return await self._admit(plan, new_admission_id(), dry_run=True)

    def _local_ms(self) -> int:
        return math.floor((self._clock or time.time)() * 1000)

    async def _admit(self, plan: LimitPlan, admission_id: str, *, dry_run: bool) -> Admission:
        packed = self._packed_plan(plan)
        variable = [
            self._now_arg(),
            admission_id,
            plan.estimated_tokens,
            plan.estimated_cost_micro,
        ]
        flags = [1 if dry_run else 0, 1 if plan.needs_settle() else 0]
        if self._pipe is not None:
            command = b"".join(
                (
                    packed.admit_head,
                    pack_args(variable),
                    self._lease_arg,
                    pack_args(flags),
                    packed.admit_tail,
                )
            )
            answer = await self._pipe.evalsha(
                ADMIT, command, self._admit_deadline, slot=packed.slot
            )
        else:
            admit, _ = await self._ready_scripts()
            args: list[Any] = [*variable, self._lease_ms, self._settle_ttl_ms, *flags]
            for check in plan.checks:
                args += [check.kind, check.limit]
            answer = await admit(keys=packed.keys, args=args)
        allowed, at_ms = bool(int(answer[0])), int(answer[1])
        values = [int(v) for v in answer[2:]]
        results = [CheckResult(*values[i : i + 3]) for i in range(0, len(values), 3)]
        return build_admission(plan, admission_id, allowed, at_ms, results)

    def _settle_args(
        self, admission: Admission, actual_tokens: int, actual_cost_micro: int
    ) -> list[Any]:
        plan = admission.plan
        return [
            self._now_arg(),
            admission.id,
            admission.at_ms,
            actual_tokens - plan.estimated_tokens,
            actual_cost_micro - plan.estimated_cost_micro,
        ]

    def _settle_command(self, admission: Admission, args: list[Any]) -> bytes:
        packed = self._packed_plan(admission.plan)
        return packed.settle_head + pack_args(args) + packed.settle_tail

    async def settle(
        self, admission: Admission, actual_tokens: int, actual_cost_micro: int
    ) -> bool:
        plan = admission.plan
        if not admission.allowed or not plan.needs_settle():
            return False
        args = self._settle_args(admission, actual_tokens, actual_cost_micro)
        if self._pipe is not None:
            command = self._settle_command(admission, args)
            slot = self._packed_plan(plan).slot
            answer = await self._pipe.evalsha(SETTLE, command, self._settle_deadline, slot=slot)
            return bool(int(answer))
        _, settle = await self._ready_scripts()
        args += [check.kind for check in plan.checks]
        return bool(int(await settle(keys=self._keys(plan), args=args)))

    def settle_soon(
        self,
        admission: Admission,
        actual_tokens: int,
        actual_cost_micro: int,
        done: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> None:
        """:meth:`settle` in the background, batched with other commands; ``done(future)``
        gets the outcome. :meth:`close` waits for it."""
        if not admission.allowed or not admission.plan.needs_settle():
            return
        report = done or _log_failure
        if self._pipe is not None:
            args = self._settle_args(admission, actual_tokens, actual_cost_micro)
            command = self._settle_command(admission, args)
            slot = self._packed_plan(admission.plan).slot
            self._pipe.evalsha_soon(SETTLE, command, report, slot=slot)
            return
        task = asyncio.get_running_loop().create_task(
            self.settle(admission, actual_tokens, actual_cost_micro)
        )
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        task.add_done_callback(report)

    async def close(self) -> None:
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=self._timeout)
        if self._pipe is not None:
            await self._pipe.close()
        redis, self._redis, self._loop, self._scripts = self._redis, None, None, None
        if redis is not None:
            await redis.aclose()


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("limits: a settle failed: %s", future.exception())
