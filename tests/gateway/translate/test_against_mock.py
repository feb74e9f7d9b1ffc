"""Translated requests are accepted by the mock upstream (which checks them as the real APIs
do), and its answers, streams and errors translate back into what the other SDK expects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from aiohttp import web

from aigw.gateway.translate import (
    ChatStreamToMessages,
    MessagesStreamToChat,
    anthropic_error_to_openai,
    chat_response_to_messages,
    chat_to_messages_request,
    messages_response_to_chat,
    messages_to_chat_request,
    openai_error_to_anthropic,
)
from aigw.mock import MockOptions, create_app
from tests.gateway.translate.test_sdk_parsing import JSON, SSE, anthropic_client, openai_client

PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgo="
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}

OPENAI_CONVERSATION: dict[str, Any] = {
    "model": "public",
    "messages": [
        {"role": "system", "content": "be terse"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "look", "arguments": "{}"},
                },
                {"id": "call_2", "type": "function", "function": {"name": "look", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        {"role": "tool", "tool_call_id": "call_2", "content": "a hat"},
        {"role": "user", "content": "now use a tool again"},
    ],
    "tools": [{"type": "function", "function": {"name": "look"}}],
    "parallel_tool_calls": False,
}

ANTHROPIC_CONVERSATION: dict[str, Any] = {
    "model": "public",
    "max_tokens": 5,
    "system": [{"type": "text", "text": "be terse"}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a cat"},
                {"type": "text", "text": "thanks"},
            ],
        },
    ],
    "tools": [{"name": "look", "input_schema": {"type": "object"}}],
}


@pytest.fixture
async def mock_url() -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(MockOptions()), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        return response.status, await response.read()


def fed_in_pieces(translator: MessagesStreamToChat | ChatStreamToMessages, raw: bytes) -> bytes:
    out = b"".join(translator.feed(raw[i : i + 7]) for i in range(0, len(raw), 7))
    return out + translator.finish()


async def test_openai_caller_of_the_claude_mock_streams_a_tool_call(mock_url: str) -> None:
    request = chat_to_messages_request(
        OPENAI_CONVERSATION | {"stream": True}, upstream_model="claude-mock", default_max_tokens=50
    )
    status, raw = await post(f"{mock_url}/v1/messages", request, ANTHROPIC_HEADERS)
    assert status == 200, raw

    translator = MessagesStreamToChat(model="public", include_usage=True)
    with (
        openai_client(200, fed_in_pieces(translator, raw), SSE) as client,
        client.chat.completions.stream(model="public", messages=[]) as stream,
    ):
        completion = stream.get_final_completion()

    [call] = completion.choices[0].message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("look", "{}")
    assert call.id.startswith("toolu_")
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == translator.usage.prompt_tokens > 85


async def test_openai_caller_of_the_claude_mock_gets_text_and_errors(mock_url: str) -> None:
    body = OPENAI_CONVERSATION | {"messages": OPENAI_CONVERSATION["messages"][:5], "stop": "mock"}
    request = chat_to_messages_request(body, upstream_model="claude-mock", default_max_tokens=50)
    status, raw = await post(f"{mock_url}/v1/messages", request, ANTHROPIC_HEADERS)
    assert status == 200, raw

    completion = messages_response_to_chat(orjson.loads(raw), model="public")
    assert completion["choices"][0]["message"]["content"] == "This is a "
    assert completion["choices"][0]["finish_reason"] == "stop"

    status, raw = await post(
        f"{mock_url}/v1/messages", request, ANTHROPIC_HEADERS | {"x-mock-status": "429"}
    )
    with (
        openai_client(status, anthropic_error_to_openai(raw, status), JSON) as client,
        pytest.raises(openai.RateLimitError),
    ):
        client.chat.completions.create(model="public", messages=[])


async def test_openai_caller_sees_the_claude_mock_mid_stream_error(mock_url: str) -> None:
    request = chat_to_messages_request(
        {"model": "public", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        upstream_model="claude-mock",
        default_max_tokens=50,
    )
    headers = ANTHROPIC_HEADERS | {"x-mock-stream-error-after": "5"}
    status, raw = await post(f"{mock_url}/v1/messages", request, headers)

    translator = MessagesStreamToChat(model="public", include_usage=False)
    with openai_client(status, fed_in_pieces(translator, raw), SSE) as client:
        stream = client.chat.completions.create(model="public", messages=[], stream=True)
        with pytest.raises(openai.APIError, match="Overloaded"):
            list(stream)


async def test_anthropic_caller_of_the_openai_mock_streams_text(mock_url: str) -> None:
    request = messages_to_chat_request(
        ANTHROPIC_CONVERSATION | {"stream": True}, upstream_model="gpt-mock"
    )
    status, raw = await post(f"{mock_url}/v1/chat/completions", request, {})
    assert status == 200, raw

    translator = ChatStreamToMessages(model="public")
    with (
        anthropic_client(200, fed_in_pieces(translator, raw), SSE) as client,
        client.messages.stream(model="public", max_tokens=5, messages=[]) as stream,
    ):
        message = stream.get_final_message()

    assert message.content[0].type == "text"
    assert message.content[0].text == "This is a mock response"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    assert message.usage.input_tokens == translator.usage.prompt_tokens > 85


async def test_anthropic_caller_of_the_openai_mock_gets_a_tool_call_and_errors(
    mock_url: str,
) -> None:
    body = ANTHROPIC_CONVERSATION | {
        "messages": [{"role": "user", "content": "use a tool"}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }
    request = messages_to_chat_request(body, upstream_model="gpt-mock")
    status, raw = await post(f"{mock_url}/v1/chat/completions", request, {})
    assert status == 200, raw

    message = chat_response_to_messages(orjson.loads(raw), model="public")
    [block] = message["content"]
    assert (block["type"], block["name"], block["input"]) == ("tool_use", "look", {})
    assert message["stop_reason"] == "tool_use"

    status, raw = await post(f"{mock_url}/v1/chat/completions", request, {"x-mock-status": "503"})
    with (
        anthropic_client(status, openai_error_to_anthropic(raw, status), JSON) as client,
        pytest.raises(anthropic.InternalServerError) as caught,
    ):
        client.messages.create(model="public", max_tokens=5, messages=[])
    assert caught.value.body["error"]["type"] == "overloaded_error"
