"""OpenAI-format callers in front of Claude: the request sent upstream."""

from __future__ import annotations

from typing import Any

import pytest

from aigw.gateway.core.errors import InvalidRequest
from aigw.gateway.translate.openai_to_anthropic import (
    chat_to_messages_request,
)

USER_HI = {"role": "user", "content": "hi"}
PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgo="
CALL = {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"a":1}'}}
CALL_2 = {"id": "call_2", "type": "function", "function": {"name": "put", "arguments": ""}}
TOOL = {"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}


def translate(**body: Any) -> dict[str, Any]:
    return chat_to_messages_request(
        {"model": "public", **body}, upstream_model="claude-x", default_max_tokens=4096
    )


# (case, chat request fields, the Messages request fields expected besides model/max_tokens)
REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain", {"messages": [USER_HI]}, {"messages": [USER_HI]}),
    (
        "system and developer messages become system blocks",
        {
            "messages": [
                {"role": "system", "content": "be terse"},
                {"role": "developer", "content": [{"type": "text", "text": "be kind"}]},
                USER_HI,
            ]
        },
        {
            "system": [{"type": "text", "text": "be terse"}, {"type": "text", "text": "be kind"}],
            "messages": [USER_HI],
        },
    ),
    (
        "a single system message is a string",
        {"messages": [{"role": "system", "content": "be terse"}, USER_HI]},
        {"system": "be terse", "messages": [USER_HI]},
    ),
    (
        "consecutive turns of one role are merged",
        {
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]},
                {"role": "assistant", "content": "three"},
                {"role": "assistant", "content": "four"},
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "three"},
                        {"type": "text", "text": "four"},
                    ],
                },
            ]
        },
    ),
    (
        "tool calls and results, results merged with the user text after them",
        {
            "messages": [
                USER_HI,
                {"role": "assistant", "content": "calling", "tool_calls": [CALL, CALL_2]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {
                    "role": "tool",
                    "tool_call_id": "call_2",
                    "content": [{"type": "text", "text": "done"}],
                },
                {"role": "user", "content": "thanks"},
            ]
        },
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "calling"},
                        {"type": "tool_use", "id": "call_1", "name": "get", "input": {"a": 1}},
                        {"type": "tool_use", "id": "call_2", "name": "put", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "call_2",
                            "content": [{"type": "text", "text": "done"}],
                        },
                        {"type": "text", "text": "thanks"},
                    ],
                },
            ]
        },
    ),
    (
        "assistant content null with tool calls, ids with odd characters",
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [CALL | {"id": "call.1/x"}],
                },
                {"role": "tool", "tool_call_id": "call.1/x", "content": ""},
            ]
        },
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "call_1_x", "name": "get", "input": {"a": 1}}
                    ],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1_x"}]},
            ]
        },
    ),
    (
        "images of both kinds, a PDF, empty text dropped, cache_control kept",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": ""},
                        {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
                        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                        {
                            "type": "file",
                            "file": {
                                "filename": "a.pdf",
                                "file_data": "data:application/pdf;base64,JVBERi0=",
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
                        {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": "iVBORw0KGgo=",
                            },
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                        {
                            "type": "document",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": "JVBERi0=",
                            },
                            "title": "a.pdf",
                        },
                    ],
                }
            ]
        },
    ),
    (
        "empty turns are skipped and their neighbours merged",
        {
            "messages": [
                USER_HI,
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "x"},
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "x"}],
                }
            ]
        },
    ),
    (
        "tools with and without parameters",
        {
            "messages": [USER_HI],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get",
                        "description": "Get it.",
                        "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
                        "strict": True,
                    },
                },
                {"type": "function", "function": {"name": "ping"}},
            ],
        },
        {
            "messages": [USER_HI],
            "tools": [
                {
                    "name": "get",
                    "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                    "description": "Get it.",
                },
                {"name": "ping", "input_schema": {"type": "object", "properties": {}}},
            ],
        },
    ),
    (
        "sampling, stop string, user, stream, harmless OpenAI-only fields dropped",
        {
            "messages": [USER_HI],
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": "END",
            "user": "u-1",
            "stream": True,
            "stream_options": {"include_usage": True},
            "store": True,
            "seed": 7,
            "service_tier": "auto",
            "metadata": {"k": "v"},
            "parallel_tool_calls": True,
            "n": 1,
            "logprobs": False,
            "presence_penalty": 0,
        },
        {
            "messages": [USER_HI],
            "temperature": 0.5,
            "top_p": 0.9,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "stream": True,
        },
    ),
    (
        "stop list",
        {"messages": [USER_HI], "stop": ["a", "b"]},
        {"messages": [USER_HI], "stop_sequences": ["a", "b"]},
    ),
    (
        "safety_identifier stands in for user",
        {"messages": [USER_HI], "safety_identifier": "s-1"},
        {"messages": [USER_HI], "metadata": {"user_id": "s-1"}},
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [case[1:] for case in REQUESTS], ids=[c[0] for c in REQUESTS]
)
def test_request_translation(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert translate(**body) == {"model": "claude-x", "max_tokens": 4096, **expected}


@pytest.mark.parametrize(
    ("fields", "max_tokens"),
    [
        ({}, 4096),
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 60}, 60),
        ({"max_tokens": 50, "max_completion_tokens": 60}, 60),
    ],
)
def test_max_tokens(fields: dict[str, Any], max_tokens: int) -> None:
    assert translate(messages=[USER_HI], **fields)["max_tokens"] == max_tokens


@pytest.mark.parametrize(
    ("fields", "tool_choice"),
    [
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "get"}}},
            {"type": "tool", "name": "get"},
        ),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
        ({}, None),
    ],
)
def test_tool_choice(fields: dict[str, Any], tool_choice: dict[str, Any] | None) -> None:
    request = translate(messages=[USER_HI], tools=[TOOL], **fields)

    assert request.get("tool_choice") == tool_choice


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in translate(messages=[USER_HI], tool_choice="none")
    assert "tool_choice" not in translate(messages=[USER_HI], parallel_tool_calls=False)
    with pytest.raises(InvalidRequest) as caught:
        translate(messages=[USER_HI], tool_choice="required")
    assert caught.value.param == "tool_choice"


@pytest.mark.parametrize(
    ("response_format", "in_system"),
    [
        ({"type": "json_object"}, "single valid JSON object"),
        (
            {"type": "json_schema", "json_schema": {"name": "pt", "schema": {"type": "object"}}},
            "named 'pt'), and nothing else: no prose before or after it and no Markdown code "
            'fence around it.\nSchema: {"type":"object"}',
        ),
    ],
)
def test_response_format_becomes_a_system_instruction(
    response_format: dict[str, Any], in_system: str
) -> None:
    request = translate(
        messages=[{"role": "system", "content": "be terse"}, USER_HI],
        response_format=response_format,
    )

    first, instruction = request["system"]
    assert first == {"type": "text", "text": "be terse"}
    assert in_system in instruction["text"]
    assert "system" not in translate(messages=[USER_HI], response_format={"type": "text"})


UNSUPPORTED = [
    ("n", 2),
    ("logprobs", True),
    ("top_logprobs", 3),
    ("logit_bias", {"50256": -100}),
    ("presence_penalty", 0.5),
    ("frequency_penalty", -1),
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("modalities", ["text", "audio"]),
    ("reasoning_effort", "low"),
    ("verbosity", "low"),
    ("web_search_options", {}),
    ("functions", [{"name": "f"}]),
    ("function_call", "auto"),
]


@pytest.mark.parametrize(("name", "value"), UNSUPPORTED)
def test_unsupported_parameters_are_a_400_naming_them(name: str, value: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(messages=[USER_HI], **{name: value})

    assert caught.value.status == 400
    assert caught.value.param == name
    assert name in caught.value.message


def test_drop_unsupported_drops_them() -> None:
    body = {"model": "m", "messages": [USER_HI], **dict(UNSUPPORTED)}
    body |= {"temperature": 1.7, "stop": ["\n", "END"]}

    request = chat_to_messages_request(
        body, upstream_model="claude-x", default_max_tokens=10, drop_unsupported=True
    )

    assert request == {
        "model": "claude-x",
        "max_tokens": 10,
        "messages": [USER_HI],
        "temperature": 1.0,
        "stop_sequences": ["END"],
    }


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 1.5}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": "high"}, "top_p"),
        ({"stop": "\n"}, "stop"),
        ({"stop": ["ok", " "]}, "stop"),
        ({"stop": 5}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "9"}, "max_completion_tokens"),
        ({"tool_choice": "sometimes", "tools": [TOOL]}, "tool_choice"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
    ],
)
def test_invalid_parameters(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(messages=[USER_HI], **fields)

    assert caught.value.param == param


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ([{"role": "system", "content": "only system"}], "messages"),
        ([{"role": "function", "name": "f", "content": "x"}], "messages[0].role"),
        ([{"role": "robot", "content": "x"}], "messages[0]"),
        (
            [USER_HI, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}],
            "messages[1].function_call",
        ),
        (
            [
                USER_HI,
                {
                    "role": "assistant",
                    "tool_calls": [CALL | {"function": {"name": "get", "arguments": "{bad"}}],
                },
            ],
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            [
                USER_HI,
                {
                    "role": "assistant",
                    "tool_calls": [CALL | {"function": {"name": "get", "arguments": "[1]"}}],
                },
            ],
            "messages[1].tool_calls[0].function.arguments",
        ),
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
        (
            [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
            "messages[0].content[0]",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}
                    ],
                }
            ],
            "messages[0].content[0]",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,AAAA"}}],
                }
            ],
            "messages[0].content[0]",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}],
                }
            ],
            "messages[0].content[0]",
        ),
        (
            [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}],
            "messages[0].content[0]",
        ),
        (
            [{"role": "system", "content": [{"type": "image_url"}]}, USER_HI],
            "messages[0].content[0]",
        ),
    ],
)
def test_invalid_messages(messages: list[Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(messages=messages)

    assert caught.value.param == param


def test_invalid_json_arguments_message_is_clear() -> None:
    bad = CALL | {"function": {"name": "get", "arguments": "{bad"}}
    with pytest.raises(InvalidRequest, match="must be a JSON object encoded as a string"):
        translate(messages=[USER_HI, {"role": "assistant", "tool_calls": [bad]}])
