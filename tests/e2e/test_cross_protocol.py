"""Both official SDKs against both kinds of model, through a real gateway and mock upstreams.

Every feature runs in all four combinations: the openai SDK and the anthropic SDK, each against
a model served by an OpenAI upstream (``gpt-chat``) and one served by a Claude upstream
(``claude-chat``); two of the four are pass-through, two are translations. What the upstream
received is read back from the mock, so the tests check both what the caller sees and what the
gateway sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.protocol_stack import (
    CLAUDE,
    GPT,
    IMAGE_URL,
    MOCK_ATTACHMENT_TOKENS,
    MOCK_SENTENCE,
    PNG_BASE64,
    TOOL_TRIGGER,
    UPSTREAM_MODELS,
    ProtocolStack,
    protocol_stack,
)

MODELS = [GPT, CLAUDE]
DEFAULT_ANSWER_TOKENS = 16
"""The mock's answer length when the request allows more (``--completion-tokens``)."""
FULL_ANSWER = " ".join((MOCK_SENTENCE.split() * 2)[:DEFAULT_ANSWER_TOKENS])
TOOL_RESULT = "18 degrees and sunny"

OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ANTHROPIC_TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


@pytest.fixture(scope="module")
def protocols(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProtocolStack]:
    with protocol_stack(tmp_path_factory.mktemp("cross-protocol")) as stack:
        yield stack


@pytest.fixture
def oai(protocols: ProtocolStack) -> Iterator[openai.OpenAI]:
    protocols.clear_received()
    with protocols.openai() as client:
        yield client


@pytest.fixture
def ant(protocols: ProtocolStack) -> Iterator[anthropic.Anthropic]:
    protocols.clear_received()
    with protocols.anthropic() as client:
        yield client


def _upstream_body(protocols: ProtocolStack, model: str) -> dict[str, Any]:
    """The body the upstream of ``model`` received last, checked to be in its protocol."""
    received = protocols.last_received()
    path = "/v1/messages" if model == CLAUDE else "/v1/chat/completions"
    assert received["path"] == path
    body: dict[str, Any] = received["body"]
    assert body["model"] == UPSTREAM_MODELS[model]
    return body


# -- openai SDK ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_completion_with_system_prompt(
    protocols: ProtocolStack, oai: openai.OpenAI, model: str
) -> None:
    completion = oai.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello"},
        ],
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == FULL_ANSWER
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens == DEFAULT_ANSWER_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    body = _upstream_body(protocols, model)
    if model == CLAUDE:
        assert body["system"] == "You are terse."
        assert body["messages"] == [{"role": "user", "content": "Say hello"}]
        assert body["max_tokens"] > 0  # Claude requires it; the caller gave none
    else:
        assert body["messages"][0] == {"role": "system", "content": "You are terse."}


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_stream_reports_usage_in_its_final_chunk(oai: openai.OpenAI, model: str) -> None:
    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "This is a mock response"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and not any(finishes[:-1])
    *content_chunks, last = chunks
    assert all(c.usage is None for c in content_chunks)
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 5 and last.usage.prompt_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_stream_without_usage_has_no_usage_chunk(oai: openai.OpenAI, model: str) -> None:
    chunks = list(
        oai.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True
        )
    )
    assert all(c.choices and c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.parametrize("stream_first_leg", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_tool_call_round_trip(
    protocols: ProtocolStack, oai: openai.OpenAI, model: str, stream_first_leg: bool
) -> None:
    messages: list[Any] = [{"role": "user", "content": TOOL_TRIGGER}]
    if stream_first_leg:
        chunks = list(
            oai.chat.completions.create(
                model=model, messages=messages, tools=OPENAI_TOOLS, stream=True
            )
        )
        calls: dict[int, dict[str, str]] = {}
        for chunk in chunks:
            for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        assert list(calls) == [0]
        call_id, name, arguments = calls[0]["id"], calls[0]["name"], calls[0]["arguments"]
    else:
        first = oai.chat.completions.create(model=model, messages=messages, tools=OPENAI_TOOLS)
        assert first.choices[0].finish_reason == "tool_calls"
        [tool_call] = first.choices[0].message.tool_calls or []
        assert tool_call.type == "function"
        call_id, name = tool_call.id, tool_call.function.name
        arguments = tool_call.function.arguments
    assert call_id and name == "get_weather" and json.loads(arguments) == {}

    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT},
    ]
    final = oai.chat.completions.create(model=model, messages=messages, tools=OPENAI_TOOLS)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == FULL_ANSWER
    assert not final.choices[0].message.tool_calls

    body = _upstream_body(protocols, model)
    if model == CLAUDE:
        assert body["messages"][1:] == [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": call_id, "name": name, "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call_id, "content": TOOL_RESULT}
                ],
            },
        ]
        assert body["tools"][0]["name"] == "get_weather"
        assert body["tools"][0]["input_schema"] == OPENAI_TOOLS[0]["function"]["parameters"]
    else:
        assert body["messages"][1:] == messages[1:]


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_images_as_data_url_and_http_url(
    protocols: ProtocolStack, oai: openai.OpenAI, model: str
) -> None:
    data_url = f"data:image/png;base64,{PNG_BASE64}"
    completion = oai.chat.completions.create(
        model=model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these two images."},
                    {"type": "image_url", "image_url": {"url": data_url}},
                    {"type": "image_url", "image_url": {"url": IMAGE_URL, "detail": "low"}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == FULL_ANSWER
    assert completion.usage is not None
    # The mock charges 85 tokens per image it received as an image.
    assert completion.usage.prompt_tokens > 2 * MOCK_ATTACHMENT_TOKENS

    [message] = _upstream_body(protocols, model)["messages"]
    if model == CLAUDE:
        assert message["content"] == [
            {"type": "text", "text": "Compare these two images."},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64},
            },
            {"type": "image", "source": {"type": "url", "url": IMAGE_URL}},
        ]
    else:
        assert message["content"][1] == {"type": "image_url", "image_url": {"url": data_url}}
        assert message["content"][2]["image_url"]["url"] == IMAGE_URL


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_stop_sequence_and_length_finish_reasons(
    protocols: ProtocolStack, oai: openai.OpenAI, model: str
) -> None:
    user: Any = [{"role": "user", "content": "hi"}]
    stopped = oai.chat.completions.create(model=model, messages=user, stop=["mock"])
    assert stopped.choices[0].message.content == "This is a "
    assert stopped.choices[0].finish_reason == "stop"
    if model == CLAUDE:
        assert _upstream_body(protocols, model)["stop_sequences"] == ["mock"]

    cut = oai.chat.completions.create(model=model, messages=user, max_tokens=2)
    assert cut.choices[0].message.content == "This is"
    assert cut.choices[0].finish_reason == "length"


INVALID_OPENAI_REQUESTS = [
    # (id, model, request fields, fragment of the error message)
    ("empty-messages-gpt", GPT, {"messages": []}, "at least one message"),
    ("empty-messages-claude", CLAUDE, {"messages": []}, "at least one message"),
    (
        # refused by the OpenAI upstream, passed on as it is
        "unknown-forced-tool-gpt",
        GPT,
        {"tools": OPENAI_TOOLS, "tool_choice": {"type": "function", "function": {"name": "x"}}},
        "function 'x' is not among the 'tools'",
    ),
    (
        # refused by the translation: Claude has no n
        "n-claude",
        CLAUDE,
        {"n": 2},
        "'n' is not supported",
    ),
    (
        # refused by the Claude upstream (a tool result without its tool call), translated
        "orphan-tool-result-claude",
        CLAUDE,
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_nope", "content": "x"},
            ]
        },
        "call_nope",
    ),
]


@pytest.mark.parametrize(
    ("model", "fields", "fragment"),
    [case[1:] for case in INVALID_OPENAI_REQUESTS],
    ids=[case[0] for case in INVALID_OPENAI_REQUESTS],
)
def test_openai_sdk_invalid_request_is_bad_request_error(
    oai: openai.OpenAI, model: str, fields: dict[str, Any], fragment: str
) -> None:
    request: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(model=model, **request)
    assert raised.value.status_code == 400
    assert fragment in raised.value.message
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_bad_key_and_unknown_model(protocols: ProtocolStack, model: str) -> None:
    user: Any = [{"role": "user", "content": "hi"}]
    with protocols.openai(key="sk-not-a-key") as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            client.chat.completions.create(model=model, messages=user)
        assert "API key" in raised.value.message
    with protocols.openai() as client:
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model=f"{model}-nonexistent", messages=user)
        assert f"{model}-nonexistent" in missing.value.message


MID_STREAM_FAULTS = {
    # The faulty mock's standing fault: an error event after 5 events, then a clean end.
    "error-event": {},
    # The connection cut after 5 events, without a terminating event.
    "disconnect": {"stream_error_rate": 0, "disconnect_rate": 1},
}


@pytest.mark.parametrize("fault", list(MID_STREAM_FAULTS))
@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_raises_on_a_mid_stream_upstream_failure(
    protocols: ProtocolStack, oai: openai.OpenAI, model: str, fault: str
) -> None:
    """The upstream stream fails after its first few tokens: the SDK raises instead of
    finishing normally, having yielded the content that came before."""
    received: list[Any] = []
    with protocols.faults(**MID_STREAM_FAULTS[fault]):
        stream = oai.chat.completions.create(
            model=protocols.faulty_model(model),
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
        with pytest.raises(openai.APIError) as raised:
            for chunk in stream:
                received.append(chunk)
    assert not isinstance(raised.value, openai.APIStatusError)  # the stream itself was a 200
    if fault == "disconnect":
        assert "broke off the stream" in raised.value.message
    else:
        assert raised.value.message  # the upstream's own words
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text and FULL_ANSWER.startswith(text) and text != FULL_ANSWER
    assert not any(c.choices[0].finish_reason for c in received if c.choices)


OPENAI_STATUS_ERRORS = [
    (500, openai.InternalServerError, "server_error"),
    (529, openai.InternalServerError, "server_error"),
    (429, openai.RateLimitError, "requests"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    OPENAI_STATUS_ERRORS,
    ids=[str(case[0]) for case in OPENAI_STATUS_ERRORS],
)
@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_upstream_error_status(
    protocols: ProtocolStack,
    oai: openai.OpenAI,
    model: str,
    status: int,
    error_class: type[openai.APIStatusError],
    error_type: str,
    stream: bool,
) -> None:
    """An upstream error status reaches the caller with its status, in OpenAI's format."""
    with protocols.faults(error_rate=1, error_status=status):
        with pytest.raises(error_class) as raised:
            oai.chat.completions.create(
                model=protocols.faulty_model(model),
                messages=[{"role": "user", "content": "hi"}],
                stream=stream,
            )
    assert raised.value.status_code == status
    assert "aigw mock upstream" in raised.value.message  # the upstream's own words
    body = raised.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    assert body["type"] == error_type
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "1"


# -- anthropic SDK ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_message_with_system_prompt(
    protocols: ProtocolStack, ant: anthropic.Anthropic, model: str
) -> None:
    system: Any = [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Be kind."}]
    message = ant.messages.create(
        model=model,
        max_tokens=100,
        system=system,
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text" and message.content[0].text == FULL_ANSWER
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == DEFAULT_ANSWER_TOKENS

    body = _upstream_body(protocols, model)
    if model == CLAUDE:
        assert body["system"] == system
    else:
        assert body["messages"][0] == {"role": "system", "content": "You are terse.\n\nBe kind."}
        assert body["max_tokens"] == 100


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_stream_helper(ant: anthropic.Anthropic, model: str) -> None:
    with ant.messages.stream(
        model=model, max_tokens=5, messages=[{"role": "user", "content": "Say hello"}]
    ) as stream:
        texts = list(stream.text_stream)
        message = stream.get_final_message()
    assert "".join(texts) == "This is a mock response"
    assert len(texts) == 5
    assert message.content[0].type == "text"
    assert message.content[0].text == "This is a mock response"
    assert message.stop_reason == "max_tokens"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 5


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_raw_stream_event_order(ant: anthropic.Anthropic, model: str) -> None:
    events = list(
        ant.messages.create(
            model=model, max_tokens=3, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 1
    assert kinds.count("content_block_delta") == 3


@pytest.mark.parametrize("stream_first_leg", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_tool_use_round_trip(
    protocols: ProtocolStack, ant: anthropic.Anthropic, model: str, stream_first_leg: bool
) -> None:
    messages: list[Any] = [{"role": "user", "content": TOOL_TRIGGER}]
    if stream_first_leg:
        with ant.messages.stream(
            model=model, max_tokens=200, messages=messages, tools=ANTHROPIC_TOOLS
        ) as stream:
            first = stream.get_final_message()
    else:
        first = ant.messages.create(
            model=model, max_tokens=200, messages=messages, tools=ANTHROPIC_TOOLS
        )
    assert first.stop_reason == "tool_use"
    [tool_use] = [block for block in first.content if block.type == "tool_use"]
    assert tool_use.name == "get_weather" and tool_use.input == {} and tool_use.id

    messages += [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": tool_use.id, "content": TOOL_RESULT}
            ],
        },
    ]
    final = ant.messages.create(
        model=model, max_tokens=200, messages=messages, tools=ANTHROPIC_TOOLS
    )
    assert final.stop_reason == "end_turn"
    assert [block.type for block in final.content] == ["text"]
    assert final.content[0].type == "text" and final.content[0].text == FULL_ANSWER

    body = _upstream_body(protocols, model)
    if model == CLAUDE:
        assert body["messages"][1] == {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": tool_use.id, "name": "get_weather", "input": {}}
            ],
        }
        assert body["messages"][2] == messages[2]
    else:
        assert body["messages"][1:] == [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": tool_use.id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": tool_use.id, "content": TOOL_RESULT},
        ]
        assert body["tools"][0]["function"]["parameters"] == ANTHROPIC_TOOLS[0]["input_schema"]


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_images_as_base64_and_url_sources(
    protocols: ProtocolStack, ant: anthropic.Anthropic, model: str
) -> None:
    content: Any = [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64},
        },
        {"type": "image", "source": {"type": "url", "url": IMAGE_URL}},
        {"type": "text", "text": "Compare these two images."},
    ]
    message = ant.messages.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    assert message.content[0].type == "text" and message.content[0].text == FULL_ANSWER
    assert message.usage.input_tokens > 2 * MOCK_ATTACHMENT_TOKENS

    [received] = _upstream_body(protocols, model)["messages"]
    if model == CLAUDE:
        assert received["content"] == content
    else:
        assert received["content"] == [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_BASE64}"}},
            {"type": "image_url", "image_url": {"url": IMAGE_URL}},
            {"type": "text", "text": "Compare these two images."},
        ]


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_stop_sequences(
    protocols: ProtocolStack, ant: anthropic.Anthropic, model: str
) -> None:
    message = ant.messages.create(
        model=model,
        max_tokens=100,
        messages=[{"role": "user", "content": "hi"}],
        stop_sequences=["mock", "never-generated"],
    )
    assert message.content[0].type == "text" and message.content[0].text == "This is a "
    if model == CLAUDE:
        assert message.stop_reason == "stop_sequence"
        assert message.stop_sequence == "mock"
    else:
        # OpenAI's finish_reason "stop" does not say whether a stop sequence fired, so the
        # translation reports end_turn (documented in aigw.gateway.translate.anthropic_to_openai).
        assert message.stop_reason == "end_turn"
        assert message.stop_sequence is None
        assert _upstream_body(protocols, model)["stop"] == ["mock", "never-generated"]


INVALID_ANTHROPIC_REQUESTS = [
    # (id, model, request fields, fragment of the error message)
    (
        "system-role-claude",
        CLAUDE,
        {"messages": [{"role": "system", "content": "x"}]},
        "must be 'user' or 'assistant'",
    ),
    (
        "system-role-gpt",
        GPT,
        {"messages": [{"role": "system", "content": "x"}]},
        "must be 'user' or 'assistant'",
    ),
    (
        # refused by the Claude upstream, passed on as it is
        "temperature-claude",
        CLAUDE,
        {"extra_body": {"temperature": 1.5}},  # this SDK version has no such parameter
        "temperature: range: 0..1",
    ),
    (
        # refused by the translation: OpenAI cannot fetch documents by URL
        "document-url-gpt",
        GPT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "url", "url": "https://example.com/a.pdf"},
                        }
                    ],
                }
            ]
        },
        "cannot be sent to this model",
    ),
    (
        # refused by the OpenAI upstream, translated
        "unknown-forced-tool-gpt",
        GPT,
        {"tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "tool", "name": "x"}},
        "function 'x' is not among the 'tools'",
    ),
]


@pytest.mark.parametrize(
    ("model", "fields", "fragment"),
    [case[1:] for case in INVALID_ANTHROPIC_REQUESTS],
    ids=[case[0] for case in INVALID_ANTHROPIC_REQUESTS],
)
def test_anthropic_sdk_invalid_request_is_bad_request_error(
    ant: anthropic.Anthropic, model: str, fields: dict[str, Any], fragment: str
) -> None:
    request: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(anthropic.BadRequestError) as raised:
        ant.messages.create(model=model, max_tokens=10, **request)
    assert raised.value.status_code == 400
    assert fragment in raised.value.message
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": _message(raised.value.body)},
    }


def _message(body: object) -> str:
    assert isinstance(body, dict) and isinstance(body.get("error"), dict)
    message = body["error"].get("message")
    assert isinstance(message, str) and message
    return message


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_bad_key_and_unknown_model(protocols: ProtocolStack, model: str) -> None:
    user: Any = [{"role": "user", "content": "hi"}]
    with protocols.anthropic(key="sk-not-a-key") as client:
        with pytest.raises(anthropic.AuthenticationError) as raised:
            client.messages.create(model=model, max_tokens=10, messages=user)
        assert raised.value.body == {
            "type": "error",
            "error": {"type": "authentication_error", "message": _message(raised.value.body)},
        }
        assert "API key" in _message(raised.value.body)
    with protocols.anthropic() as client:
        with pytest.raises(anthropic.NotFoundError) as missing:
            client.messages.create(model=f"{model}-nonexistent", max_tokens=10, messages=user)
        assert missing.value.body == {
            "type": "error",
            "error": {"type": "not_found_error", "message": _message(missing.value.body)},
        }
        assert f"{model}-nonexistent" in _message(missing.value.body)


MID_STREAM_ERROR_TYPES = {
    ("error-event", GPT): "api_error",
    ("error-event", CLAUDE): "overloaded_error",  # the Claude upstream's own error event
    ("disconnect", GPT): "api_error",
    ("disconnect", CLAUDE): "api_error",
}


@pytest.mark.parametrize("fault", list(MID_STREAM_FAULTS))
@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_raises_on_a_mid_stream_upstream_failure(
    protocols: ProtocolStack, ant: anthropic.Anthropic, model: str, fault: str
) -> None:
    """The upstream stream fails after its first few tokens: the SDK's stream helper raises,
    in Anthropic's terms, rather than finishing the message."""
    texts: list[str] = []
    with protocols.faults(**MID_STREAM_FAULTS[fault]):
        with ant.messages.stream(
            model=protocols.faulty_model(model),
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
        ) as stream:
            with pytest.raises(anthropic.APIStatusError) as raised:
                for text in stream.text_stream:
                    texts.append(text)
    body = raised.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == MID_STREAM_ERROR_TYPES[fault, model]
    assert _message(body)
    received = "".join(texts)
    assert received and FULL_ANSWER.startswith(received) and received != FULL_ANSWER


ANTHROPIC_STATUS_ERRORS = [
    (500, anthropic.InternalServerError, "api_error"),
    (529, anthropic.OverloadedError, "overloaded_error"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    ANTHROPIC_STATUS_ERRORS,
    ids=[str(case[0]) for case in ANTHROPIC_STATUS_ERRORS],
)
@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_upstream_error_status(
    protocols: ProtocolStack,
    ant: anthropic.Anthropic,
    model: str,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
    stream: bool,
) -> None:
    """An upstream error status reaches the caller with its status, in Anthropic's format."""
    with protocols.faults(error_rate=1, error_status=status):
        with pytest.raises(error_class) as raised:
            ant.messages.create(
                model=protocols.faulty_model(model),
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
                stream=stream,
            )
    assert raised.value.status_code == status
    assert raised.value.body == {
        "type": "error",
        "error": {"type": error_type, "message": _message(raised.value.body)},
    }
    assert "aigw mock upstream" in _message(raised.value.body)  # the upstream's own words
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "1"
