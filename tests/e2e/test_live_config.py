"""Live configuration with real processes: one config center on MariaDB + Redis, two gateways.

Changes are committed from this test process with ``ConfigStore.replace`` on the same database,
by a store with its own ``VersionFeed`` publishing to Redis: exactly what another config-center
instance (or its admin API) does. The gateways hear of it through the running config center,
which hears through Redis (or, failing that, its 1-second database poll).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from aigw.config.secrets import SecretBox
from aigw.config_center.db.engine import make_engine, migrate, sessions
from aigw.config_center.feed import VersionFeed
from aigw.config_center.store import ConfigStore
from tests.helpers import (
    Process,
    aigw,
    free_port,
    mariadb_database,
    mock_upstream,
    new_key_entry,
    seconds_until_steady,
    start_config_center,
    start_following_gateway,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
MASTER_KEY = "live-config-master-key"
GATEWAY_TOKEN = "live-config-gateway-token"
UPSTREAM_SECRET = "sk-live-upstream-secret"
PROPAGATION_LIMIT = 1.0  # seconds from commit to a successful request on each gateway
CONFIRMATIONS = 10  # requests on fresh connections that must agree after the first one


@dataclass
class Gateway:
    name: str
    port: int
    cache: Path
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Writer:
    """What another config-center instance is: a store on the database, publishing to Redis."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        self.store = ConfigStore(sessions(self.engine), SecretBox(MASTER_KEY))
        self.feed = VersionFeed(self.store, REDIS_URL, poll_interval=3600)

    async def start(self) -> None:
        await migrate(self.engine)
        await self.feed.start()

    async def commit(self, document: dict[str, Any], action: str) -> int:
        return (await self.store.replace(document, actor="test", action=action)).version

    async def close(self) -> None:
        await self.feed.stop()
        await self.engine.dispose()


def base_document(mock: str, keys: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "providers": [
            {
                "name": "mock",
                "type": "openai-compatible",
                "base_url": f"{mock}/v1",
                "api_key": UPSTREAM_SECRET,
            }
        ],
        "models": [
            {"name": "live-base", "targets": [{"provider": "mock", "model": "gpt-4o-mini"}]}
        ],
        "namespaces": [{"name": "live", "keys": keys}],
    }


def with_model(document: dict[str, Any], name: str) -> dict[str, Any]:
    changed = deepcopy(document)
    changed["models"].append({"name": name, "targets": [{"provider": "mock", "model": "gpt-4o"}]})
    return changed


def with_key_disabled(document: dict[str, Any], key_name: str) -> dict[str, Any]:
    changed = deepcopy(document)
    for key in changed["namespaces"][0]["keys"]:
        if key["name"] == key_name:
            key["disabled"] = True
    return changed


async def chat(client: httpx.AsyncClient, gateway: str, key: str, model: str) -> int:
    response = await client.post(
        f"{gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
    )
    return response.status_code


async def time_until(
    client: httpx.AsyncClient, gateway: str, key: str, model: str, status: int, limit: float
) -> float:
    """Seconds until requests get ``status`` on every worker (see ``seconds_until_steady``)."""
    try:
        return await seconds_until_steady(
            lambda: chat(client, gateway, key, model),
            status,
            time.monotonic(),
            limit,
            CONFIRMATIONS,
        )
    except AssertionError:
        raise AssertionError(
            f"{gateway}: not {status} for {model} with {key[:12]} in {limit}s"
        ) from None


async def propagation(
    client: httpx.AsyncClient,
    gateways: list[Gateway],
    key: str,
    model: str,
    status: int,
    since: float,
    limit: float,
) -> dict[str, float]:
    """For each gateway, seconds from ``since`` until requests get ``status``."""
    polling = time.monotonic()
    waits = await asyncio.gather(
        *(time_until(client, g.url, key, model, status, limit) for g in gateways)
    )
    return {
        g.name: round(polling - since + wait, 3) for g, wait in zip(gateways, waits, strict=True)
    }


async def ready_version(client: httpx.AsyncClient, gateway: Gateway) -> int:
    response = await client.get(f"{gateway.url}/readyz")
    assert response.status_code == 200, response.text
    return int(response.json()["config_center_version"])


async def newest_version(
    client: httpx.AsyncClient, gateway: Gateway, wanted: int, limit: float = 15
) -> int:
    """The version /readyz reports, once it is ``wanted`` (or whatever it is after ``limit``)."""
    deadline = time.monotonic() + limit
    while True:
        version = await ready_version(client, gateway)
        if version == wanted or time.monotonic() > deadline:
            return version
        await asyncio.sleep(0.05)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # No keep-alive: each request is a new connection, spread over the gateways' workers.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        yield client


async def test_changes_reach_both_gateways_live_and_survive_a_config_center_outage(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    key, key_entry = new_key_entry("main")
    victim, victim_entry = new_key_entry("victim")
    report: dict[str, Any] = {}
    with mariadb_database() as database_url, mock_upstream(tmp_path) as mock:
        writer = Writer(database_url)
        await writer.start()
        center_port = free_port()
        center_url = f"http://127.0.0.1:{center_port}"
        center_env = {
            "AIGW_DATABASE_URL": database_url,
            "AIGW_MASTER_KEY": MASTER_KEY,
            "AIGW_GATEWAY_TOKEN": GATEWAY_TOKEN,
            "AIGW_REDIS_URL": REDIS_URL,
        }
        gateways: list[Gateway] = []
        center: Process | None = None
        try:
            document = base_document(mock, [key_entry, victim_entry])
            first = await writer.commit(document, "initial")
            center = await asyncio.to_thread(start_config_center, tmp_path, center_port, center_env)

            def start_gateway(name: str, port: int) -> Gateway:
                cache = tmp_path / f"{name}-snapshot.json"
                env = {
                    "AIGW_GATEWAY_TOKEN": GATEWAY_TOKEN,
                    "AIGW_MASTER_KEY": MASTER_KEY,
                    "AIGW_SNAPSHOT_CACHE": str(cache),
                    "AIGW_ACCESS_LOG": "0",
                }
                process = start_following_gateway(
                    tmp_path, port, center_url, env, name=name, workers=2, wait="/readyz"
                )
                return Gateway(name, port, cache, process)

            gateways = list(
                await asyncio.gather(
                    asyncio.to_thread(start_gateway, "gateway-a", free_port()),
                    asyncio.to_thread(start_gateway, "gateway-b", free_port()),
                )
            )
            for gateway in gateways:
                assert await ready_version(http, gateway) == first
                assert await chat(http, gateway.url, key, "live-base") == 200
                assert await chat(http, gateway.url, victim, "live-base") == 200
                assert await chat(http, gateway.url, key, "live-new") == 404
            await asyncio.sleep(0.5)  # the gateways' long-polls are now waiting at the center

            # (a) A new model is served by both gateways within a second of the commit.
            document = with_model(document, "live-new")
            committed = time.monotonic()
            await writer.commit(document, "add live-new")
            report["a_new_model"] = times = await propagation(
                http, gateways, key, "live-new", 200, committed, limit=5
            )
            assert max(times.values()) < PROPAGATION_LIMIT, times

            # (b) A disabled key stops working on both within a second.
            document = with_key_disabled(document, "victim")
            committed = time.monotonic()
            disabled_version = await writer.commit(document, "disable victim")
            report["b_key_disabled"] = times = await propagation(
                http, gateways, victim, "live-base", 401, committed, limit=5
            )
            assert max(times.values()) < PROPAGATION_LIMIT, times
            for gateway in gateways:
                assert await ready_version(http, gateway) == disabled_version

            # (c) Without the config center, both keep serving what they have.
            stopping = time.monotonic()
            await asyncio.to_thread(center.stop)
            report["c_center_stop_seconds"] = round(time.monotonic() - stopping, 3)
            await asyncio.sleep(1)  # the gateways notice and start retrying
            for gateway in gateways:
                assert await chat(http, gateway.url, key, "live-new") == 200
                assert await chat(http, gateway.url, victim, "live-base") == 401
                assert await ready_version(http, gateway) == disabled_version

            # (d) A gateway restarted meanwhile serves its last snapshot from its disk cache.
            old = gateways[1]
            await asyncio.to_thread(old.process.stop)
            assert await chat(http, gateways[0].url, key, "live-new") == 200
            restarted = await asyncio.to_thread(start_gateway, old.name, old.port)
            gateways[1] = restarted
            assert await ready_version(http, restarted) == disabled_version
            assert await chat(http, restarted.url, key, "live-new") == 200
            assert await chat(http, restarted.url, victim, "live-base") == 401
            assert "not reachable at startup" in restarted.process.output()

            # (e) A change made while the config center was down reaches both gateways once it is
            # back, without anything done to them.
            document = with_model(document, "live-late")
            late_version = await writer.commit(document, "add live-late while the center is down")
            for gateway in gateways:
                assert await chat(http, gateway.url, key, "live-late") == 404
            starting = time.monotonic()
            center = await asyncio.to_thread(start_config_center, tmp_path, center_port, center_env)
            report["e_center_start_seconds"] = round(time.monotonic() - starting, 3)
            report["e_after_center_restart"] = times = await propagation(
                http, gateways, key, "live-late", 200, starting, limit=15
            )
            assert max(times.values()) < 12, times  # retry backoff is capped at 5 s
            for gateway in gateways:
                # Each worker follows on its own: the one that served the chat may be ahead of
                # the one answering /readyz, so wait for every worker to catch up.
                assert await newest_version(http, gateway, late_version) == late_version
                cached = gateway.cache.read_text()
                assert UPSTREAM_SECRET not in cached and "enc:v1:" in cached
        except BaseException:
            for process in [center, *(g.process for g in gateways)]:
                if process is not None:
                    print(f"--- {process.log_path.name}\n{process.output()[-4000:]}")
            raise
        finally:
            for gateway in gateways:
                gateway.process.stop()
            if center is not None:
                center.stop()
            await writer.close()
    print(f"\nlive configuration propagation: {report}")


def test_serve_imports_its_file_once_and_follows_the_config_center(tmp_path: Path) -> None:
    """``aigw serve --config FILE``: a new version only when the file's content changed."""
    key, key_entry = new_key_entry("k")
    data = tmp_path / "data"
    port, center_port = free_port(), free_port()
    with mock_upstream(tmp_path) as mock:
        config = tmp_path / "aigw.yaml"
        document = base_document(mock, [key_entry])
        config.write_text(yaml.safe_dump(document))

        def serve() -> Process:
            args = aigw(
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--config-center-port",
                str(center_port),
                "--workers",
                "1",
                "--data-dir",
                str(data),
            )
            process = Process(args, tmp_path / f"serve-{time.monotonic_ns()}.log")
            process.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=40)
            return process

        def readyz() -> dict[str, Any]:
            return httpx.get(f"http://127.0.0.1:{port}/readyz").json()  # type: ignore[no-any-return]

        process = serve()
        try:
            assert readyz()["config_center_version"] == 1
            assert "imported" in process.output()
            gateway_token = (data / "gateway-token").read_text().strip()
            answer = httpx.get(
                f"http://127.0.0.1:{center_port}/internal/v1/config/version",
                headers={"Authorization": f"Bearer {gateway_token}"},
            )
            assert answer.json() == {"version": 1}
            for name in ("gateway-token", "admin-token", "master-key"):
                assert oct((data / name).stat().st_mode & 0o777) == "0o600"
        finally:
            process.stop()
        with pytest.raises(ConnectionRefusedError):  # the config center went away with it
            socket.create_connection(("127.0.0.1", center_port), timeout=2).close()

        process = serve()  # the same file again: no new version
        try:
            assert readyz()["config_center_version"] == 1
            assert not re.search(r"imported .* as version", process.output())
        finally:
            process.stop()

        config.write_text(yaml.safe_dump(with_model(document, "from-file")))
        process = serve()
        try:
            assert readyz()["config_center_version"] == 2
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "from-file", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert response.status_code == 200, response.text
        finally:
            process.stop()
