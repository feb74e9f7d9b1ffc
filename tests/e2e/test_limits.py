"""Tenant limits held exactly across two gateway processes sharing Redis (issue: policies)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.helpers import gateway, mock_upstream, new_key_entry
from tests.redis_servers import cluster_node_for, flush_cluster

REDIS_URL = "redis://127.0.0.1:6379/10"
USER = [{"role": "user", "content": "Say hello"}]


def _document(mock: str, policies: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict]:
    keys = {}
    namespaces = []
    for name, policy in policies.items():
        key, entry = new_key_entry("k")
        keys[name] = key
        namespaces.append({"name": name, "policy": policy, "keys": [entry]})
    document = {
        "providers": [{"name": "mock", "base_url": f"{mock}/v1"}],
        "models": [{"name": "chat", "targets": [{"provider": "mock", "model": "gpt-4o-mini"}]}],
        "namespaces": namespaces,
    }
    return document, keys


POLICIES = {
    "rpm": {"limits": {"requests_per_minute": 60}},
    "tpm": {"limits": {"tokens_per_minute": 270}},
    "busy": {"limits": {"concurrent_requests": 5}},
    "quota": {"limits": {"tokens_per_day": 100}},
    "capped": {"max_prompt_tokens": 5, "limits": {"requests_per_day": 1000}},
    "streams": {"limits": {"tokens_per_minute": 10_000}},
}


def _flush(url: str, cluster: bool) -> None:
    if cluster:
        flush_cluster(url)
        return
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# Every test runs twice: on one Redis, and on a 3-master Redis Cluster (AIGW_REDIS_CLUSTER=1).
@pytest.fixture(scope="module", params=["redis", "cluster"])
def two_gateways(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[list[str], dict, str, tuple[str, bool]]]:
    tmp: Path = tmp_path_factory.mktemp("limits")
    cluster = request.param == "cluster"
    url = request.getfixturevalue("cluster_url") if cluster else REDIS_URL
    _flush(url, cluster)
    env = {"AIGW_REDIS_URL": url, "AIGW_REDIS_CLUSTER": "1" if cluster else "0"}
    with mock_upstream(tmp, "--latency-ms", "50") as mock:
        document, keys = _document(mock, POLICIES)
        with gateway(tmp, document, env=env) as first, gateway(tmp, document, env=env) as second:
            yield [first, second], keys, mock, (url, cluster)
    _flush(url, cluster)


async def _burst(urls: list[str], key: str, count: int, **body: Any) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=400)) as client:

        async def one(index: int) -> httpx.Response:
            return await client.post(
                f"{urls[index % len(urls)]}/v1/chat/completions",
                json={"model": "chat", "messages": USER, **body},
                headers={"Authorization": f"Bearer {key}"},
            )

        return await asyncio.gather(*(one(i) for i in range(count)))


def _statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for response in responses:
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return counts


async def test_rpm_60_holds_exactly_across_two_gateways(two_gateways) -> None:  # type: ignore[no-untyped-def]
    urls, keys, _, _ = two_gateways
    responses = await _burst(urls, keys["rpm"], 200)
    assert _statuses(responses) == {200: 60, 429: 140}
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert int(refused.headers["retry-after"]) >= 1
    served = next(r for r in responses if r.status_code == 200)
    assert served.headers["x-ratelimit-limit-requests"] == "60"
    assert int(served.headers["x-ratelimit-remaining-requests"]) < 60


async def test_tpm_reserves_prompt_plus_max_tokens_exactly(two_gateways) -> None:  # type: ignore[no-untyped-def]
    urls, keys, mock, _ = two_gateways
    # Each request reserves its prompt (9 tokens for this chat) plus max_tokens 16 = 25: exactly
    # 10 fit in 270. Answers are held for 2 s, so no settle (which corrects a reservation to the
    # usage reported, freeing room) lands before all 30 have been decided.
    async with httpx.AsyncClient() as control:
        (await control.put(f"{mock}/_mock/config", json={"latency_ms": 2000})).raise_for_status()
        try:
            responses = await _burst(urls, keys["tpm"], 30, max_tokens=16)
        finally:
            await control.put(f"{mock}/_mock/config", json={"latency_ms": 50})
    assert _statuses(responses) == {200: 10, 429: 20}
    served = next(r for r in responses if r.status_code == 200)
    assert served.headers["x-ratelimit-limit-tokens"] == "270"
    reserved = [
        270 - int(r.headers["x-ratelimit-remaining-tokens"])
        for r in responses
        if r.status_code == 200
    ]
    assert sorted(reserved) == [25 * n for n in range(1, 11)]


async def test_concurrency_limit_holds_across_gateways(two_gateways) -> None:  # type: ignore[no-untyped-def]
    urls, keys, _, _ = two_gateways
    responses = await _burst(urls, keys["busy"], 40)
    assert _statuses(responses)[200] == 5
    # Slots are released when answers finish: the next wave gets five more.
    assert _statuses(await _burst(urls, keys["busy"], 40))[200] == 5


async def test_token_quota_is_insufficient_quota_and_settles_with_real_usage(two_gateways) -> None:  # type: ignore[no-untyped-def]
    urls, keys, _, _ = two_gateways
    # Reserve 11 + 40 = 51 of 100; the mock answers 16 tokens, so 27 are used once settled.
    first = (await _burst(urls[:1], keys["quota"], 1, max_tokens=40))[0]
    assert first.status_code == 200
    await asyncio.sleep(0.5)  # the settle runs after the response
    second = (await _burst(urls[1:], keys["quota"], 1, max_tokens=40))[0]
    assert second.status_code == 200  # 27 + 51 <= 100: possible only after the correction
    third = (await _burst(urls, keys["quota"], 1, max_tokens=60))[0]
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "insufficient_quota"


async def test_prompt_token_cap_is_a_400(two_gateways) -> None:  # type: ignore[no-untyped-def]
    urls, keys, _, _ = two_gateways
    response = (await _burst(urls, keys["capped"], 1))[0]
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "prompt_too_long"


def test_streams_settle_with_real_usage_without_showing_it_unasked(two_gateways) -> None:  # type: ignore[no-untyped-def]
    urls, keys, _, store = two_gateways
    with openai.OpenAI(base_url=f"{urls[0]}/v1", api_key=keys["streams"]) as client:
        chunks = list(
            client.chat.completions.create(model="chat", messages=USER, stream=True, max_tokens=7)
        )
        assert all(chunk.choices for chunk in chunks)  # no usage-only chunk: it was not asked for
        asked = list(
            client.chat.completions.create(
                model="chat",
                messages=USER,
                stream=True,
                max_tokens=7,
                stream_options={"include_usage": True},
            )
        )
        assert asked[-1].choices == [] and asked[-1].usage is not None
        reported = asked[-1].usage.total_tokens
    # Both streams were settled to the size the upstream reported, not to the reservation
    # (prompt + max_tokens 7): the gateway asked for the usage the first caller did not.
    # Settles run after the response, so wait (boundedly) for them to land.
    url, cluster = store
    tpm = "aigw:lim:{ns:streams}:ns:streams:tpm"
    limits = cluster_node_for(url, tpm) if cluster else redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    try:
        while True:
            used = 0
            for key in limits.scan_iter(tpm):
                used = sum(int(v) for f, v in limits.hgetall(key).items() if f.isdigit())
            if used == 2 * reported or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        limits.close()
    assert used == 2 * reported


def test_quota_and_budget_survive_a_gateway_restart(tmp_path: Path) -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()
    key, entry = new_key_entry("k")
    env = {"AIGW_REDIS_URL": REDIS_URL}
    with mock_upstream(tmp_path) as mock:
        document = {
            "providers": [{"name": "mock", "base_url": f"{mock}/v1"}],
            "models": [{"name": "chat", "targets": [{"provider": "mock", "model": "m"}]}],
            # $1 per token in and out; the mock answers 16 completion tokens by default.
            "prices": [{"model": "chat", "input_per_million": 1e6, "output_per_million": 1e6}],
            "namespaces": [
                {"name": "b", "policy": {"limits": {"spend_per_day_usd": 60}}, "keys": [entry]}
            ],
        }

        def ask(url: str) -> httpx.Response:
            return httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "chat", "messages": USER, "max_tokens": 16},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )

        with gateway(tmp_path, document, env=env) as first:
            # Reserve 11 prompt + 16 completion = $27; the mock reports 5 + 16 = $21 used.
            assert ask(first).status_code == 200
            time.sleep(0.5)  # the settle runs after the response
            assert ask(first).status_code == 200  # $21 + $27 <= $60
        with gateway(tmp_path, document, env=env) as second:  # a new process, same Redis
            time.sleep(0.5)
            refused = ask(second)  # $42 used + $27 reserved > $60: the budget holds
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "insufficient_quota"
    redis.Redis.from_url(REDIS_URL).flushdb()
