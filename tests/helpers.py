"""Run aigw's real processes (and small in-test upstreams) for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

from aigw.config.keys import display_prefix, generate_key, hash_key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_key_entry(name: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    """A fresh caller key and its configuration entry."""
    key = generate_key()
    return key, {"name": name, "key_hash": hash_key(key), "prefix": display_prefix(key), **extra}


class Process:
    """A child process whose output goes to a log file shown when a test needs it."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # closed in stop()
        self.popen = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def output(self) -> str:
        if not self._log.closed:  # still running (a stopped process's log is complete)
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"process exited ({self.popen.returncode}):\n{self.output()}")
            try:
                if httpx.get(url, timeout=0.5).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{url} did not answer within {timeout}s:\n{self.output()}")

    def stop(self, sig_timeout: float = 10) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(sig_timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def aigw(*args: str) -> list[str]:
    return [sys.executable, "-m", "aigw", *args]


@contextmanager
def mock_upstream(tmp: Path, *options: str) -> Iterator[str]:
    """The bundled mock provider as a real process; yields its base URL (without /v1)."""
    port = free_port()
    process = Process(
        aigw("mock-upstream", "--port", str(port), *options), tmp / f"mock-{port}.log"
    )
    try:
        process.wait_http(f"http://127.0.0.1:{port}/_mock/config")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@contextmanager
def gateway(
    tmp: Path, document: dict[str, Any], workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``aigw gateway`` as a real process serving ``document``; yields its base URL."""
    port = free_port()
    config = tmp / f"gateway-{port}.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    args = aigw(
        "gateway",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    )
    process = Process(args, tmp / f"gateway-{port}.log", env)
    try:
        process.wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def start_config_center(
    tmp: Path, port: int, env: dict[str, str], name: str = "config-center"
) -> Process:
    """``aigw config-center`` as a real process on ``port``, returned once /readyz answers.

    ``env`` carries its settings (AIGW_DATABASE_URL, AIGW_MASTER_KEY, AIGW_GATEWAY_TOKEN, ...).
    Each start appends to the same log file, so a restarted process's history stays readable.
    """
    args = aigw(
        "config-center", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp / name)
    )
    process = Process(args, _next_log(tmp, name), env)
    process.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=30)
    return process


def start_following_gateway(
    tmp: Path,
    port: int,
    center_url: str,
    env: dict[str, str],
    name: str = "gateway",
    workers: int = 1,
    wait: str = "/healthz",
) -> Process:
    """``aigw gateway --config-center URL`` as a real process; returned once ``wait`` answers
    below 500 (``/readyz`` waits for a snapshot, ``/healthz`` only for the server)."""
    args = aigw(
        "gateway",
        "--config-center",
        center_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    )
    process = Process(args, _next_log(tmp, name), env)
    process.wait_http(f"http://127.0.0.1:{port}{wait}", timeout=30)
    return process


def _next_log(tmp: Path, name: str) -> Path:
    for attempt in range(1, 1000):
        path = tmp / f"{name}-{attempt}.log"
        if not path.exists():
            return path
    raise RuntimeError("too many logs")


MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


@contextmanager
def mariadb_database(prefix: str = "aigw_live_") -> Iterator[str]:
    """A new, empty MariaDB database (as root on 127.0.0.1:3306); yields its URL, then drops it."""
    import asyncmy

    name = f"{prefix}{secrets.token_hex(6)}"

    async def execute(statement: str) -> None:
        connection = await asyncmy.connect(**MARIADB, connect_timeout=5)
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(statement)
        finally:
            await connection.ensure_closed()

    _run_async(execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield f"mysql://{MARIADB['user']}@{MARIADB['host']}:{MARIADB['port']}/{name}"
    finally:
        _run_async(execute(f"DROP DATABASE IF EXISTS `{name}`"))


def _run_async(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion on its own loop in a thread (callable from async tests)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class ThreadedUpstream:
    """An in-test aiohttp upstream on its own thread and event loop, for scripted behaviour."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._runner = web.AppRunner(self.app, handler_cancellation=True)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self.loop.run_until_complete(site.start())
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._runner.cleanup())
        self.loop.close()

    def __enter__(self) -> ThreadedUpstream:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def wait_ready_on_every_worker(url: str, confirmations: int = 20, timeout: float = 20) -> None:
    """``url``/readyz answers 200 on ``confirmations`` fresh connections in a row, so that every
    worker of a multi-worker gateway has a configuration in service."""
    deadline, ready = time.monotonic() + timeout, 0
    while ready < confirmations:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: not every worker was ready within {timeout}s")
        try:
            ok = httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            ok = False
        ready = ready + 1 if ok else 0
        if not ok:
            time.sleep(0.05)


def descendant_pids(pid: int) -> list[int]:
    """Every process below ``pid`` (its granian workers, ...), read from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:  # the task ended meanwhile
            continue
        for child in map(int, children):
            found.append(child)
            found.extend(descendant_pids(child))
    return found


def pid_gone(pid: int) -> bool:
    """Every thread of the process has exited, so its files and sockets are closed (a zombie
    waiting to be reaped counts as gone; a zombie leader whose other threads still run does not)."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # that thread is gone
            continue
        if state not in ("Z", "X"):
            return False
    return True


def sigkill_process_tree(process: Process) -> list[int]:
    """SIGKILL a process and all its descendants at once, as when its container or machine dies;
    returns their pids without waiting (see :func:`wait_pids_gone`).

    The parent is killed first, so that a supervisor (granian's main process) cannot respawn the
    workers killed after it."""
    import signal

    pids = [process.popen.pid, *descendant_pids(process.popen.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def wait_pids_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not all(pid_gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} still alive after {timeout}s")
        time.sleep(0.02)


@contextmanager
def token_service(tmp: Path) -> Iterator[str]:
    """``aigw token-service`` as a real process; yields its base URL."""
    port = free_port()
    process = Process(
        aigw("token-service", "--host", "127.0.0.1", "--port", str(port)),
        tmp / f"token-service-{port}.log",
    )
    try:
        process.wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


async def seconds_until_steady(
    answer: Callable[[], Awaitable[int]],
    status: int,
    since: float,
    limit: float,
    confirmations: int,
) -> float:
    """Seconds from ``since`` (a ``time.monotonic()``) until ``answer()`` gives ``status``: the
    start of a run of ``confirmations + 1`` answers in a row that all give it (on fresh
    connections, so each worker of a gateway is asked). AssertionError past ``limit`` seconds."""
    run_started: float | None = None
    run = 0
    while run <= confirmations:
        now = time.monotonic()
        if now - since > limit:
            raise AssertionError(f"no {status} within {limit} s")
        if await answer() == status:
            run_started = now if run == 0 else run_started
            run += 1
        else:
            run = 0
            await asyncio.sleep(0.005)
    assert run_started is not None
    return run_started - since


def serve_demo_command(
    data_dir: Path,
    *,
    port: int,
    mock_port: int,
    center_port: int,
    tokens_port: int,
    web_port: int | None = None,
    workers: int = 1,
) -> list[str]:
    """``aigw serve --demo`` with every component on the given ports (the dashboard's left at
    its default when ``web_port`` is None)."""
    web = ["--web-port", str(web_port)] if web_port is not None else []
    return aigw(
        "serve", "--demo", "--port", str(port), "--mock-port", str(mock_port),
        "--config-center-port", str(center_port), "--token-service-port", str(tokens_port),
        *web, "--workers", str(workers), "--data-dir", str(data_dir),
    )  # fmt: skip
