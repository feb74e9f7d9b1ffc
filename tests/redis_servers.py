"""Private ``redis-server`` processes for tests: one server, or a 3-master Redis Cluster.

Each listens on a free loopback port (with its cluster-bus port, +10000, free too) and keeps
nothing on disk; every one is stopped by its owner (a fixture's teardown).
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis


def _port_pair_free(port: int) -> bool:
    for candidate in (port, port + 10000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


def free_ports(count: int) -> list[int]:
    """Free loopback ports whose cluster-bus port (+10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = 20000 + secrets.randbelow(20000)
        if port not in ports and _port_pair_free(port):
            ports.append(port)
    return ports


class RedisServer:
    """A private ``redis-server`` on a free port: stopped, restarted, paused at will."""

    def __init__(self, directory: Path, port: int | None = None, *extra: str) -> None:
        self.directory = directory
        self.port = port or free_ports(1)[0]
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.directory),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} exited")
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        return client.cluster("info").get("cluster_state") == "ok"
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def redis_cluster(directory: Path, masters: int = 3) -> Iterator[str]:
    """A cluster of ``masters`` ``redis-server --cluster-enabled yes`` processes joined by
    ``redis-cli --cluster create`` and ``cluster_state:ok``; yields the first node's URL."""
    nodes: list[RedisServer] = []
    try:
        for port in free_ports(masters):
            node = RedisServer(
                directory,
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                "2000",
            )
            node.start()
            nodes.append(node)
        subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"127.0.0.1:{node.port}" for node in nodes]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while not all(_cluster_ok(node.port) for node in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{nodes[0].port}"
    finally:
        for node in nodes:
            node.stop()


def flush_cluster(url: str) -> None:
    """FLUSHDB on every master of the cluster ``url`` is a node of (plain clients, each closed:
    redis-py's cluster client leaves a connection of a fanned-out command unclosed)."""
    seed = redis.Redis.from_url(url, socket_timeout=5)
    try:
        nodes = seed.cluster("nodes")
    finally:
        seed.close()
    for address, node in nodes.items():
        if "master" not in node["flags"]:
            continue
        host, _, port = address.partition("@")[0].rpartition(":")
        client = redis.Redis(host=host, port=int(port), socket_timeout=5)
        try:
            client.flushdb()
        finally:
            client.close()


def cluster_node_for(url: str, key: str) -> redis.Redis:
    """A plain client to the master that holds ``key`` in the cluster ``url`` is a node of
    (the caller closes it)."""
    seed = redis.Redis.from_url(url, socket_timeout=5)
    try:
        slot = int(seed.cluster("keyslot", key))
        for start, end, master, *_ in seed.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                host = master[0].decode() if isinstance(master[0], bytes) else master[0]
                return redis.Redis(host=host, port=int(master[1]), socket_timeout=5)
    finally:
        seed.close()
    raise LookupError(f"no master serves slot {slot}")
