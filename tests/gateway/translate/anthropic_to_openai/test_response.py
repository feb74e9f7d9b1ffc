"""Anthropic-format callers in front of OpenAI: answers and errors coming back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aigw.gateway.translate.anthropic_to_openai import (
    chat_response_to_messages,
    openai_error_to_anthropic,
)

COMPLETION = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-x",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 30,
        "completion_tokens": 5,
        "total_tokens": 35,
        "prompt_tokens_details": {"cached_tokens": 20},
    },
}


def with_choice(**fields: Any) -> dict[str, Any]:
    return COMPLETION | {"choices": [COMPLETION["choices"][0] | fields]}


def test_chat_completion_to_message() -> None:
    assert chat_response_to_messages(COMPLETION, model="public") == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "public",
        "content": [{"type": "text", "text": "Hello"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 20,
            "output_tokens": 5,
        },
    }


def test_tool_calls_to_tool_use() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get", "arguments": '{"a":1}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "put", "arguments": '{"x'}},
        ],
    }

    result = chat_response_to_messages(
        with_choice(message=message, finish_reason="tool_calls"), model="m"
    )

    assert result["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get", "input": {"a": 1}},
        {"type": "tool_use", "id": "call_2", "name": "put", "input": {}},
    ]
    assert result["stop_reason"] == "tool_use"


def test_refusal() -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}

    result = chat_response_to_messages(with_choice(message=message), model="m")

    assert result["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert result["stop_reason"] == "refusal"


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("new_reason", "end_turn"),
        (None, "end_turn"),
    ],
)
def test_every_finish_reason(finish_reason: str | None, stop_reason: str) -> None:
    result = chat_response_to_messages(with_choice(finish_reason=finish_reason), model="m")

    assert result["stop_reason"] == stop_reason


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        ({"type": "invalid_request_error", "code": None}, 400, "invalid_request_error"),
        ({"type": "invalid_request_error", "code": "invalid_api_key"}, 401, "authentication_error"),
        ({"type": "invalid_request_error", "code": "model_not_found"}, 404, "not_found_error"),
        ({"type": "requests", "code": "rate_limit_exceeded"}, 429, "rate_limit_error"),
        ({"type": "insufficient_quota", "code": "insufficient_quota"}, 429, "billing_error"),
        ({"type": "server_error", "code": None}, 500, "api_error"),
        ({"type": "whatever", "code": None}, 503, "overloaded_error"),
        ({"type": "whatever", "code": None}, 403, "permission_error"),
        ({"type": "whatever", "code": None}, 418, "invalid_request_error"),
    ],
)
def test_openai_error_to_anthropic(error: dict[str, Any], status: int, kind: str) -> None:
    payload = orjson.dumps({"error": error | {"message": "boom", "param": None}})

    assert orjson.loads(openai_error_to_anthropic(payload, status)) == {
        "type": "error",
        "error": {"type": kind, "message": "boom"},
    }


def test_non_json_error_is_wrapped() -> None:
    body = orjson.loads(openai_error_to_anthropic(b"upstream connect error", 503))

    assert body == {
        "type": "error",
        "error": {
            "type": "overloaded_error",
            "message": "upstream returned HTTP 503: upstream connect error",
        },
    }
