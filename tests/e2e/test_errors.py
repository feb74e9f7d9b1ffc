"""Bad input and upstream failures: every one a clear error in OpenAI's format, never a 500."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import Stack

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
GOOD = {"model": "mock-gpt-4o-mini", "messages": USER}


def _post(
    stack: Stack, path: str, body: Any, key: str | None = "default", **kw: Any
) -> httpx.Response:
    headers = kw.pop("headers", {})
    if key is not None:
        headers["Authorization"] = f"Bearer {stack.key if key == 'default' else key}"
    if isinstance(body, bytes | Iterator):
        return httpx.post(stack.gateway + path, content=body, headers=headers, timeout=30, **kw)
    return httpx.post(stack.gateway + path, json=body, headers=headers, timeout=30, **kw)


def _assert_openai_error(
    response: httpx.Response,
    status: int,
    type_: str,
    code: str | None,
    fragment: str,
    param: str | None = None,
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    assert error["code"] == code
    assert fragment in error["message"]
    if param is not None:
        assert error["param"] == param


BAD_BODIES = [
    # (id, path, raw body or JSON, status, type, code, message fragment, param)
    ("malformed-json", CHAT, b"{", 400, "invalid_request_error", None, "not valid JSON", None),
    ("array-body", CHAT, b"[1]", 400, "invalid_request_error", None, "must be a JSON object", None),
    ("empty-body", CHAT, b"", 400, "invalid_request_error", None, "empty", None),
    (
        "invalid-utf8",
        CHAT,
        b'{"model": "\xff\xfe"}',
        400,
        "invalid_request_error",
        None,
        "UTF-8",
        None,
    ),
    (
        "missing-model",
        CHAT,
        {"messages": USER},
        400,
        "invalid_request_error",
        None,
        "model",
        "model",
    ),
    (
        "model-not-string",
        CHAT,
        {"model": 42, "messages": USER},
        400,
        "invalid_request_error",
        None,
        "non-empty string",
        "model",
    ),
    (
        "missing-messages",
        CHAT,
        {"model": "mock-gpt-4o-mini"},
        400,
        "invalid_request_error",
        None,
        "messages",
        "messages",
    ),
    (
        "messages-not-array",
        CHAT,
        {"model": "mock-gpt-4o-mini", "messages": "hi"},
        400,
        "invalid_request_error",
        None,
        "must be an array, not a string",
        "messages",
    ),
    (
        "messages-empty",
        CHAT,
        {"model": "mock-gpt-4o-mini", "messages": []},
        400,
        "invalid_request_error",
        None,
        "at least one",
        "messages",
    ),
    (
        "message-without-role",
        CHAT,
        {"model": "mock-gpt-4o-mini", "messages": [{"content": "x"}]},
        400,
        "invalid_request_error",
        None,
        "role",
        "messages[0].role",
    ),
    (
        "stream-not-bool",
        CHAT,
        {**GOOD, "stream": "yes"},
        400,
        "invalid_request_error",
        None,
        "boolean",
        "stream",
    ),
    (
        "max-tokens-zero",
        CHAT,
        {**GOOD, "max_tokens": 0},
        400,
        "invalid_request_error",
        None,
        "at least 1",
        "max_tokens",
    ),
    (
        "max-tokens-string",
        CHAT,
        {**GOOD, "max_tokens": "5"},
        400,
        "invalid_request_error",
        None,
        "integer",
        "max_tokens",
    ),
    (
        "temperature-string",
        CHAT,
        {**GOOD, "temperature": "hot"},
        400,
        "invalid_request_error",
        None,
        "number",
        "temperature",
    ),
    (
        "stream-options-without-stream",
        CHAT,
        {**GOOD, "stream_options": {"include_usage": True}},
        400,
        "invalid_request_error",
        None,
        "stream",
        "stream_options",
    ),
    (
        "completion-without-prompt",
        "/v1/completions",
        {"model": "mock-instruct"},
        400,
        "invalid_request_error",
        None,
        "prompt",
        "prompt",
    ),
    (
        "embedding-without-input",
        "/v1/embeddings",
        {"model": "mock-embedding"},
        400,
        "invalid_request_error",
        None,
        "input",
        "input",
    ),
    (
        "unknown-model",
        CHAT,
        {"model": "gpt-9", "messages": USER},
        404,
        "invalid_request_error",
        "model_not_found",
        "gpt-9",
        "model",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "type_", "code", "fragment", "param"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_input_gets_a_clear_openai_error(
    stack: Stack,
    path: str,
    body: Any,
    status: int,
    type_: str,
    code: str | None,
    fragment: str,
    param: str | None,
) -> None:
    _assert_openai_error(_post(stack, path, body), status, type_, code, fragment, param)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer sk-aigw-not-a-real-key"}, "invalid_api_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
        ({"x-api-key": "sk-wrong"}, "invalid_api_key"),
    ],
    ids=["none", "unknown", "basic-scheme", "wrong-x-api-key"],
)
def test_missing_or_unknown_key_is_401(stack: Stack, headers: dict[str, str], code: str) -> None:
    response = _post(stack, CHAT, GOOD, key=None, headers=headers)
    _assert_openai_error(response, 401, "invalid_request_error", code, "API key")


def test_expired_key_is_401(stack: Stack) -> None:
    response = _post(stack, CHAT, GOOD, key=stack.expired_key)
    _assert_openai_error(response, 401, "invalid_request_error", "expired_api_key", "expired")


@pytest.mark.parametrize("header", ["api-key", "x-api-key"])
def test_key_in_alternative_headers(stack: Stack, header: str) -> None:
    response = _post(stack, CHAT, GOOD, key=None, headers={header: stack.key})
    assert response.status_code == 200, response.text


def test_model_denied_by_namespace_policy_is_403(stack: Stack) -> None:
    response = _post(stack, CHAT, GOOD, key=stack.narrow_key)
    _assert_openai_error(response, 403, "permission_error", "model_not_allowed", "team-b", "model")
    assert _post(stack, CHAT, {**GOOD, "model": "mock-gpt-4o"}, key=stack.narrow_key).is_success


def test_body_over_limit_is_413_with_or_without_content_length(stack: Stack) -> None:
    big = b'{"model": "mock-gpt-4o-mini", "messages": [], "pad": "' + b"x" * (11 * 1024 * 1024)
    big += b'"}'
    _assert_openai_error(
        _post(stack, CHAT, big), 413, "invalid_request_error", "request_too_large", "limit"
    )

    def chunked() -> Any:
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    _assert_openai_error(
        _post(stack, CHAT, chunked()), 413, "invalid_request_error", "request_too_large", "limit"
    )


def test_unknown_path_and_wrong_method(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.key}"}
    _assert_openai_error(
        httpx.get(stack.gateway + "/v1/nothing", headers=headers),
        404,
        "invalid_request_error",
        None,
        "unknown path",
    )
    _assert_openai_error(
        httpx.get(stack.gateway + CHAT, headers=headers),
        405,
        "invalid_request_error",
        "method_not_allowed",
        "POST",
    )


def test_health_and_readiness(stack: Stack) -> None:
    assert httpx.get(stack.gateway + "/healthz").json()["status"] == "ok"
    ready = httpx.get(stack.gateway + "/readyz").json()
    assert ready["status"] == "ready" and len(ready["config_version"]) == 12


def test_unreachable_upstream_is_502(stack: Stack, client: openai.OpenAI) -> None:
    response = _post(stack, CHAT, {**GOOD, "model": "dead-chat"})
    _assert_openai_error(response, 502, "upstream_error", "upstream_unavailable", "dead")
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="dead-chat", messages=USER)
    assert raised.value.status_code == 502


def test_upstream_timeout_is_504(faulty: Stack) -> None:
    httpx.put(f"{faulty.faulty}/_mock/config", json={"hang_rate": 1}).raise_for_status()
    started = time.monotonic()
    response = _post(faulty, CHAT, {**GOOD, "model": "faulty-chat"})
    _assert_openai_error(response, 504, "timeout_error", "upstream_timeout", "faulty")
    # The provider's read timeout is 1.5 s: the gateway gives up then, not at the client's 30 s.
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    ("status", "sdk_error"),
    [
        (500, openai.InternalServerError),
        (429, openai.RateLimitError),
        (400, openai.BadRequestError),
        (503, openai.InternalServerError),
    ],
)
def test_upstream_errors_keep_their_status(
    faulty: Stack, client: openai.OpenAI, status: int, sdk_error: type
) -> None:
    httpx.put(
        f"{faulty.faulty}/_mock/config", json={"error_rate": 1, "error_status": status}
    ).raise_for_status()
    response = _post(faulty, CHAT, {**GOOD, "model": "faulty-chat"})
    assert response.status_code == status
    assert set(response.json()["error"]) >= {"message", "type", "code"}
    if status == 429:
        assert response.headers["retry-after"] == "1"
    with pytest.raises(sdk_error):
        client.chat.completions.create(model="faulty-chat", messages=USER)
    if status == 429:
        # The gateway honours the upstream's Retry-After: its only target cools for 1 s. Wait
        # it out, so that the next case reaches the upstream again.
        time.sleep(1.1)


def test_an_openai_call_claude_cannot_serve_is_a_clear_501(stack: Stack) -> None:
    response = _post(stack, "/v1/completions", {"model": "claude-chat", "prompt": "Say hello"})
    _assert_openai_error(
        response, 501, "invalid_request_error", "protocol_not_supported", "Anthropic's Messages API"
    )
