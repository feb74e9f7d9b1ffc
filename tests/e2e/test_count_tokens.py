"""``POST /v1/messages/count_tokens``: the gateway's own count, or the Claude provider's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from aigw.tokens.counting import count_chat
from tests.helpers import gateway, mock_upstream, new_key_entry

MESSAGES = [{"role": "user", "content": "How many tokens is this sentence, more or less?"}]


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    tmp: Path = tmp_path_factory.mktemp("count-tokens")
    key, entry = new_key_entry("k")
    with mock_upstream(tmp) as mock:
        claude = {"type": "anthropic", "base_url": f"{mock}/v1", "api_key": "sk-ant"}
        document = {
            "providers": [
                {"name": "local", **claude},
                {"name": "asks", **claude, "count_tokens": "upstream"},
                {"name": "openai", "type": "openai-compatible", "base_url": f"{mock}/v1"},
            ],
            "models": [
                {"name": "claude-local", "targets": [{"provider": "local", "model": "claude-x"}]},
                {"name": "claude-asks", "targets": [{"provider": "asks", "model": "claude-x"}]},
                {"name": "gpt", "targets": [{"provider": "openai", "model": "gpt-4o-mini"}]},
            ],
            "namespaces": [{"name": "team", "keys": [entry]}],
        }
        with gateway(tmp, document) as url:
            yield url, mock, key


def test_claude_counts_are_the_documented_estimate_by_default(counted) -> None:  # type: ignore[no-untyped-def]
    url, _, key = counted
    client = anthropic.Anthropic(base_url=url, api_key=key)
    result = client.messages.count_tokens(model="claude-local", messages=MESSAGES)
    assert result.input_tokens == count_chat("claude-x", MESSAGES).tokens > 0


def test_openai_models_are_counted_exactly(counted) -> None:  # type: ignore[no-untyped-def]
    url, _, key = counted
    client = anthropic.Anthropic(base_url=url, api_key=key)
    result = client.messages.count_tokens(model="gpt", messages=MESSAGES)
    assert result.input_tokens == count_chat("gpt-4o-mini", MESSAGES).tokens


def test_a_provider_configured_to_count_upstream_is_asked(counted) -> None:  # type: ignore[no-untyped-def]
    url, mock, key = counted
    upstream = httpx.post(
        f"{mock}/v1/messages/count_tokens",
        json={"model": "claude-x", "messages": MESSAGES},
        headers={"x-api-key": "sk-ant", "anthropic-version": "2023-06-01"},
    ).json()["input_tokens"]
    assert upstream != count_chat("claude-x", MESSAGES).tokens  # the two are told apart
    client = anthropic.Anthropic(base_url=url, api_key=key)
    assert client.messages.count_tokens(model="claude-asks", messages=MESSAGES).input_tokens == (
        upstream
    )


def test_bad_input_is_an_anthropic_error(counted) -> None:  # type: ignore[no-untyped-def]
    url, _, key = counted
    client = anthropic.Anthropic(base_url=url, api_key=key)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.count_tokens(model="claude-local", messages="not a list")  # type: ignore[arg-type]
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=MESSAGES)
