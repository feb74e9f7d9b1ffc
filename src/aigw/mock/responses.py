"""What API handlers answer with, and how it goes on the wire (JSON or server-sent events)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web

from aigw.mock.pacing import pause

SSE_DONE = b"data: [DONE]\n\n"
"""OpenAI's stream terminator."""

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete JSON answer. ``generated_tokens`` is how many tokens a model produced for
    it, so the answer can be held back as long as generating them would take."""

    body: object
    generated_tokens: int = 0


@dataclass(frozen=True, slots=True)
class EventStream:
    """A server-sent-event body, split by timing: ``head`` goes out as soon as the answer
    starts, the ``tokens`` events are paced at the generation speed, and ``tail`` follows the
    last token immediately."""

    head: list[bytes]
    tokens: list[bytes]
    tail: list[bytes]


class InjectedDisconnect(Exception):
    """Raised after the server deliberately cut a stream; carries the half-sent response."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("stream cut by fault injection")
        self.response = response


def json_response(
    body: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response serialised with orjson."""
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def sse_data(payload: object) -> bytes:
    """An OpenAI-style event: a bare ``data:`` line."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_event(payload: Mapping[str, object]) -> bytes:
    """An Anthropic-style event, named after the payload's ``type``."""
    name = str(payload["type"]).encode()
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


async def send_stream(
    request: web.BaseRequest,
    stream: EventStream,
    *,
    seconds_per_token: float,
    cut_after: int | None,
    error_after: int | None = None,
    error_event: bytes = b"",
) -> web.StreamResponse:
    """Write ``stream`` as a chunked event-stream response.

    ``cut_after`` closes the connection after that many events, always before the last one,
    so the client sees a stream that ends without its terminator or the chunked trailer.
    ``error_after`` instead sends ``error_event`` after that many events (also before the
    last one) and ends the response there, cleanly; a cut due first wins.
    Raises InjectedDisconnect when it cut, ConnectionResetError when the client went away.
    """
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    events = [*stream.head, *stream.tokens, *stream.tail]
    error_at = None if error_after is None else min(error_after, len(events) - 1)
    if error_at is not None and (cut_after is None or cut_after > error_at):
        events = [*events[:error_at], error_event]
        cut_after = None
    if cut_after is None and seconds_per_token <= 0:
        # Unpaced and whole: one write instead of one per event keeps the mock fast.
        await response.write(b"".join(events))
        await response.write_eof()
        return response

    cut_at = None if cut_after is None else min(cut_after, len(events) - 1)
    first_token = len(stream.head)
    last_token = first_token + len(stream.tokens) - 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    for index, event in enumerate(events):
        if index == cut_at:
            await response.write(b"")  # flush the headers even if no event was sent yet
            transport = request.transport
            if transport is not None:
                transport.close()  # graceful close: the events already written still arrive
            raise InjectedDisconnect(response)
        if seconds_per_token > 0 and first_token < index <= last_token:
            # Absolute deadlines, so sleep overshoot does not accumulate over long answers.
            due = started + (index - first_token) * seconds_per_token
            await pause(request, due - loop.time())
        await response.write(event)
    await response.write_eof()
    return response
