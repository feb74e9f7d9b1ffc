"""The Anthropic side of the mock, driven by the official SDK and checked on the wire."""

from __future__ import annotations

import json

import anthropic
import pytest

from aigw.mock.answer import SENTENCE
from tests.mock.harness import MockServer

WORDS = SENTENCE.split()
# "hello mock" (2 words) + a 1-word system prompt, 3 tokens of overhead each: 9 input tokens.
MESSAGES = [{"role": "user", "content": "hello mock"}]
SYSTEM = "terse"
TOOLS = [
    {"name": "get_weather", "input_schema": {"type": "object"}},
    {"name": "other", "input_schema": {"type": "object"}},
]


def expected_text(tokens: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(tokens))


async def test_message(mock: MockServer, anthropic_client: anthropic.AsyncAnthropic) -> None:
    message = await anthropic_client.messages.create(
        model="claude-test", max_tokens=100, system=SYSTEM, messages=MESSAGES
    )

    assert message.id.startswith("msg_")
    assert (message.type, message.role, message.model) == ("message", "assistant", "claude-test")
    [block] = message.content
    assert block.type == "text"
    assert block.text == expected_text(16)
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 16)

    [logged] = await mock.requests()
    assert logged["path"] == "/v1/messages"
    # This SDK generation sends the API key as a bearer token, not as x-api-key.
    assert logged["headers"]["authorization"] == "Bearer x"
    assert logged["headers"]["anthropic-version"]
    assert logged["body"]["system"] == SYSTEM


async def test_api_key_and_version_headers_are_logged(mock: MockServer) -> None:
    headers = {"X-Api-Key": "sk-ant-test", "Anthropic-Version": "2023-06-01"}
    body = {"model": "m", "max_tokens": 1, "messages": MESSAGES}
    async with mock.http.post(f"{mock.url}/v1/messages", json=body, headers=headers) as response:
        assert response.status == 200

    [logged] = await mock.requests()
    assert logged["headers"]["x-api-key"] == "sk-ant-test"
    assert logged["headers"]["anthropic-version"] == "2023-06-01"


async def test_message_cut_by_max_tokens(anthropic_client: anthropic.AsyncAnthropic) -> None:
    message = await anthropic_client.messages.create(model="m", max_tokens=13, messages=MESSAGES)

    assert message.content[0].type == "text"
    assert message.content[0].text == expected_text(13)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 13


async def test_stream_helper(anthropic_client: anthropic.AsyncAnthropic) -> None:
    async with anthropic_client.messages.stream(
        model="m", max_tokens=5, system=SYSTEM, messages=MESSAGES
    ) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()

    assert texts == ["This", " is", " a", " mock", " response"]
    assert final.content[0].type == "text"
    assert final.content[0].text == expected_text(5)
    assert final.stop_reason == "max_tokens"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 5)


async def test_stream_wire_format(mock: MockServer) -> None:
    body = {"model": "m", "max_tokens": 2, "messages": MESSAGES, "stream": True}
    async with mock.http.post(f"{mock.url}/v1/messages", json=body) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = await response.text()

    events = []
    for block in raw.split("\n\n")[:-1]:
        event_line, data_line = block.split("\n")
        name = event_line.removeprefix("event: ")
        payload = json.loads(data_line.removeprefix("data: "))
        assert payload["type"] == name
        events.append(payload)
    assert [event["type"] for event in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["content"] == []
    assert events[1]["content_block"] == {"type": "text", "text": ""}
    assert events[3]["delta"] == {"type": "text_delta", "text": "This"}
    assert events[6]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert events[6]["usage"] == {"output_tokens": 2}


async def test_tool_use(anthropic_client: anthropic.AsyncAnthropic) -> None:
    message = await anthropic_client.messages.create(
        model="m",
        max_tokens=100,
        tools=TOOLS,
        messages=[{"role": "user", "content": "What's the weather? Use a tool."}],
    )

    [block] = message.content
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert (block.name, block.input) == ("get_weather", {})
    assert message.stop_reason == "tool_use"


async def test_tool_use_stream(anthropic_client: anthropic.AsyncAnthropic) -> None:
    async with anthropic_client.messages.stream(
        model="m",
        max_tokens=100,
        tools=TOOLS,
        messages=[{"role": "user", "content": [{"type": "text", "text": "use a tool"}]}],
    ) as stream:
        json_deltas = [
            event.delta.partial_json
            async for event in stream
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta"
        ]
        final = await stream.get_final_message()

    assert json_deltas == ["{}"]
    [block] = final.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", {})
    assert final.stop_reason == "tool_use"


async def test_text_after_tool_result(anthropic_client: anthropic.AsyncAnthropic) -> None:
    message = await anthropic_client.messages.create(
        model="m",
        max_tokens=100,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "use a tool"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "x", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
            },
        ],
    )

    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"


async def test_count_tokens_matches_usage(anthropic_client: anthropic.AsyncAnthropic) -> None:
    conversation = [
        {"role": "user", "content": "one two three"},
        {"role": "assistant", "content": [{"type": "text", "text": "four five"}]},
        {"role": "user", "content": "six"},
    ]
    counted = await anthropic_client.messages.count_tokens(
        model="m", system=SYSTEM, messages=conversation
    )
    message = await anthropic_client.messages.create(
        model="m", max_tokens=1, system=SYSTEM, messages=conversation
    )

    assert counted.input_tokens == 7 + 4 * 3  # 7 words, 4 messages counting the system prompt
    assert message.usage.input_tokens == counted.input_tokens


async def test_models_in_anthropic_format(anthropic_client: anthropic.AsyncAnthropic) -> None:
    listed = [model async for model in anthropic_client.models.list()]
    model = await anthropic_client.models.retrieve("claude-anything")

    assert listed and all(entry.type == "model" for entry in listed)
    assert model.id == "claude-anything"


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ({"model": "m", "messages": MESSAGES}, "max_tokens"),
        ({"model": "m", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 5, "messages": MESSAGES}, "model"),
        ({"model": "m", "max_tokens": 5}, "messages"),
    ],
)
async def test_invalid_requests_get_anthropic_errors(
    mock: MockServer, body: dict[str, object], message_part: str
) -> None:
    async with mock.http.post(f"{mock.url}/v1/messages", json=body) as response:
        assert response.status == 400
        payload = await response.json()

    assert payload["type"] == "error"
    assert payload["error"]["type"] == "invalid_request_error"
    assert message_part in payload["error"]["message"]


async def test_unknown_endpoint_in_anthropic_format(mock: MockServer) -> None:
    async with mock.http.get(
        f"{mock.url}/v1/files", headers={"anthropic-version": "2023-06-01"}
    ) as response:
        assert response.status == 404
        payload = await response.json()

    assert payload["type"] == "error"
    assert payload["error"]["type"] == "not_found_error"


async def test_sdk_sees_bad_request(anthropic_client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_client.messages.create(model="m", max_tokens=10, messages=[])

    assert caught.value.status_code == 400
    assert caught.value.body["error"]["type"] == "invalid_request_error"


async def raw_events(mock: MockServer, body: dict[str, object]) -> list[dict]:
    """The payloads of a raw Messages stream, each checked to be named after its type."""
    async with mock.http.post(f"{mock.url}/v1/messages", json=body | {"stream": True}) as response:
        assert response.status == 200
        raw = await response.text()
    events = []
    for block in raw.split("\n\n")[:-1]:
        event_line, data_line = block.split("\n")
        payload = json.loads(data_line.removeprefix("data: "))
        assert event_line == "event: " + payload["type"]
        events.append(payload)
    return events


async def test_usage_reports_cache_counters(anthropic_client: anthropic.AsyncAnthropic) -> None:
    message = await anthropic_client.messages.create(model="m", max_tokens=5, messages=MESSAGES)

    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.cache_read_input_tokens == 0


async def test_stop_sequence_ends_the_answer(anthropic_client: anthropic.AsyncAnthropic) -> None:
    message = await anthropic_client.messages.create(
        model="m", max_tokens=100, messages=MESSAGES, stop_sequences=["upstream", "mock"]
    )

    assert message.content[0].type == "text"
    assert message.content[0].text == "This is a "
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "mock")
    assert message.usage.output_tokens == 4  # "This", " is", " a", " mock"


async def test_stop_sequence_stream(mock: MockServer) -> None:
    body = {"model": "m", "max_tokens": 100, "messages": MESSAGES, "stop_sequences": ["a mock"]}
    events = await raw_events(mock, body)

    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert "".join(e["delta"]["text"] for e in events[3:6]) == "This is "
    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "a mock"}
    assert events[-2]["usage"] == {"output_tokens": 4}


async def test_stop_sequence_beyond_max_tokens_does_not_fire(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    message = await anthropic_client.messages.create(
        model="m", max_tokens=3, messages=MESSAGES, stop_sequences=["mock"]
    )

    assert (message.stop_reason, message.stop_sequence) == ("max_tokens", None)


async def test_stop_sequence_at_the_start_leaves_no_content(mock: MockServer) -> None:
    body = {"model": "m", "max_tokens": 100, "messages": MESSAGES, "stop_sequences": ["This"]}
    async with mock.http.post(f"{mock.url}/v1/messages", json=body) as response:
        message = await response.json()
    events = await raw_events(mock, body)

    assert (message["content"], message["stop_reason"]) == ([], "stop_sequence")
    assert [e["type"] for e in events] == ["message_start", "ping", "message_delta", "message_stop"]


@pytest.mark.parametrize(
    ("tool_choice", "content", "tool"),
    [
        ({"type": "any"}, "hello", "get_weather"),
        ({"type": "tool", "name": "other"}, "hello", "other"),
        ({"type": "none"}, "use a tool", None),
        ({"type": "auto"}, "use a tool", "get_weather"),
        ({"type": "auto", "disable_parallel_tool_use": True}, "hello", None),
    ],
)
async def test_tool_choice(
    anthropic_client: anthropic.AsyncAnthropic,
    tool_choice: dict[str, object],
    content: str,
    tool: str | None,
) -> None:
    message = await anthropic_client.messages.create(
        model="m",
        max_tokens=100,
        tools=TOOLS,
        tool_choice=tool_choice,
        messages=[{"role": "user", "content": content}],
    )

    [block] = message.content
    assert (block.name if block.type == "tool_use" else None) == tool
    assert message.stop_reason == ("tool_use" if tool else "end_turn")


async def test_tool_use_stream_wire_format(mock: MockServer) -> None:
    body = {
        "model": "m",
        "max_tokens": 100,
        "tools": TOOLS,
        "messages": [{"role": "user", "content": "use a tool"}],
    }
    events = await raw_events(mock, body)

    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    block = events[1]["content_block"]
    assert (block["type"], block["name"], block["input"]) == ("tool_use", "get_weather", {})
    assert events[3]["delta"] == {"type": "input_json_delta", "partial_json": "{}"}
    assert events[5]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


async def test_images_and_documents_are_accepted_and_counted(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    content = [
        {"type": "text", "text": "compare these"},
        {"type": "image", "source": PNG},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "four words of text"},
        },
    ]
    message = await anthropic_client.messages.create(
        model="m", max_tokens=5, messages=[{"role": "user", "content": content}]
    )

    # 3 overhead + 2 words + 3 attachments of 85 + 4 words of the text document
    assert message.usage.input_tokens == 3 + 2 + 3 * 85 + 4


@pytest.mark.parametrize(
    ("fields", "message_part"),
    [
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": ""}]}, "non-empty content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            "text content blocks must be non-empty",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": PNG | {"media_type": "image/bmp"}}],
                    }
                ]
            },
            "messages.0.content.0.image.source.base64.media_type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {}}],
                    }
                ]
            },
            "messages.0.content.0.type",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]}
                ]
            },
            "unexpected `tool_use_id` found in `tool_result` blocks: toolu_9",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "use a tool"},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "tool_use", "id": "toolu_1", "name": "x", "input": {}}
                        ],
                    },
                    {"role": "user", "content": "never mind"},
                ]
            },
            "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
        ),
        ({"messages": MESSAGES, "stop_sequences": ["\n"]}, "must contain non-whitespace"),
        ({"messages": MESSAGES, "temperature": 1.5}, "temperature: range: 0..1"),
        ({"messages": MESSAGES, "tool_choice": {"type": "any"}}, "while providing tools"),
        (
            {"messages": MESSAGES, "tools": TOOLS, "tool_choice": {"type": "tool", "name": "nope"}},
            "Tool 'nope' not found",
        ),
        ({"messages": MESSAGES, "system": [{"type": "image"}]}, "system.0.type"),
    ],
)
async def test_requests_the_real_api_refuses(
    mock: MockServer, fields: dict[str, object], message_part: str
) -> None:
    body = {"model": "m", "max_tokens": 5, **fields}
    async with mock.http.post(f"{mock.url}/v1/messages", json=body) as response:
        assert response.status == 400
        payload = await response.json()

    assert payload["type"] == "error"
    assert payload["error"]["type"] == "invalid_request_error"
    assert message_part in payload["error"]["message"]


async def test_final_assistant_prefill_may_be_empty(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    message = await anthropic_client.messages.create(
        model="m",
        max_tokens=5,
        messages=[*MESSAGES, {"role": "assistant", "content": ""}],
    )

    assert message.stop_reason == "max_tokens"
