"""Anthropic ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

from typing import Any

from aigw.mock import validation
from aigw.mock.answer import TOOL_CALL_TOKENS, new_id, text_answer
from aigw.mock.conversation import asks_for_tool, conversation_tokens
from aigw.mock.lifecycle import Call
from aigw.mock.responses import EventStream, Reply, sse_event


def messages(call: Call) -> Reply | EventStream:
    """A ``message``, or its event stream (message_start, content_block_start, ping,
    content_block_delta per token, content_block_stop, message_delta, message_stop).

    The answer is the canned text, or a ``tool_use`` of the first tool with ``{}`` input when
    tools are offered and the last user turn asks to "use a tool".
    """
    body = validation.request_object(call.body)
    model = validation.required_string(body, "model")
    max_tokens = validation.required_int(body, "max_tokens", minimum=1)
    conversation = validation.messages(body)
    input_tokens = conversation_tokens(conversation, body.get("system"))
    tool = validation.first_tool_name(body, "name") if asks_for_tool(conversation) else None

    if tool is None:
        answer = text_answer(max_tokens, call.options.completion_tokens)
        output_tokens = len(answer.tokens)
        stop_reason = "max_tokens" if answer.truncated else "end_turn"
        block: dict[str, Any] = {"type": "text", "text": answer.text}
        opening_block: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": token} for token in answer.tokens]
    else:
        output_tokens = TOOL_CALL_TOKENS
        stop_reason = "tool_use"
        block = {"type": "tool_use", "id": new_id("toolu_"), "name": tool, "input": {}}
        opening_block = block  # its input is then streamed as JSON text
        deltas = [{"type": "input_json_delta", "partial_json": "{}"}]

    message = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    if not validation.wants_stream(body):
        return Reply(message, output_tokens)

    # message_start carries the empty shell; like the real API it reports 1 output token
    # so far, and message_delta then gives the cumulative total.
    shell = message | {
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    return EventStream(
        head=[
            sse_event({"type": "message_start", "message": shell}),
            sse_event({"type": "content_block_start", "index": 0, "content_block": opening_block}),
            sse_event({"type": "ping"}),
        ],
        tokens=[
            sse_event({"type": "content_block_delta", "index": 0, "delta": delta})
            for delta in deltas
        ],
        tail=[
            sse_event({"type": "content_block_stop", "index": 0}),
            sse_event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                }
            ),
            sse_event({"type": "message_stop"}),
        ],
    )


def count_tokens(call: Call) -> Reply:
    """The same input-token estimate a ``messages`` call with this body would report."""
    body = validation.request_object(call.body)
    validation.required_string(body, "model")
    conversation = validation.messages(body)
    return Reply({"input_tokens": conversation_tokens(conversation, body.get("system"))})
