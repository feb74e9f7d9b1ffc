"""Tokens and spend reported by the upstream reach the realtime usage series in Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import redis

from aigw.state.realtime import RedisRealtimeStore
from tests.helpers import gateway, mock_upstream, new_key_entry

REDIS_URL = "redis://127.0.0.1:6379/12"


@pytest.fixture
def accounted(tmp_path: Path) -> Iterator[tuple[str, str]]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    key, entry = new_key_entry("k")
    with mock_upstream(tmp_path) as mock:
        document = {
            "providers": [{"name": "mock", "base_url": f"{mock}/v1"}],
            "models": [{"name": "chat", "targets": [{"provider": "mock", "model": "gpt-4o"}]}],
            "namespaces": [{"name": "billing", "keys": [entry]}],
            "prices": [
                {"model": "chat", "input_per_million": 1_000_000, "output_per_million": 2_000_000}
            ],
        }
        with gateway(tmp_path, document, env={"AIGW_REDIS_URL": REDIS_URL}) as url:
            yield url, key
    redis.Redis.from_url(REDIS_URL).flushdb()


async def test_tokens_and_cost_of_plain_and_streamed_answers_are_counted(
    accounted: tuple[str, str],
) -> None:
    url, key = accounted
    messages = [{"role": "user", "content": "one two three"}]
    with openai.OpenAI(base_url=f"{url}/v1", api_key=key) as client:
        plain = client.chat.completions.create(model="chat", messages=messages, max_tokens=4)
        streamed = list(
            client.chat.completions.create(
                model="chat",
                messages=messages,
                max_tokens=6,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert plain.usage is not None and streamed[-1].usage is not None
    prompt = plain.usage.prompt_tokens + streamed[-1].usage.prompt_tokens
    completion = plain.usage.completion_tokens + streamed[-1].usage.completion_tokens
    assert completion == 4 + 6

    store = RedisRealtimeStore(REDIS_URL)
    try:
        deadline = time.monotonic() + 10
        while True:  # the gateway flushes its counters about once a second
            top = await store.top("namespace", 5, 10)
            if (top and top[0].counters.requests == 2) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        await store.close()
    [entry] = top
    assert entry.name == "billing"
    assert (entry.counters.prompt_tokens, entry.counters.completion_tokens) == (prompt, completion)
    # $1 per input token and $2 per output token, counted in micro-dollars.
    assert entry.counters.cost_micro_usd == (prompt * 1 + completion * 2) * 1_000_000
