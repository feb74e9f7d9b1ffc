"""Throughput with one of two targets failing half the time, against two healthy targets.

    .venv/bin/python -m bench.failover [--duration 10] [--connections 32] [--workers 2]

One nginx (as in ``bench.run``) serves three upstream locations: ``/ok-a`` and ``/ok-b`` always
answer 200 with the canned completion, ``/flaky`` answers 500 to half of its requests (nginx's
``split_clients`` on the request id) and 200 to the others. Three gateways serve ``bench-model``:

- ``healthy``: targets ok-a and ok-b, weight 1:1;
- ``flaky``: targets ok-a and flaky, weight 1:1, the default circuit breaker (it opens on the
  flaky target's error rate and lets a probe through every cooldown);
- ``flaky-no-breaker``: the same with the breaker disabled, so every request that lands on the
  flaky target first has a 50 % chance of costing a second try: the raw cost of failover.

wrk loads each in turn (``bench/post.lua``). Callers must see no failure at all: any non-2xx or
socket error marks the run INVALID. nginx's counters (all locations together) must show at least
as many requests as wrk counted; the surplus is the retries. The gateways' ``/readyz`` shows the
breaker of each target after the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench import run as bench

LOCATIONS = {"ok-a": "always 200", "ok-b": "always 200", "flaky": "500 half the time"}
SCENARIOS: dict[str, tuple[tuple[str, str], dict[str, Any]]] = {
    "healthy": (("ok-a", "ok-b"), {}),
    "flaky": (("ok-a", "flaky"), {}),
    "flaky-no-breaker": (
        ("ok-a", "flaky"),
        {"circuit_breaker": {"consecutive_failures": 1000, "error_rate": 1.0,
                             "min_requests": 1_000_000}},
    ),
}  # fmt: skip


def nginx_config(tmp: Path, port: int) -> str:
    body = json.dumps(bench.CANNED_COMPLETION, separators=(",", ":"))
    error = '{"error":{"message":"injected","type":"server_error","param":null,"code":null}}'
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp}/nginx-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    locations = "\n".join(
        f"""        location = /{name}/v1/chat/completions {{
            default_type application/json;
            {"if ($flaky_fails) { return 500 '" + error + "'; }" if name == "flaky" else ""}
            return 200 '{body}';
        }}"""
        for name in LOCATIONS
    )
    return f"""daemon off;
master_process on;
worker_processes 1;
error_log {tmp}/nginx-error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp_paths}
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    split_clients "${{request_id}}" $flaky_fails {{ 50% 1; * 0; }}
    server {{
        listen {bench.HOST}:{port} reuseport;
{locations}
        location = /nginx_status {{ stub_status; }}
    }}
}}
"""


def gateway_document(base: str, key: str, scenario: str) -> dict[str, Any]:
    from aigw.config.keys import hash_key

    names, gateway = SCENARIOS[scenario]
    return {
        "version": 1,
        "gateway": gateway,
        "providers": [
            {"name": name, "type": "openai-compatible", "base_url": f"{base}/{name}/v1"}
            for name in names
        ],
        "models": [
            {
                "name": bench.MODEL,
                "targets": [{"provider": n, "model": bench.UPSTREAM_MODEL} for n in names],
            }
        ],
        "namespaces": [
            {
                "name": "bench",
                "keys": [{"name": "bench", "key_hash": hash_key(key), "prefix": key[:12]}],
            }
        ],
    }


def readyz_targets(gateway_url: str) -> dict[str, Any]:
    url = gateway_url.replace("/v1/chat/completions", "/readyz")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return json.loads(response.read())["targets"]


def benchmark(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from aigw.config.keys import generate_key

    key = generate_key()
    results: dict[str, Any] = {}
    with bench.Processes(tmp) as procs:
        port = bench.free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(nginx_config(tmp, port))
        nginx = bench.find_tool("nginx")
        argv = [nginx, "-e", str(tmp / "nginx-error.log"), "-p", f"{tmp}/", "-c", str(conf)]
        procs.start("nginx", argv)
        nginx_pgid = procs.children[-1].pgid
        base = f"http://{bench.HOST}:{port}"
        status_url = f"{base}/nginx_status"
        bench.wait_until(
            procs.children[-1],
            lambda: bench.upstream_counters(status_url) is not None,
            "answering",
            timeout=15,
        )
        for scenario in SCENARIOS:
            config = tmp / f"{scenario}.yaml"
            config.write_text(yaml.safe_dump(gateway_document(base, key, scenario)))
            bench.validate_gateway_config(config)
            child, url = bench.start_gateway(procs, config, args.workers, name=scenario)
            bench.preflight(scenario, url, key)
            target = bench.Target(
                scenario, url, key, status_url, {"gateway": child.pgid, "nginx": nginx_pgid}
            )
            result = bench.measure(target, args.connections, args.duration, args.warmup)
            result["targets_after"] = readyz_targets(url)
            result.pop("raw", None)
            results[scenario] = result
            procs.stop(child)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, "-m", "bench.failover", *args.argv]),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "workers": args.workers,
        },
        "machine": bench.machine_info(),
        "results": results,
        "valid": not any(bench.run_failed(r) for r in results.values()),
    }


def print_report(document: dict[str, Any]) -> None:
    results = document["results"]
    healthy = results["healthy"]["requests_per_sec"]
    print(
        f"\nOne of two targets failing half the time, C={document['settings']['connections']}, "
        f"{document['settings']['workers']} gateway workers"
    )
    print(
        f"{'scenario':<18} {'req/s':>9} {'vs healthy':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>7} {'upstream tries / request':>25}"
    )
    for name, result in results.items():
        upstream = result.get("upstream", {}).get("requests", 0)
        tries = upstream / result["requests"] if result["requests"] else 0
        lat = result["latency_ms"]
        print(
            f"{name:<18} {result['requests_per_sec']:>9,.0f} "
            f"{result['requests_per_sec'] / healthy:>10.2f} {lat['p50']:>8.2f} "
            f"{lat['p99']:>8.2f} {result['errors']:>7} {tries:>25.3f}"
        )
    for name, result in results.items():
        circuits = {t: s.get("circuit") for t, s in result["targets_after"].items()}
        print(f"  {name}: circuits after the run {circuits}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/failover.json"))
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    import tempfile

    with bench.interrupts_as_exceptions(), tempfile.TemporaryDirectory() as tmp:
        try:
            document = benchmark(args, Path(tmp))
        except bench.BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
    bench.write_json(args.out, document)
    print_report(document)
    if not document["valid"]:
        print("\n!!! a run had errors: callers saw failures", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
