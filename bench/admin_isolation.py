"""Does an expensive admin query slow gateway traffic? Gateway latency with and without admin load.

Everything runs on 127.0.0.1 with free ports (and the machine's Redis, in a dedicated database):

    wrk ──▶ aigw gateway (1 worker) ──▶ nginx (canned chat.completion)
                  │ follows (long-poll), usage counters ──▶ Redis db N
    admin client ──▶ aigw config-center ──▶ Redis db N (a day of minute buckets) + SQLite

The gateway serves from its in-memory snapshot and never queries the config center or the
database on the request path; the config center answers the admin's usage queries from Redis.
The bench fills Redis with a large realtime data set (through ``RedisRealtimeStore.add``), times
each expensive query alone, then measures the gateway with wrk (8 connections, 1 thread) in
phases of the same length:

1. ``quiet``: no admin load;
2. ``admin``: an admin client (bench/admin_load.py) runs the expensive usage queries (``top``
   over 1,440 minutes, a 24-hour minute ``series``) in ``--admin-concurrency`` loops;
3. ``cpu-control``: no admin load, but a CPU burner (pure Python arithmetic, no I/O, separate
   processes) using as much CPU as the admin load did (admin client + config center + Redis,
   above their quiet use). If the gateway slows down as much here as in ``admin``, the cause is
   the shared CPU, not a coupling between the planes.

``--rounds N`` repeats the three; one more ``quiet`` phase at the end shows the drift. The figures
are the medians per phase. ``--admin-nice 19`` runs the admin side (and the burner) at the lowest
CPU priority; ``--pin`` puts the gateway side (gateway, nginx, wrk) and the admin side (config
center, admin client, burner) on separate CPUs, as separate machines would.

The building blocks (nginx, process management, wrk and its parser, CPU accounting) are
bench/run.py's. See docs/benchmarks.md, "Admin queries and gateway latency".
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import secrets
import shlex
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.run import (
    HOST,
    OTHERS_CPU_WARNING,
    ROOT,
    BenchError,
    Child,
    Interrupted,
    Processes,
    _indent,
    children_cpu_seconds,
    describe_errors,
    find_tool,
    free_port,
    gateway_document,
    gateway_log_problems,
    group_cpu_seconds,
    http_request,
    interrupts_as_exceptions,
    log,
    machine_info,
    preflight,
    run_wrk,
    start_nginx,
    system_busy_seconds,
    upstream_counters,
    wait_until,
    write_json,
)

DEFAULT_OUT = "bench/results/admin-isolation.json"
DEFAULT_REDIS = "redis://127.0.0.1:6379"
DEFAULT_REDIS_DB = 13
CONNECTIONS = 8  # wrk connections (one thread)
NAMESPACES = 500
MODELS = 50
MINUTES = 1440
SEED = 20261128


# --------------------------------------------------------------------------------------------
# Redis: the dedicated database, the data set.
# --------------------------------------------------------------------------------------------


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def flush_db(url: str, when: str) -> None:
    try:
        client = redis_client(url)
        try:
            keys = client.dbsize()
            client.flushdb()
        finally:
            client.close()
    except Exception as exc:  # redis.RedisError, OSError: say what failed, with the URL
        raise BenchError(f"cannot flush Redis {url} ({when}): {exc}") from None
    log(f"Redis {url}: flushed {keys:,} keys ({when})")


def redis_pid(url: str) -> int | None:
    """The Redis server's PID when it runs on this machine where /proc can see it."""
    client = redis_client(url)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    try:  # the same PID namespace: the PID is Redis's here too
        return pid if "redis" in Path(f"/proc/{pid}/comm").read_text() else None
    except OSError:
        return None


def build_dataset(
    ns_per_minute: int, models_per_minute: int, now: float
) -> tuple[list[Any], dict[str, Any]]:
    """A day of minute buckets, one ``UsageBatch`` per hour, deterministic (seeded).

    ``NAMESPACES`` namespaces (``ns-000``..) and ``MODELS`` models (``model-00``..); in each of
    the last ``MINUTES`` minutes (the current one included) ``ns_per_minute`` namespaces and
    ``models_per_minute`` models, drawn at random, have traffic.
    """
    from aigw.state.realtime import UsageBatch, UsageCounters

    rng = random.Random(SEED)
    current = int(now) - int(now) % 60
    batches, batch, entries = [], UsageBatch(), 0

    def counters(low: int, high: int) -> UsageCounters:
        requests = rng.randint(low, high)
        return UsageCounters(
            requests=requests,
            errors=rng.randint(1, 3) if rng.random() < 0.2 else 0,
            prompt_tokens=requests * rng.randint(50, 800),
            completion_tokens=requests * rng.randint(10, 300),
            cost_micro_usd=requests * rng.randint(20, 4000),
            latency_ms_total=requests * rng.randint(200, 3000),
        )

    for age in range(MINUTES - 1, -1, -1):
        minute = current - age * 60
        for i in rng.sample(range(NAMESPACES), ns_per_minute):
            batch.add(minute, "namespace", f"ns-{i:03d}", counters(1, 60))
        for i in rng.sample(range(MODELS), models_per_minute):
            batch.add(minute, "model", f"model-{i:02d}", counters(1, 300))
        entries += ns_per_minute + models_per_minute
        if age % 60 == 0:
            batches.append(batch)
            batch = UsageBatch()
    return batches, {
        "namespaces": NAMESPACES,
        "models": MODELS,
        "minutes": MINUTES,
        "namespaces_per_minute": ns_per_minute,
        "models_per_minute": models_per_minute,
        "entries": entries,
    }


def fill_redis(url: str, ns_per_minute: int, models_per_minute: int) -> dict[str, Any]:
    """Write the data set with ``RedisRealtimeStore.add``; its size as Redis holds it."""
    from aigw.state.realtime import DEFAULT_PREFIX, RedisRealtimeStore

    batches, info = build_dataset(ns_per_minute, models_per_minute, time.time())
    client = redis_client(url)
    try:
        memory_before = int(client.info("memory")["used_memory"])

        async def fill() -> None:
            store = RedisRealtimeStore(url, DEFAULT_PREFIX)
            try:
                for batch in batches:
                    await store.add(batch)
            finally:
                await store.close()

        started = time.monotonic()
        asyncio.run(fill())
        info["fill_s"] = round(time.monotonic() - started, 2)
        minute_keys = sorted(client.scan_iter(f"{DEFAULT_PREFIX}:m:*", count=1000))
        pipe = client.pipeline(transaction=False)
        for key in minute_keys:
            pipe.hlen(key)
        info["minute_hashes"] = len(minute_keys)
        info["minute_fields"] = sum(pipe.execute())
        info["redis_keys"] = int(client.dbsize())
        info["redis_memory_mb"] = round(
            (int(client.info("memory")["used_memory"]) - memory_before) / 2**20, 1
        )
    finally:
        client.close()
    log(
        f"data set: {info['entries']:,} (minute, name) entries = {info['minute_fields']:,} hash "
        f"fields in {info['minute_hashes']:,} minute hashes, ~{info['redis_memory_mb']} MB in "
        f"Redis, written in {info['fill_s']} s"
    )
    return info


# --------------------------------------------------------------------------------------------
# The config center and the gateway following it.
# --------------------------------------------------------------------------------------------


def base_env(tmp: Path, redis_url: str, secrets_: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")}
    env.update(secrets_)
    env.update(
        {"AIGW_REDIS_URL": redis_url, "AIGW_DATA_DIR": str(tmp / "data"), "AIGW_LOG_LEVEL": "INFO"}
    )
    return env


def admin_side(argv: list[str], nice: int, cpus: Sequence[int] | None) -> list[str]:
    """``argv`` run on ``cpus`` (None: any) at CPU priority ``nice`` (0: unchanged)."""
    if cpus:
        argv = [find_tool("taskset"), "-c", ",".join(map(str, cpus)), *argv]
    return [find_tool("nice"), "-n", str(nice), *argv] if nice else argv


def lower_priority(child: Child, nice: int) -> Child:
    """Give the child's session the CPU priority ``nice`` too.

    Every child runs in its own session, and with autogroup scheduling
    (``/proc/sys/kernel/sched_autogroup_enabled``, on by default in most distributions) the
    kernel first shares the CPU between sessions and only then, by nice value, between the
    processes of a session: ``nice`` alone would change nothing here. A session's own weight is
    the nice value in ``/proc/PID/autogroup``.
    """
    path = Path(f"/proc/{child.process.pid}/autogroup")
    if nice and path.exists():
        try:
            path.write_text(str(nice))
        except OSError as exc:
            log(f"  !!! cannot set the autogroup nice of {child.name}: {exc}")
    return child


def start_config_center(
    procs: Processes, tmp: Path, env: dict[str, str], nice: int, cpus: Sequence[int] | None
) -> tuple[Child, str]:
    port = free_port()
    (tmp / "data").mkdir(exist_ok=True)
    argv = [
        sys.executable, "-m", "aigw", "config-center", "--host", HOST, "--port", str(port),
        "--database-url", f"sqlite:///{tmp / 'data' / 'aigw.db'}", "--workers", "1",
    ]  # fmt: skip
    log(
        f"starting config center on {HOST}:{port} (SQLite in {tmp / 'data'})"
        + (f" at nice {nice}" if nice else "")
        + (f" on CPU {','.join(map(str, cpus))}" if cpus else "")
    )
    child = procs.start("config-center", admin_side(argv, nice, cpus), env)
    lower_priority(child, nice)
    url = f"http://{HOST}:{port}"
    wait_until(
        child,
        lambda: http_request(f"{url}/readyz", timeout=1)[0] == 200,
        "GET /readyz answered 200",
        timeout=60,
    )
    return child, url


def put_config(center_url: str, admin_token: str, document: dict[str, Any]) -> int:
    """PUT the whole document through the admin API; the new version."""
    request = urllib.request.Request(
        f"{center_url}/api/v1/config",
        data=json.dumps(document).encode(),
        method="PUT",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {admin_token}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise BenchError(
            f"PUT /api/v1/config answered {exc.code}: {exc.read()[:500].decode(errors='replace')}"
        ) from None
    except OSError as exc:
        raise BenchError(f"PUT /api/v1/config failed: {exc}") from None
    version = answer.get("version")
    if not isinstance(version, int):
        raise BenchError(f"PUT /api/v1/config answered no version: {answer}")
    log(f"configuration imported through the admin API as version {version}")
    return version


def start_gateway(
    procs: Processes, tmp: Path, env: dict[str, str], center_url: str, version: int
) -> tuple[Child, str]:
    port = free_port()
    argv = [
        sys.executable, "-m", "aigw", "gateway", "--config-center", center_url,
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {
        **env,
        "AIGW_CONFIG_CENTER": center_url,
        "AIGW_SNAPSHOT_CACHE": str(tmp / "gateway-snapshot.json"),
        "AIGW_ACCESS_LOG": "0",
    }
    log(f"starting gateway on {HOST}:{port} (1 worker) following {center_url}")
    child = procs.start("gateway", argv, env)
    readyz = f"http://{HOST}:{port}/readyz"

    def ready() -> bool:
        status, body = http_request(readyz, timeout=1)
        if status != 200:
            return False
        return json.loads(body).get("config_center_version") == version

    try:
        wait_until(child, ready, f"/readyz ready with config version {version}", timeout=60)
    except BenchError as exc:
        raise BenchError(f"the gateway failed to start: `{shlex.join(argv)}`\n{exc}") from None
    log(f"gateway ready: {http_request(readyz)[1].decode()}")
    return child, f"http://{HOST}:{port}/v1/chat/completions"


# --------------------------------------------------------------------------------------------
# Admin queries: one at a time (their cost), and the client's log (the load's figures).
# --------------------------------------------------------------------------------------------


def single_query_times(center_url: str, admin_token: str, repeat: int) -> dict[str, Any]:
    """Each expensive query run ``repeat`` times in a row, after one warm-up, on a quiet machine."""
    from bench.admin_load import KINDS, query_path

    result = {}
    for kind in KINDS:
        times, size = [], 0
        for i in range(repeat + 1):
            url = center_url + query_path(kind, i, MODELS)
            started = time.monotonic()
            status, body = http_request(url, key=admin_token, timeout=120)
            elapsed = time.monotonic() - started
            if status != 200:
                raise BenchError(f"GET {url} answered {status or 'nothing'}: {body[:300]!r}")
            if i:
                times.append(elapsed * 1000)
            size = len(body)
        if kind.startswith("top") and len(json.loads(body)["items"]) == 0:
            raise BenchError(f"GET {url} found no data: is the data set in the right Redis db?")
        result[kind] = {
            "median_ms": round(statistics.median(times), 1),
            "min_ms": round(min(times), 1),
            "max_ms": round(max(times), 1),
            "response_bytes": size,
            "runs": repeat,
        }
        log(
            f"single {kind} query: median {result[kind]['median_ms']} ms "
            f"(min {result[kind]['min_ms']}, max {result[kind]['max_ms']}; {size:,} bytes)"
        )
    return result


def admin_window_stats(path: Path, start: float, end: float) -> dict[str, Any]:
    """The queries that finished inside [start, end] (monotonic seconds): rate and latency."""
    rows: list[tuple[str, float, int]] = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split()
        if len(parts) != 5:
            continue  # a line cut by SIGTERM
        kind, began, latency, status = parts[0], float(parts[1]), float(parts[2]), int(parts[3])
        if start <= began + latency <= end:
            rows.append((kind, latency * 1000, status))
    span = end - start

    def summary(selected: list[tuple[str, float, int]]) -> dict[str, Any]:
        ok = sorted(ms for _, ms, status in selected if status == 200)
        return {
            "queries": len(selected),
            "errors": sum(1 for _, _, status in selected if status != 200),
            "per_sec": round(len(ok) / span, 2) if span > 0 else 0.0,
            "p50_ms": round(statistics.median(ok), 1) if ok else None,
            "p90_ms": round(_percentile(ok, 0.9), 1) if ok else None,
            "max_ms": round(ok[-1], 1) if ok else None,
        }

    kinds = sorted({kind for kind, _, _ in rows})
    return {"all": summary(rows), **{k: summary([r for r in rows if r[0] == k]) for k in kinds}}


def _percentile(ordered: list[float], q: float) -> float:
    index = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[index]


# --------------------------------------------------------------------------------------------
# One phase: a background load (or none), a warm-up, one measured wrk run with CPU accounting.
# --------------------------------------------------------------------------------------------


def measure_phase(
    name: str,
    url: str,
    key: str,
    status_url: str,
    pgids: dict[str, int],
    duration: int,
    warmup: int,
) -> dict[str, Any]:
    """wrk against the gateway, with the CPU every party used (as bench.run.measure does)."""
    if warmup > 0:
        run_wrk(url, CONNECTIONS, warmup, key)
    log(f"[{name}] wrk c={CONNECTIONS} for {duration}s")
    counters_before = upstream_counters(status_url)
    cpu_before = {party: group_cpu_seconds(pgid) for party, pgid in pgids.items()}
    wrk_before = children_cpu_seconds()
    busy_before = system_busy_seconds()
    started = time.monotonic()
    result, raw = run_wrk(url, CONNECTIONS, duration, key)
    ended = time.monotonic()
    elapsed = ended - started
    counters_after = upstream_counters(status_url)
    cpu = {
        party: (group_cpu_seconds(pgid) - cpu_before[party]) / elapsed
        for party, pgid in pgids.items()
    }
    cpu["wrk"] = (children_cpu_seconds() - wrk_before) / elapsed
    busy = (system_busy_seconds() - busy_before) / elapsed
    cpu["others"] = max(0.0, busy - sum(cpu.values()))
    result["cpu_cores"] = {party: round(value, 2) for party, value in cpu.items()}
    result["cpu_cores_total"] = round(busy, 2)
    result["window"] = (started, ended)
    if counters_before and counters_after:
        served = counters_after["requests"] - counters_before["requests"] - 1
        result["upstream_requests"] = served
        if served < result["requests"]:
            result["upstream_mismatch"] = True
    result["raw"] = raw
    lat = result["latency_ms"]
    log(
        f"  -> {result['requests_per_sec']:,.0f} req/s, p50 {lat['p50']:.3f} ms, "
        f"p99 {lat['p99']:.3f} ms; CPU cores: "
        + ", ".join(f"{party} {value:.2f}" for party, value in result["cpu_cores"].items())
    )
    if result["errors"]:
        log(f"  !!! {describe_errors(result)}")
    if result.get("upstream_mismatch"):
        log("  !!! nginx served fewer requests than wrk counted")
    if cpu["others"] > OTHERS_CPU_WARNING:
        log(
            f"  !!! other processes used {cpu['others']:.2f} CPU cores during this phase: "
            "the machine was not quiet"
        )
    return result


def others_busy(pgids: dict[str, int], seconds: float) -> float:
    """CPU cores used over ``seconds`` by processes other than ours (and wrk: none runs now)."""
    ours = sum(group_cpu_seconds(pgid) for pgid in pgids.values())
    busy = system_busy_seconds()
    time.sleep(seconds)
    ours = sum(group_cpu_seconds(pgid) for pgid in pgids.values()) - ours
    return max(0.0, system_busy_seconds() - busy - ours) / seconds


def wait_for_quiet(pgids: dict[str, int], timeout: float) -> None:
    """Wait (up to ``timeout``) until other processes have used little CPU for two seconds."""
    deadline, quiet, said = time.monotonic() + timeout, 0, False
    while time.monotonic() < deadline:
        busy = others_busy(pgids, 1.0)
        quiet = quiet + 1 if busy <= OTHERS_CPU_WARNING else 0
        if quiet >= 2:
            return
        if not said and busy > OTHERS_CPU_WARNING:
            log(f"  other processes are using {busy:.2f} CPU cores: waiting for a quiet machine")
            said = True
    log(f"  the machine did not get quiet within {timeout:.0f}s: measuring anyway")


def run_phase(
    name: str,
    procs: Processes,
    start_load: Callable[[], list[Child]],
    pgids: dict[str, int],
    target: tuple[str, str, str],
    duration: int,
    warmup: int,
    settle: float,
    retries: int,
    quiet_wait: float,
) -> dict[str, Any]:
    """Measure one phase; again (up to ``retries`` times) if other processes took CPU during it."""
    for attempt in range(retries + 1):
        wait_for_quiet(pgids, quiet_wait)
        result = _run_phase_once(name, procs, start_load, pgids, target, duration, warmup, settle)
        result["attempts"] = attempt + 1
        if result["cpu_cores"]["others"] <= OTHERS_CPU_WARNING:
            break
        if attempt < retries:
            log(f"  measuring [{name}] again (attempt {attempt + 2} of {retries + 1})")
    return result


def _run_phase_once(
    name: str,
    procs: Processes,
    start_load: Callable[[], list[Child]],
    pgids: dict[str, int],
    target: tuple[str, str, str],
    duration: int,
    warmup: int,
    settle: float,
) -> dict[str, Any]:
    """Start the phase's load, let it settle, measure, stop the load."""
    load = start_load()
    try:
        for child in load:
            pgids = {**pgids, child.name: child.pgid}
        if load:
            time.sleep(settle)
            for child in load:
                if child.process.poll() is not None:
                    raise BenchError(
                        f"{child.name} exited with status {child.process.returncode}:\n"
                        f"{_indent(child.log_tail())}"
                    )
        url, key, status_url = target
        result = measure_phase(name, url, key, status_url, pgids, duration, warmup)
        for child in load:
            if child.process.poll() is not None:
                raise BenchError(
                    f"{child.name} exited during the phase (status {child.process.returncode}):\n"
                    f"{_indent(child.log_tail())}"
                )
    finally:
        for child in load:
            Processes.stop(child)
            procs.children.remove(child)
    return result


# --------------------------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.admin_isolation",
        description="Gateway latency (wrk) while the config center serves expensive admin "
        "usage queries, against a quiet run and a CPU-burner control.",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run [10]")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per phase [2]")
    parser.add_argument(
        "--admin-concurrency", type=int, default=4, help="concurrent admin query loops [4]"
    )
    parser.add_argument(
        "--namespaces-per-minute",
        type=int,
        default=10,
        help=f"namespaces (of {NAMESPACES}) with traffic in each minute of the data set [10]",
    )
    parser.add_argument(
        "--models-per-minute",
        type=int,
        default=5,
        help=f"models (of {MODELS}) with traffic in each minute of the data set [5]",
    )
    parser.add_argument(
        "--admin-nice",
        type=int,
        default=0,
        help="run the config center, the admin client and the CPU burner at this nice value "
        "(process and autogroup), e.g. 19: lowest CPU priority [0: same as the gateway]",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="give the gateway, nginx and wrk half of the CPUs and the admin side (config center, "
        "admin client, burner) the other half, as separate machines would",
    )
    parser.add_argument(
        "--busy-retries",
        type=int,
        default=2,
        help="measure a phase again when other processes used over "
        f"{OTHERS_CPU_WARNING} CPU cores during it, up to this many times [2]",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30,
        help="before each phase, wait up to this many seconds for other processes to leave the "
        "CPU alone [30]",
    )
    parser.add_argument("--redis", default=DEFAULT_REDIS, help=f"Redis server [{DEFAULT_REDIS}]")
    parser.add_argument(
        "--redis-db",
        type=int,
        default=DEFAULT_REDIS_DB,
        help=f"Redis database to use, FLUSHED before and after [{DEFAULT_REDIS_DB}]",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat quiet / admin / cpu-control this many times (then one last quiet) [1]",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"JSON results file [{DEFAULT_OUT}]")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 3 s per phase, 1 s warm-up"
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.duration, args.warmup = 3, 1
    if min(args.duration, args.admin_concurrency, args.rounds) < 1:
        parser.error("--duration, --admin-concurrency and --rounds must be >= 1")
    if min(args.warmup, args.busy_retries, args.quiet_wait) < 0:
        parser.error("--warmup, --busy-retries and --quiet-wait must be >= 0")
    if (
        not 1 <= args.namespaces_per_minute <= NAMESPACES
        or not 1 <= args.models_per_minute <= MODELS
    ):
        parser.error(f"--namespaces-per-minute: 1..{NAMESPACES}; --models-per-minute: 1..{MODELS}")
    if not 0 <= args.admin_nice <= 19:
        parser.error("--admin-nice: 0..19")
    if args.redis_db == 0:
        parser.error("--redis-db: not 0 (the default database of everything else); it is flushed")
    return args


def benchmark(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from aigw.config.keys import generate_key

    info = machine_info()
    log(
        f"{info['nproc']} CPU(s) ({info['cpu_model']}), python {info['python']}, "
        f"aigw {info['aigw']}, {info['wrk'].split(' [')[0]}, {info['nginx']}"
    )
    redis_url = f"{args.redis.rstrip('/')}/{args.redis_db}"
    key = generate_key()
    admin_token = secrets.token_urlsafe(24)
    env = base_env(
        tmp,
        redis_url,
        {
            "AIGW_MASTER_KEY": secrets.token_urlsafe(32),
            "AIGW_ADMIN_TOKEN": admin_token,
            "AIGW_GATEWAY_TOKEN": secrets.token_urlsafe(24),
        },
    )
    args.admin_cpus = None
    if args.pin:
        # wrk, nginx and the gateway inherit this process's CPUs; the admin side gets the others.
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise BenchError("--pin needs at least 2 CPUs")
        half = len(cpus) // 2
        args.gateway_cpus, args.admin_cpus = cpus[:half], cpus[half:]
        os.sched_setaffinity(0, args.gateway_cpus)
        log(
            f"pinned: gateway, nginx and wrk on CPU {','.join(map(str, args.gateway_cpus))}; "
            f"config center, admin client and burner on CPU {','.join(map(str, args.admin_cpus))}"
            " (Redis: not pinned)"
        )
    flush_db(redis_url, "before")
    try:
        with Processes(tmp) as procs:
            return _benchmark(args, tmp, procs, info, env, redis_url, key, admin_token)
    finally:
        # After the processes are gone (the gateway flushes its usage counters when it stops).
        flush_db(redis_url, "after")


def _benchmark(
    args: argparse.Namespace,
    tmp: Path,
    procs: Processes,
    info: dict[str, Any],
    env: dict[str, str],
    redis_url: str,
    key: str,
    admin_token: str,
) -> dict[str, Any]:
    upstream_url = start_nginx(procs, tmp)
    nginx = procs.children[-1]
    center, center_url = start_config_center(procs, tmp, env, args.admin_nice, args.admin_cpus)
    version = put_config(center_url, admin_token, gateway_document(upstream_url, key))
    gateway, gateway_url = start_gateway(procs, tmp, env, center_url, version)
    preflight("gateway", gateway_url, key)

    dataset = fill_redis(redis_url, args.namespaces_per_minute, args.models_per_minute)
    single = single_query_times(center_url, admin_token, repeat=3 if args.quick else 5)

    pgids = {"gateway": gateway.pgid, "nginx": nginx.pgid, "config_center": center.pgid}
    pid = redis_pid(redis_url)
    if pid is not None:
        pgids["redis"] = pid  # a daemon: it leads its own process group
    else:
        log("Redis's process is not visible here: its CPU is counted under 'others'")
    status_url = upstream_url.replace("/v1/chat/completions", "/nginx_status")
    admin_log = tmp / "admin-queries.log"
    child_env = {**env, "PYTHONPATH": str(ROOT)}

    def no_load() -> list[Child]:
        return []

    def admin_load() -> list[Child]:
        argv = [
            sys.executable, "-m", "bench.admin_load", "client", "--url", center_url,
            "--concurrency", str(args.admin_concurrency), "--models", str(MODELS),
            "--out", str(admin_log),
        ]  # fmt: skip
        log(f"starting the admin client: {args.admin_concurrency} query loops")
        argv = admin_side(argv, args.admin_nice, args.admin_cpus)
        child = procs.start("admin_client", argv, child_env)
        return [lower_priority(child, args.admin_nice)]

    def burner_load(cores: float) -> Callable[[], list[Child]]:
        def start() -> list[Child]:
            # Two at least: one thread alone wins less CPU than the multi-threaded admin side.
            count = max(2, math.ceil(cores))
            share = cores / count
            log(f"starting the CPU control: {count} burner process(es) of {share:.2f} core each")
            argv = [sys.executable, "-m", "bench.admin_load", "burn", "--cores", f"{share:.3f}"]
            argv = admin_side(argv, args.admin_nice, args.admin_cpus)
            return [
                lower_priority(procs.start(f"burner_{i}", argv, child_env), args.admin_nice)
                for i in range(count)
            ]

        return start

    def phase(name: str, round_: int, load: Callable[[], list[Child]]) -> dict[str, Any]:
        result = run_phase(
            f"{name}, round {round_}" if args.rounds > 1 else name,
            procs,
            load,
            pgids,
            (gateway_url, key, status_url),
            args.duration,
            args.warmup,
            settle=max(1.5, args.warmup),
            retries=args.busy_retries,
            quiet_wait=args.quiet_wait,
        )
        return {"phase": name, "round": round_, **result}

    runs: list[dict[str, Any]] = []
    for round_ in range(1, args.rounds + 1):
        quiet = phase("quiet", round_, no_load)
        admin = phase("admin", round_, admin_load)
        admin["admin_queries"] = stats = admin_window_stats(admin_log, *admin["window"])
        log(
            f"  admin queries finished in the window: {stats['all']['queries']} "
            f"({stats['all']['per_sec']}/s), p50 {stats['all']['p50_ms']} ms, "
            f"p90 {stats['all']['p90_ms']} ms, errors {stats['all']['errors']}"
        )
        runs += [quiet, admin]
        # The control: as much CPU as the admin load took (client, config center and Redis,
        # above what they used in the quiet phase), burnt by processes that touch nothing else.
        burn = sum(
            admin["cpu_cores"].get(p, 0.0) - quiet["cpu_cores"].get(p, 0.0)
            for p in ("admin_client", "config_center", "redis")
        )
        if pid is None:  # Redis's share is unknown: "others" above the quiet phase stands for it
            burn += admin["cpu_cores"]["others"] - quiet["cpu_cores"]["others"]
        burn = round(max(0.0, burn), 2)
        if burn >= 0.05:
            control = phase("cpu-control", round_, burner_load(burn))
            control["burner_target_cores"] = burn
            runs.append(control)
        else:
            log(f"the admin load used {burn:.2f} cores: no CPU control needed")
    runs.append(phase("quiet", args.rounds + 1, no_load))  # the drift check: quiet at the end too

    problems = gateway_log_problems(gateway)
    for child in (gateway, center, nginx):
        if child.process.poll() is not None:
            raise BenchError(
                f"{child.name} exited (status {child.process.returncode}) during the run:\n"
                f"{_indent(child.log_tail())}"
            )
    log("stopping everything")
    for run in runs:
        run["window"] = [round(t, 3) for t in run["window"]]
    rows = [run_row(run) for run in runs]
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, "-m", "bench.admin_isolation", *args.argv]),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "connections": CONNECTIONS,
            "wrk_threads": 1,
            "gateway_workers": 1,
            "admin_concurrency": args.admin_concurrency,
            "admin_nice": args.admin_nice,
            "pin": {"gateway_side": args.gateway_cpus, "admin_side": args.admin_cpus}
            if args.admin_cpus
            else None,
            "busy_retries": args.busy_retries,
            "quiet_wait_s": args.quiet_wait,
            "redis": redis_url,
        },
        "machine": info,
        "dataset": dataset,
        "single_query": single,
        "rows": rows,
        "summary": summarize(rows),
        "runs": runs,
        "gateway_log_problems": problems,
        "valid": not any(run["errors"] or run.get("upstream_mismatch") for run in runs),
    }


LOAD_PARTIES = ("admin_client", "config_center", "redis")
MEDIAN_METRICS = (
    "rps", "p50_ms", "p99_ms", "gateway_cpu", "gateway_cpu_us_per_request", "load_cpu", "others_cpu"
)  # fmt: skip


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    """One measured phase in a line."""
    cpu = run["cpu_cores"]
    row = {
        "phase": run["phase"],
        "round": run["round"],
        "rps": run["requests_per_sec"],
        "p50_ms": run["latency_ms"]["p50"],
        "p99_ms": run["latency_ms"]["p99"],
        "gateway_cpu": cpu.get("gateway", 0.0),
        # CPU time the gateway spent per request: unchanged if it only got less CPU, higher if
        # the admin load made it do more work per request.
        "gateway_cpu_us_per_request": round(
            1e6 * cpu.get("gateway", 0.0) / run["requests_per_sec"]
            if run["requests_per_sec"]
            else 0
        ),
        "load_cpu": round(
            sum(v for k, v in cpu.items() if k in LOAD_PARTIES or k.startswith("burner")), 2
        ),
        "others_cpu": cpu["others"],
        "attempts": run.get("attempts", 1),
        "errors": run["errors"] + bool(run.get("upstream_mismatch")),
    }
    if "admin_queries" in run:
        row["admin_per_sec"] = run["admin_queries"]["all"]["per_sec"]
        row["admin_p50_ms"] = run["admin_queries"]["all"]["p50_ms"]
    return row


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per phase: the median of its runs, and the change from the quiet median."""
    order = list(dict.fromkeys(row["phase"] for row in rows))
    medians: dict[str, dict[str, Any]] = {}
    for name in order:
        mine = [row for row in rows if row["phase"] == name]
        medians[name] = {
            "phase": name,
            "runs": len(mine),
            **{metric: statistics.median(row[metric] for row in mine) for metric in MEDIAN_METRICS},
            "rps_range": [min(r["rps"] for r in mine), max(r["rps"] for r in mine)],
            "p50_range_ms": [min(r["p50_ms"] for r in mine), max(r["p50_ms"] for r in mine)],
            "p99_range_ms": [min(r["p99_ms"] for r in mine), max(r["p99_ms"] for r in mine)],
        }
        if "admin_per_sec" in mine[0]:
            medians[name]["admin_per_sec"] = statistics.median(r["admin_per_sec"] for r in mine)
            medians[name]["admin_p50_ms"] = statistics.median(
                r["admin_p50_ms"] for r in mine if r["admin_p50_ms"] is not None
            )
    quiet = medians["quiet"]
    for row in medians.values():
        row["rps_change_pct"] = round(100 * (row["rps"] / quiet["rps"] - 1), 1)
        row["p50_change_ms"] = round(row["p50_ms"] - quiet["p50_ms"], 3)
        row["p99_change_ms"] = round(row["p99_ms"] - quiet["p99_ms"], 3)
    return list(medians.values())


def print_report(document: dict[str, Any]) -> None:
    print()
    header = (
        f"{'round':>5} {'phase':<12} {'gateway req/s':>13} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'gw CPU':>6} {'load CPU':>8} {'others':>6} {'tries':>5} {'admin q/s':>9} "
        f"{'admin p50':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in document["rows"]:
        admin = (
            f"{row['admin_per_sec']:>9.1f} {row['admin_p50_ms'] or 0:>7.0f}ms"
            if "admin_per_sec" in row
            else ""
        )
        print(
            f"{row['round']:>5} {row['phase']:<12} {row['rps']:>13,.0f} {row['p50_ms']:>7.3f} "
            f"{row['p99_ms']:>7.2f} {row['gateway_cpu']:>6.2f} {row['load_cpu']:>8.2f} "
            f"{row['others_cpu']:>6.2f} {row['attempts']:>5} {admin}"
            + ("  !!! ERRORS" if row["errors"] else "")
        )
    print()
    header = (
        f"{'phase (median)':<15} {'runs':>4} {'gateway req/s':>13} {'Δ':>7} {'p50 ms':>7} "
        f"{'Δ ms':>7} {'p99 ms':>7} {'Δ ms':>7} {'gw CPU':>6} {'µs/req':>6} {'load CPU':>8} "
        f"{'admin q/s':>9} {'admin p50':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in document["summary"]:
        admin = (
            f"{row['admin_per_sec']:>9.1f} {row['admin_p50_ms']:>7.0f}ms"
            if "admin_per_sec" in row
            else ""
        )
        print(
            f"{row['phase']:<15} {row['runs']:>4} {row['rps']:>13,.0f} "
            f"{row['rps_change_pct']:>+6.1f}% {row['p50_ms']:>7.3f} {row['p50_change_ms']:>+7.3f} "
            f"{row['p99_ms']:>7.2f} {row['p99_change_ms']:>+7.2f} {row['gateway_cpu']:>6.2f} "
            f"{row['gateway_cpu_us_per_request']:>6.0f} {row['load_cpu']:>8.2f} {admin}"
        )
    print()
    settings = document["settings"]
    print(
        f"wrk c={settings['connections']} x {settings['duration_s']} s per phase, 1 gateway "
        f"worker, {settings['admin_concurrency']} admin query loops"
        + (f", admin side at nice {settings['admin_nice']}" if settings["admin_nice"] else "")
        + (
            f", pinned: gateway side on CPU {settings['pin']['gateway_side']}, admin side on "
            f"CPU {settings['pin']['admin_side']}"
            if settings.get("pin")
            else ""
        )
    )
    single = document["single_query"]
    print(
        "single admin queries on a quiet machine (median): "
        + ", ".join(f"{kind} {v['median_ms']:.0f} ms" for kind, v in single.items())
    )
    data = document["dataset"]
    print(
        f"data set: {data['minute_fields']:,} hash fields in {data['minute_hashes']:,} minute "
        f"buckets ({data['namespaces']} namespaces / {data['models']} models; "
        f"{data['namespaces_per_minute']} + {data['models_per_minute']} active per minute), "
        f"~{data['redis_memory_mb']} MB"
    )
    for run in document["runs"]:
        if "admin_queries" in run:
            print(
                f"admin queries, round {run['round']}: "
                + ", ".join(
                    f"{kind} {v['queries']} (p50 {v['p50_ms']} ms)"
                    for kind, v in run["admin_queries"].items()
                    if kind != "all"
                )
            )
    busy = [
        f"{row['phase']} (round {row['round']}) {row['others_cpu']:.2f}"
        for row in document["rows"]
        if row["others_cpu"] > OTHERS_CPU_WARNING
    ]
    if busy:
        print(f"!!! other processes used CPU (cores): {', '.join(busy)}; the machine was not quiet")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if not out.is_absolute() and args.out == DEFAULT_OUT:
        out = ROOT / DEFAULT_OUT
    try:
        with (
            interrupts_as_exceptions(),
            tempfile.TemporaryDirectory(prefix="aigw-admin-bench-") as tmp,
        ):
            document = benchmark(args, Path(tmp))
    except (KeyboardInterrupt, Interrupted):
        print(
            "\nbench: interrupted; every process it started has been stopped and the Redis "
            "database flushed",
            file=sys.stderr,
        )
        return 130
    except BenchError as exc:
        print(f"\nbench: FAILED: {exc}", file=sys.stderr)
        return 1
    print_report(document)
    if document["gateway_log_problems"]:
        print("gateway output had warnings/errors (first lines):")
        print(_indent("\n".join(document["gateway_log_problems"])))
        print()
    write_json(out, document)
    log(f"results written to {out}")
    if not document["valid"]:
        print("bench: some runs had errors (see above); exiting with status 1", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
