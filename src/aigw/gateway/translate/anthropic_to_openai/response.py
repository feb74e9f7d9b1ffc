"""Chat Completions answer and error → Messages API answer and error, and the mappings the
stream translator shares with them."""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from aigw.gateway.core.errors import anthropic_error_type
from aigw.gateway.routing.usage import Usage, openai_usage


def chat_response_to_messages(doc: dict[str, Any], *, model: str) -> dict[str, Any]:
    """The Messages API ``message`` for a ``chat.completion``; ``model`` is the caller's name."""
    choices = doc.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, dict) else None
    message = message if isinstance(message, dict) else {}
    stop_reason = to_stop_reason(choice.get("finish_reason") if isinstance(choice, dict) else None)

    content: list[dict[str, Any]] = []
    text = message.get("content")
    refusal = message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    elif isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})
        stop_reason = "refusal"
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_tool_id(),
                "name": function.get("name"),
                "input": _tool_input(function.get("arguments")),
            }
        )
    return {
        "id": message_id(doc.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": anthropic_usage(usage_from_chat(doc.get("usage"))),
    }


_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def to_stop_reason(finish_reason: object) -> str:
    """Anthropic's ``stop_reason`` for an OpenAI ``finish_reason`` (unknown ones: end_turn)."""
    if isinstance(finish_reason, str):
        return _STOP_REASONS.get(finish_reason, "end_turn")
    return "end_turn"


_ANTHROPIC_TYPES_BY_CODE = {
    "invalid_api_key": "authentication_error",
    "insufficient_quota": "billing_error",
    "rate_limit_exceeded": "rate_limit_error",
    "model_not_found": "not_found_error",
    "context_length_exceeded": "invalid_request_error",
}


def openai_error_to_anthropic(payload: bytes, status: int) -> bytes:
    """Anthropic's error JSON for an OpenAI error body answered with HTTP ``status``.

    Anything but OpenAI's ``{"error": {...}}`` is wrapped as it is.
    """
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and "error" in document:
        kind, message = anthropic_error(document["error"], status)
    else:
        text = payload[:500].decode("utf-8", "replace").strip() or "(empty body)"
        kind, message = _status_type(status), f"upstream returned HTTP {status}: {text}"
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def anthropic_error(error: object, status: int | None) -> tuple[str, str]:
    """Anthropic's (type, message) for an OpenAI ``error`` value."""
    if isinstance(error, str):
        return _status_type(status), error
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = "the upstream reported an error"
    kind = _ANTHROPIC_TYPES_BY_CODE.get(error.get("code")) or _ANTHROPIC_TYPES_BY_CODE.get(
        error.get("type")
    )
    return kind or _status_type(status), message


def _status_type(status: int | None) -> str:
    if status is None:
        return "api_error"  # an error mid-stream, after the 200
    return anthropic_error_type(status)


def message_id(chat_id: object) -> str:
    """The message id for a completion id (a fresh one when there is none)."""
    if isinstance(chat_id, str) and chat_id:
        return "msg_" + chat_id.removeprefix("chatcmpl-")
    return "msg_" + secrets.token_hex(12)


def new_tool_id() -> str:
    """An id for a tool call that came without one (some OpenAI-compatible servers)."""
    return "toolu_" + secrets.token_hex(12)


def _tool_input(arguments: object) -> dict[str, Any]:
    if isinstance(arguments, str) and arguments:
        try:
            value = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return {}
        if isinstance(value, dict):
            return value
    return {}


def usage_from_chat(raw: object) -> Usage:
    """The gateway's Usage for OpenAI's ``usage`` object (zeros for what is missing)."""
    return openai_usage(raw) or Usage()


def anthropic_usage(usage: Usage) -> dict[str, int]:
    """Anthropic's ``usage`` object, whose ``input_tokens`` exclude the cached ones."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return {
        "input_tokens": usage.prompt_tokens - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.completion_tokens,
    }
