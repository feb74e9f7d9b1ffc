"""A gateway serving OpenAI-served and Claude-served models to both official SDKs.

Used by ``test_anthropic_sdk.py`` and ``test_cross_protocol.py``, each of which builds its
own (module-scoped) stack from :func:`protocol_stack`. Two mock upstream processes sit behind
the gateway, each speaking both protocols: ``mock`` answers normally and records what it
received (``GET /_mock/requests``); ``faulty`` was started with ``--stream-error-rate 1`` (every
stream ends with an ``error`` event after 5 events) and takes further faults through
``PUT /_mock/config``.

The gateway keeps state per target (circuit breaker, a cooling period after a 429), so a test
that makes an upstream fail takes a target of its own (:meth:`ProtocolStack.faulty_model`): no
test depends on the failures of another, or on how fast they ran.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import redis

from aigw.state.realtime import RedisRealtimeStore, UsageCounters
from tests.helpers import gateway, mock_upstream, new_key_entry

REDIS_URL = "redis://127.0.0.1:6379/13"
"""Where this stack's gateway counts limits and usage (a database no other test uses)."""

OPENAI_UPSTREAM_KEY = "sk-openai-upstream"
CLAUDE_UPSTREAM_KEY = "sk-ant-upstream"

GPT = "gpt-chat"
"""Served by an ``openai`` provider (upstream model ``gpt-4o-mini``)."""
CLAUDE = "claude-chat"
"""Served by an ``anthropic`` provider (upstream model ``claude-sonnet-4-5``)."""
CLAUDE_COUNTED = "claude-counted"
"""Served by an ``anthropic`` provider with ``count_tokens: upstream``."""

UPSTREAM_MODELS = {GPT: "gpt-4o-mini", CLAUDE: "claude-sonnet-4-5", CLAUDE_COUNTED: "claude-x"}
FAULTY_TARGETS = 32
"""Models on the faulty mock per protocol, each its own target: ``gpt-chat-faulty-0``, ..."""

MOCK_SENTENCE = "This is a mock response from the aigw mock upstream ."
"""What the mock answers, one word per token (``aigw.mock.answer.SENTENCE``)."""
MOCK_ATTACHMENT_TOKENS = 85
"""Prompt tokens the mock charges per image (``aigw.mock.conversation.ATTACHMENT_TOKENS``)."""
TOOL_TRIGGER = "Please use a tool to look up the weather in Paris."
"""A last user turn the mock answers by calling the first offered tool."""

# A 1x1 transparent PNG.
PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg"
    "=="
)
IMAGE_URL = "https://example.com/cat.png"
PROMPT_CAP = 50
"""The ``max_prompt_tokens`` of :attr:`ProtocolStack.capped_key`."""


@dataclass
class ProtocolStack:
    gateway: str
    mock: str
    faulty: str
    key: str
    """Namespace ``main``: every model."""
    restricted_key: str
    """Namespace ``restricted``, whose policy denies ``claude-*``."""
    limited_key: str
    """Namespace ``main``, with a key policy of 2 requests per minute."""
    metered_key: str
    """Namespace ``metered``: only the usage-accounting test uses it."""
    capped_key: str
    """Namespace ``main``, with a key policy of at most ``PROMPT_CAP`` prompt tokens."""
    _faulty_used: dict[str, int] = field(default_factory=dict)

    def faulty_model(self, like: str) -> str:
        """A model served like ``like`` (GPT or CLAUDE) by the faulty mock, on a target no
        other test has used."""
        used = self._faulty_used.get(like, 0)
        if used >= FAULTY_TARGETS:
            raise RuntimeError(f"all {FAULTY_TARGETS} faulty targets like {like} are used")
        self._faulty_used[like] = used + 1
        return f"{like}-faulty-{used}"

    def openai(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.gateway}/v1", api_key=key or self.key, max_retries=0, timeout=30
        )

    def anthropic(self, key: str | None = None) -> anthropic.Anthropic:
        # The SDK appends /v1/messages etc. to its base URL itself.
        return anthropic.Anthropic(
            base_url=self.gateway, api_key=key or self.key, max_retries=0, timeout=30
        )

    def clear_received(self) -> None:
        httpx.delete(f"{self.mock}/_mock/requests").raise_for_status()

    def received(self) -> list[dict[str, Any]]:
        """The API requests the healthy mock received since :meth:`clear_received`."""
        response = httpx.get(f"{self.mock}/_mock/requests")
        response.raise_for_status()
        requests: list[dict[str, Any]] = response.json()
        return requests

    def last_received(self) -> dict[str, Any]:
        requests = self.received()
        assert requests, "the mock upstream received nothing"
        return requests[-1]

    @contextmanager
    def faults(self, **options: Any) -> Iterator[None]:
        """The faulty mock with ``options`` set, reset when the block ends."""
        httpx.put(f"{self.faulty}/_mock/config", json=options).raise_for_status()
        try:
            yield
        finally:
            reset = {
                "error_rate": 0,
                "error_status": 500,
                "stream_error_rate": 1,
                "disconnect_rate": 0,
            }
            httpx.put(f"{self.faulty}/_mock/config", json=reset).raise_for_status()


def _document(mock: str, faulty: str, keys: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": 1,
        "providers": [
            {
                "name": "openai-up",
                "type": "openai",
                "base_url": f"{mock}/v1",
                "api_key": OPENAI_UPSTREAM_KEY,
            },
            {
                "name": "claude-up",
                "type": "anthropic",
                "base_url": f"{mock}/v1",
                "api_key": CLAUDE_UPSTREAM_KEY,
            },
            {
                "name": "claude-counting",
                "type": "anthropic",
                "base_url": f"{mock}/v1",
                "api_key": CLAUDE_UPSTREAM_KEY,
                "count_tokens": "upstream",
            },
            {
                "name": "openai-faulty",
                "type": "openai",
                "base_url": f"{faulty}/v1",
                "api_key": OPENAI_UPSTREAM_KEY,
            },
            {
                "name": "claude-faulty",
                "type": "anthropic",
                "base_url": f"{faulty}/v1",
                "api_key": CLAUDE_UPSTREAM_KEY,
            },
        ],
        "models": [
            {"name": GPT, "targets": [{"provider": "openai-up", "model": UPSTREAM_MODELS[GPT]}]},
            {
                "name": CLAUDE,
                "targets": [{"provider": "claude-up", "model": UPSTREAM_MODELS[CLAUDE]}],
            },
            {
                "name": CLAUDE_COUNTED,
                "targets": [
                    {"provider": "claude-counting", "model": UPSTREAM_MODELS[CLAUDE_COUNTED]}
                ],
            },
            *(
                {
                    "name": f"{like}-faulty-{index}",
                    "targets": [{"provider": provider, "model": f"{like}-upstream-{index}"}],
                }
                for like, provider in ((GPT, "openai-faulty"), (CLAUDE, "claude-faulty"))
                for index in range(FAULTY_TARGETS)
            ),
        ],
        "namespaces": [
            {"name": "main", "keys": [keys["main"], keys["limited"], keys["capped"]]},
            {
                "name": "restricted",
                "policy": {"models": {"allow": ["*"], "deny": ["claude-*"]}},
                "keys": [keys["restricted"]],
            },
            {"name": "metered", "keys": [keys["metered"]]},
        ],
    }


@contextmanager
def protocol_stack(tmp: Path) -> Iterator[ProtocolStack]:
    """Both mocks and a gateway as real processes, the gateway counting usage in Redis."""
    key, main = new_key_entry("main")
    limited_key, limited = new_key_entry("limited", policy={"limits": {"requests_per_minute": 2}})
    restricted_key, restricted = new_key_entry("restricted")
    metered_key, metered = new_key_entry("metered")
    capped_key, capped = new_key_entry("capped", policy={"max_prompt_tokens": PROMPT_CAP})
    keys = {
        "main": main,
        "limited": limited,
        "restricted": restricted,
        "metered": metered,
        "capped": capped,
    }
    redis.Redis.from_url(REDIS_URL).flushdb()
    try:
        with (
            mock_upstream(tmp) as mock,
            mock_upstream(tmp, "--stream-error-rate", "1") as faulty,
            gateway(tmp, _document(mock, faulty, keys), env={"AIGW_REDIS_URL": REDIS_URL}) as gw,
        ):
            yield ProtocolStack(
                gw, mock, faulty, key, restricted_key, limited_key, metered_key, capped_key
            )
    finally:
        redis.Redis.from_url(REDIS_URL).flushdb()


def accounted_usage(namespace: str, requests: int) -> UsageCounters:
    """The namespace's usage counters in Redis once they show ``requests`` requests (the
    gateway flushes them about once a second; gives up after 15 s and returns what is there)."""

    async def poll() -> UsageCounters:
        store = RedisRealtimeStore(REDIS_URL)
        try:
            deadline = time.monotonic() + 15
            while True:
                totals = await store.totals("namespace", [namespace], 10)
                counters = totals[namespace]
                if counters.requests >= requests or time.monotonic() > deadline:
                    return counters
                await asyncio.sleep(0.2)
        finally:
            await store.close()

    return asyncio.run(poll())
