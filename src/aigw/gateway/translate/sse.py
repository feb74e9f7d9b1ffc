"""Incremental server-sent-event parsing and the two providers' event encodings.

Upstream bodies arrive in arbitrary chunks, so :class:`SSEParser` keeps only the unfinished
line between calls and hands back each event as soon as its terminating blank line arrives.
It follows the WHATWG event-stream rules the translators need: ``\\n``, ``\\r\\n`` and ``\\r``
line endings, ``event:`` and ``data:`` fields, multi-line data joined with ``\\n``, and comment
lines (``: keep-alive``) ignored. ``id:`` and ``retry:`` mean nothing to a relay and are
skipped. No maintained SSE library is in the dependency set (httpx-sse is not), and this is
the small subset we need.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    """The ``event:`` name; None when the event had none (OpenAI sends bare ``data:``)."""
    data: bytes


class SSEParser:
    """Splits a byte stream into events; feed it chunks as they arrive."""

    __slots__ = ("_data", "_event", "_pending")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        """Pieces of the unfinished last line, joined only once it is complete."""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by ``chunk``, in order."""
        if b"\n" not in chunk and b"\r" not in chunk:
            # Still inside a line: keep the piece, so a long line arriving in many small
            # chunks costs linear time, not a rescan of everything so far per chunk.
            if chunk:
                self._pending.append(chunk)
            return []
        buffer = b"".join((*self._pending, chunk)) if self._pending else chunk
        lines = buffer.splitlines(keepends=True)
        # An unterminated last line waits for more bytes; so does one ending in a lone "\r",
        # which may be the first half of a "\r\n" split across chunks.
        self._pending = [] if lines[-1].endswith(b"\n") else [lines.pop()]
        events: list[SSEEvent] = []
        for line in lines:
            self._line(line.rstrip(b"\r\n"), events)
        return events

    def close(self) -> list[SSEEvent]:
        """At end of input: the event of a final line that lacked its terminator, if any.

        Per the spec an event without its blank line is incomplete and is discarded, so this
        only completes lines (a stream ending in ``"...\\r"``), never a half-sent event.
        """
        rest = b"".join(self._pending)
        self._pending = []
        events: list[SSEEvent] = []
        if rest.endswith(b"\r"):
            self._line(rest.rstrip(b"\r"), events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent(self._event, b"\n".join(self._data)))
            self._event = None
            self._data = []
            return
        name, colon, value = line.partition(b":")
        if not name:
            return  # a comment line
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


def openai_event(payload: object) -> bytes:
    """An OpenAI-style event: a bare ``data:`` line."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


OPENAI_DONE = b"data: [DONE]\n\n"
"""OpenAI's stream terminator."""


def anthropic_event(name: bytes, payload: object) -> bytes:
    """An Anthropic-style event: ``event:`` naming the payload's ``type``, then its data."""
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
