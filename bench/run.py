"""``make bench``: the gateway's throughput and added latency against a direct-to-upstream baseline.

Everything runs on 127.0.0.1 with free ports:

    wrk --> nginx                    (direct: the baseline)
    wrk --> aigw gateway --> nginx   (through the gateway)

nginx answers ``POST /v1/chat/completions`` with a canned chat.completion, so the upstream costs
next to nothing and the difference between the two runs is the gateway. See docs/benchmarks.md.

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
from typing import Any

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

# Other processes using more than this many cores during a run get a warning.
OTHERS_CPU_WARNING = 0.15

# The targets.
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
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp}/nginx-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
master_process on;
worker_processes 1;
error_log {tmp}/nginx-error.log warn;
pid {tmp}/nginx.pid;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
{temp_paths}
    keepalive_requests 1000000;  # do not close wrk's (or the gateway's) connections every 1000
    keepalive_timeout 75s;

    server {{
        listen {HOST}:{port} reuseport;
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{body}';
        }}
        location = /nginx_status {{
            stub_status;  # request and connection counters: did the gateway really call us?
        }}
    }}
}}
"""


def start_nginx(procs: Processes, tmp: Path) -> str:
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_config(tmp, port))
    nginx = find_tool("nginx")
    argv = [nginx, "-p", f"{tmp}/", "-c", str(conf)]
    if _nginx_version(nginx) >= (1, 19, 5):  # -e: no attempt to open the system's error log
        argv[1:1] = ["-e", str(tmp / "nginx-error.log")]
    check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise BenchError(f"nginx rejected its generated config {conf}:\n{_indent(check.stderr)}")
    log(f"starting nginx on {HOST}:{port}")
    child = procs.start("nginx", argv)
    url = f"http://{HOST}:{port}/v1/chat/completions"
    wait_until(
        child,
        lambda: http_request(url, REQUEST_BODY, timeout=1)[0] == 200,
        "answering 200",
        timeout=15,
    )
    return url


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


def start_gateway(procs: Processes, config: Path, workers: int) -> tuple[Child, str]:
    port = free_port()
    argv = [
        sys.executable, "-m", "aigw", "gateway", "--config", str(config),
        "--host", HOST, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    env = {**os.environ, "AIGW_ACCESS_LOG": "0"}
    log(f"starting gateway on {HOST}:{port} with {workers} worker(s)")
    child = procs.start("gateway", argv, env)
    health = f"http://{HOST}:{port}/healthz"
    try:
        wait_until(
            child, lambda: _get_status(health) == 200, "GET /healthz answered 200", timeout=60
        )
    except BenchError as exc:
        raise BenchError(f"the gateway failed to start: `{shlex.join(argv)}`\n{exc}") from None
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


@dataclass
class Target:
    """Something wrk can load: nginx directly, or the gateway."""

    name: str
    url: str
    key: str
    status_url: str  # nginx's counters
    pgids: dict[str, int] = field(default_factory=dict)  # processes whose CPU use we report


def measure(target: Target, connections: int, duration: int, warmup: int) -> dict[str, Any]:
    if warmup > 0:
        log(f"wrk {target.name} c={connections} warm-up {warmup}s")
        run_wrk(target.url, connections, warmup, target.key)
    log(f"wrk {target.name} c={connections} for {duration}s")
    counters_before = upstream_counters(target.status_url)
    cpu_before = {name: group_cpu_seconds(pgid) for name, pgid in target.pgids.items()}
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
        "wrk": _tool_version([find_tool("wrk"), "--version"]),
        "nginx": _tool_version([find_tool("nginx"), "-v"]),
    }
    for package in ("granian", "aiohttp", "uvloop", "orjson"):
        info[package] = _package_version(package)
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


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per connection count: direct and gateway figures side by side."""
    rows = []
    for run in runs:
        direct, gateway = run["direct"], run["gateway"]
        rows.append(
            {
                "connections": run["connections"],
                "workers": run["workers"],
                "direct_rps": direct["requests_per_sec"],
                "gateway_rps": gateway["requests_per_sec"],
                "ratio": gateway["requests_per_sec"] / direct["requests_per_sec"]
                if direct["requests_per_sec"]
                else 0.0,
                "direct_p50_ms": direct["latency_ms"]["p50"],
                "direct_p99_ms": direct["latency_ms"]["p99"],
                "gateway_p50_ms": gateway["latency_ms"]["p50"],
                "gateway_p99_ms": gateway["latency_ms"]["p99"],
                "added_p50_ms": gateway["latency_ms"]["p50"] - direct["latency_ms"]["p50"],
                "errors": direct["errors"] + gateway["errors"],
                "others_cpu_cores": max(
                    direct["cpu_cores"]["others"], gateway["cpu_cores"]["others"]
                ),
                "invalid": any(
                    side["errors"] or side.get("upstream_mismatch") for side in (direct, gateway)
                ),
            }
        )
    return rows


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's two targets, each PASS, MISS, INVALID (the run had errors) or n/a."""
    by_c = {row["connections"]: row for row in rows}
    c1, c32 = by_c.get(1), by_c.get(32)
    return [
        _check(
            f"C=1: gateway adds <= {TARGET_ADDED_P50_MS_AT_C1:g} ms at p50 over direct",
            c1,
            "added_p50_ms",
            "ms",
            lambda v: v <= TARGET_ADDED_P50_MS_AT_C1,
        ),
        _check(
            f"C=32: gateway sustains >= {TARGET_RPS_AT_C32:,.0f} req/s",
            c32,
            "gateway_rps",
            "req/s",
            lambda v: v >= TARGET_RPS_AT_C32,
        ),
    ]


def _check(
    target: str,
    row: dict[str, Any] | None,
    metric: str,
    unit: str,
    passes: Callable[[float], bool],
) -> dict[str, Any]:
    if row is None:
        return {"target": target, "measured": None, "unit": unit, "status": "n/a"}
    value = row[metric]
    status = "INVALID" if row["invalid"] else "PASS" if passes(value) else "MISS"
    return {"target": target, "measured": round(value, 3), "unit": unit, "status": status}


def print_report(
    rows: list[dict[str, Any]], checks: list[dict[str, Any]], runs: list[dict[str, Any]]
) -> None:
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
            f"{row['connections']:>4} {row['workers']:>7} {row['direct_rps']:>13,.0f} "
            f"{row['gateway_rps']:>14,.0f} {row['ratio']:>6.2f} "
            f"{row['direct_p50_ms']:>8.2f} / {row['direct_p99_ms']:<7.2f} "
            f"{row['gateway_p50_ms']:>9.2f} / {row['gateway_p99_ms']:<7.2f} "
            f"{row['added_p50_ms']:>+13.2f}{flag}"
        )
    print()
    for check in checks:
        measured = check["measured"]
        measured = "not measured" if measured is None else f"{measured:,.2f} {check['unit']}"
        print(f"  {check['status']:<7} {check['target']} (measured: {measured})")
    bad = [
        (run["connections"], side, run[side])
        for run in runs
        for side in ("direct", "gateway")
        if run[side]["errors"] or run[side].get("upstream_mismatch")
    ]
    if bad:
        print()
        print("!" * 78)
        print("!!! SOME RUNS HAD ERRORS: their figures measure failures, not the gateway.")
        for connections, side, result in bad:
            mismatch = "; nginx served fewer requests" if result.get("upstream_mismatch") else ""
            print(f"!!!   {side} c={connections}: {describe_errors(result)}{mismatch}")
        print("!" * 78)
    busy = [row for row in rows if row["others_cpu_cores"] > OTHERS_CPU_WARNING]
    if busy:
        print()
        print(
            "!!! The machine was not quiet: other processes used up to "
            + ", ".join(
                f"{row['others_cpu_cores']:.2f} cores at C={row['connections']}" for row in busy
            )
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
    if args.quick:
        args.duration, args.warmup = 3, 1
    if args.duration < 1 or args.warmup < 0 or args.workers < 1:
        parser.error("--duration and --workers must be >= 1, --warmup >= 0")
    return args


def benchmark(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from aigw.config.keys import generate_key

    key = generate_key()
    info = machine_info()
    log(
        f"{info['nproc']} CPU(s) ({info['cpu_model']}), python {info['python']}, "
        f"aigw {info['aigw']}, {info['wrk'].split(' [')[0]}, {info['nginx']}"
    )
    with Processes(tmp) as procs:
        upstream_url = start_nginx(procs, tmp)
        nginx_pgid = procs.children[-1].pgid
        config = write_gateway_config(tmp, upstream_url, key)
        validate_gateway_config(config)
        gateway, gateway_url = start_gateway(procs, config, args.workers)
        preflight("direct", upstream_url, UPSTREAM_KEY)
        preflight("gateway", gateway_url, key)
        status_url = upstream_url.replace("/v1/chat/completions", "/nginx_status")
        direct = Target("direct", upstream_url, UPSTREAM_KEY, status_url, {"nginx": nginx_pgid})
        through = Target(
            "gateway", gateway_url, key, status_url, {"gateway": gateway.pgid, "nginx": nginx_pgid}
        )
        runs = []
        for connections in args.connections:
            runs.append(
                {
                    "connections": connections,
                    "workers": args.workers,
                    "direct": measure(direct, connections, args.duration, args.warmup),
                    "gateway": measure(through, connections, args.duration, args.warmup),
                }
            )
        problems = gateway_log_problems(gateway)
        if gateway.process.poll() is not None:
            raise BenchError(
                f"the gateway exited (status {gateway.process.returncode}) during the run:\n"
                f"{_indent(gateway.log_tail())}"
            )
        log("stopping gateway and nginx")
    rows = summarize(runs)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, "-m", "bench.run", *args.argv]),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "workers": args.workers,
            "wrk_threads": 1,
        },
        "machine": info,
        "summary": rows,
        "targets": check_targets(rows),
        "runs": runs,
        "gateway_log_problems": problems,
        "valid": not any(row["invalid"] for row in rows),
    }


def main(argv: Sequence[str] | None = None) -> int:
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
    print_report(document["summary"], document["targets"], document["runs"])
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
