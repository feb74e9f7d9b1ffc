"""Anthropic-format callers in front of OpenAI: the request sent upstream."""

from __future__ import annotations

from typing import Any

import pytest

from aigw.gateway.core.errors import InvalidRequest
from aigw.gateway.translate.anthropic_to_openai import (
    messages_to_chat_request,
)

USER_HI = {"role": "user", "content": "hi"}
TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"a": 1}}
TOOL = {"name": "get", "input_schema": {"type": "object"}}


def translate(**body: Any) -> dict[str, Any]:
    return messages_to_chat_request(
        {"model": "public", "max_tokens": 100, **body}, upstream_model="gpt-x"
    )


# (case, Messages request fields, the chat request fields expected besides model/max_tokens)
REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain", {"messages": [USER_HI]}, {"messages": [USER_HI]}),
    (
        "system string",
        {"system": "be terse", "messages": [USER_HI]},
        {"messages": [{"role": "system", "content": "be terse"}, USER_HI]},
    ),
    (
        "system blocks, cache_control dropped",
        {
            "system": [
                {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "two"},
            ],
            "messages": [USER_HI],
        },
        {"messages": [{"role": "system", "content": "one\n\ntwo"}, USER_HI]},
    ),
    (
        "text blocks, images of both kinds, documents",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAA="},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                        {
                            "type": "document",
                            "title": "Notes",
                            "source": {"type": "text", "media_type": "text/plain", "data": "abc"},
                        },
                        {
                            "type": "document",
                            "source": {
                                "type": "content",
                                "content": [
                                    {"type": "text", "text": "x"},
                                    {"type": "text", "text": "y"},
                                ],
                            },
                        },
                        {
                            "type": "document",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": "JVBERi0=",
                            },
                        },
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA="}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                        {"type": "text", "text": "Notes\n\nabc"},
                        {"type": "text", "text": "xy"},
                        {
                            "type": "file",
                            "file": {
                                "filename": "document.pdf",
                                "file_data": "data:application/pdf;base64,JVBERi0=",
                            },
                        },
                    ],
                }
            ]
        },
    ),
    (
        "a lone text block is a string",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        {"messages": [USER_HI]},
    ),
    (
        "tool use and results, thinking dropped, results before the user's text",
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "calling"},
                        TOOL_USE,
                        {"type": "tool_use", "id": "toolu_2", "name": "put", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "is_error": True,
                            "content": [
                                {"type": "text", "text": "no"},
                                {"type": "text", "text": "way"},
                            ],
                        },
                        {"type": "text", "text": "thanks"},
                    ],
                },
            ]
        },
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": "calling",
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get", "arguments": '{"a":1}'},
                        },
                        {
                            "id": "toolu_2",
                            "type": "function",
                            "function": {"name": "put", "arguments": "{}"},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no\nway"},
                {"role": "user", "content": "thanks"},
            ]
        },
    ),
    (
        "images from a tool result open the next user message",
        {
            "messages": [
                USER_HI,
                {"role": "assistant", "content": [TOOL_USE]},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [
                                {"type": "text", "text": "screenshot"},
                                {
                                    "type": "image",
                                    "source": {"type": "url", "url": "https://x/s.png"},
                                },
                            ],
                        }
                    ],
                },
            ]
        },
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get", "arguments": '{"a":1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "screenshot"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Images returned by the tools:"},
                        {"type": "image_url", "image_url": {"url": "https://x/s.png"}},
                    ],
                },
            ]
        },
    ),
    (
        "an assistant turn of thinking only is dropped",
        {
            "messages": [
                USER_HI,
                {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"}]},
                {"role": "user", "content": "again"},
            ]
        },
        {"messages": [USER_HI, {"role": "user", "content": "again"}]},
    ),
    (
        "tools, sampling, stop, user; top_k, thinking and unknown fields dropped",
        {
            "messages": [USER_HI],
            "tools": [
                {"name": "get", "description": "Get it.", "input_schema": {"type": "object"}},
                {"type": "custom", "name": "ping", "input_schema": {}},
            ],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
            "temperature": 0.2,
            "top_p": 0.8,
            "top_k": 5,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "service_tier": "auto",
            "container": "c",
        },
        {
            "messages": [USER_HI],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get",
                        "description": "Get it.",
                        "parameters": {"type": "object"},
                    },
                },
                {
                    "type": "function",
                    "function": {
                        "name": "ping",
                        "parameters": {"type": "object", "properties": {}},
                    },
                },
            ],
            "tool_choice": "auto",
            "parallel_tool_calls": False,
            "temperature": 0.2,
            "top_p": 0.8,
            "stop": ["END"],
            "user": "u-1",
        },
    ),
    (
        "stream asks for usage",
        {"messages": [USER_HI], "stream": True},
        {"messages": [USER_HI], "stream": True, "stream_options": {"include_usage": True}},
    ),
    (
        "structured output",
        {
            "messages": [USER_HI],
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        },
        {
            "messages": [USER_HI],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": {"type": "object"}},
            },
        },
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [case[1:] for case in REQUESTS], ids=[case[0] for case in REQUESTS]
)
def test_request_translation(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert translate(**body) == {"model": "gpt-x", "max_tokens": 100, **expected}


@pytest.mark.parametrize(
    ("tool_choice", "fields"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "get"},
            {"tool_choice": {"type": "function", "function": {"name": "get"}}},
        ),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"tool_choice": "required", "parallel_tool_calls": False},
        ),
        (None, {}),
    ],
)
def test_tool_choice(tool_choice: dict[str, Any] | None, fields: dict[str, Any]) -> None:
    request = translate(messages=[USER_HI], tools=[TOOL], tool_choice=tool_choice)

    assert {k: request[k] for k in ("tool_choice", "parallel_tool_calls") if k in request} == fields


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0]"),
        ({"system": 5, "messages": [USER_HI]}, "system"),
        ({"messages": [USER_HI], "mcp_servers": [{"url": "https://x"}]}, "mcp_servers"),
        (
            {
                "messages": [USER_HI],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools[0]",
        ),
        ({"messages": [USER_HI], "tools": [TOOL], "tool_choice": {"type": "tool"}}, "tool_choice"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {"type": "url", "url": "https://x/a.pdf"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    USER_HI,
                    {
                        "role": "assistant",
                        "content": [{"type": "server_tool_use", "id": "s", "name": "web_search"}],
                    },
                ]
            },
            "messages[1].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
            "messages[0].content[0]",
        ),
        ({"messages": [USER_HI], "output_config": {"format": {"type": "yaml"}}}, "output_config"),
    ],
)
def test_invalid_requests(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(**fields)

    assert caught.value.status == 400
    assert caught.value.param == param
