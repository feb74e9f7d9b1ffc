"""Token usage reported by an upstream, read from its answer after the caller has it.

Non-streaming answers carry ``usage`` in their JSON body. Streams carry it in their last data
event (OpenAI sends it when ``stream_options.include_usage`` is set), so the relay keeps only a
bounded tail of the stream and looks there once the stream has ended.
"""

from __future__ import annotations

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
    return _usage(document.get("usage")) if isinstance(document, dict) else None


def usage_from_stream_tail(tail: bytes) -> Usage | None:
    """The ``usage`` of the last SSE data event that has one, within the stream's tail."""
    for line in reversed(tail.split(b"\n")):
        if line.startswith(b"data: {") and b'"usage"' in line:
            try:
                event = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                continue  # the tail may begin mid-event
            usage = _usage(event.get("usage")) if isinstance(event, dict) else None
            if usage is not None:
                return usage
    return None


def _usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    details = value.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(
        prompt_tokens=_count(value.get("prompt_tokens")),
        completion_tokens=_count(value.get("completion_tokens")),
        cached_tokens=_count(cached),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
