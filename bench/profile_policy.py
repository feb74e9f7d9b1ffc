"""Where the policy chain's CPU goes: py-spy on the foundation and the policy gateway under wrk.

    .venv/bin/pip install py-spy          # once; not a dependency of aigw
    .venv/bin/python -m bench.profile_policy [--connections 32] [--duration 10] [--workers 2]

For each of the two gateways of ``make bench`` (``gateway``: the foundation configuration;
``policy``: the same plus the namespace policy of :mod:`bench.policy`, limits in Redis), the same
setup as ``bench.run``: nginx upstream, a wrk warm-up, then ``wrk`` for ``--duration`` seconds
while ``py-spy record --subprocesses --nonblocking --format raw`` samples every worker (only
threads on the CPU are sampled). Each sample is put in the first category of :data:`CATEGORIES`
one of its frames matches, and the category's share of the samples is turned into microseconds of
CPU per request with the gateway's CPU use from /proc (cores / req/s): a comparison of where each
gateway spends its time per request, not a second throughput measurement (py-spy itself takes
some CPU on the same cores). The raw stacks are kept next to ``--out`` (``*-gateway.raw.txt``,
``*-policy.raw.txt``) for a flame graph (e.g. ``flamegraph.pl`` or speedscope).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import policy
from bench.run import (
    DEFAULT_REDIS_URL,
    ROOT,
    BenchError,
    Child,
    Interrupted,
    Processes,
    _indent,
    group_cpu_seconds,
    interrupts_as_exceptions,
    log,
    preflight,
    run_wrk,
    start_gateway,
    start_nginx,
    validate_gateway_config,
    write_gateway_config,
    write_json,
)

DEFAULT_OUT = "bench/results/profile-policy.json"

# (label, substrings of a frame "function (file)"): a sample goes to the first label one of its
# frames matches, so the order matters (a settle's redis-py frames count as the settle).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("settle (background task, incl. redis-py)", ("settle (aigw/", "settle_later (aigw/")),
    ("prompt token counting", ("estimate_tokens (", "aigw/tokens/")),
    ("usage counters to Redis (per request record, flush each second)", ("/realtime.py",)),
    (
        "admit: redis-py client (send, parse, pool)",
        ("(redis/",),
    ),
    (
        "admit: aigw limits code (plan, breaker, wait_for task, answer, headers)",
        ("aigw/state/", "LimitEnforcer.admit", "wait_for (asyncio"),
    ),
    ("upstream relay (aiohttp client)", ("UpstreamClient.relay", "(aiohttp/")),
    ("rest of the request (auth, body, routing, response, metrics)", ("(aigw/",)),
    ("granian / asyncio glue (Python)", ("(granian/", "(asyncio/", "(uvloop")),
    ("no Python frame (granian's Rust threads, native code)", ("<empty>",)),
]
OTHER = "other Python"


def categorize(raw: str) -> tuple[Counter[str], int]:
    """py-spy's raw (collapsed) stacks -> samples per category, and the total."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        stack, _, number = line.rpartition(" ")
        samples = int(number)
        total += samples
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            frames = ["<empty>"]
        for label, needles in CATEGORIES:
            if any(needle in frame for frame in frames for needle in needles):
                counts[label] += samples
                break
        else:
            counts[OTHER] += samples
    return counts, total


def profile(
    name: str, child: Child, url: str, key: str, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise BenchError("py-spy not found: .venv/bin/pip install py-spy")
    log(f"{name}: wrk c={args.connections} warm-up 2s")
    run_wrk(url, args.connections, 2, key)
    raw_path = out.with_name(f"{out.stem}-{name}.raw.txt")
    argv = [
        py_spy, "record", "--pid", str(child.pgid), "--subprocesses", "--nonblocking",
        "--nolineno", "--rate", str(args.rate), "--format", "raw",
        "--duration", str(args.duration + 2), "--output", str(raw_path),
    ]  # fmt: skip
    spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1)  # py-spy attached before wrk starts
        log(f"{name}: wrk c={args.connections} for {args.duration}s under py-spy")
        cpu_before = group_cpu_seconds(child.pgid)
        started = time.monotonic()
        result, _ = run_wrk(url, args.connections, args.duration, key)
        elapsed = time.monotonic() - started
        cores = (group_cpu_seconds(child.pgid) - cpu_before) / elapsed
        output, _ = spy.communicate(timeout=60)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    if spy.returncode != 0 or not raw_path.exists():
        raise BenchError(f"py-spy failed ({spy.returncode}):\n{_indent(output.decode())}")
    if result["errors"]:
        raise BenchError(f"{name}: {result['errors']} errors under load; not profiling failures")
    counts, total = categorize(raw_path.read_text())
    rps = result["requests_per_sec"]
    us_per_request = cores / rps * 1e6
    log(
        f"{name}: {rps:,.0f} req/s, gateway {cores:.2f} cores = {us_per_request:.0f} us CPU per "
        f"request; {total:,} samples"
    )
    return {
        "requests_per_sec": rps,
        "gateway_cpu_cores": round(cores, 3),
        "cpu_us_per_request": round(us_per_request, 1),
        "samples": total,
        "categories": {
            label: {
                "samples": counts[label],
                "share": round(counts[label] / total, 4) if total else 0.0,
                "us_per_request": round(us_per_request * counts[label] / total, 1)
                if total
                else 0.0,
            }
            for label in [label for label, _ in CATEGORIES] + [OTHER]
        },
        "raw": str(raw_path),
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    print()
    print(
        f"{'CPU us per request (py-spy share x /proc CPU)':<72}"
        + "".join(f"{n:>10}" for n in names)
    )
    print("-" * (72 + 10 * len(names)))
    for label in [label for label, _ in CATEGORIES] + [OTHER]:
        cells = "".join(
            f"{results[n]['categories'][label]['us_per_request']:>10.0f}" for n in names
        )
        print(f"{label:<72}{cells}")
    print("-" * (72 + 10 * len(names)))
    print(f"{'total':<72}" + "".join(f"{results[n]['cpu_us_per_request']:>10.0f}" for n in names))
    print(
        f"{'req/s under py-spy':<72}"
        + "".join(f"{results[n]['requests_per_sec']:>10,.0f}" for n in names)
    )
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_policy", description=__doc__)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections [32]")
    parser.add_argument("--duration", type=int, default=10, help="seconds profiled [10]")
    parser.add_argument("--workers", type=int, default=2, help="gateway workers [2]")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second [200]")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="flushed before and after")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"JSON results [{DEFAULT_OUT}]")
    args = parser.parse_args(argv)
    out = Path(args.out) if Path(args.out).is_absolute() else ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    from aigw.config.keys import generate_key

    key = generate_key()
    ledger = policy.RedisLedger(args.redis_url)
    results: dict[str, dict[str, Any]] = {}
    try:
        with interrupts_as_exceptions(), tempfile.TemporaryDirectory(prefix="aigw-prof-") as tmp:
            ledger.connect()
            with Processes(Path(tmp)) as procs:
                upstream_url = start_nginx(procs, Path(tmp))
                config = write_gateway_config(Path(tmp), upstream_url, key)
                validate_gateway_config(config)
                child, url = start_gateway(procs, config, args.workers)
                preflight("gateway", url, key)
                results["gateway"] = profile("gateway", child, url, key, args, out)
                procs.stop(child)
                child, url = policy.start_policy_gateway(
                    procs, Path(tmp), upstream_url, key, args.workers, ledger
                )
                results["policy"] = profile("policy", child, url, key, args, out)
    except (KeyboardInterrupt, Interrupted):
        print("\nprofile: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"\nprofile: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        ledger.close()
    print_table(results)
    write_json(out, {"settings": vars(args), "results": results})
    log(f"results written to {out}")
    return 0


if __name__ == "__main__":
    from bench import profile_policy as _module  # one copy of bench.run's classes (see bench.run)

    sys.exit(_module.main())
