"""The two background loads of ``bench.admin_isolation``, each run as its own process.

``client``: an admin client that hammers the config center's expensive realtime-usage queries in
``--concurrency`` loops (aiohttp, one connection per loop) until it is stopped, and appends one
line per answered query to ``--out``::

    <kind> <start, time.monotonic()> <latency s> <HTTP status, 0 if none> <body bytes>

``time.monotonic()`` is the system-wide CLOCK_MONOTONIC on Linux, so the parent can keep the
queries that finished inside its own measurement window.

``burn``: a CPU burner with no I/O at all, the control for "is it CPU contention or coupling?".
It spins pure Python arithmetic so as to use ``--cores`` (at most 1) of CPU time: it tracks its
own CPU time against ``cores x elapsed`` and spins while behind, sleeps while ahead, so on a busy
machine it competes for the CPU until it has had its share (up to :data:`MAX_DEBT` behind).

Both run until SIGTERM (default action: exit at once; every client line is already flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

KINDS = ("top-namespace", "top-model", "series-model")
MAX_DEBT = 0.5
"""CPU seconds the burner may fall behind its share and still catch up (by spinning longer)."""


def query_path(kind: str, serial: int, models: int) -> str:
    """The path of one expensive query; ``serial`` rotates the model asked for by series."""
    if kind == "top-namespace":
        return "/api/v1/usage/top?dimension=namespace&minutes=1440&limit=100"
    if kind == "top-model":
        return "/api/v1/usage/top?dimension=model&minutes=1440&limit=100"
    if kind == "series-model":
        # The last 1,440 minute buckets (the most a minute series may cover), the current one
        # included: start is 1,439 minutes before the current minute, end the next minute.
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        start, end = now - timedelta(minutes=1439), now + timedelta(minutes=1)
        return (
            f"/api/v1/usage/series?dimension=model&name=model-{serial % models:02d}"
            f"&resolution=minute&start={_iso(start)}&end={_iso(end)}"
        )
    raise ValueError(f"unknown query kind {kind!r}")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _client_loop(
    session: aiohttp.ClientSession, base: str, token: str, index: int, models: int, out: IO[str]
) -> None:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    serial = index
    while True:
        kind = KINDS[serial % len(KINDS)]
        url = base + query_path(kind, serial, models)
        started = time.monotonic()
        status, size = 0, 0
        try:
            async with session.get(url, headers=headers) as response:
                body = await response.read()
                status, size = response.status, len(body)
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.1)  # refused or cut: do not spin on a dead server
        out.write(f"{kind} {started:.6f} {time.monotonic() - started:.6f} {status} {size}\n")
        serial += 1


async def run_client(base: str, token: str, concurrency: int, models: int, out: IO[str]) -> None:
    import aiohttp  # here, not at the top: the burner must start light

    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(
            *(
                _client_loop(session, base.rstrip("/"), token, i, models, out)
                for i in range(concurrency)
            )
        )


def burn(cores: float) -> None:
    """Use ``cores`` (0 < cores <= 1) of CPU time, spinning in ~1 ms slices."""
    cores = min(max(cores, 0.01), 1.0)
    start_wall, start_cpu = time.monotonic(), time.process_time()
    x = 1
    while True:
        elapsed = time.monotonic() - start_wall
        behind = cores * elapsed - (time.process_time() - start_cpu)
        if behind > MAX_DEBT:  # starved for long (the machine is busy): forget the older debt
            start_cpu += behind - MAX_DEBT
            behind = MAX_DEBT
        if behind > 0:
            until = time.monotonic() + 0.001
            while time.monotonic() < until:
                for _ in range(200):
                    x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        else:
            time.sleep(min(0.002, -behind / cores))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.admin_load", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    client = sub.add_parser("client", help="hammer the config center's usage queries")
    client.add_argument("--url", required=True, help="the config center's base URL")
    client.add_argument("--concurrency", type=int, default=4)
    client.add_argument("--models", type=int, default=50, help="model-00 .. model-NN to ask for")
    client.add_argument("--out", required=True, help="file to append one line per query to")
    burner = sub.add_parser("burn", help="use a given share of one CPU core")
    burner.add_argument("--cores", type=float, required=True)
    args = parser.parse_args(argv)
    if args.command == "client":
        token = os.environ.get("AIGW_ADMIN_TOKEN", "")
        if not token:
            parser.error("set AIGW_ADMIN_TOKEN")
        with open(args.out, "a", buffering=1) as out:  # line-buffered: every line is flushed
            asyncio.run(run_client(args.url, token, args.concurrency, args.models, out))
    else:
        burn(args.cores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
