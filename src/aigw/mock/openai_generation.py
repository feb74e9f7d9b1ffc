"""OpenAI text generation: ``POST /v1/chat/completions`` and ``POST /v1/completions``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aigw.mock import validation
from aigw.mock.answer import TOOL_CALL_TOKENS, new_id, text_answer
from aigw.mock.conversation import conversation_tokens, input_tokens, tool_to_call
from aigw.mock.errors import ApiError
from aigw.mock.lifecycle import Call
from aigw.mock.responses import SSE_DONE, EventStream, Reply, sse_data


def chat_completions(call: Call) -> Reply | EventStream:
    """A ``chat.completion``, or its ``chat.completion.chunk`` stream.

    The answer is the canned text, cut by the token limit or before the first ``stop``
    sequence it would contain; or a call of a tool with ``{}`` arguments: the first tool when
    the last user turn asks to "use a tool" (or ``tool_choice`` is ``required``), the named
    one when ``tool_choice`` names it, none when it is ``none``.
    """
    body = validation.request_object(call.body)
    model = validation.required_string(body, "model")
    messages = validation.messages(body)
    limit = validation.optional_int(body, "max_completion_tokens", minimum=1)
    if limit is None:
        limit = validation.optional_int(body, "max_tokens", minimum=1)
    names = validation.tool_names(body, "function", "name")
    tool = tool_to_call(names, *_tool_choice(body, names), messages)

    if tool is None:
        answer = text_answer(
            limit, call.options.completion_tokens, validation.string_list(body, "stop")
        )
        generated = answer.generated
        finish_reason = "length" if answer.truncated else "stop"
        message: dict[str, Any] = {"role": "assistant", "content": answer.text}
        opening: dict[str, Any] = {"role": "assistant", "content": ""}
        deltas: list[dict[str, Any]] = [{"content": token} for token in answer.tokens]
    else:
        call_id = new_id("call_")
        generated = TOOL_CALL_TOKENS
        finish_reason = "tool_calls"
        function = {"name": tool, "arguments": "{}"}
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": function}],
        }
        # Streamed like OpenAI does: id and name first, then the arguments as deltas.
        opening = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": tool, "arguments": ""},
                }
            ],
        }
        deltas = [{"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}]
    usage = _usage(conversation_tokens(messages), generated)

    if not validation.wants_stream(body):
        message |= {"refusal": None, "annotations": []}  # always present in real answers
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        return Reply(
            _Envelope(new_id("chatcmpl-"), "chat.completion", model).wrap([choice], usage),
            generated,
        )

    chunks = _Envelope(
        new_id("chatcmpl-"), "chat.completion.chunk", model, _usage_chunk_requested(body)
    )

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse_data(chunks.wrap([choice]))

    return EventStream(
        head=[chunk(opening)],
        tokens=[chunk(delta) for delta in deltas],
        tail=[chunk({}, finish_reason), *_stream_end(chunks, usage)],
    )


def completions(call: Call) -> Reply | EventStream:
    """A legacy ``text_completion`` (one choice, whatever the number of prompts), or its stream."""
    body = validation.request_object(call.body)
    model = validation.required_string(body, "model")
    prompt = validation.text_or_tokens(body, "prompt")
    limit = validation.optional_int(body, "max_tokens", minimum=1)

    answer = text_answer(
        limit, call.options.completion_tokens, validation.string_list(body, "stop")
    )
    generated = answer.generated
    finish_reason = "length" if answer.truncated else "stop"
    usage = _usage(input_tokens(prompt), generated)

    def choice(text: str, finish: str | None) -> dict[str, Any]:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

    if not validation.wants_stream(body):
        envelope = _Envelope(new_id("cmpl-"), "text_completion", model)
        return Reply(envelope.wrap([choice(answer.text, finish_reason)], usage), generated)

    chunks = _Envelope(new_id("cmpl-"), "text_completion", model, _usage_chunk_requested(body))
    return EventStream(
        head=[],
        tokens=[sse_data(chunks.wrap([choice(token, None)])) for token in answer.tokens],
        tail=[sse_data(chunks.wrap([choice("", finish_reason)])), *_stream_end(chunks, usage)],
    )


_TOOL_CHOICE_MODES = {"auto": "auto", "required": "any", "none": "none"}


def _tool_choice(body: dict[str, Any], names: list[str]) -> tuple[str, str | None]:
    """The request's ``tool_choice`` as (mode, forced tool name), modes as tool_to_call's."""
    choice = body.get("tool_choice")
    if choice is None:
        return "auto", None
    if isinstance(choice, str) and choice in _TOOL_CHOICE_MODES:
        return _TOOL_CHOICE_MODES[choice], None
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise ApiError(
            400,
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a named "
            "function.",
            param="tool_choice",
            code="invalid_value",
        )
    if name not in names:
        raise ApiError(
            400,
            f"Invalid value for 'tool_choice': function '{name}' is not among the 'tools'.",
            param="tool_choice",
            code="invalid_value",
        )
    return "tool", name


@dataclass(frozen=True, slots=True)
class _Envelope:
    """The fields every object of one answer repeats, identical across all its chunks."""

    id: str
    object: str
    model: str
    usage_field: bool = True
    """Whether objects carry ``usage``: always when complete; in streams only on request,
    and then as null on all but the final usage chunk."""
    created: int = field(default_factory=lambda: int(time.time()))

    def wrap(
        self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.usage_field:
            payload["usage"] = usage
        return payload


def _stream_end(chunks: _Envelope, usage: dict[str, int]) -> list[bytes]:
    """The optional usage chunk (no choices) and the terminator."""
    if chunks.usage_field:
        return [sse_data(chunks.wrap([], usage)), SSE_DONE]
    return [SSE_DONE]


def _usage_chunk_requested(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
