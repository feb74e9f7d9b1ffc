"""One mock provider, one fault-injecting mock and one gateway, shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import free_port, gateway, mock_upstream, new_key_entry


@dataclass
class Stack:
    gateway: str
    mock: str
    faulty: str
    key: str  # namespace "team-a": every model
    narrow_key: str  # namespace "team-b": mock-gpt-4o* but not *-mini
    expired_key: str
    key_narrowed_by_key_policy: str  # namespace "team-a", key policy denies embeddings

    @property
    def base_url(self) -> str:
        return f"{self.gateway}/v1"

    def reset_faults(self) -> None:
        httpx.put(
            f"{self.faulty}/_mock/config",
            json={
                "error_rate": 0,
                "hang_rate": 0,
                "disconnect_rate": 0,
                "stream_error_rate": 0,
                "latency_ms": 0,
                "tokens_per_second": 0,
            },
        ).raise_for_status()


def stack_document(mock: str, faulty: str, keys: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": 1,
        # Faults injected on purpose must not open circuits for the tests after them.
        "gateway": {"circuit_breaker": {"consecutive_failures": 1000, "min_requests": 1000}},
        "providers": [
            {
                "name": "mock",
                "type": "openai-compatible",
                "base_url": f"{mock}/v1",
                "api_key": "sk-upstream-secret",
            },
            {
                "name": "faulty",
                "base_url": f"{faulty}/v1",
                "api_key": "sk-faulty",
                "timeouts": {"connect": 2, "read": 1.5},
            },
            {"name": "dead", "base_url": f"http://127.0.0.1:{free_port()}/v1"},
            {"name": "claude", "type": "anthropic", "base_url": f"{mock}/v1", "api_key": "sk-ant"},
        ],
        "models": [
            {
                "name": "mock-gpt-4o-mini",
                "aliases": ["demo-chat"],
                "targets": [{"provider": "mock", "model": "gpt-4o-mini"}],
            },
            {"name": "mock-gpt-4o", "targets": [{"provider": "mock", "model": "gpt-4o"}]},
            {"name": "mock-embedding", "targets": [{"provider": "mock", "model": "emb-1"}]},
            {"name": "mock-instruct", "targets": [{"provider": "mock", "model": "instruct"}]},
            {
                # One try: these tests are about how an upstream's failure reaches the caller
                # (failover has its own, tests/e2e/test_failover.py).
                "name": "faulty-chat",
                "targets": [{"provider": "faulty", "model": "gpt-4o-mini"}],
                "routing": {"max_attempts": 1},
            },
            {"name": "dead-chat", "targets": [{"provider": "dead", "model": "gpt-4o-mini"}]},
            {"name": "claude-chat", "targets": [{"provider": "claude", "model": "claude-x"}]},
        ],
        "namespaces": [
            {"name": "team-a", "keys": [keys["a"], keys["a_narrow"], keys["expired"]]},
            {
                "name": "team-b",
                "policy": {"models": {"allow": ["mock-gpt-4o*"], "deny": ["*-mini"]}},
                "keys": [keys["b"]],
            },
        ],
    }


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("stack")
    key_a, entry_a = new_key_entry("a")
    key_b, entry_b = new_key_entry("b")
    key_expired, entry_expired = new_key_entry("old", expires_at="2020-01-01T00:00:00Z")
    key_narrow, entry_narrow = new_key_entry(
        "chat-only", policy={"models": {"allow": ["*"], "deny": ["mock-embedding"]}}
    )
    keys = {"a": entry_a, "b": entry_b, "expired": entry_expired, "a_narrow": entry_narrow}
    with (
        mock_upstream(tmp) as mock,
        mock_upstream(tmp) as faulty,
        gateway(tmp, stack_document(mock, faulty, keys)) as gw,
    ):
        yield Stack(gw, mock, faulty, key_a, key_b, key_expired, key_narrow)


@pytest.fixture
def faulty(stack: Stack) -> Iterator[Stack]:
    """The stack, with the faulty mock's faults reset after the test."""
    stack.reset_faults()
    yield stack
    stack.reset_faults()


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    """The sync openai SDK with namespace team-a's key."""
    with openai.OpenAI(base_url=stack.base_url, api_key=stack.key, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def async_client(stack: Stack) -> AsyncIterator[openai.AsyncOpenAI]:
    """The async openai SDK with namespace team-a's key."""
    async with openai.AsyncOpenAI(base_url=stack.base_url, api_key=stack.key, max_retries=0) as sdk:
        yield sdk
