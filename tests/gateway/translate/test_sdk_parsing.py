"""The official SDKs read what the translators produce: streams, answers and errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest

from aigw.gateway.translate.anthropic_to_openai import (
    ChatStreamToMessages,
    chat_response_to_messages,
    openai_error_to_anthropic,
)
from aigw.gateway.translate.openai_to_anthropic import (
    MessagesStreamToChat,
    anthropic_error_to_openai,
    messages_response_to_chat,
)
from tests.gateway.translate.anthropic_to_openai import test_stream as from_openai
from tests.gateway.translate.anthropic_to_openai.test_response import COMPLETION
from tests.gateway.translate.openai_to_anthropic import test_stream as from_anthropic
from tests.gateway.translate.openai_to_anthropic.test_response import MESSAGE

SSE = {"content-type": "text/event-stream"}
JSON = {"content-type": "application/json"}


def serve(status: int, body: bytes, headers: dict[str, str]) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, content=body, headers=headers)

    return httpx2.Client(transport=httpx2.MockTransport(handler))


@contextmanager
def openai_client(status: int, body: bytes, headers: dict[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url="http://gw/v1",
        api_key="x",
        max_retries=0,
        http_client=serve(status, body, headers),
    ) as client:
        yield client


@contextmanager
def anthropic_client(
    status: int, body: bytes, headers: dict[str, str]
) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url="http://gw", api_key="x", max_retries=0, http_client=serve(status, body, headers)
    ) as client:
        yield client


def to_chat(stream: bytes) -> bytes:
    translator = MessagesStreamToChat(model="public", include_usage=True)
    return translator.feed(stream) + translator.finish()


def to_messages(stream: bytes) -> bytes:
    translator = ChatStreamToMessages(model="public")
    return translator.feed(stream) + translator.finish()


CHAT: dict[str, Any] = {"model": "public", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES: dict[str, Any] = CHAT | {"max_tokens": 10}


def test_openai_sdk_accumulates_a_translated_tool_stream() -> None:
    with (
        openai_client(200, to_chat(from_anthropic.TOOL_STREAM), SSE) as client,
        client.chat.completions.stream(**CHAT) as stream,
    ):
        for _ in stream:
            pass
        completion = stream.get_final_completion()

    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Calling."
    calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    assert calls == [("toolu_a", "get", '{"a":1}'), ("toolu_b", "put", "{}")]
    assert completion.usage is not None and completion.usage.prompt_tokens == 30


def test_openai_sdk_raises_on_a_translated_mid_stream_error() -> None:
    error = from_anthropic.sse(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    upstream = from_anthropic.message_start() + error

    with openai_client(200, to_chat(upstream), SSE) as client:
        stream = client.chat.completions.create(**CHAT, stream=True)
        with pytest.raises(openai.APIError, match="Overloaded"):
            list(stream)


def test_openai_sdk_parses_a_translated_answer_and_error() -> None:
    answer = orjson.dumps(messages_response_to_chat(MESSAGE, model="public"))
    with openai_client(200, answer, JSON) as client:
        completion = client.chat.completions.create(**CHAT)
    assert completion.choices[0].message.content == "Hello there"

    error = anthropic_error_to_openai(
        b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}', 429
    )
    with openai_client(429, error, JSON) as client, pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**CHAT)
    assert caught.value.code == "rate_limit_exceeded"


def test_anthropic_sdk_accumulates_a_translated_tool_stream() -> None:
    with (
        anthropic_client(200, to_messages(from_openai.TOOL_STREAM), SSE) as client,
        client.messages.stream(**MESSAGES) as stream,
    ):
        message = stream.get_final_message()

    assert message.stop_reason == "tool_use"
    text, first, second = message.content
    assert text.type == "text" and text.text == "Calling."
    assert first.type == "tool_use" and (first.id, first.name, first.input) == (
        "call_a",
        "get",
        {"a": 1},
    )
    assert second.type == "tool_use" and second.input == {}
    assert (message.usage.input_tokens, message.usage.output_tokens) == (10, 7)
    assert message.usage.cache_read_input_tokens == 20


def test_anthropic_sdk_raises_on_a_translated_mid_stream_error() -> None:
    error = b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n'
    upstream = from_openai.chunk({"role": "assistant", "content": "x"}) + error

    with (
        anthropic_client(200, to_messages(upstream), SSE) as client,
        pytest.raises(anthropic.APIStatusError, match="boom"),
        client.messages.stream(**MESSAGES) as stream,
    ):
        stream.get_final_message()


def test_anthropic_sdk_parses_a_translated_answer_and_error() -> None:
    answer = orjson.dumps(chat_response_to_messages(COMPLETION, model="public"))
    with anthropic_client(200, answer, JSON) as client:
        message = client.messages.create(**MESSAGES)
    assert message.content[0].type == "text" and message.content[0].text == "Hello"

    error = openai_error_to_anthropic(b'{"error":{"message":"no such model"}}', 404)
    with (
        anthropic_client(404, error, JSON) as client,
        pytest.raises(anthropic.NotFoundError, match="no such model"),
    ):
        client.messages.create(**MESSAGES)
