from __future__ import annotations

import pytest

from aigw.gateway.translate.sse import SSEEvent, SSEParser, anthropic_event, openai_event

STREAM = (
    b": keep-alive comment\n\n"
    b'event: message_start\ndata: {"a":1}\n\n'
    b"data: first line\ndata:second line\n\n"
    b"id: 7\nretry: 10\ndata: [DONE]\n\n"
)
EVENTS = [
    SSEEvent("message_start", b'{"a":1}'),
    SSEEvent(None, b"first line\nsecond line"),
    SSEEvent(None, b"[DONE]"),
]


def parse_in_pieces(data: bytes, size: int) -> list[SSEEvent]:
    parser = SSEParser()
    events = []
    for start in range(0, len(data), size):
        events += parser.feed(data[start : start + size])
    return events + parser.close()


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_events_survive_any_split_and_line_ending(newline: bytes, size: int) -> None:
    assert parse_in_pieces(STREAM.replace(b"\n", newline), size) == EVENTS


def test_an_event_is_returned_as_soon_as_its_blank_line_arrives() -> None:
    parser = SSEParser()

    assert parser.feed(b"data: x\n") == []
    assert parser.feed(b"\ndata: y") == [SSEEvent(None, b"x")]
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\n") == [SSEEvent(None, b"y")]


def test_a_crlf_split_between_chunks_is_one_line_ending() -> None:
    parser = SSEParser()

    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r\n\r\n") == [SSEEvent(None, b"a\nb")]


def test_an_unterminated_event_is_dropped_at_close() -> None:
    parser = SSEParser()

    assert parser.feed(b"data: half") == []
    assert parser.close() == []


def test_encoders() -> None:
    assert openai_event({"a": 1}) == b'data: {"a":1}\n\n'
    assert anthropic_event(b"ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
