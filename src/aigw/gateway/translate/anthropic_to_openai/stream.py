"""Chat Completions chunk stream → Messages API event stream."""

from __future__ import annotations

from typing import Any

import orjson

from aigw.gateway.routing.usage import Usage
from aigw.gateway.translate.anthropic_to_openai.response import (
    anthropic_error,
    anthropic_usage,
    message_id,
    new_tool_id,
    to_stop_reason,
    usage_from_chat,
)
from aigw.gateway.translate.sse import SSEEvent, SSEParser, anthropic_event


class ChatStreamToMessages:
    """Turns a Chat Completions chunk stream into an Anthropic Messages event stream.

    Feed it upstream bytes as they arrive; each call returns the events completed so far
    (nothing is held back but an unfinished chunk, except message_delta and message_stop,
    which wait for OpenAI's usage chunk or ``[DONE]``). Call :meth:`finish` at upstream EOF.
    After an error, or once the stream has ended, further input is ignored.
    """

    def __init__(self, *, model: str) -> None:
        self._parser = SSEParser()
        self._model = model
        self._started = False
        self._next_block = 0
        self._open: tuple[str, int] | None = None
        """The open content block: ("text", 0) or ("tool", OpenAI tool-call index)."""
        self._tool_blocks: dict[int, int] = {}
        """OpenAI tool-call index → content block index."""
        self._stop_reason: str | None = None
        self._usage = Usage()
        self._ended = False
        self._text_deltas = 0
        self.failed = False
        """Whether the stream ended with an error event (cut, or an upstream error)."""

    @property
    def usage(self) -> Usage:
        """The usage OpenAI reported; before its final usage chunk (a cut stream), the text
        deltas relayed so far, one token each, as the completion."""
        if self._usage == Usage() and self._text_deltas:
            return Usage(completion_tokens=self._text_deltas)
        return self._usage

    def feed(self, chunk: bytes) -> bytes:
        if self._ended:
            return b""
        return self._translate(self._parser.feed(chunk))

    def finish(self) -> bytes:
        """Output still due at upstream EOF.

        A stream that reached its ``finish_reason`` is completed even if ``[DONE]`` never
        came (some OpenAI-compatible servers omit it); one that did not ends with an error.
        """
        if self._ended:
            return b""
        out = [self._translate(self._parser.close())]
        if not self._ended:
            if self._stop_reason is not None:
                self._end(out)
            else:
                self._ended = self.failed = True
                out.append(
                    _error_event("api_error", "the upstream stream ended before the answer did")
                )
        return b"".join(out)

    def _translate(self, events: list[SSEEvent]) -> bytes:
        out: list[bytes] = []
        for event in events:
            self._event(event, out)
            if self._ended:
                break
        return b"".join(out)

    def _event(self, event: SSEEvent, out: list[bytes]) -> None:
        if event.data == b"[DONE]":
            if self._stop_reason is None:
                self._stop_reason = "end_turn"  # an explicit, successful end all the same
            self._end(out)
            return
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            self._ended = self.failed = True
            out.append(_error_event("api_error", "the upstream sent a chunk that is not JSON"))
            return
        if payload.get("error") is not None:
            self._ended = self.failed = True
            out.append(_error_event(*anthropic_error(payload["error"], None)))
            return
        if not self._started:
            self._start(payload, out)
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self._usage = usage_from_chat(usage)
        choices = payload.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, out)

    def _start(self, payload: dict[str, Any], out: list[bytes]) -> None:
        self._started = True
        message = {
            "id": message_id(payload.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Unknown until OpenAI's final usage chunk; message_delta reports the totals.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        out.append(anthropic_event(b"message_start", {"type": "message_start", "message": message}))

    def _choice(self, choice: dict[str, Any], out: list[bytes]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                self._text(text, out)
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        self._tool_call(call, out)
        finish = choice.get("finish_reason")
        if isinstance(finish, str):
            self._stop_reason = to_stop_reason(finish)
            self._close_block(out)

    def _text(self, text: str, out: list[bytes]) -> None:
        if self._open is None or self._open[0] != "text":
            self._close_block(out)
            self._open = ("text", 0)
            self._open_block({"type": "text", "text": ""}, out)
        delta = {"type": "text_delta", "text": text}
        self._text_deltas += 1
        out.append(_block_delta(self._next_block - 1, delta))

    def _tool_call(self, call: dict[str, Any], out: list[bytes]) -> None:
        index = call.get("index", 0)
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        block = self._tool_blocks.get(index)
        if block is None:
            self._close_block(out)
            self._open = ("tool", index)
            block = self._tool_blocks[index] = self._next_block
            opening = {
                "type": "tool_use",
                "id": call.get("id") or new_tool_id(),
                "name": function.get("name") or "",
                "input": {},
            }
            self._open_block(opening, out)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            # Anthropic clients key deltas by block index, so even a late delta for a block
            # already closed (OpenAI never interleaves calls) still lands in the right place.
            out.append(_block_delta(block, {"type": "input_json_delta", "partial_json": arguments}))

    def _open_block(self, block: dict[str, Any], out: list[bytes]) -> None:
        payload = {"type": "content_block_start", "index": self._next_block, "content_block": block}
        out.append(anthropic_event(b"content_block_start", payload))
        self._next_block += 1

    def _close_block(self, out: list[bytes]) -> None:
        if self._open is None:
            return
        self._open = None
        payload = {"type": "content_block_stop", "index": self._next_block - 1}
        out.append(anthropic_event(b"content_block_stop", payload))

    def _end(self, out: list[bytes]) -> None:
        self._ended = True
        if not self._started:
            self._start({}, out)
        self._close_block(out)
        usage = self._usage
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
            # Cumulative totals; current Anthropic SDKs take input_tokens from here too.
            "usage": anthropic_usage(usage),
        }
        out.append(anthropic_event(b"message_delta", delta))
        out.append(anthropic_event(b"message_stop", {"type": "message_stop"}))


def _block_delta(index: int, delta: dict[str, Any]) -> bytes:
    payload = {"type": "content_block_delta", "index": index, "delta": delta}
    return anthropic_event(b"content_block_delta", payload)


def _error_event(kind: str, message: str) -> bytes:
    payload = {"type": "error", "error": {"type": kind, "message": message}}
    return anthropic_event(b"error", payload)


# Anthropic's error type for each status, as its API answers them.
