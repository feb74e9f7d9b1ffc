"""Messages API event stream → Chat Completions chunk stream."""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from aigw.gateway.routing.usage import Usage
from aigw.gateway.translate.openai_to_anthropic.response import (
    OPENAI_ERRORS,
    chat_id,
    chat_usage,
    error_chunk,
    to_finish_reason,
    token_count,
)
from aigw.gateway.translate.sse import OPENAI_DONE, SSEEvent, SSEParser, openai_event


class MessagesStreamToChat:
    """Turns an Anthropic Messages event stream into a Chat Completions chunk stream.

    Feed it upstream bytes as they arrive; each call returns the chunks completed so far
    (nothing is held back but an unfinished event). Call :meth:`finish` at upstream EOF.
    After an ``error`` event, or once the stream has ended, further input is ignored.
    """

    def __init__(self, *, model: str, include_usage: bool) -> None:
        self._parser = SSEParser()
        self._model = model
        self._include_usage = include_usage
        self._id = "chatcmpl-" + secrets.token_hex(12)  # replaced by the message's own id
        self._created = int(time.time())
        self._tool_calls: dict[int, int] = {}
        """Content block index → tool call index (tool calls are numbered on their own)."""
        self._input_tokens = 0
        self._cache_read = 0
        self._cache_creation = 0
        self._output_tokens = 0
        self._ended = False
        self._text_deltas = 0
        self.failed = False
        """Whether the stream ended with an error chunk (cut, or an upstream error event)."""

    @property
    def usage(self) -> Usage:
        """The usage reported so far (complete once the stream has ended normally); before
        ``message_delta`` (a cut stream), the text deltas relayed, one token each."""
        return Usage(
            prompt_tokens=self._input_tokens + self._cache_read + self._cache_creation,
            completion_tokens=self._output_tokens or self._text_deltas,
            cached_tokens=self._cache_read,
        )

    def feed(self, chunk: bytes) -> bytes:
        if self._ended:
            return b""
        return self._translate(self._parser.feed(chunk))

    def finish(self) -> bytes:
        """Output still due at upstream EOF: an error chunk if message_stop never came."""
        if self._ended:
            return b""
        out = self._translate(self._parser.close())
        if self._ended:
            return out
        self._ended = self.failed = True
        return out + error_chunk(
            "the upstream stream ended before the message was complete",
            "upstream_error",
            "upstream_stream_truncated",
        )

    def _translate(self, events: list[SSEEvent]) -> bytes:
        out: list[bytes] = []
        for event in events:
            self._event(event, out)
            if self._ended:
                break
        return b"".join(out)

    def _event(self, event: SSEEvent, out: list[bytes]) -> None:
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            self._ended = self.failed = True
            out.append(
                error_chunk(
                    "the upstream sent an event that is not a JSON object",
                    "upstream_error",
                    "upstream_invalid_event",
                )
            )
            return
        kind = payload.get("type")
        if kind == "content_block_delta":
            self._delta(payload, out)
        elif kind == "content_block_start":
            self._block_start(payload, out)
        elif kind == "message_start":
            self._message_start(payload, out)
        elif kind == "message_delta":
            self._message_delta(payload, out)
        elif kind == "message_stop":
            if self._include_usage:
                out.append(self._usage_chunk())
            out.append(OPENAI_DONE)
            self._ended = True
        elif kind == "error":
            error = payload.get("error")
            error = error if isinstance(error, dict) else {}
            error_type, code = OPENAI_ERRORS.get(error.get("type"), ("server_error", None))
            message = error.get("message") or "the upstream reported an error mid-stream"
            out.append(error_chunk(str(message), error_type, code))
            self._ended = self.failed = True
        # ping, content_block_stop and event types added later carry nothing for OpenAI.

    def _message_start(self, payload: dict[str, Any], out: list[bytes]) -> None:
        message = payload.get("message")
        if isinstance(message, dict):
            if isinstance(message.get("id"), str):
                self._id = chat_id(message["id"])
            self._update_usage(message.get("usage"))
        out.append(self._chunk({"role": "assistant", "content": ""}))

    def _block_start(self, payload: dict[str, Any], out: list[bytes]) -> None:
        block = payload.get("content_block")
        if not isinstance(block, dict):
            return
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if text:
                out.append(self._chunk({"content": text}))
        elif kind == "tool_use":
            index = len(self._tool_calls)
            self._tool_calls[_block_index(payload)] = index
            call = {
                "index": index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            out.append(self._chunk({"tool_calls": [call]}))
        # thinking and server-tool blocks are not part of a Chat Completions answer

    def _delta(self, payload: dict[str, Any], out: list[bytes]) -> None:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if text:
                self._text_deltas += 1
                out.append(self._chunk({"content": text}))
        elif kind == "input_json_delta":
            partial = delta.get("partial_json")
            index = self._tool_calls.get(_block_index(payload))
            if partial and index is not None:
                call = {"index": index, "function": {"arguments": partial}}
                out.append(self._chunk({"tool_calls": [call]}))
        # thinking_delta, signature_delta and citations_delta have no OpenAI form

    def _message_delta(self, payload: dict[str, Any], out: list[bytes]) -> None:
        self._update_usage(payload.get("usage"))
        delta = payload.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop_reason is not None:
            out.append(self._chunk({}, to_finish_reason(stop_reason)))

    def _update_usage(self, usage: object) -> None:
        # Counts are cumulative, so each one reported replaces the previous value.
        if not isinstance(usage, dict):
            return
        if (value := token_count(usage.get("input_tokens"))) is not None:
            self._input_tokens = value
        if (value := token_count(usage.get("cache_read_input_tokens"))) is not None:
            self._cache_read = value
        if (value := token_count(usage.get("cache_creation_input_tokens"))) is not None:
            self._cache_creation = value
        if (value := token_count(usage.get("output_tokens"))) is not None:
            self._output_tokens = value

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        payload: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            payload["usage"] = None  # as OpenAI does on every chunk but the usage one
        return openai_event(payload)

    def _usage_chunk(self) -> bytes:
        return openai_event(
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": chat_usage(self.usage),
            }
        )


# Anthropic error type → OpenAI (type, code).


def _block_index(payload: dict[str, Any]) -> int:
    index = payload.get("index")
    return index if isinstance(index, int) else -1
