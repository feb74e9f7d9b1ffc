"""The gateway counts prompts in process, or at ``aigw token-service`` (AIGW_TOKEN_SERVICE), and
falls back to itself when the service cannot answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aigw.gateway.auth.prompt_counter import PromptCounter, counter_from_env
from aigw.tokens.client import RemoteTokenCounter
from aigw.tokens.counting import TokenCountError
from tests.helpers import free_port, gateway, mock_upstream, new_key_entry, token_service

MESSAGES = [{"role": "user", "content": "Count the words of this sentence, please."}]
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with token_service(tmp_path_factory.mktemp("tokens")) as url:
        yield url


def served_counts(url: str) -> float:
    """``token_service_requests_total`` summed over its labels."""
    text = httpx.get(f"{url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "token_service_requests"
        for sample in family.samples
        if sample.name == "token_service_requests_total"
    )


def test_without_the_setting_it_counts_in_process() -> None:
    assert counter_from_env({}).remote is None
    assert isinstance(
        counter_from_env({"AIGW_TOKEN_SERVICE": "http://x:8002"}).remote, RemoteTokenCounter
    )


async def test_the_service_gives_the_same_counts_as_the_process(service: str) -> None:
    remote = counter_from_env({"AIGW_TOKEN_SERVICE": service})
    local = PromptCounter()
    try:
        before = served_counts(service)
        for model in ("gpt-4o", "gpt-4"):
            assert await remote.count_chat(model, MESSAGES, TOOLS) == await local.count_chat(
                model, MESSAGES, TOOLS
            )
        assert (await remote.count_completion_prompt("gpt-4o", "hello there")).tokens == (
            await local.count_completion_prompt("gpt-4o", "hello there")
        ).tokens
        assert (await remote.count_embedding_input("text-embedding-3-small", ["a b", "c"])) == (
            await local.count_embedding_input("text-embedding-3-small", ["a b", "c"])
        )
        assert served_counts(service) == before + 4
        assert remote.fallbacks == 0
        with pytest.raises(TokenCountError):
            await remote.count_chat("gpt-4o", [{"role": "user", "content": 5}])
    finally:
        await remote.aclose()


async def test_an_unreachable_service_falls_back_to_counting_in_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    remote = counter_from_env({"AIGW_TOKEN_SERVICE": f"http://127.0.0.1:{free_port()}"})
    try:
        first = await remote.count_chat("gpt-4o", MESSAGES)
        second = await remote.count_chat("gpt-4o", MESSAGES)
    finally:
        await remote.aclose()
    assert first == second == await PromptCounter().count_chat("gpt-4o", MESSAGES)
    assert remote.fallbacks == 2
    warnings = [r for r in caplog.records if "token service unavailable" in r.getMessage()]
    assert len(warnings) == 1  # at most once a minute


def test_a_gateway_with_the_setting_counts_at_the_service(service: str, tmp_path: Path) -> None:
    key, entry = new_key_entry("k")
    with mock_upstream(tmp_path) as mock:
        document = {
            "providers": [{"name": "mock", "base_url": f"{mock}/v1"}],
            "models": [{"name": "chat", "targets": [{"provider": "mock", "model": "gpt-4o"}]}],
            "namespaces": [
                {
                    "name": "team",
                    "policy": {"limits": {"tokens_per_minute": 100_000}},
                    "keys": [entry],
                }
            ],
        }
        env = {"AIGW_TOKEN_SERVICE": service}
        with gateway(tmp_path, document, env=env) as url:
            before = served_counts(service)
            answer = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "chat", "messages": MESSAGES, "max_tokens": 10},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 200, answer.text
            assert served_counts(service) == before + 1
            # The reservation was the service's count plus max_tokens.
            counted = httpx.post(
                f"{service}/v1/tokens/count", json={"model": "gpt-4o", "messages": MESSAGES}
            ).json()
            reserved = 100_000 - int(answer.headers["x-ratelimit-remaining-tokens"])
            assert reserved == counted["tokens"] + 10
