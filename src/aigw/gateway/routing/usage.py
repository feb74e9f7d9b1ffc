"""Token usage reported by an upstream, read from its answer after the caller has it.

OpenAI's and Anthropic's usage are both normalised to :class:`Usage`. Non-streaming answers
carry ``usage`` in their JSON body. Streams carry it in their last data
event (OpenAI sends it when ``stream_options.include_usage`` is set), so the relay keeps only a
bounded tail of the stream and looks there once the stream has ended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

# Enough for OpenAI's final usage chunk and the [DONE] line after it.
STREAM_TAIL_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


def usage_from_body(body: bytes) -> Usage | None:
    """The ``usage`` of a JSON answer (chat, completion or embedding), if it has one."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return openai_usage(document.get("usage")) if isinstance(document, dict) else None


def usage_from_stream_tail(tail: bytes) -> Usage | None:
    """The ``usage`` of the last SSE data event that has one, within the stream's tail."""
    for line in reversed(tail.split(b"\n")):
        if line.startswith(b"data: {") and b'"usage"' in line:
            try:
                event = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                continue  # the tail may begin mid-event
            usage = openai_usage(event.get("usage")) if isinstance(event, dict) else None
            if usage is not None:
                return usage
    return None


def openai_usage(value: Any) -> Usage | None:
    """OpenAI's ``usage`` object (chat, completion or embedding) as a :class:`Usage`."""
    if not isinstance(value, dict):
        return None
    details = value.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(
        prompt_tokens=_count(value.get("prompt_tokens")),
        completion_tokens=_count(value.get("completion_tokens")),
        cached_tokens=_count(cached),
    )


def anthropic_usage(value: Any) -> Usage | None:
    """Anthropic's ``usage`` as the gateway counts it: every input token is a prompt token,
    cached or not (``input_tokens`` excludes cache reads and writes); cache reads are the
    cached ones."""
    if not isinstance(value, dict):
        return None
    cache_read = _count(value.get("cache_read_input_tokens"))
    return Usage(
        prompt_tokens=_count(value.get("input_tokens"))
        + cache_read
        + _count(value.get("cache_creation_input_tokens")),
        completion_tokens=_count(value.get("output_tokens")),
        cached_tokens=cache_read,
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


_EVENT_END = re.compile(rb"\r?\n\r?\n")
# A stream whose events never end (not SSE after all) is passed on rather than held.
_MAX_PENDING_BYTES = 64 * 1024


class UsageEventStripper:
    """Drops the usage-only event of a stream whose caller did not ask for it.

    The gateway asks OpenAI upstreams for ``stream_options.include_usage`` so that rate limits
    are settled with real token counts; a caller that did not ask must not see the extra final
    event (``"choices": []`` with ``usage``). Events are passed on whole, as soon as each one is
    complete: nothing is held longer than the rest of an event.
    """

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        end = max((match.end() for match in _EVENT_END.finditer(data)), default=None)
        if end is None:
            if len(data) > _MAX_PENDING_BYTES:
                self._pending = b""
                return data
            self._pending = data
            return b""
        complete, self._pending = data[:end], data[end:]
        if b'"usage"' not in complete:
            return complete
        return b"".join(event for event in _events(complete) if not _is_usage_only(event))

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest


def _events(data: bytes) -> list[bytes]:
    """Complete events, each with its terminator."""
    events, start = [], 0
    for match in _EVENT_END.finditer(data):
        events.append(data[start : match.end()])
        start = match.end()
    return events


def _is_usage_only(event: bytes) -> bool:
    if b'"usage"' not in event:
        return False
    for line in event.splitlines():
        if line.startswith(b"data: {"):
            try:
                payload = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                return False
            return (
                isinstance(payload, dict)
                and payload.get("choices") == []
                and payload.get("usage") is not None
            )
    return False
