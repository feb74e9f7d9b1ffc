"""What only Anthropic-format callers have: count_tokens, Anthropic's model list, native
pass-through to Claude (fields and headers), and the gateway's policies, limits and accounting
applied to Messages API traffic, all through the official anthropic SDK and real processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.protocol_stack import (
    CLAUDE,
    CLAUDE_COUNTED,
    CLAUDE_UPSTREAM_KEY,
    FAULTY_TARGETS,
    GPT,
    OPENAI_UPSTREAM_KEY,
    PROMPT_CAP,
    UPSTREAM_MODELS,
    ProtocolStack,
    accounted_usage,
    protocol_stack,
)

MODELS = [GPT, CLAUDE]
USER: Any = [{"role": "user", "content": "Say hello"}]
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def protocols(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProtocolStack]:
    with protocol_stack(tmp_path_factory.mktemp("anthropic-sdk")) as stack:
        yield stack


@pytest.fixture
def ant(protocols: ProtocolStack) -> Iterator[anthropic.Anthropic]:
    protocols.clear_received()
    with protocols.anthropic() as client:
        yield client


def _error(raised: anthropic.APIStatusError, error_type: str) -> str:
    """The message of an error body in Anthropic's format, checked to be of ``error_type``."""
    body = raised.body
    assert isinstance(body, dict) and set(body) == {"type", "error"}, body
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


# -- count_tokens and models ------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens(protocols: ProtocolStack, ant: anthropic.Anthropic, model: str) -> None:
    plain = ant.messages.count_tokens(model=model, messages=USER)
    assert plain.input_tokens > 0
    fuller = ant.messages.count_tokens(
        model=model,
        system="You are a meticulous assistant who answers in full sentences.",
        messages=USER,
        tools=[WEATHER_TOOL],
    )
    assert fuller.input_tokens > plain.input_tokens
    assert protocols.received() == []  # the gateway's own estimate: no upstream call


def test_count_tokens_asked_of_the_claude_upstream(
    protocols: ProtocolStack, ant: anthropic.Anthropic
) -> None:
    """A provider with ``count_tokens: upstream``: the request goes to its own endpoint,
    natively (the model renamed, the gateway's credentials, the caller's beta flags)."""
    counted = ant.messages.count_tokens(
        model=CLAUDE_COUNTED,
        system="Be brief.",
        messages=USER,
        extra_headers={"anthropic-beta": "token-counting-2024-11-01"},
    )
    # The mock's count: 3 per message (the system prompt is one) and 1 per word.
    assert counted.input_tokens == (3 + 2) + (3 + 2)
    received = protocols.last_received()
    assert received["path"] == "/v1/messages/count_tokens"
    assert received["body"] == {
        "model": UPSTREAM_MODELS[CLAUDE_COUNTED],
        "system": "Be brief.",
        "messages": USER,
    }
    headers = received["headers"]
    assert headers["x-api-key"] == CLAUDE_UPSTREAM_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "token-counting-2024-11-01"
    assert protocols.key not in str(received)


LONG_TEXT = " ".join(["word"] * 200)
"""A prompt far above PROMPT_CAP tokens."""
# Requests a Claude upstream accepts, with parts that have no Chat Completions form.
UNTRANSLATABLE: dict[str, dict[str, Any]] = {
    "document-url": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": LONG_TEXT},
                    {
                        "type": "document",
                        "source": {"type": "url", "url": "https://example.com/a.pdf"},
                    },
                ],
            }
        ]
    },
    "server-tool": {
        "messages": [{"role": "user", "content": LONG_TEXT}],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}],
    },
}


@pytest.mark.parametrize("case", list(UNTRANSLATABLE))
def test_count_tokens_of_a_claude_request_with_untranslatable_parts(
    ant: anthropic.Anthropic, case: str
) -> None:
    """A URL document or a server tool (which Claude accepts) adds to the count of the rest
    of the request; it must not reset the whole count to 0 (a regression test: the token
    estimate once turned the Chat Completions translation's refusal of such a part into a
    0-token prompt)."""
    text_only = ant.messages.count_tokens(
        model=CLAUDE, messages=[{"role": "user", "content": LONG_TEXT}]
    )
    assert text_only.input_tokens > PROMPT_CAP
    counted = ant.messages.count_tokens(model=CLAUDE, **UNTRANSLATABLE[case])
    assert counted.input_tokens >= text_only.input_tokens


@pytest.mark.parametrize("case", ["plain", *UNTRANSLATABLE])
def test_prompt_cap_holds_for_anthropic_requests(protocols: ProtocolStack, case: str) -> None:
    """The key allows at most PROMPT_CAP prompt tokens, whatever else the request holds: a
    part with no Chat Completions form must not make the prompt count as 0 tokens and so slip
    a long prompt past the cap (same regression as the count_tokens test above)."""
    fields = (
        {"messages": [{"role": "user", "content": LONG_TEXT}]}
        if case == "plain"
        else UNTRANSLATABLE[case]
    )
    protocols.clear_received()
    with protocols.anthropic(key=protocols.capped_key) as client:
        with pytest.raises(anthropic.BadRequestError) as raised:
            client.messages.create(model=CLAUDE, max_tokens=5, **fields)
    assert f"above this key's limit of {PROMPT_CAP}" in _error(
        raised.value, "invalid_request_error"
    )
    assert protocols.received() == []


def test_models_list_and_retrieve(protocols: ProtocolStack, ant: anthropic.Anthropic) -> None:
    models = list(ant.models.list())
    ids = {m.id for m in models}
    assert {GPT, CLAUDE, CLAUDE_COUNTED, f"{GPT}-faulty-0", f"{CLAUDE}-faulty-0"} <= ids
    assert len(models) == len(ids) == 3 + 2 * FAULTY_TARGETS
    assert all(m.type == "model" and m.display_name for m in models)
    assert ant.models.retrieve(CLAUDE).id == CLAUDE
    with pytest.raises(anthropic.NotFoundError) as raised:
        ant.models.retrieve("no-such-model")
    assert "no-such-model" in _error(raised.value, "not_found_error")

    # A namespace sees only the models its policy allows.
    with protocols.anthropic(key=protocols.restricted_key) as restricted:
        allowed = {m.id for m in restricted.models.list()}
        assert GPT in allowed and not any(name.startswith("claude-") for name in allowed)
        with pytest.raises(anthropic.NotFoundError):
            restricted.models.retrieve(CLAUDE)


def test_models_list_with_a_bad_key_is_an_anthropic_error(protocols: ProtocolStack) -> None:
    with protocols.anthropic(key="sk-not-a-key") as client:
        with pytest.raises(anthropic.AuthenticationError) as raised:
            list(client.models.list())
    _error(raised.value, "authentication_error")


@pytest.mark.parametrize(
    ("base_path", "header", "allowed"),
    [
        ("/ns/main", None, True),
        ("/ns/restricted", None, False),
        ("", "main", True),
        ("", "restricted", False),
    ],
    ids=["path-own", "path-other", "header-own", "header-other"],
)
def test_naming_a_namespace(
    protocols: ProtocolStack, base_path: str, header: str | None, allowed: bool
) -> None:
    """A caller may name its namespace (path prefix or header); another one is a 403."""
    headers = {"x-aigw-namespace": header} if header else {}
    with anthropic.Anthropic(
        base_url=protocols.gateway + base_path,
        api_key=protocols.key,
        default_headers=headers,
        max_retries=0,
        timeout=30,
    ) as client:
        if allowed:
            assert client.messages.create(model=CLAUDE, max_tokens=5, messages=USER).content
            assert CLAUDE in {m.id for m in client.models.list()}
            return
        with pytest.raises(anthropic.PermissionDeniedError) as raised:
            client.messages.create(model=CLAUDE, max_tokens=5, messages=USER)
        assert "does not belong to namespace 'restricted'" in _error(
            raised.value, "permission_error"
        )


def test_key_as_bearer_token(protocols: ProtocolStack) -> None:
    """The SDK's ``auth_token`` sends ``Authorization: Bearer`` instead of ``x-api-key``."""
    with anthropic.Anthropic(
        base_url=protocols.gateway, auth_token=protocols.key, max_retries=0, timeout=30
    ) as client:
        message = client.messages.create(model=CLAUDE, max_tokens=5, messages=USER)
    assert message.stop_reason == "max_tokens"


# -- what reaches a Claude upstream -----------------------------------------------------------


def test_native_request_headers(protocols: ProtocolStack, ant: anthropic.Anthropic) -> None:
    """The gateway sends its provider key and API version; the caller's beta flags go along,
    the caller's key and SDK headers do not."""
    ant.beta.messages.create(
        model=CLAUDE,
        max_tokens=5,
        messages=USER,
        betas=["token-efficient-tools-2025-02-19", "context-1m-2025-08-07"],
    )
    received = protocols.last_received()
    assert received["path"] == "/v1/messages"
    headers = received["headers"]
    assert headers["x-api-key"] == CLAUDE_UPSTREAM_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "token-efficient-tools-2025-02-19,context-1m-2025-08-07"
    assert "authorization" not in headers
    assert not any(name.startswith("x-stainless") for name in headers)
    assert protocols.key not in str(received)


def test_openai_caller_of_claude_gets_claude_credentials(protocols: ProtocolStack) -> None:
    protocols.clear_received()
    with protocols.openai() as client:
        client.chat.completions.create(model=CLAUDE, messages=USER)
    headers = protocols.last_received()["headers"]
    assert headers["x-api-key"] == CLAUDE_UPSTREAM_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert protocols.key not in str(headers)


def test_anthropic_caller_of_openai_gets_openai_credentials(
    protocols: ProtocolStack, ant: anthropic.Anthropic
) -> None:
    ant.messages.create(
        model=GPT,
        max_tokens=5,
        messages=USER,
        extra_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"},
    )
    received = protocols.last_received()
    assert received["path"] == "/v1/chat/completions"
    headers = received["headers"]
    assert headers["authorization"] == f"Bearer {OPENAI_UPSTREAM_KEY}"
    assert not {"x-api-key", "anthropic-version", "anthropic-beta"} & set(headers)
    assert protocols.key not in str(received)


NATIVE_REQUEST: dict[str, Any] = {
    "max_tokens": 2048,
    "system": [
        {
            "type": "text",
            "text": "You are a careful assistant.",
            "cache_control": {"type": "ephemeral"},
        }
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "Here is a long document to keep in the cache.",
                    "cache_control": {"type": "ephemeral", "ttl": "1h"},
                },
                {"type": "text", "text": "Summarise it."},
            ],
        }
    ],
    "metadata": {"user_id": "user-42"},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "tools": [{**WEATHER_TOOL, "cache_control": {"type": "ephemeral"}}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"],
}
# Fields this SDK version no longer has parameters for, and one no version knows yet.
EXTRA_FIELDS: dict[str, Any] = {"top_k": 5, "temperature": 1, "future_field": {"x": [1, "y"]}}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_native_request_passes_through_unchanged_but_for_the_model(
    protocols: ProtocolStack, ant: anthropic.Anthropic, stream: bool
) -> None:
    if stream:
        with ant.messages.stream(
            model=CLAUDE, extra_body=EXTRA_FIELDS, **NATIVE_REQUEST
        ) as streamed:
            message = streamed.get_final_message()
    else:
        message = ant.messages.create(model=CLAUDE, extra_body=EXTRA_FIELDS, **NATIVE_REQUEST)
    assert message.stop_reason == "end_turn"

    received = protocols.last_received()["body"]
    expected = {**NATIVE_REQUEST, **EXTRA_FIELDS, "model": UPSTREAM_MODELS[CLAUDE]}
    if stream:
        expected["stream"] = True
    assert received == expected


# -- policies, limits and accounting ----------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_namespace_policy_denies_a_model_with_an_anthropic_403(
    protocols: ProtocolStack, stream: bool
) -> None:
    protocols.clear_received()
    with protocols.anthropic(key=protocols.restricted_key) as client:
        with pytest.raises(anthropic.PermissionDeniedError) as raised:
            client.messages.create(model=CLAUDE, max_tokens=5, messages=USER, stream=stream)
        assert raised.value.status_code == 403
        assert CLAUDE in _error(raised.value, "permission_error")
        with pytest.raises(anthropic.PermissionDeniedError) as counted:
            client.messages.count_tokens(model=CLAUDE, messages=USER)
        _error(counted.value, "permission_error")
        assert protocols.received() == []  # refused before any upstream call

        # The namespace's other models are served as usual.
        assert client.messages.create(model=GPT, max_tokens=5, messages=USER).content


def test_namespace_policy_applies_to_openai_callers_of_claude_too(
    protocols: ProtocolStack,
) -> None:
    with protocols.openai(key=protocols.restricted_key) as client:
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model=CLAUDE, messages=USER)


def test_requests_per_minute_limit_is_an_anthropic_429_with_retry_after(
    protocols: ProtocolStack,
) -> None:
    """The key allows 2 requests per minute: the third is refused, in Anthropic's format."""
    with protocols.anthropic(key=protocols.limited_key) as client:
        client.messages.create(model=CLAUDE, max_tokens=5, messages=USER)
        with client.messages.stream(model=GPT, max_tokens=5, messages=USER) as stream:
            stream.get_final_message()
        with pytest.raises(anthropic.RateLimitError) as raised:
            client.messages.create(model=CLAUDE, max_tokens=5, messages=USER)
    assert raised.value.status_code == 429
    assert "rpm limit of 2 reached" in _error(raised.value, "rate_limit_error")
    retry_after = raised.value.response.headers.get("retry-after")
    assert retry_after is not None and int(retry_after) >= 1


def test_usage_of_anthropic_traffic_is_accounted(protocols: ProtocolStack) -> None:
    """Native and translated, plain and streamed: what the caller is told it used is what
    the gateway counts for its namespace."""
    messages: list[anthropic.types.Message] = []
    with protocols.anthropic(key=protocols.metered_key) as client:
        for model in MODELS:
            messages.append(client.messages.create(model=model, max_tokens=7, messages=USER))
            with client.messages.stream(model=model, max_tokens=9, messages=USER) as stream:
                messages.append(stream.get_final_message())
    for message in messages:
        assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert [m.usage.output_tokens for m in messages] == [7, 9, 7, 9]

    counters = accounted_usage("metered", requests=4)
    assert counters.requests == 4 and counters.errors == 0
    assert counters.prompt_tokens == sum(m.usage.input_tokens for m in messages)
    assert counters.completion_tokens == sum(m.usage.output_tokens for m in messages)


# -- errors in Anthropic's format, below the SDK ----------------------------------------------


RAW_ERRORS = [
    # (id, method, path, body, headers, status, error type)
    ("malformed-json", "POST", "/v1/messages", b"{", {}, 400, "invalid_request_error"),
    (
        "missing-max-tokens",
        "POST",
        "/v1/messages",
        b'{"model": "claude-chat", "messages": [{"role": "user", "content": "hi"}]}',
        {},
        400,
        "invalid_request_error",
    ),
    ("wrong-method", "GET", "/v1/messages", None, {}, 405, "invalid_request_error"),
    (
        "no-key",
        "POST",
        "/v1/messages/count_tokens",
        b"{}",
        {"x-api-key": ""},
        401,
        "authentication_error",
    ),
    (
        "models-with-anthropic-version",
        "GET",
        "/v1/models/no-such-model",
        None,
        {"anthropic-version": "2023-06-01"},
        404,
        "not_found_error",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "error_type"),
    [case[1:] for case in RAW_ERRORS],
    ids=[case[0] for case in RAW_ERRORS],
)
def test_errors_are_in_anthropic_format(
    protocols: ProtocolStack,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    error_type: str,
) -> None:
    sent = {"x-api-key": protocols.key, "content-type": "application/json", **headers}
    response = httpx.request(
        method, protocols.gateway + path, content=body, headers=sent, timeout=30
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert set(document) == {"type", "error"} and document["type"] == "error"
    assert set(document["error"]) == {"type", "message"} and document["error"]["message"]
    assert document["error"]["type"] == error_type
