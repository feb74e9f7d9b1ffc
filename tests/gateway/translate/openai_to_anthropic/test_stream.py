"""OpenAI-format callers in front of Claude: event streams turned into chunk streams."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aigw.gateway.routing.usage import Usage
from aigw.gateway.translate.openai_to_anthropic import MessagesStreamToChat
from tests.gateway.translate.openai_to_anthropic.test_response import MESSAGE


def sse(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: ".encode() + orjson.dumps(payload) + b"\n\n"


def message_start(usage: dict[str, Any] | None = None) -> bytes:
    shell = MESSAGE | {
        "content": [],
        "stop_reason": None,
        "usage": usage or {"input_tokens": 10, "cache_read_input_tokens": 20, "output_tokens": 1},
    }
    return sse("message_start", {"type": "message_start", "message": shell})


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return sse(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return sse(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def block_stop(index: int) -> bytes:
    return sse("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str, output_tokens: int) -> bytes:
    return sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
    )


PING = sse("ping", {"type": "ping"})
MESSAGE_STOP = sse("message_stop", {"type": "message_stop"})

TEXT_STREAM = b"".join(
    [
        message_start(),
        block_start(0, {"type": "thinking", "thinking": ""}),
        block_delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
        block_delta(0, {"type": "signature_delta", "signature": "sig"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        PING,
        block_delta(1, {"type": "text_delta", "text": "Héllo"}),
        block_delta(1, {"type": "text_delta", "text": " wörld"}),
        block_stop(1),
        message_delta("end_turn", 7),
        MESSAGE_STOP,
    ]
)

TOOL_STREAM = b"".join(
    [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Calling."}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_a", "name": "get", "input": {}}),
        block_delta(1, {"type": "input_json_delta", "partial_json": ""}),
        block_delta(1, {"type": "input_json_delta", "partial_json": '{"a":'}),
        block_delta(1, {"type": "input_json_delta", "partial_json": "1}"}),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_b", "name": "put", "input": {}}),
        block_delta(2, {"type": "input_json_delta", "partial_json": "{}"}),
        block_stop(2),
        message_delta("tool_use", 30),
        MESSAGE_STOP,
    ]
)


def run(stream: bytes, *, include_usage: bool = True, piece: int = 0) -> tuple[bytes, Usage]:
    """The translated stream, fed whole (piece=0) or in pieces of ``piece`` bytes."""
    translator = MessagesStreamToChat(model="public", include_usage=include_usage)
    if piece == 0:
        out = translator.feed(stream)
    else:
        out = b"".join(translator.feed(stream[i : i + piece]) for i in range(0, len(stream), piece))
    return out + translator.finish(), translator.usage


def chunks(out: bytes) -> list[Any]:
    events = out.split(b"\n\n")
    assert events[-1] == b""
    return [
        event.removeprefix(b"data: ").decode()
        if event == b"data: [DONE]"
        else orjson.loads(event.removeprefix(b"data: "))
        for event in events[:-1]
    ]


def test_text_stream() -> None:
    out, usage = run(TEXT_STREAM)

    *payloads, done = chunks(out)
    assert done == "[DONE]"
    assert {p["id"] for p in payloads} == {"chatcmpl-msg_01"}
    assert {p["object"] for p in payloads} == {"chat.completion.chunk"}
    assert {p["model"] for p in payloads} == {"public"}
    assert len({p["created"] for p in payloads}) == 1
    assert [p["choices"][0]["delta"] for p in payloads[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "Héllo"},
        {"content": " wörld"},
        {},
    ]
    assert [p["choices"][0]["finish_reason"] for p in payloads[:-1]] == [None, None, None, "stop"]
    assert all(p["usage"] is None for p in payloads[:-1])
    assert payloads[-1]["choices"] == []
    assert payloads[-1]["usage"] == {
        "prompt_tokens": 30,
        "completion_tokens": 7,
        "total_tokens": 37,
        "prompt_tokens_details": {"cached_tokens": 20},
    }
    assert usage == Usage(prompt_tokens=30, completion_tokens=7, cached_tokens=20)


def test_stream_without_usage_chunk() -> None:
    out, usage = run(TEXT_STREAM, include_usage=False)

    *payloads, done = chunks(out)
    assert done == "[DONE]"
    assert all("usage" not in p and len(p["choices"]) == 1 for p in payloads)
    assert usage == Usage(30, 7, 20)


@pytest.mark.parametrize("stream", [TEXT_STREAM, TOOL_STREAM], ids=["text", "tools"])
def test_stream_split_at_every_byte_gives_the_same_output(stream: bytes) -> None:
    whole, usage = run(stream)
    for piece in (1, 2, 5, 64):
        assert run(stream, piece=piece) == (whole, usage)


def test_output_is_emitted_as_soon_as_each_event_completes() -> None:
    translator = MessagesStreamToChat(model="public", include_usage=False)
    start = message_start()

    assert translator.feed(start[:-1]) == b""
    assert b'"role":"assistant"' in translator.feed(start[-1:])
    assert translator.feed(block_start(0, {"type": "text", "text": ""})) == b""
    assert b'"content":"x"' in translator.feed(block_delta(0, {"type": "text_delta", "text": "x"}))


def test_stream_with_two_tool_calls() -> None:
    out, usage = run(TOOL_STREAM, include_usage=False)

    *payloads, done = chunks(out)
    deltas = [p["choices"][0]["delta"] for p in payloads]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "Calling."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_a",
                    "type": "function",
                    "function": {"name": "get", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "toolu_b",
                    "type": "function",
                    "function": {"name": "put", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert payloads[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert done == "[DONE]"
    assert usage.completion_tokens == 30


def test_mid_stream_error_ends_the_stream() -> None:
    error = sse(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    stream = TEXT_STREAM.split(block_stop(1))[0] + error + block_stop(1) + MESSAGE_STOP

    out, usage = run(stream)

    *payloads, last = chunks(out)
    assert payloads[-1]["choices"][0]["delta"] == {"content": " wörld"}
    assert last == {
        "error": {
            "message": "Overloaded",
            "type": "server_error",
            "param": None,
            "code": "overloaded",
        }
    }
    assert b"[DONE]" not in out
    assert usage == Usage(30, 1, 20)


def test_input_after_an_error_is_ignored() -> None:
    translator = MessagesStreamToChat(model="m", include_usage=False)
    translator.feed(sse("error", {"type": "error", "error": {"type": "api_error", "message": "x"}}))

    assert translator.feed(message_start()) == b""
    assert translator.finish() == b""


@pytest.mark.parametrize(
    "cut", [len(message_start()), len(TEXT_STREAM) - len(MESSAGE_STOP), len(TEXT_STREAM) - 3]
)
def test_truncated_stream_ends_with_an_error_chunk(cut: int) -> None:
    out, _ = run(TEXT_STREAM[:cut])

    last = chunks(out)[-1]
    assert last["error"]["code"] == "upstream_stream_truncated"
    assert b"[DONE]" not in out


def test_garbage_event_is_an_error() -> None:
    out, _ = run(
        message_start() + b"event: content_block_delta\ndata: {not json\n\n" + MESSAGE_STOP
    )

    assert chunks(out)[-1]["error"]["code"] == "upstream_invalid_event"


def test_stream_usage_takes_cumulative_counts_from_message_delta() -> None:
    delta = sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
            "usage": {"input_tokens": 12, "cache_creation_input_tokens": 4, "output_tokens": 9},
        },
    )
    stream = message_start({"input_tokens": 10, "output_tokens": 1}) + delta + MESSAGE_STOP

    out, usage = run(stream, include_usage=False)

    assert chunks(out)[-2]["choices"][0]["finish_reason"] == "length"
    assert usage == Usage(prompt_tokens=16, completion_tokens=9, cached_tokens=0)
