"""Anthropic-format callers in front of OpenAI: chunk streams turned into event streams."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aigw.gateway.routing.usage import Usage
from aigw.gateway.translate.anthropic_to_openai import (
    ChatStreamToMessages,
)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    payload: dict[str, Any] = {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }
    return b"data: " + orjson.dumps(payload | extra) + b"\n\n"


USAGE_CHUNK = (
    b"data: "
    + orjson.dumps(
        {
            "id": "chatcmpl-abc",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {
                "prompt_tokens": 30,
                "completion_tokens": 7,
                "total_tokens": 37,
                "prompt_tokens_details": {"cached_tokens": 20},
            },
        }
    )
    + b"\n\n"
)
DONE = b"data: [DONE]\n\n"

TEXT_STREAM = b"".join(
    [
        chunk({"role": "assistant", "content": "", "refusal": None}),
        b": keep-alive\n\n",
        chunk({"content": "Héllo"}),
        chunk({"content": " wörld"}),
        chunk({}, "stop"),
        USAGE_CHUNK,
        DONE,
    ]
)


def call_delta(
    index: int, *, id: str | None = None, name: str | None = None, args: str = ""
) -> dict:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if id is not None:
        call |= {"id": id, "type": "function"}
        call["function"]["name"] = name
    return {"tool_calls": [call]}


TOOL_STREAM = b"".join(
    [
        chunk({"role": "assistant", "content": None}),
        chunk({"content": "Calling."}),
        chunk(call_delta(0, id="call_a", name="get")),
        chunk(call_delta(0, args='{"a":')),
        chunk(call_delta(0, args="1}")),
        chunk(call_delta(1, id="call_b", name="put", args="{}")),
        chunk({}, "tool_calls"),
        USAGE_CHUNK,
        DONE,
    ]
)


def run(stream: bytes, *, piece: int = 0) -> tuple[bytes, Usage]:
    translator = ChatStreamToMessages(model="public")
    if piece == 0:
        out = translator.feed(stream)
    else:
        out = b"".join(translator.feed(stream[i : i + piece]) for i in range(0, len(stream), piece))
    return out + translator.finish(), translator.usage


def events(out: bytes) -> list[dict[str, Any]]:
    parsed = []
    for block in out.split(b"\n\n")[:-1]:
        name, data = block.split(b"\n")
        payload = orjson.loads(data.removeprefix(b"data: "))
        assert name == b"event: " + payload["type"].encode()
        parsed.append(payload)
    return parsed


def test_text_stream() -> None:
    out, usage = run(TEXT_STREAM)

    parsed = events(out)
    assert [e["type"] for e in parsed] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = parsed[0]["message"]
    assert (start["id"], start["model"], start["content"]) == ("msg_abc", "public", [])
    assert parsed[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert [e["delta"] for e in parsed[2:4]] == [
        {"type": "text_delta", "text": "Héllo"},
        {"type": "text_delta", "text": " wörld"},
    ]
    assert parsed[4] == {"type": "content_block_stop", "index": 0}
    assert parsed[5] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 20,
            "output_tokens": 7,
        },
    }
    assert usage == Usage(30, 7, 20)


@pytest.mark.parametrize("stream", [TEXT_STREAM, TOOL_STREAM], ids=["text", "tools"])
def test_stream_split_at_every_byte_gives_the_same_output(stream: bytes) -> None:
    whole, usage = run(stream)
    for piece in (1, 2, 5, 64):
        assert run(stream, piece=piece) == (whole, usage)


def test_stream_with_two_tool_calls() -> None:
    out, _ = run(TOOL_STREAM)

    parsed = events(out)
    summary = [
        (e["type"], e.get("index"), e.get("content_block") or e.get("delta")) for e in parsed[1:-1]
    ]
    assert summary == [
        ("content_block_start", 0, {"type": "text", "text": ""}),
        ("content_block_delta", 0, {"type": "text_delta", "text": "Calling."}),
        ("content_block_stop", 0, None),
        (
            "content_block_start",
            1,
            {"type": "tool_use", "id": "call_a", "name": "get", "input": {}},
        ),
        ("content_block_delta", 1, {"type": "input_json_delta", "partial_json": '{"a":'}),
        ("content_block_delta", 1, {"type": "input_json_delta", "partial_json": "1}"}),
        ("content_block_stop", 1, None),
        (
            "content_block_start",
            2,
            {"type": "tool_use", "id": "call_b", "name": "put", "input": {}},
        ),
        ("content_block_delta", 2, {"type": "input_json_delta", "partial_json": "{}"}),
        ("content_block_stop", 2, None),
        ("message_delta", None, {"stop_reason": "tool_use", "stop_sequence": None}),
    ]
    assert parsed[-1] == {"type": "message_stop"}


def test_mid_stream_error() -> None:
    error = b'data: {"error": {"message": "The server had an error", "type": "server_error"}}\n\n'
    stream = TEXT_STREAM.split(chunk({}, "stop"))[0] + error + chunk({}, "stop") + DONE

    out, _ = run(stream)

    parsed = events(out)
    assert parsed[-1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "The server had an error"},
    }
    assert parsed[-2]["type"] == "content_block_delta"
    assert "message_stop" not in [e["type"] for e in parsed]


@pytest.mark.parametrize("cut", [0, len(chunk({"role": "assistant", "content": ""})), 200])
def test_truncated_stream_ends_with_an_error_event(cut: int) -> None:
    out, _ = run(TEXT_STREAM[:cut])

    last = events(out)[-1]
    assert last["type"] == "error"
    assert last["error"]["type"] == "api_error"


def test_stream_ending_after_finish_reason_without_done_completes() -> None:
    stream = TEXT_STREAM.removesuffix(DONE)

    assert run(stream) == run(TEXT_STREAM)


def test_message_events_wait_for_the_usage_chunk() -> None:
    translator = ChatStreamToMessages(model="public")
    translator.feed(chunk({"role": "assistant", "content": "x"}))

    finished = events(translator.feed(chunk({}, "stop")))
    assert [e["type"] for e in finished] == ["content_block_stop"]
    assert translator.feed(USAGE_CHUNK) == b""
    assert [e["type"] for e in events(translator.feed(DONE))] == ["message_delta", "message_stop"]
    assert translator.feed(chunk({"content": "late"})) == b""
    assert translator.finish() == b""
