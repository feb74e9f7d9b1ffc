"""Start and stop the processes of a deployment: granian servers (the gateway, the config center)
and helper children."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aigw.config_center.settings import CenterSettings
from aigw.gateway.core.config_sync import CENTER_ENV
from aigw.gateway.core.init import CONFIG_ENV
from aigw.server.signals import on_stop_signal
from aigw.state.redis_client import cluster_from_env


def run_gateway(
    config: Path | None,
    host: str,
    port: int,
    workers: int,
    *,
    config_center: str | None = None,
    follower_env: Mapping[str, str] | None = None,
) -> None:
    """Serve the gateway with granian until SIGINT/SIGTERM (blocking).

    It serves the static file ``config``, or follows ``config_center`` with ``follower_env``
    (``AIGW_GATEWAY_TOKEN``, ``AIGW_MASTER_KEY``, ``AIGW_SNAPSHOT_CACHE``) set for its workers.
    """
    if (config is None) == (config_center is None):
        raise ValueError("give exactly one of config or config_center")
    if config is not None:
        os.environ[CONFIG_ENV] = str(config.resolve())
        os.environ.pop(CENTER_ENV, None)
    else:
        assert config_center is not None
        os.environ[CENTER_ENV] = config_center
        os.environ.pop(CONFIG_ENV, None)
        os.environ.update(follower_env or {})
    if workers > 1 and not os.environ.get("AIGW_REDIS_URL"):
        print(
            f"warning: {workers} gateway workers without AIGW_REDIS_URL: rate limits, quotas and "
            "budgets are counted per worker process, so each is effectively multiplied by "
            f"{workers}; set AIGW_REDIS_URL to share them",
            file=sys.stderr,
        )
    grace = int(os.environ.get(SHUTDOWN_GRACE_ENV) or DEFAULT_SHUTDOWN_GRACE)
    with _metrics_directory():
        # Past the grace period, a worker still relaying (a stream that never ends) is killed.
        _serve("aigw.gateway.core.init:create_app", host, port, workers, kill_timeout=grace)


@contextlib.contextmanager
def _metrics_directory() -> Iterator[None]:
    """Where the gateway's workers keep their metrics for each other's scrapes
    (``gateway/monitoring/prometheus.py``): ``AIGW_METRICS_DIR`` if set (emptied first), else a
    private temporary directory removed when the gateway stops."""
    from aigw.gateway.monitoring.prometheus import METRICS_DIR_ENV

    given = os.environ.get(METRICS_DIR_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("worker-*.json"):
            stale.unlink(missing_ok=True)
        yield
        return
    directory = tempfile.mkdtemp(prefix="aigw-metrics-")
    os.environ[METRICS_DIR_ENV] = directory
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)


SHUTDOWN_GRACE_ENV = "AIGW_SHUTDOWN_GRACE_SECONDS"
# How long a stopping gateway lets in-flight requests and streams finish.
DEFAULT_SHUTDOWN_GRACE = 30


# Seconds a stopping config center worker gets to finish its requests before it is killed.
CENTER_STOP_GRACE = 10


class DatabaseUnavailable(Exception):
    """The config center's database cannot be reached or migrated."""


def run_config_center(settings: CenterSettings, host: str, port: int, workers: int) -> None:
    """Serve the config center with granian until SIGINT/SIGTERM (blocking).

    Migrations run here once, so a bad database URL fails before any worker starts and the
    workers' own (idempotent) migration finds nothing to do.
    """
    import asyncio

    from sqlalchemy.engine import make_url

    from aigw.config_center.db.engine import make_engine, migrate

    async def prepare() -> None:
        engine = make_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(prepare())
    except Exception as exc:
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        raise DatabaseUnavailable(f"cannot prepare the database {shown}: {exc}") from exc
    os.environ.update(center_env(settings))
    # Past this, a worker that has not stopped (an admin request that hangs) is killed.
    _serve(
        "aigw.server.processes:create_config_center_app",
        host,
        port,
        workers,
        kill_timeout=CENTER_STOP_GRACE,
    )


def create_config_center_app() -> Any:
    """The config center's ASGI application for one worker process (settings from the env)."""
    import logging

    from aigw.config_center.app import create_app

    logging.basicConfig(
        level=os.environ.get("AIGW_LOG_LEVEL", "INFO").upper(), format="%(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app = create_app(center_settings_from_env(os.environ))
    _release_long_polls_on_stop(app)
    return app


def _release_long_polls_on_stop(app: Any) -> None:
    """Answer the gateways' pending long-polls as soon as this worker is told to stop.

    granian lets in-flight requests finish before it stops a worker, and a long-poll is in
    flight for up to 30 s, so a config center with gateways attached would take that long to
    stop; with this, stopping takes as long as the slowest real request.
    """

    def release() -> None:
        feed = getattr(app.state, "feed", None)
        if feed is not None:
            feed.drain()

    on_stop_signal(release)


def center_settings_from_env(env: Mapping[str, str]) -> CenterSettings:
    from aigw.config.secrets import master_key_from
    from aigw.config_center.settings import default_database_url

    data_dir = Path(env.get("AIGW_DATA_DIR") or ".aigw")
    return CenterSettings(
        database_url=env.get("AIGW_DATABASE_URL") or default_database_url(data_dir),
        master_key=master_key_from(env, data_dir),
        data_dir=data_dir,
        admin_token=env.get("AIGW_ADMIN_TOKEN") or None,
        gateway_token=env.get("AIGW_GATEWAY_TOKEN") or None,
        redis_url=env.get("AIGW_REDIS_URL") or None,
        redis_cluster=cluster_from_env(env),
    )


def center_env(settings: CenterSettings) -> dict[str, str]:
    env = {
        "AIGW_DATABASE_URL": settings.database_url,
        "AIGW_MASTER_KEY": settings.master_key,
        "AIGW_DATA_DIR": str(settings.data_dir),
    }
    for name, value in (
        ("AIGW_ADMIN_TOKEN", settings.admin_token),
        ("AIGW_GATEWAY_TOKEN", settings.gateway_token),
        ("AIGW_REDIS_URL", settings.redis_url),
        ("AIGW_REDIS_CLUSTER", "1" if settings.redis_cluster else None),
    ):
        if value:
            env[name] = value
    return env


def start_config_center(
    host: str, port: int, data_dir: Path, env: Mapping[str, str], timeout: float = 30
) -> subprocess.Popen[bytes]:
    """``aigw config-center`` as a child process, returned once it answers /readyz."""
    process = _aigw_child(
        "config-center", "--host", host, "--port", str(port), "--data-dir", str(data_dir),
        "--workers", "1", env=env,
    )  # fmt: skip
    wait_for_http(f"http://{host}:{port}/readyz", process, timeout)
    return process


def _aigw_child(
    *args: str, env: Mapping[str, str] | None = None, quiet: bool = False
) -> subprocess.Popen[bytes]:
    """``aigw <args>`` as a child process (this interpreter), its environment ``env`` on top of
    ours; ``quiet`` discards its standard output."""
    return subprocess.Popen(
        [sys.executable, "-m", "aigw", *args],
        env={**os.environ, **env} if env is not None else None,
        stdout=subprocess.DEVNULL if quiet else None,
    )


def _serve(
    target: str, host: str, port: int, workers: int, kill_timeout: int | None = None
) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    Granian(
        target,
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop if _has_uvloop() else Loops.asyncio,
        log_access=False,  # aigw writes its own structured access log
        respawn_failed_workers=True,
        workers_kill_timeout=kill_timeout,
    ).serve()


def start_token_service(host: str, port: int) -> subprocess.Popen[bytes]:
    """``aigw token-service`` as a child process, returned once it answers /healthz."""
    process = _aigw_child("token-service", "--host", host, "--port", str(port))
    wait_for_http(f"http://{host}:{port}/healthz", process, timeout=30)
    return process


def start_web(
    host: str, port: int, config_center: str, gateway: str, timeout: float = 30
) -> subprocess.Popen[bytes]:
    """``aigw web`` (the dashboard) as a child process, returned once it answers /healthz."""
    process = _aigw_child(
        "web", "--host", host, "--port", str(port), "--config-center", config_center,
        "--gateway", gateway, quiet=True,
    )  # fmt: skip
    probe = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    wait_for_http(f"http://{probe}:{port}/healthz", process, timeout)
    return process


def start_mock_upstream(host: str, port: int) -> subprocess.Popen[bytes]:
    """The bundled mock provider as a child process, returned once it accepts connections."""
    process = _aigw_child("mock-upstream", "--host", host, "--port", str(port), quiet=True)
    wait_for_port(host, port, process)
    return process


def wait_for_port(
    host: str, port: int, process: subprocess.Popen[bytes], timeout: float = 15
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with status {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"nothing listened on {host}:{port} within {timeout:.0f}s")


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until ``url`` answers 200 (the process's lifespan startup is done)."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with status {process.returncode} before serving")
        try:
            with opener.open(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def stop(process: subprocess.Popen[bytes], grace: float = 5) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
