"""What one admit and one settle cost the gateway's process, measured alone in one event loop.

    .venv/bin/python -m bench.redis_client_cost [--redis-url redis://127.0.0.1:6379/9] [-n 4000]

The policy chain's per-request work outside the HTTP path, timed piece by piece with the bench's
plan (namespace ``bench``: rpm, tpm, tokens_per_day, all at :data:`bench.policy.HIGH_LIMIT`) on
uvloop, as in a gateway worker: the prompt count, the plan, then ``admit`` and ``settle``

- through the store the gateway builds (``limit_store_for``: the breaker around
  ``RedisLimitStore``, redis-py's asyncio client on a ``BlockingConnectionPool``),
- through ``RedisLimitStore`` alone (what the breaker costs),
- as a bare ``evalsha`` on redis-py's plain ``ConnectionPool`` (what the pool and ``Script`` cost),
- through a minimal pipelining RESP client written here (one connection, EVALSHA packed by hand,
  the commands of one loop iteration sent in one write, replies matched in order): a lower bound
  of what a purpose-built client would cost.

Each one sequentially (wall time and this process's CPU per call: the latency a request waits)
and with 32 concurrent callers (CPU per call: what throughput costs). Redis's own time per
EVALSHA is reported from ``INFO commandstats``. Whether redis-py found ``hiredis`` (its C reply
parser) is printed: try ``PYTHONPATH=DIR`` with ``pip install --target DIR hiredis`` to compare.
The database is flushed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench.policy import NAMESPACE, POLICY, TOKENS_PER_REQUEST
from bench.run import DEFAULT_REDIS_URL, REQUEST_BODY, UPSTREAM_MODEL

CONCURRENCY = 32


def bench_plan() -> Any:
    from aigw.config.schema import Limits
    from aigw.state.limits import LimitPlan, limit_kinds

    kinds = limit_kinds(Limits(**POLICY["limits"]))
    return LimitPlan.for_request(
        NAMESPACE, NAMESPACE, namespace_limits=kinds, key_limits={}, estimated_tokens=24
    )


async def timed(
    label: str, call: Callable[[int], Awaitable[Any]], n: int, rows: list[dict[str, Any]]
) -> None:
    """``call(i)`` n times in sequence, then n times from 32 concurrent callers."""
    for i in range(200):  # warm-up: connections, script cache
        await call(-i - 1)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await call(i)
    seq_wall = (time.perf_counter() - wall) / n * 1e6
    seq_cpu = (time.process_time() - cpu) / n * 1e6

    per = n // CONCURRENCY

    async def caller(k: int) -> None:
        for i in range(per):
            await call(n + k * per + i)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(caller(k) for k in range(CONCURRENCY)))
    done = per * CONCURRENCY
    elapsed = time.perf_counter() - wall
    row = {
        "what": label,
        "sequential_wall_us": round(seq_wall, 1),
        "sequential_cpu_us": round(seq_cpu, 1),
        "c32_per_s": round(done / elapsed),
        "c32_cpu_us": round((time.process_time() - cpu) / done * 1e6, 1),
    }
    rows.append(row)
    print(
        f"{label:<62} {row['sequential_wall_us']:>7.1f} {row['sequential_cpu_us']:>7.1f} "
        f"{row['c32_per_s']:>9,} {row['c32_cpu_us']:>7.1f}",
        flush=True,
    )


async def background_settles(label: str, store: Any, n: int, rows: list[dict[str, Any]]) -> None:
    """What the gateway does after a response: ``settle_soon`` without awaiting it, then
    the batch goes out; CPU per settle, all of it, until every outcome has arrived."""
    plan = bench_plan()
    admissions = [await store.admit(plan) for _ in range(n)]
    landed = 0
    all_landed = asyncio.Event()

    def done(future: Any) -> None:
        nonlocal landed
        landed += 1
        if landed == n:
            all_landed.set()

    cpu = time.process_time()
    for i, admission in enumerate(admissions):
        store.settle_soon(admission, TOKENS_PER_REQUEST, 0, done=done)
        if i % CONCURRENCY == CONCURRENCY - 1:
            await asyncio.sleep(0)  # other requests' work between batches, as in a worker
    await all_landed.wait()
    per_call = (time.process_time() - cpu) / n * 1e6
    rows.append({"what": label, "c32_cpu_us": round(per_call, 1)})
    print(f"{label:<62} {'':>7} {'':>7} {'':>9} {per_call:>7.1f}", flush=True)


class PipelinedRESP(asyncio.Protocol):
    """A minimal Redis client: commands queued in one loop iteration go out in one write."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.waiting:
            value, end = _parse(self.buffer, 0)
            if end == 0:
                return
            self.buffer = self.buffer[end:]
            future = self.waiting.popleft()
            if isinstance(value, Exception):
                future.set_exception(value)
            else:
                future.set_result(value)

    def call(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            raw = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
        if not self.outgoing:
            loop.call_soon(self._flush)
        self.outgoing.append(b"".join(parts))
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append(future)
        return future

    def _flush(self) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(self.outgoing))
        self.outgoing = []


def _parse(buf: bytes, i: int) -> tuple[Any, int]:
    """One RESP2 reply at ``buf[i:]``: (value, end), end 0 if incomplete."""
    j = buf.find(b"\r\n", i)
    if j < 0:
        return None, 0
    kind, head = buf[i : i + 1], buf[i + 1 : j]
    if kind == b":":
        return int(head), j + 2
    if kind == b"+":
        return head, j + 2
    if kind == b"-":
        return RuntimeError(head.decode()), j + 2
    if kind == b"$":
        size = int(head)
        if size < 0:
            return None, j + 2
        if len(buf) < j + 4 + size:
            return None, 0
        return buf[j + 2 : j + 2 + size], j + 4 + size
    if kind == b"*":
        items, pos = [], j + 2
        for _ in range(int(head)):
            item, pos = _parse(buf, pos)
            if pos == 0:
                return None, 0
            items.append(item)
        return items, pos
    raise ValueError(f"unexpected RESP type {kind!r}")


async def measure(url: str, n: int) -> list[dict[str, Any]]:
    import redis
    from redis.asyncio import ConnectionPool, Redis

    from aigw.state.limits import limit_store_for
    from aigw.state.limits_redis import ADMIT_SCRIPT, SETTLE_SCRIPT, RedisLimitStore
    from aigw.tokens import counting

    rows: list[dict[str, Any]] = []
    sync = redis.Redis.from_url(url)
    sync.flushdb()
    print(f"redis-py {redis.__version__}, hiredis parser: {redis.utils.HIREDIS_AVAILABLE}")
    print(
        f"{'per call, microseconds':<62} {'seq wall':>7} {'seq CPU':>7} {'C=32 /s':>9} "
        f"{'C=32 CPU':>7}"
    )
    plan = bench_plan()
    messages = REQUEST_BODY["messages"]

    async def count(i: int) -> Any:
        return counting.count_chat(UPSTREAM_MODEL, messages)

    async def make_plan(i: int) -> Any:
        return bench_plan()

    await timed("prompt count (count_chat, 'Say hello')", count, n, rows)
    await timed("LimitPlan.for_request (3 checks)", make_plan, n, rows)

    for label, store in (
        ("gateway's store (breaker + RedisLimitStore)", limit_store_for(url)),
        ("RedisLimitStore without the breaker", RedisLimitStore(url)),
    ):
        admissions: deque[Any] = deque()

        async def admit(i: int, store: Any = store, admissions: deque[Any] = admissions) -> None:
            admissions.append(await store.admit(plan))

        async def settle(i: int, store: Any = store, admissions: deque[Any] = admissions) -> None:
            await store.settle(admissions.popleft(), TOKENS_PER_REQUEST, 0)

        await timed(f"{label}: admit", admit, n, rows)
        await timed(f"{label}: settle", settle, n, rows)
        await background_settles(f"{label}: settle_soon (background, batched)", store, n, rows)
        await store.close()

    keys = RedisLimitStore(url)._keys(plan)
    admit_sha = sync.script_load(ADMIT_SCRIPT)
    sync.script_load(SETTLE_SCRIPT)

    def admit_args(i: int) -> list[Any]:
        args: list[Any] = ["", f"cost-{i}", 24, 0, 600_000, 3_600_000, 0, 1]
        for check in plan.checks:
            args += [check.kind, check.limit]
        return args

    plain = Redis.from_pool(ConnectionPool.from_url(url, max_connections=256))

    async def evalsha(i: int) -> Any:
        return await plain.evalsha(admit_sha, len(keys), *keys, *admit_args(i))

    await timed("redis-py evalsha on a plain ConnectionPool: admit", evalsha, n, rows)
    await plain.aclose()

    host, port, db = _address(sync)
    _, client = await asyncio.get_running_loop().create_connection(PipelinedRESP, host, port)
    await client.call("SELECT", db)

    async def pipelined(i: int) -> Any:
        return await client.call("EVALSHA", admit_sha, len(keys), *keys, *admit_args(i))

    await timed("minimal pipelining RESP client: admit (lower bound)", pipelined, n, rows)
    assert client.transport is not None
    client.transport.close()

    stats = sync.info("commandstats").get("cmdstat_evalsha", {})
    if stats.get("calls"):
        print(
            f"Redis: {stats['usec'] / stats['calls']:.1f} us per EVALSHA on the server "
            "(all clients since its start or CONFIG RESETSTAT)"
        )
    sync.flushdb()
    sync.close()
    return rows


def _address(client: Any) -> tuple[str, int, int]:
    kwargs = client.connection_pool.connection_kwargs
    return kwargs.get("host", "127.0.0.1"), int(kwargs.get("port", 6379)), int(kwargs.get("db", 0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_client_cost", description=__doc__)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="flushed before and after")
    parser.add_argument("-n", type=int, default=4000, help="calls per measurement [4000]")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(measure(args.redis_url, args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
