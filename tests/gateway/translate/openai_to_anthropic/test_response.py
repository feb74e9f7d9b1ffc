"""OpenAI-format callers in front of Claude: answers and errors coming back."""

from __future__ import annotations

import orjson
import pytest

from aigw.gateway.translate.openai_to_anthropic import (
    anthropic_error_to_openai,
    messages_response_to_chat,
)

MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Hello"},
        {"type": "text", "text": " there"},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 20,
        "output_tokens": 5,
    },
}


def test_message_to_chat_completion() -> None:
    completion = messages_response_to_chat(MESSAGE, model="public")

    assert completion["id"] == "chatcmpl-msg_01"
    assert completion["object"] == "chat.completion"
    assert isinstance(completion["created"], int)
    assert completion["model"] == "public"
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello there",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert completion["usage"] == {
        "prompt_tokens": 33,
        "completion_tokens": 5,
        "total_tokens": 38,
        "prompt_tokens_details": {"cached_tokens": 20},
    }


def test_tool_use_message_to_tool_calls() -> None:
    doc = MESSAGE | {
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"a": [1, "x"]}},
            {"type": "tool_use", "id": "toolu_2", "name": "put", "input": {}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 4, "output_tokens": 2, "cache_read_input_tokens": None},
    }

    completion = messages_response_to_chat(doc, model="public")

    [choice] = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get", "arguments": '{"a":[1,"x"]}'},
        },
        {"id": "toolu_2", "type": "function", "function": {"name": "put", "arguments": "{}"}},
    ]
    assert completion["usage"]["prompt_tokens"] == 4
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_every_stop_reason(stop_reason: str | None, finish_reason: str) -> None:
    completion = messages_response_to_chat(MESSAGE | {"stop_reason": stop_reason}, model="m")

    assert completion["choices"][0]["finish_reason"] == finish_reason


def test_empty_answer_has_empty_string_content() -> None:
    completion = messages_response_to_chat(MESSAGE | {"content": []}, model="m")

    assert completion["choices"][0]["message"]["content"] == ""


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "openai_type", "code"),
    [
        ("invalid_request_error", 400, "invalid_request_error", None),
        ("authentication_error", 401, "invalid_request_error", "invalid_api_key"),
        ("permission_error", 403, "permission_error", None),
        ("not_found_error", 404, "invalid_request_error", "not_found"),
        ("rate_limit_error", 429, "requests", "rate_limit_exceeded"),
        ("api_error", 500, "server_error", None),
        ("overloaded_error", 529, "server_error", "overloaded"),
        ("brand_new_error", 503, "server_error", None),
        ("brand_new_error", 422, "invalid_request_error", None),
    ],
)
def test_anthropic_error_to_openai(
    kind: str, status: int, openai_type: str, code: str | None
) -> None:
    payload = orjson.dumps({"type": "error", "error": {"type": kind, "message": "boom"}})

    assert orjson.loads(anthropic_error_to_openai(payload, status)) == {
        "error": {"message": "boom", "type": openai_type, "param": None, "code": code}
    }


def test_non_json_error_is_wrapped() -> None:
    error = orjson.loads(anthropic_error_to_openai(b"<html>Bad Gateway</html>", 502))["error"]

    assert error["message"] == "upstream returned HTTP 502: <html>Bad Gateway</html>"
    assert error["type"] == "upstream_error"
