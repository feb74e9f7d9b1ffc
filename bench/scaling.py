"""Scaling: the gateway's throughput with 1 and 2 workers, and with 1 and 2 instances behind a
load balancer, at one connection count, against the same nginx upstream.

    .venv/bin/python -m bench.scaling [--duration 10] [--warmup 2] [--connections 32] [--quick]

Everything runs on 127.0.0.1 with free ports, one scenario after the other; each scenario starts
its own gateways (and load balancer) and stops them before the next one, so that nothing idle
from one scenario runs during another:

    direct   wrk --> nginx                                        (the baseline, as bench.run)
    1x1      wrk --> aigw gateway (1 worker) --> nginx
    1x2      wrk --> aigw gateway (2 workers) --> nginx
    lb-1x1   wrk --> nginx LB --> aigw gateway (1 worker) --> nginx
    lb-2x1   wrk --> nginx LB --> 2 x aigw gateway (1 worker each) --> nginx

lb-1x1 exists so that lb-2x1 is compared with the same load-balancer hop. The gateways are the
foundation gateway of ``bench.run`` (no Redis, no policy chain). Every run is validated as in
``bench.run`` (no non-2xx, no socket error, the upstream nginx served every request wrk counted)
and, for the gateway scenarios, by the gateways' own ``gateway_requests_total`` counters
(``/metrics``): together they must have served what wrk counted (plus at most the requests in
flight when wrk stopped), and behind the load balancer each instance must have served its part.
See docs/benchmarks.md, "Scaling".
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import run as bench

DEFAULT_OUT = "bench/results/scaling.json"
DEFAULT_CONNECTIONS = 32
BASELINE = "1x1"  # the ratio column's reference
# An even split gives each of two instances half of the requests. Below this share the load
# balancer did not spread the load, and the run would not measure two instances.
MIN_INSTANCE_SHARE = 0.2
# A gateway's /metrics merges its own live counters with the file every other worker rewrites
# once a second (aigw/gateway/monitoring/prometheus.py): with several workers, wait for those
# files to catch up before reading. One worker's counters are live; the short wait is for the
# requests still being relayed when wrk stopped.
METRICS_SETTLE_ONE_WORKER_S = 0.5
METRICS_SETTLE_WORKERS_S = 1.5
# How the load balancer picks an instance for each request (--lb-balance). least_conn: the one
# with the fewest requests in flight. round_robin (nginx's default) alternates blindly; in a
# closed loop like wrk's, requests then pile up at whichever instance the scheduler slows down
# while the other one idles (measured: docs/benchmarks.md, "Scaling").
LB_BALANCE = ("least_conn", "round_robin")


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    instances: int = 0  # gateway instances; 0: wrk loads nginx directly
    workers: int = 1  # granian workers per instance (`aigw gateway --workers`)
    balanced: bool = False  # behind the nginx load balancer


SCENARIOS = (
    Scenario("direct", "direct to nginx"),
    Scenario("1x1", "1 instance x 1 worker", instances=1),
    Scenario("1x2", "1 instance x 2 workers", instances=1, workers=2),
    Scenario("lb-1x1", "LB -> 1 instance x 1 worker", instances=1, balanced=True),
    Scenario("lb-2x1", "LB -> 2 instances x 1 worker", instances=2, balanced=True),
)


@dataclass
class Instance:
    """One running ``aigw gateway`` process (and its workers)."""

    name: str
    child: bench.Child
    base_url: str  # http://127.0.0.1:PORT
    workers: int

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])


@dataclass
class Setup:
    """What every scenario shares: the upstream nginx, the gateways' configuration and key."""

    procs: bench.Processes
    tmp: Path
    upstream_url: str
    status_url: str
    nginx_pgid: int
    config: Path
    key: str


# --------------------------------------------------------------------------------------------
# The load balancer: a second nginx, HTTP/1.1 keep-alive to the gateways.
# --------------------------------------------------------------------------------------------


def lb_config(
    prefix: Path, port: int, upstream_ports: Sequence[int], keepalive: int, balance: str
) -> str:
    """nginx proxying everything to the gateways on ``upstream_ports`` (``balance``: one of
    :data:`LB_BALANCE`), keeping up to ``keepalive`` idle connections to them (as many as wrk
    has requests in flight)."""
    if balance not in LB_BALANCE:
        raise ValueError(f"unknown balance {balance!r}")
    method = "least_conn;" if balance == "least_conn" else "# round robin: nginx's default"
    servers = "\n".join(f"        server {bench.HOST}:{p};" for p in upstream_ports)
    return bench.nginx_frame(
        prefix,
        f"""    upstream aigw {{
        {method}
{servers}
        # Every request reuses an idle connection to a gateway: a new TCP connection per
        # request would cost more than the hop itself.
        keepalive {keepalive};
        keepalive_requests 1000000;
        keepalive_timeout 75s;
    }}

    server {{
        listen {bench.HOST}:{port} reuseport;
        location / {{
            proxy_pass http://aigw;
            proxy_http_version 1.1;        # keep-alive to the upstreams needs 1.1 ...
            proxy_set_header Connection "";  # ... and no "Connection: close"
            # A failed request must reach wrk as a failure, not be retried on the other
            # instance (and counted twice by the gateways).
            proxy_next_upstream off;
        }}
        location = /nginx_status {{
            stub_status;
        }}
    }}
""",
    )


def start_lb(
    setup: Setup, name: str, instances: Sequence[Instance], connections: int, balance: str
) -> tuple[bench.Child, str]:
    """Start the load balancer in front of ``instances``; (its child, its completions URL)."""
    prefix = setup.tmp / name  # its own config, pid file, error log and temp paths
    prefix.mkdir()
    port = bench.free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(lb_config(prefix, port, [i.port for i in instances], connections, balance))
    child = bench.launch_nginx(setup.procs, name, conf, prefix, port)
    base = f"http://{bench.HOST}:{port}"
    bench.wait_until(
        child,
        lambda: bench.upstream_counters(f"{base}/nginx_status") is not None,
        "answering",
        timeout=15,
    )
    return child, f"{base}/v1/chat/completions"


# --------------------------------------------------------------------------------------------
# The gateways, and their own counters as a witness of who served what.
# --------------------------------------------------------------------------------------------


def start_instances(setup: Setup, scenario: Scenario) -> list[Instance]:
    instances = []
    for number in range(1, scenario.instances + 1):
        name = f"{scenario.name}-gw{number}"
        env = {
            # Each instance its own metrics directory (not one inherited from our environment,
            # which two instances would share and empty for each other), and an open /metrics.
            "AIGW_METRICS_DIR": str(setup.tmp / f"metrics-{name}"),
            "AIGW_METRICS_TOKEN": "",
        }
        child, url = bench.start_gateway(
            setup.procs, setup.config, scenario.workers, name=name, env=env
        )
        bench.preflight(name, url, setup.key)
        base_url = url.removesuffix("/v1/chat/completions")
        instances.append(Instance(name, child, base_url, scenario.workers))
    return instances


def parse_requests_total(text: str) -> int:
    """The sum of every ``gateway_requests_total`` sample (all namespaces, models and status
    classes) in a Prometheus text exposition; ValueError if there is none."""
    samples = re.findall(r"^gateway_requests_total(?:\{[^}]*\})?\s+(\S+)", text, re.M)
    if not samples:
        raise ValueError("no gateway_requests_total in the /metrics answer")
    return round(sum(float(value) for value in samples))


def requests_served(instance: Instance) -> int:
    status, body = bench.http_request(f"{instance.base_url}/metrics")
    if status != 200:
        raise bench.BenchError(
            f"{instance.name}: GET /metrics answered {status or 'nothing'}; last lines of its "
            f"output:\n{bench._indent(instance.child.log_tail())}"
        )
    try:
        return parse_requests_total(body.decode(errors="replace"))
    except ValueError:
        # A gateway that has not answered anything yet has no such sample.
        return 0


def instance_problems(served: dict[str, int], wrk_requests: int, in_flight: int) -> list[str]:
    """What is wrong with the gateways' counts of one run, as phrases (none: the run is valid).

    Together they must have served at least what wrk counted, and at most that plus the
    ``in_flight`` requests wrk abandoned when it stopped (more: something else sent traffic, or
    a request was served twice). With several instances, each must have served at least
    :data:`MIN_INSTANCE_SHARE` of the requests.
    """
    problems = []
    total = sum(served.values())
    if total < wrk_requests:
        problems.append(
            f"the gateways counted {total:,} requests, fewer than wrk's {wrk_requests:,}"
        )
    elif total > wrk_requests + in_flight:
        problems.append(
            f"the gateways counted {total:,} requests, more than wrk's {wrk_requests:,} plus "
            f"{in_flight} in flight"
        )
    if len(served) > 1:
        for name, count in served.items():
            share = count / total if total else 0.0
            if share < MIN_INSTANCE_SHARE:
                problems.append(f"{name} served only {share:.0%} of the requests")
    return problems


class GatewayCounts:
    """:class:`bench.run.Ledger` over the gateways' own request counters (``/metrics``), and the
    CPU of each of their processes (are both workers or instances busy?)."""

    def __init__(self, instances: Sequence[Instance], connections: int) -> None:
        self.instances = list(instances)
        self.connections = connections
        one_worker = all(instance.workers == 1 for instance in instances)
        self.settle_s = METRICS_SETTLE_ONE_WORKER_S if one_worker else METRICS_SETTLE_WORKERS_S

    def read(self) -> dict[str, Any]:
        time.sleep(self.settle_s)  # the warm-up's last requests, in every worker's counters
        return {
            "served": {instance.name: requests_served(instance) for instance in self.instances},
            "cpu_s": self._process_cpu_seconds(),
            "at": time.monotonic(),
        }

    def account(self, before: dict[str, Any], result: dict[str, Any]) -> None:
        cpu_s = self._process_cpu_seconds()
        elapsed = time.monotonic() - before["at"]
        time.sleep(self.settle_s)  # the requests wrk left in flight, in every worker's counters
        served = {i.name: requests_served(i) - before["served"][i.name] for i in self.instances}
        total = sum(served.values())
        result["instances"] = {
            name: {
                "requests": count,
                "share": round(count / total, 4) if total else 0.0,
                "process_cpu_cores": process_cores(before["cpu_s"][name], cpu_s[name], elapsed),
            }
            for name, count in served.items()
        }
        bench.log(
            "     the gateways counted "
            + ", ".join(
                f"{name} {figures['requests']:,} ({figures['share']:.0%}; CPU per process "
                + " / ".join(f"{c:.2f}" for c in figures["process_cpu_cores"])
                + ")"
                for name, figures in result["instances"].items()
            )
        )
        problems = instance_problems(served, result["requests"], self.connections)
        if problems:
            result["ledger_mismatch"] = True
            result["ledger_problem"] = "; ".join(problems)
            bench.log(f"  !!! {result['ledger_problem']}")

    def _process_cpu_seconds(self) -> dict[str, dict[int, float]]:
        return {
            instance.name: {
                pid: bench.process_cpu_seconds(pid)
                for pid in bench._group_pids(instance.child.pgid)
            }
            for instance in self.instances
        }


def process_cores(before: dict[int, float], after: dict[int, float], elapsed: float) -> list[float]:
    """Cores used by each process of an instance over ``elapsed`` seconds, busiest first:
    granian's workers, then its main process (which only supervises them)."""
    return sorted(
        (round((seconds - before.get(pid, 0.0)) / elapsed, 2) for pid, seconds in after.items()),
        reverse=True,
    )


# --------------------------------------------------------------------------------------------
# One scenario.
# --------------------------------------------------------------------------------------------


def run_scenario(setup: Setup, scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    """Start what ``scenario`` needs, load it with wrk, stop it; its entry for the JSON file."""
    log_problems: dict[str, list[str]] = {}
    if scenario.instances == 0:
        bench.preflight(scenario.name, setup.upstream_url, bench.UPSTREAM_KEY)
        target = bench.Target(
            scenario.name, setup.upstream_url, bench.UPSTREAM_KEY, setup.status_url,
            {"nginx": setup.nginx_pgid},
        )  # fmt: skip
        result = bench.measure(target, args.connections, args.duration, args.warmup)
    else:
        result, log_problems = measure_gateways(setup, scenario, args)
    return {
        **asdict(scenario),
        "result": result,
        "gateway_log_problems": {name: lines for name, lines in log_problems.items() if lines},
    }


def measure_gateways(
    setup: Setup, scenario: Scenario, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The gateway scenarios: (wrk's result with the gateways' counts, each one's log trouble)."""
    instances = start_instances(setup, scenario)
    lb: bench.Child | None = None
    url = f"{instances[0].base_url}/v1/chat/completions"
    if scenario.balanced:
        lb, url = start_lb(
            setup, f"{scenario.name}-lb", instances, args.connections, args.lb_balance
        )
        bench.preflight(f"{scenario.name} load balancer", url, setup.key)
    pgids = {gateway_party(scenario, i): inst.child.pgid for i, inst in enumerate(instances)}
    pgids["nginx"] = setup.nginx_pgid
    if lb is not None:
        pgids["lb"] = lb.pgid
    target = bench.Target(
        scenario.name, url, setup.key, setup.status_url, pgids,
        ledger=GatewayCounts(instances, args.connections),
    )  # fmt: skip
    result = bench.measure(target, args.connections, args.duration, args.warmup)
    log_problems = {}
    for instance in instances:
        if instance.child.process.poll() is not None:
            raise bench.BenchError(
                f"{instance.name} exited (status {instance.child.process.returncode}) during "
                f"the run:\n{bench._indent(instance.child.log_tail())}"
            )
        log_problems[instance.name] = bench.gateway_log_problems(instance.child)
    # The load balancer first, so that no gateway is stopped under its connections.
    for child in ([lb] if lb is not None else []) + [i.child for i in instances]:
        setup.procs.stop_one(child)
    return result, log_problems


def gateway_party(scenario: Scenario, index: int) -> str:
    """The CPU report's name for an instance: "gateway", or "gateway-1", "gateway-2"."""
    return "gateway" if scenario.instances == 1 else f"gateway-{index + 1}"


# --------------------------------------------------------------------------------------------
# Summary and report.
# --------------------------------------------------------------------------------------------


def summarize(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per scenario: throughput, latency, ratio to 1x1, CPU per party."""
    baseline = next((e["result"] for e in entries if e["name"] == BASELINE), None)
    rows = []
    for entry in entries:
        result = entry["result"]
        cpu = result["cpu_cores"]
        gateways = sum(v for k, v in cpu.items() if k.startswith("gateway"))
        rps = result["requests_per_sec"]
        rows.append(
            {
                "scenario": entry["name"],
                "label": entry["label"],
                "rps": rps,
                "p50_ms": result["latency_ms"]["p50"],
                "p99_ms": result["latency_ms"]["p99"],
                "ratio_vs_1x1": rps / baseline["requests_per_sec"] if baseline else None,
                "cpu_cores": {
                    "gateways": round(gateways, 2) if entry["instances"] else None,
                    "nginx": cpu.get("nginx"),
                    "lb": cpu.get("lb"),
                    "wrk": cpu["wrk"],
                    "others": cpu["others"],
                },
                "gateway_cpu_us_per_request": (
                    round(gateways / rps * 1e6) if entry["instances"] and rps else None
                ),
                "lb_cpu_us_per_request": round(cpu["lb"] / rps * 1e6) if "lb" in cpu else None,
                "instance_shares": [
                    figures["share"] for figures in result.get("instances", {}).values()
                ],
                "errors": result["errors"],
                "invalid": bench.run_failed(result),
            }
        )
    return rows


def scaling_ratios(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The three comparisons the scenarios are for, each between two runs with the same hops."""
    rps = {row["scenario"]: row["rps"] for row in rows}

    def ratio(a: str, b: str) -> float | None:
        return round(rps[a] / rps[b], 3) if rps.get(a) and rps.get(b) else None

    return {
        "two_workers": ratio("1x2", "1x1"),
        "two_instances_behind_lb": ratio("lb-2x1", "lb-1x1"),
        "lb_hop": ratio("lb-1x1", "1x1"),
    }


def print_report(document: dict[str, Any]) -> None:
    """The table, then the three comparisons (:func:`scaling_ratios`)."""
    fmt = bench.fmt
    rows, settings = document["summary"], document["settings"]
    print(
        f"\nScaling at C={settings['connections']}; CPU used by each party in cores "
        f"(of {document['machine']['nproc']})"
    )
    header = (
        f"{'scenario':<29} {'req/s':>9} {'vs 1x1':>6} {'p50 / p99 ms':>15}  "
        f"{'gateways':>8} {'nginx':>5} {'LB':>5} {'wrk':>5} {'others':>6} "
        f"{'gw µs/req':>9}  split"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        cpu = row["cpu_cores"]
        split = "/".join(f"{share:.0%}" for share in row["instance_shares"])
        if len(row["instance_shares"]) < 2:
            split = ""
        flag = "  !!! INVALID" if row["invalid"] else ""
        print(
            f"{row['label']:<29} {fmt(row['rps'], ',.0f', 9)} {fmt(row['ratio_vs_1x1'], '.2f', 6)} "
            f"{fmt(row['p50_ms'], '.2f', 6)} / {fmt(row['p99_ms'], '.2f', 6)}  "
            f"{fmt(cpu['gateways'], '.2f', 8)} {fmt(cpu['nginx'], '.2f', 5)} "
            f"{fmt(cpu['lb'], '.2f', 5)} {fmt(cpu['wrk'], '.2f', 5)} "
            f"{fmt(cpu['others'], '.2f', 6)} {fmt(row['gateway_cpu_us_per_request'], ',', 9)}  "
            f"{split}{flag}".rstrip()
        )
    ratios = document["scaling"]
    lb_us = next((r["lb_cpu_us_per_request"] for r in rows if r["scenario"] == "lb-1x1"), None)
    print()
    print(f"  2 workers vs 1 worker:                        {fmt(ratios['two_workers'], '.2f')}")
    print(
        "  2 instances vs 1, behind the same LB:         "
        f"{fmt(ratios['two_instances_behind_lb'], '.2f')} ({settings['lb_balance']})"
    )
    print(
        f"  the LB hop (LB -> 1 instance vs 1 instance): {fmt(ratios['lb_hop'], '.2f')}; the LB "
        f"nginx used {fmt(lb_us, ',')} µs of CPU per request"
    )


# --------------------------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling",
        description="Gateway throughput with 1 and 2 workers and with 1 and 2 instances behind "
        "an nginx load balancer, against direct-to-nginx (wrk). See docs/benchmarks.md.",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run [10]")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run [2]")
    parser.add_argument(
        "--connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        help=f"wrk connections, the same in every scenario [{DEFAULT_CONNECTIONS}]",
    )
    parser.add_argument(
        "--lb-balance",
        choices=LB_BALANCE,
        default=LB_BALANCE[0],
        help="how the load balancer picks an instance per request [least_conn]",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"JSON results file [{DEFAULT_OUT}]")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s per run, 1 s warm-up")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.duration, args.warmup = 3, 1
    if args.duration < 1 or args.warmup < 0 or args.connections < 1:
        parser.error("--duration and --connections must be >= 1, --warmup >= 0")
    return args


def benchmark(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from aigw.config.keys import generate_key

    info = bench.machine_info()
    bench.log(
        f"{info['nproc']} CPU(s) ({info['cpu_model']}), python {info['python']}, "
        f"aigw {info['aigw']}, {info['wrk'].split(' [')[0]}, {info['nginx']}; "
        f"scenarios: {', '.join(s.name for s in SCENARIOS)} at C={args.connections}"
    )
    key = generate_key()
    entries = []
    with bench.Processes(tmp) as procs:
        upstream_url = bench.start_nginx(procs, tmp)
        nginx_pgid = procs.children[-1].pgid
        config = bench.write_gateway_config(tmp, upstream_url, key)
        bench.validate_gateway_config(config)
        setup = Setup(
            procs, tmp, upstream_url,
            upstream_url.replace("/v1/chat/completions", "/nginx_status"), nginx_pgid, config, key,
        )  # fmt: skip
        for scenario in SCENARIOS:
            entries.append(run_scenario(setup, scenario, args))
        bench.log("stopping nginx")
    rows = summarize(entries)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, "-m", "bench.scaling", *args.argv]),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": 1,
            "nginx_worker_processes": 1,  # the upstream's and the load balancer's
            "lb_balance": args.lb_balance,
            "min_instance_share": MIN_INSTANCE_SHARE,
        },
        "machine": info,
        "summary": rows,
        "scaling": scaling_ratios(rows),
        "scenarios": entries,
        "valid": not any(bench.run_failed(entry["result"]) for entry in entries),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if not out.is_absolute() and args.out == DEFAULT_OUT:
        out = bench.ROOT / DEFAULT_OUT
    try:
        with (
            bench.interrupts_as_exceptions(),
            tempfile.TemporaryDirectory(prefix="aigw-bench-scaling-") as tmp,
        ):
            document = benchmark(args, Path(tmp))
    except (KeyboardInterrupt, bench.Interrupted):
        print("\nbench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    except bench.BenchError as exc:
        print(f"\nbench: FAILED: {exc}", file=sys.stderr)
        return 1
    print_report(document)
    bench.print_run_problems(
        [(e["name"], args.connections, e["result"]) for e in document["scenarios"]]
    )
    for entry in document["scenarios"]:
        for name, lines in entry["gateway_log_problems"].items():
            print(f"{name} output had warnings/errors (first lines):")
            print(bench._indent("\n".join(lines)))
            print()
    bench.write_json(out, document)
    bench.log(f"results written to {out}")
    if not document["valid"]:
        print("bench: some runs had errors (see above); exiting with status 1", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
