"""Redis dies under the gateways and comes back: fail-open keeps serving, fail-closed says 503,
and shared limits resume by themselves. The Redis here is a private server on a free port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.helpers import gateway, mock_upstream, new_key_entry
from tests.redis_servers import RedisServer

USER = [{"role": "user", "content": "hi"}]


def _flush(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[tuple[RedisServer, str, str, str]]:
    server = RedisServer(tmp_path)
    server.start()
    key, entry = new_key_entry("k")
    try:
        with mock_upstream(tmp_path) as mock:
            document = {
                "providers": [{"name": "mock", "base_url": f"{mock}/v1"}],
                "models": [{"name": "chat", "targets": [{"provider": "mock", "model": "m"}]}],
                "namespaces": [
                    {"name": "t", "policy": {"limits": {"requests_per_minute": 5}}, "keys": [entry]}
                ],
            }
            env = {"AIGW_REDIS_URL": server.url}
            with (
                gateway(tmp_path, document, env=env) as open_url,
                gateway(
                    tmp_path, document, env={**env, "AIGW_LIMITS_FAIL_MODE": "closed"}
                ) as closed,
            ):
                yield server, open_url, closed, key
    finally:
        server.stop()


async def _statuses(url: str, key: str, count: int) -> list[int]:
    async with httpx.AsyncClient(timeout=30) as client:
        responses = [
            await client.post(
                f"{url}/v1/chat/completions",
                json={"model": "chat", "messages": USER},
                headers={"Authorization": f"Bearer {key}"},
            )
            for _ in range(count)
        ]
    return [r.status_code for r in responses]


async def test_fail_open_serves_fail_closed_refuses_and_limits_resume(outage) -> None:  # type: ignore[no-untyped-def]
    server, open_url, closed_url, key = outage
    # Healthy: one shared RPM limit of 5 across both gateways.
    assert await _statuses(open_url, key, 3) + await _statuses(closed_url, key, 3) == [
        200,
        200,
        200,
        200,
        200,
        429,
    ]

    server.stop()
    started = time.monotonic()
    during_open = await _statuses(open_url, key, 4)
    during_closed = await _statuses(closed_url, key, 2)
    # Fail-open admits and counts locally (its own RPM of 5 per process), fail-closed says 503;
    # neither hangs: the breaker answers within its deadline.
    assert during_open == [200, 200, 200, 200]
    assert during_closed == [503, 503]
    assert time.monotonic() - started < 10

    server.start()
    # The breakers probe Redis again after their cooldown and close by themselves; requests
    # drive the probes (each gateway process keeps its own breaker).
    deadline = time.monotonic() + 30
    while not all(_breaker(url) == "closed" for url in (open_url, closed_url)):
        assert time.monotonic() < deadline, "the breakers did not close after Redis came back"
        await _statuses(open_url, key, 1)
        await _statuses(closed_url, key, 1)
        await asyncio.sleep(0.5)
    _flush(server)  # a clean window: what follows is counted in Redis alone
    resumed = await _statuses(open_url, key, 4) + await _statuses(closed_url, key, 3)
    assert resumed == [200, 200, 200, 200, 200, 429, 429]


def _breaker(url: str) -> str | None:
    return httpx.get(f"{url}/readyz").json()["limits"].get("breaker")
