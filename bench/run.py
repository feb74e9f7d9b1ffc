"""``make bench``: the gateway's throughput and added latency against a direct-to-upstream baseline.

Everything runs on 127.0.0.1 with free ports:

    wrk --> nginx                                   (direct: the baseline)
    wrk --> aigw gateway --> nginx                  (gateway: the foundation gateway)
    wrk --> aigw gateway --> nginx, limits in Redis (policy: the full policy chain)

nginx answers ``POST /v1/chat/completions`` with a canned chat.completion, so the upstream costs
next to nothing and the difference between the runs is the gateway. The policy scenario (its
configuration, its Redis witness and its report) lives in :mod:`bench.policy`. See
docs/benchmarks.md.

Layout: process management (:class:`Processes`), the wrk-output parser (:func:`parse_wrk`, a pure
function), the measurement steps, and reporting (:func:`print_report`, :func:`write_json`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import yaml

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
POST_LUA = BENCH_DIR / "post.lua"
DEFAULT_OUT = "bench/results/latest.json"
UPSTREAM_KEY = "sk-upstream-bench"
MODEL = "bench-model"
UPSTREAM_MODEL = "gpt-4o-mini"
KEY_ENV = "AIGW_BENCH_KEY"  # read by post.lua
SCENARIOS = ("direct", "gateway", "policy")  # in the order they run for each connection count
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"  # the policy scenario's; flushed before and after
# The gateway's environment variables that would change what it does per request: the bench sets
# them itself (AIGW_REDIS_URL only for the policy scenario), never inherits them.
GATEWAY_ENV_OWNED = (
    "AIGW_REDIS_URL",
    "AIGW_CONFIG_CENTER",
    "AIGW_GATEWAY_TOKEN",
    "AIGW_LIMITS_FAIL_MODE",
    "AIGW_LIMITS_TIMEOUT_MS",
    "AIGW_ACCESS_LOG",
)

# Other processes using more than this many cores during a run get a warning.
OTHERS_CPU_WARNING = 0.15

# The issue's targets.
TARGET_ADDED_P50_MS_AT_C1 = 1.0
TARGET_RPS_AT_C32 = 2500.0

CANNED_COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": UPSTREAM_MODEL,
    "system_fingerprint": "fp_bench",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
}
REQUEST_BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Say hello"}],
    "max_tokens": 16,
}

_START = time.monotonic()
# Everything is on 127.0.0.1: never send the bench's own requests through an HTTP proxy.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(Exception):
    """Something broke (as opposed to a missed target): exit status 1 with this message."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP, handled like Ctrl+C."""


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - _START:6.1f}s] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# Process management: every long-running child is started here, in its own process group, and
# the whole group is stopped on exit, error or interrupt.
# --------------------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pgid(self) -> int:
        return self.process.pid  # start_new_session: the child leads its own group

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"


class Processes:
    """Starts children and guarantees they (and their own children) are gone on exit."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.children: list[Child] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        log_path = self.tmp / f"{name}.log"
        try:
            with log_path.open("wb") as out:
                process = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.tmp,
                    start_new_session=True,  # Ctrl+C reaches only us; we stop the group ourselves
                )
        except OSError as exc:
            raise BenchError(f"cannot start {name} (`{shlex.join(argv)}`): {exc}") from None
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        # A second Ctrl+C (or a SIGTERM) must not cut the clean-up short.
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
        try:
            for child in reversed(self.children):
                self.stop(child)
            self.children.clear()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def stop_one(self, child: Child) -> None:
        """Stop one child now (what needed it is over) and forget it, so that the final clean-up
        never signals its process group id again (by then another process may have it)."""
        self.stop(child)
        self.children.remove(child)

    @staticmethod
    def stop(child: Child, grace: float = 10.0) -> None:
        """SIGTERM the child's process group, then SIGKILL whatever is left after ``grace``."""
        _signal_group(child.pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if child.process.poll() is not None and not _group_alive(child.pgid):
                return
            time.sleep(0.05)
        _signal_group(child.pgid, signal.SIGKILL)
        try:
            child.process.wait(5)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    return bool(_group_pids(pgid))


def _group_pids(pgid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes in a process group, from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is not None and int(stat[2]) == pgid and stat[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], pgrp [2], utime [11])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU time used so far by the live processes of a group."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _group_pids(pgid):
        stat = _proc_stat(pid)
        if stat is not None:
            total += int(stat[11]) + int(stat[12])
    return total / ticks


def process_cpu_seconds(pid: int) -> float:
    """User+system CPU time used so far by one process (all its threads); 0 if it is gone."""
    stat = _proc_stat(pid)
    if stat is None:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """Machine-wide non-idle CPU time so far, from /proc/stat (user ... steal, not idle/iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of our waited-for children (that is, the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """SIGTERM/SIGHUP raise :class:`Interrupted`, SIGINT KeyboardInterrupt."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    # Also when started with SIGINT ignored (as `cmd &` in a script does).
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def find_tool(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)),
        None,
    )
    if not found:
        raise BenchError(f"{name} not found; run `bash bench/ensure-tools.sh` (or `make bench`)")
    return found


def http_request(
    url: str, body: dict[str, Any] | None = None, key: str | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """One request with the standard library: (status, body); status 0 if nothing answered."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with _HTTP.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def wait_until(
    child: Child, ready: Callable[[], bool], what: str, timeout: float, poll: float = 0.1
) -> None:
    """Poll ``ready()`` until true; fail with the child's output if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise BenchError(
                f"{child.name} exited with status {child.process.returncode} before {what}; "
                f"last lines of its output ({child.log_path.name}):\n{_indent(child.log_tail())}"
            )
        if ready():
            return
        time.sleep(poll)
    raise BenchError(
        f"{child.name} did not get to {what} within {timeout:.0f}s; last lines of its output:\n"
        f"{_indent(child.log_tail())}"
    )


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.splitlines())


# --------------------------------------------------------------------------------------------
# nginx (the upstream) and the gateway.
# --------------------------------------------------------------------------------------------


def nginx_config(tmp: Path, port: int) -> str:
    body = json.dumps(CANNED_COMPLETION, separators=(",", ":"))
    assert "'" not in body and "$" not in body and "\\" not in body  # nginx string literal
    return nginx_frame(
        tmp,
        f"""    server {{
        listen {HOST}:{port} reuseport;
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{body}';
        }}
        location = /nginx_status {{
            stub_status;  # request and connection counters: did the gateway really call us?
        }}
    }}
""",
    )


def nginx_frame(prefix: Path, servers: str) -> str:
    """What every bench nginx shares around its ``servers`` (the http block's own part): one
    worker in the foreground, its files under ``prefix``, no access log, long keep-alive."""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {prefix}/nginx-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
master_process on;
worker_processes 1;
error_log {prefix}/nginx-error.log warn;
pid {prefix}/nginx.pid;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
{temp_paths}
    keepalive_requests 1000000;  # do not close wrk's (or the gateway's) connections every 1000
    keepalive_timeout 75s;

{servers}}}
"""


def start_nginx(procs: Processes, tmp: Path) -> str:
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_config(tmp, port))
    child = launch_nginx(procs, "nginx", conf, tmp, port)
    url = f"http://{HOST}:{port}/v1/chat/completions"
    wait_until(
        child,
        lambda: http_request(url, REQUEST_BODY, timeout=1)[0] == 200,
        "answering 200",
        timeout=15,
    )
    return url


def launch_nginx(procs: Processes, name: str, conf: Path, prefix: Path, port: int) -> Child:
    """Check ``conf`` with ``nginx -t``, then start nginx on it as child ``name`` (no waiting:
    what "ready" means depends on the configuration)."""
    nginx = find_tool("nginx")
    argv = [nginx, "-p", f"{prefix}/", "-c", str(conf)]
    if _nginx_version(nginx) >= (1, 19, 5):  # -e: no attempt to open the system's error log
        argv[1:1] = ["-e", str(prefix / "nginx-error.log")]
    check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise BenchError(f"nginx rejected its generated config {conf}:\n{_indent(check.stderr)}")
    log(f"starting {name} on {HOST}:{port}")
    return procs.start(name, argv)


def parse_stub_status(text: str) -> dict[str, int]:
    """nginx's stub_status page as ``{"connections": accepted, "requests": handled}``."""
    match = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.M)
    if not match:
        raise ValueError(f"not an nginx stub_status page: {text[:200]!r}")
    return {"connections": int(match.group(1)), "requests": int(match.group(3))}


def upstream_counters(status_url: str) -> dict[str, int] | None:
    try:
        with _HTTP.open(status_url, timeout=5) as response:
            return parse_stub_status(response.read().decode())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _nginx_version(nginx: str) -> tuple[int, ...]:
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", _tool_version([nginx, "-v"]))
    return tuple(int(part) for part in match.groups()) if match else (0,)


def write_gateway_config(tmp: Path, upstream_port_url: str, key: str) -> Path:
    document = gateway_document(upstream_port_url, key)
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def gateway_document(upstream_port_url: str, key: str) -> dict[str, Any]:
    """The bench configuration: provider nginx, model bench-model, namespace bench with ``key``."""
    from aigw.config.keys import hash_key

    base_url = upstream_port_url.removesuffix("/chat/completions")
    return {
        "version": 1,
        "providers": [
            {
                "name": "nginx",
                "type": "openai-compatible",
                "base_url": base_url,
                "api_key": UPSTREAM_KEY,
            }
        ],
        "models": [{"name": MODEL, "targets": [{"provider": "nginx", "model": UPSTREAM_MODEL}]}],
        "namespaces": [
            {
                "name": "bench",
                "keys": [{"name": "bench", "key_hash": hash_key(key), "prefix": key[:12]}],
            }
        ],
    }


def validate_gateway_config(path: Path) -> None:
    aigw = Path(sys.executable).with_name("aigw")
    argv = (
        [str(aigw), "config", "validate", str(path)]
        if aigw.exists()
        else [sys.executable, "-m", "aigw", "config", "validate", str(path)]
    )
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise BenchError(
            f"`{shlex.join(argv)}` failed (status {result.returncode}):\n"
            f"{_indent(result.stdout + result.stderr)}"
        )
    log(f"config: {result.stdout.strip()}")


def gateway_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a gateway: ours without :data:`GATEWAY_ENV_OWNED`, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in GATEWAY_ENV_OWNED}
    return {**env, "AIGW_ACCESS_LOG": "0", **(extra or {})}


def start_gateway(
    procs: Processes,
    config: Path,
    workers: int,
    name: str = "gateway",
    env: dict[str, str] | None = None,
) -> tuple[Child, str]:
    """Start ``aigw gateway`` (as child ``name``, with ``env`` added) and wait for /healthz."""
    port = free_port()
    argv = [
        sys.executable, "-m", "aigw", "gateway", "--config", str(config),
        "--host", HOST, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    label = "gateway" if name == "gateway" else f"{name} gateway"
    log(f"starting {label} on {HOST}:{port} with {workers} worker(s)")
    child = procs.start(name, argv, gateway_env(env))
    health = f"http://{HOST}:{port}/healthz"
    try:
        wait_until(
            child, lambda: _get_status(health) == 200, "GET /healthz answered 200", timeout=60
        )
    except BenchError as exc:
        raise BenchError(f"the {label} failed to start: `{shlex.join(argv)}`\n{exc}") from None
    return child, f"http://{HOST}:{port}/v1/chat/completions"


def _get_status(url: str) -> int:
    try:
        with _HTTP.open(url, timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return 0


def preflight(name: str, url: str, key: str) -> None:
    """One request by hand first, so a broken setup fails with the reason, not a wall of non-2xx."""
    status, body = http_request(url, REQUEST_BODY, key, timeout=30)
    if status != 200:
        raise BenchError(
            f"preflight {name}: POST {url} answered {status or 'nothing'}: "
            f"{body[:500].decode(errors='replace')}"
        )
    try:
        payload = json.loads(body)
    except ValueError:
        raise BenchError(
            f"preflight {name}: POST {url} answered 200 but not JSON: {body[:300]!r}"
        ) from None
    if payload.get("object") != "chat.completion":
        raise BenchError(f"preflight {name}: unexpected answer {body[:300]!r}")


# --------------------------------------------------------------------------------------------
# wrk: running it, and parsing its output (a pure function).
# --------------------------------------------------------------------------------------------

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_NUMBER_UNIT = r"([0-9.]+)([a-z]+)"


def _time_ms(value: str, unit: str) -> float:
    if unit not in _TIME_UNITS_MS:
        raise ValueError(f"unknown wrk time unit {unit!r}")
    return float(value) * _TIME_UNITS_MS[unit]


def parse_wrk(text: str) -> dict[str, Any]:
    """Parse the output of ``wrk --latency``.

    Returns ``requests_per_sec``, ``requests``, ``duration_s``, ``latency_ms`` (``avg``,
    ``stdev``, ``max`` and the ``p50``/``p75``/``p90``/``p99`` of the distribution), ``non_2xx``
    (wrk's "Non-2xx or 3xx responses"), ``socket_errors`` (``connect``/``read``/``write``/
    ``timeout``) and ``errors`` (all of them added up). Raises ValueError if ``text`` is not wrk
    output.
    """
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if not rps:
        raise ValueError("no 'Requests/sec:' line in the wrk output")
    result: dict[str, Any] = {"requests_per_sec": float(rps.group(1))}

    total = re.search(r"^\s*(\d+) requests in " + _NUMBER_UNIT, text, re.M)
    if not total:
        raise ValueError("no 'N requests in T' line in the wrk output")
    result["requests"] = int(total.group(1))
    result["duration_s"] = _time_ms(total.group(2), total.group(3)) / 1000

    latency: dict[str, float] = {}
    stats = re.search(r"^\s*Latency\s+" + r"\s+".join([_NUMBER_UNIT] * 3), text, re.M)
    if stats:
        for i, name in enumerate(("avg", "stdev", "max")):
            latency[name] = _time_ms(stats.group(2 * i + 1), stats.group(2 * i + 2))
    for pct, value, unit in re.findall(
        r"^\s*(\d+(?:\.\d+)?)%\s+" + _NUMBER_UNIT + r"\s*$", text, re.M
    ):
        latency[f"p{float(pct):g}"] = _time_ms(value, unit)
    if "p50" not in latency:
        raise ValueError("no latency distribution in the wrk output (was --latency given?)")
    result["latency_ms"] = latency

    non_2xx = re.search(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", text, re.M)
    result["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    socket_errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    errors = re.search(
        r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text, re.M
    )
    if errors:
        socket_errors = dict(zip(socket_errors, map(int, errors.groups()), strict=True))
    result["socket_errors"] = socket_errors
    result["errors"] = result["non_2xx"] + sum(socket_errors.values())
    return result


def run_wrk(url: str, connections: int, duration: int, key: str) -> tuple[dict[str, Any], str]:
    wrk = find_tool("wrk")
    argv = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(POST_LUA), url]
    env = {**os.environ, KEY_ENV: key}
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=duration + 30
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"`{shlex.join(argv)}` did not finish within {duration + 30}s") from None
    if result.returncode != 0:
        raise BenchError(
            f"`{shlex.join(argv)}` failed (status {result.returncode}):\n"
            f"{_indent(result.stdout + result.stderr)}"
        )
    try:
        return parse_wrk(result.stdout), result.stdout
    except ValueError as exc:
        raise BenchError(f"cannot parse wrk output ({exc}):\n{_indent(result.stdout)}") from None


class Ledger(Protocol):
    """A second witness besides nginx's counters (:class:`bench.policy.RedisLedger`)."""

    def read(self) -> dict[str, Any]: ...

    def account(self, before: dict[str, Any], result: dict[str, Any]) -> None:
        """Add what it saw to ``result``; set ``result["ledger_mismatch"]`` if it disagrees (and
        ``result["ledger_problem"]``, a phrase for the banner, unless it is Redis's count)."""


@dataclass
class Target:
    """Something wrk can load: nginx directly, or a gateway."""

    name: str
    url: str
    key: str
    status_url: str  # nginx's counters
    pgids: dict[str, int] = field(default_factory=dict)  # process groups whose CPU use we report
    pids: dict[str, int] = field(default_factory=dict)  # single processes too (a Redis server)
    ledger: Ledger | None = None


def run_failed(result: dict[str, Any]) -> bool:
    """Errors, or a witness (nginx, Redis) that saw fewer requests than wrk counted."""
    return bool(
        result["errors"] or result.get("upstream_mismatch") or result.get("ledger_mismatch")
    )


def measure(target: Target, connections: int, duration: int, warmup: int) -> dict[str, Any]:
    if warmup > 0:
        log(f"wrk {target.name} c={connections} warm-up {warmup}s")
        run_wrk(target.url, connections, warmup, target.key)
    log(f"wrk {target.name} c={connections} for {duration}s")
    ledger_before = target.ledger.read() if target.ledger is not None else None
    counters_before = upstream_counters(target.status_url)
    cpu_before = {name: group_cpu_seconds(pgid) for name, pgid in target.pgids.items()}
    cpu_before.update({name: process_cpu_seconds(pid) for name, pid in target.pids.items()})
    wrk_before = children_cpu_seconds()
    busy_before = system_busy_seconds()
    started = time.monotonic()
    result, raw = run_wrk(target.url, connections, duration, target.key)
    elapsed = time.monotonic() - started
    counters_after = upstream_counters(target.status_url)
    cpu = {
        name: (group_cpu_seconds(pgid) - cpu_before[name]) / elapsed
        for name, pgid in target.pgids.items()
    }
    for name, pid in target.pids.items():
        cpu[name] = (process_cpu_seconds(pid) - cpu_before[name]) / elapsed
    cpu["wrk"] = (children_cpu_seconds() - wrk_before) / elapsed
    busy = (system_busy_seconds() - busy_before) / elapsed
    # Whatever ran besides wrk, nginx and the gateway (a busy machine makes the figures too low).
    # The two clocks differ a little (per-process accounting vs. /proc/stat ticks).
    cpu["others"] = max(0.0, busy - sum(cpu.values()))
    result["cpu_cores"] = {name: round(value, 2) for name, value in cpu.items()}
    if counters_before and counters_after:
        result["upstream"] = {  # less the one stub_status request in between
            "requests": counters_after["requests"] - counters_before["requests"] - 1,
            "new_connections": counters_after["connections"] - counters_before["connections"] - 1,
        }
    result["raw"] = raw
    lat = result["latency_ms"]
    log(
        f"  -> {result['requests_per_sec']:,.0f} req/s, p50 {lat['p50']:.2f} ms, "
        f"p99 {lat['p99']:.2f} ms; CPU cores used: "
        + ", ".join(f"{name} {value:.2f}" for name, value in result["cpu_cores"].items())
    )
    if "upstream" in result:
        upstream = result["upstream"]
        log(
            f"     nginx served {upstream['requests']:,} requests "
            f"(wrk counted {result['requests']:,}) on {upstream['new_connections']:,} "
            "new connections"
        )
        if upstream["requests"] < result["requests"]:
            result["upstream_mismatch"] = True
            log(
                "  !!! nginx served fewer requests than wrk counted: answers did not all come "
                "from the upstream"
            )
    if target.ledger is not None and ledger_before is not None:
        target.ledger.account(ledger_before, result)
    if cpu["others"] > OTHERS_CPU_WARNING:
        log(
            f"  !!! other processes used {cpu['others']:.2f} CPU cores during this run: "
            "the machine was not quiet, these figures are too low"
        )
    if result["errors"]:
        log(f"  !!! {describe_errors(result)}")
    return result


def describe_errors(result: dict[str, Any]) -> str:
    socket_errors = ", ".join(f"{k} {v}" for k, v in result["socket_errors"].items() if v)
    return (
        f"{result['non_2xx']} non-2xx responses"
        + (f", socket errors: {socket_errors}" if socket_errors else "")
        + f" out of {result['requests']} requests"
    )


# --------------------------------------------------------------------------------------------
# Machine information, reporting and the JSON file.
# --------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import aigw

    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "aigw": aigw.__version__,
        "aigw_source": _source_info(Path(aigw.__file__).resolve().parent),
        "wrk": _tool_version([find_tool("wrk"), "--version"]),
        "nginx": _tool_version([find_tool("nginx"), "-v"]),
    }
    for package in ("granian", "aiohttp", "uvloop", "orjson"):
        info[package] = _package_version(package)
    return info


def _source_info(package_dir: Path) -> dict[str, Any]:
    """Which aigw code ran: its directory, and the git commit of the checkout holding it."""
    info: dict[str, Any] = {"path": str(package_dir)}
    try:
        head = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        if head.returncode == 0:
            dirty = subprocess.run(
                ["git", "-C", str(package_dir), "status", "--porcelain", "--", "."],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            info["git_commit"] = head.stdout.strip()
            info["uncommitted_files"] = len(dirty.stdout.splitlines())
    except OSError:
        pass
    return info


def _tool_version(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError as exc:
        return f"unknown ({exc})"
    text = (result.stdout + result.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _side(result: dict[str, Any] | None, metric: str) -> float | None:
    """``requests_per_sec`` or a latency percentile of one run, None if it was not measured."""
    if result is None:
        return None
    return result["requests_per_sec"] if metric == "rps" else result["latency_ms"][metric]


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per connection count: direct and (foundation) gateway figures side by side.

    A scenario left out with ``--scenarios`` gives None figures (and no ratio or difference).
    """
    rows = []
    for run in runs:
        direct, gateway = run.get("direct"), run.get("gateway")
        sides = [side for side in (direct, gateway) if side is not None]
        if not sides:
            continue
        rows.append(
            {
                "connections": run["connections"],
                "workers": run["workers"],
                "direct_rps": _side(direct, "rps"),
                "gateway_rps": _side(gateway, "rps"),
                "ratio": _ratio(_side(gateway, "rps"), _side(direct, "rps")),
                "direct_p50_ms": _side(direct, "p50"),
                "direct_p99_ms": _side(direct, "p99"),
                "gateway_p50_ms": _side(gateway, "p50"),
                "gateway_p99_ms": _side(gateway, "p99"),
                "added_p50_ms": _difference(_side(gateway, "p50"), _side(direct, "p50")),
                "errors": sum(side["errors"] for side in sides),
                "others_cpu_cores": max(side["cpu_cores"]["others"] for side in sides),
                "invalid": any(run_failed(side) for side in sides),
            }
        )
    return rows


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's two targets, each PASS, MISS, INVALID (the run had errors) or n/a."""
    by_c = {row["connections"]: row for row in rows}
    c1, c32 = by_c.get(1), by_c.get(32)
    return [
        check(
            f"C=1: gateway adds <= {TARGET_ADDED_P50_MS_AT_C1:g} ms at p50 over direct",
            c1,
            "added_p50_ms",
            "ms",
            lambda v: v <= TARGET_ADDED_P50_MS_AT_C1,
        ),
        check(
            f"C=32: gateway sustains >= {TARGET_RPS_AT_C32:,.0f} req/s",
            c32,
            "gateway_rps",
            "req/s",
            lambda v: v >= TARGET_RPS_AT_C32,
        ),
    ]


def check(
    target: str,
    row: dict[str, Any] | None,
    metric: str,
    unit: str,
    passes: Callable[[float], bool],
) -> dict[str, Any]:
    """PASS or MISS for ``row[metric]``; INVALID if the row's runs failed; n/a if not measured."""
    value = None if row is None else row.get(metric)
    if row is None or value is None:
        return {"target": target, "measured": None, "unit": unit, "status": "n/a"}
    status = "INVALID" if row["invalid"] else "PASS" if passes(value) else "MISS"
    return {"target": target, "measured": round(value, 3), "unit": unit, "status": status}


def fmt(value: float | None, spec: str, width: int = 0) -> str:
    """``value`` formatted with ``spec``, or "-" for a figure that was not measured."""
    return f"{'-' if value is None else format(value, spec):>{width}}"


def print_checks(checks: list[dict[str, Any]]) -> None:
    for item in checks:
        measured = item["measured"]
        measured = "not measured" if measured is None else f"{measured:,.2f} {item['unit']}"
        print(f"  {item['status']:<7} {item['target']} (measured: {measured})")


def print_report(rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    """The direct and foundation-gateway table, and the issue's targets."""
    if not rows:
        return
    header = (
        f"{'C':>4} {'workers':>7} {'direct req/s':>13} {'gateway req/s':>14} {'ratio':>6} "
        f"{'direct p50/p99 ms':>18} {'gateway p50/p99 ms':>19} {'added p50 ms':>13}"
    )
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        flag = "  !!! INVALID (errors)" if row["invalid"] else ""
        print(
            f"{row['connections']:>4} {row['workers']:>7} {fmt(row['direct_rps'], ',.0f', 13)} "
            f"{fmt(row['gateway_rps'], ',.0f', 14)} {fmt(row['ratio'], '.2f', 6)} "
            f"{fmt(row['direct_p50_ms'], '.2f', 8)} / {fmt(row['direct_p99_ms'], '.2f'):<7} "
            f"{fmt(row['gateway_p50_ms'], '.2f', 9)} / {fmt(row['gateway_p99_ms'], '.2f'):<7} "
            f"{fmt(row['added_p50_ms'], '+.2f', 13)}{flag}"
        )
    print()
    print_checks(checks)


def print_problems(runs: list[dict[str, Any]]) -> None:
    """The banner for failed runs and the warning for a busy machine, over every scenario."""
    print_run_problems(
        [(name, run["connections"], run[name]) for run in runs for name in SCENARIOS if name in run]
    )


def print_run_problems(results: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
    """The banner for failed runs and the warning for a busy machine; ``results`` holds
    (scenario name, connection count, :func:`measure`'s result) for every run."""
    bad = [(c, name, result) for name, c, result in results if run_failed(result)]
    if bad:
        print()
        print("!" * 78)
        print("!!! SOME RUNS HAD ERRORS: their figures measure failures, not the gateway.")
        for connections, name, result in bad:
            detail = describe_errors(result)
            if result.get("upstream_mismatch"):
                detail += "; nginx served fewer requests"
            if result.get("ledger_mismatch"):
                detail += "; " + result.get("ledger_problem", "Redis counted fewer requests")
            print(f"!!!   {name} c={connections}: {detail}")
        print("!" * 78)
    busy = [
        (c, name, result["cpu_cores"]["others"])
        for name, c, result in results
        if result["cpu_cores"]["others"] > OTHERS_CPU_WARNING
    ]
    if busy:
        print()
        print(
            "!!! The machine was not quiet: other processes used "
            + ", ".join(f"{cores:.2f} cores during {name} C={c}" for c, name, cores in busy)
            + ". Re-run on a quiet machine for figures worth keeping."
        )
    print()


def gateway_log_problems(child: Child, limit: int = 20) -> list[str]:
    """Lines of the gateway's output that look like trouble (its access log is off)."""
    try:
        lines = child.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    words = ("Traceback", "ERROR", "Error", "Exception", "CRITICAL", "WARNING")
    return [line for line in lines if any(word in line for word in words)][:limit]


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark the aigw gateway against a direct-to-nginx baseline (wrk).",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run [10]")
    parser.add_argument(
        "--connections", default="1,32", help="comma-separated wrk connection counts [1,32]"
    )
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes [2]")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run [2]")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="what to load, comma-separated, run in this order for each connection count: "
        "direct (nginx alone), gateway (the foundation gateway), policy (the gateway with the "
        f"full policy chain, limits in Redis) [{','.join(SCENARIOS)}]",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help="Redis for the policy scenario; the bench FLUSHES this database before and after "
        f"[{DEFAULT_REDIS_URL}]",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"JSON results file [{DEFAULT_OUT}]")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s per run, 1 s warm-up")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args.connections = [int(c) for c in str(args.connections).split(",") if c.strip()]
    except ValueError:
        parser.error(f"--connections: expected numbers like 1,32, got {args.connections!r}")
    if not args.connections or min(args.connections) < 1:
        parser.error("--connections: give at least one count, each >= 1")
    wanted = {name.strip() for name in str(args.scenarios).split(",") if name.strip()}
    if not wanted or wanted - set(SCENARIOS):
        parser.error(f"--scenarios: choose among {','.join(SCENARIOS)}, got {args.scenarios!r}")
    args.scenarios = [name for name in SCENARIOS if name in wanted]
    if args.quick:
        args.duration, args.warmup = 3, 1
    if args.duration < 1 or args.warmup < 0 or args.workers < 1:
        parser.error("--duration and --workers must be >= 1, --warmup >= 0")
    return args


def benchmark(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from aigw.config.keys import generate_key
    from bench import policy

    key = generate_key()
    info = machine_info()
    log(
        f"{info['nproc']} CPU(s) ({info['cpu_model']}), python {info['python']}, "
        f"aigw {info['aigw']}, {info['wrk'].split(' [')[0]}, {info['nginx']}; "
        f"scenarios: {', '.join(args.scenarios)}"
    )
    ledger = policy.RedisLedger(args.redis_url) if "policy" in args.scenarios else None
    try:
        # Redis's CPU is reported in every run once it is known: ~0 outside the policy runs.
        redis_pids = {}
        if ledger is not None:
            info["redis"] = ledger.connect()  # and flush its database
            if ledger.pid is not None:
                redis_pids["redis"] = ledger.pid
        with Processes(tmp) as procs:
            upstream_url = start_nginx(procs, tmp)
            nginx_pgid = procs.children[-1].pgid
            status_url = upstream_url.replace("/v1/chat/completions", "/nginx_status")
            targets: dict[str, Target] = {}
            gateways: dict[str, Child] = {}
            if "direct" in args.scenarios:
                preflight("direct", upstream_url, UPSTREAM_KEY)
                targets["direct"] = Target(
                    "direct", upstream_url, UPSTREAM_KEY, status_url, {"nginx": nginx_pgid},
                    dict(redis_pids),
                )  # fmt: skip
            if "gateway" in args.scenarios:
                config = write_gateway_config(tmp, upstream_url, key)
                validate_gateway_config(config)
                gateway, gateway_url = start_gateway(procs, config, args.workers)
                preflight("gateway", gateway_url, key)
                gateways["gateway"] = gateway
                targets["gateway"] = Target(
                    "gateway", gateway_url, key, status_url,
                    {"gateway": gateway.pgid, "nginx": nginx_pgid}, dict(redis_pids),
                )  # fmt: skip
            if ledger is not None:
                gateway, gateway_url = policy.start_policy_gateway(
                    procs, tmp, upstream_url, key, args.workers, ledger
                )
                gateways["policy"] = gateway
                targets["policy"] = Target(
                    "policy", gateway_url, key, status_url,
                    {"gateway": gateway.pgid, "nginx": nginx_pgid}, dict(redis_pids), ledger,
                )  # fmt: skip
            runs = []
            for connections in args.connections:
                run: dict[str, Any] = {"connections": connections, "workers": args.workers}
                for name, target in targets.items():
                    run[name] = measure(target, connections, args.duration, args.warmup)
                runs.append(run)
            problems = {name: gateway_log_problems(child) for name, child in gateways.items()}
            for name, child in gateways.items():
                if child.process.poll() is not None:
                    raise BenchError(
                        f"the {name} gateway exited (status {child.process.returncode}) during "
                        f"the run:\n{_indent(child.log_tail())}"
                    )
            log(f"stopping nginx and {len(gateways)} gateway(s)")
    finally:
        if ledger is not None:
            ledger.close()  # flushes its database again
    rows = summarize(runs)
    document: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, "-m", "bench.run", *args.argv]),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "workers": args.workers,
            "wrk_threads": 1,
            "scenarios": args.scenarios,
            "redis_url": args.redis_url if ledger is not None else None,
        },
        "machine": info,
        "summary": rows,
        "targets": check_targets(rows),
        "runs": runs,
        "gateway_log_problems": problems.get("gateway", []),
        "valid": not any(run_failed(run[name]) for run in runs for name in targets),
    }
    if ledger is not None:
        document["policy"] = policy.report_section(runs)
        document["policy_gateway_log_problems"] = problems.get("policy", [])
    return document


def main(argv: Sequence[str] | None = None) -> int:
    from bench import policy

    args = parse_args(argv)
    out = Path(args.out)
    if not out.is_absolute() and args.out == DEFAULT_OUT:
        out = ROOT / DEFAULT_OUT
    try:
        with interrupts_as_exceptions(), tempfile.TemporaryDirectory(prefix="aigw-bench-") as tmp:
            document = benchmark(args, Path(tmp))
    except (KeyboardInterrupt, Interrupted):
        print("\nbench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"\nbench: FAILED: {exc}", file=sys.stderr)
        return 1
    print_report(document["summary"], document["targets"])
    if "policy" in document:
        policy.print_report(document["policy"])
    print_problems(document["runs"])
    for name in ("gateway", "policy_gateway"):
        if document.get(f"{name}_log_problems"):
            print(f"{name.replace('_', ' ')} output had warnings/errors (first lines):")
            print(_indent("\n".join(document[f"{name}_log_problems"])))
            print()
    write_json(out, document)
    log(f"results written to {out}")
    if not document["valid"]:
        print("bench: some runs had errors (see above); exiting with status 1", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the imported module, not this __main__ copy: bench.policy imports bench.run, and its
    # BenchError must be the one main() catches.
    from bench import run as _bench_run

    sys.exit(_bench_run.main())
