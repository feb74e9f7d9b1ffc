"""Anthropic ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

from typing import Any

from aigw.mock import anthropic_validation, validation
from aigw.mock.answer import TOOL_CALL_TOKENS, new_id, text_answer
from aigw.mock.conversation import conversation_tokens, tool_to_call
from aigw.mock.lifecycle import Call
from aigw.mock.responses import EventStream, Reply, sse_event


def messages(call: Call) -> Reply | EventStream:
    """A ``message``, or its event stream in the documented order: message_start,
    content_block_start, ping, content_block_delta per token, content_block_stop,
    message_delta (stop reason and cumulative output tokens), message_stop.

    The answer is the canned text, cut by ``max_tokens`` or by the first of the
    ``stop_sequences`` it would contain; or a ``tool_use`` of a tool with ``{}`` input: the
    first tool when the last user turn asks to "use a tool" (or ``tool_choice`` is ``any``),
    the named one when ``tool_choice`` names it, none when it is ``none``.
    """
    body = validation.request_object(call.body)
    model = validation.required_string(body, "model")
    max_tokens = validation.required_int(body, "max_tokens", minimum=1)
    conversation = validation.messages(body)
    anthropic_validation.check_request(body, conversation)
    names = validation.tool_names(body, "name")
    mode, forced = anthropic_validation.tool_choice(body, names)
    tool = tool_to_call(names, mode, forced, conversation)
    input_tokens = conversation_tokens(conversation, body.get("system"))

    stop_sequence = None
    if tool is None:
        answer = text_answer(
            max_tokens, call.options.completion_tokens, body.get("stop_sequences") or ()
        )
        output_tokens = answer.generated
        stop_sequence = answer.stop_sequence
        if stop_sequence is not None:
            stop_reason = "stop_sequence"
        else:
            stop_reason = "max_tokens" if answer.truncated else "end_turn"
        # A stop sequence at the very start leaves no text, and then no block at all.
        blocks: list[dict[str, Any]] = (
            [{"type": "text", "text": answer.text}] if answer.text else []
        )
        opening_block: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": token} for token in answer.tokens]
    else:
        output_tokens = TOOL_CALL_TOKENS
        stop_reason = "tool_use"
        block = {"type": "tool_use", "id": new_id("toolu_"), "name": tool, "input": {}}
        blocks = [block]
        opening_block = block  # its input is then streamed as JSON text
        deltas = [{"type": "input_json_delta", "partial_json": "{}"}]

    message = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(input_tokens, output_tokens),
    }
    if not validation.wants_stream(body):
        return Reply(message, output_tokens)

    # message_start carries the empty shell; like the real API it reports 1 output token
    # so far, and message_delta then gives the cumulative total.
    shell = message | {
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(input_tokens, 1),
    }
    head = [sse_event({"type": "message_start", "message": shell})]
    tail = []
    if blocks:
        head.append(
            sse_event({"type": "content_block_start", "index": 0, "content_block": opening_block})
        )
        tail.append(sse_event({"type": "content_block_stop", "index": 0}))
    head.append(sse_event({"type": "ping"}))
    tail += [
        sse_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {"output_tokens": output_tokens},
            }
        ),
        sse_event({"type": "message_stop"}),
    ]
    return EventStream(
        head=head,
        tokens=[
            sse_event({"type": "content_block_delta", "index": 0, "delta": delta})
            for delta in deltas
        ],
        tail=tail,
    )


def count_tokens(call: Call) -> Reply:
    """The same input-token estimate a ``messages`` call with this body would report."""
    body = validation.request_object(call.body)
    validation.required_string(body, "model")
    conversation = validation.messages(body)
    anthropic_validation.check_request(body, conversation)
    return Reply({"input_tokens": conversation_tokens(conversation, body.get("system"))})


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    # The mock caches nothing, but reports the cache counters as the real API always does.
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }
