"""Start and stop the processes of a deployment: granian gateway workers and helper children."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from aigw.gateway.core.init import CONFIG_ENV


def run_gateway(config: Path, host: str, port: int, workers: int) -> None:
    """Serve the gateway with granian until SIGINT/SIGTERM (blocking)."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    os.environ[CONFIG_ENV] = str(config.resolve())
    Granian(
        "aigw.gateway.core.init:create_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop if _has_uvloop() else Loops.asyncio,
        log_access=False,  # aigw writes its own structured access log
        respawn_failed_workers=True,
    ).serve()


def start_mock_upstream(host: str, port: int) -> subprocess.Popen[bytes]:
    """The bundled mock provider as a child process, returned once it accepts connections."""
    process = subprocess.Popen(
        [sys.executable, "-m", "aigw", "mock-upstream", "--host", host, "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
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
