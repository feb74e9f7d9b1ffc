"""Messages API answer and error → Chat Completions answer and error, and the mappings the
stream translator shares with them."""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from aigw.gateway.routing.usage import Usage, anthropic_usage


def messages_response_to_chat(doc: dict[str, Any], *, model: str) -> dict[str, Any]:
    """The ``chat.completion`` for a Messages API ``message``; ``model`` is the caller's name."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in doc.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = _usage(doc.get("usage"))
    return {
        "id": chat_id(doc.get("id")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": to_finish_reason(doc.get("stop_reason")),
            }
        ],
        "usage": chat_usage(usage),
    }


_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def to_finish_reason(stop_reason: object) -> str:
    """OpenAI's ``finish_reason`` for an Anthropic ``stop_reason`` (unknown ones: stop)."""
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


# Anthropic error type → OpenAI (type, code).
OPENAI_ERRORS: dict[object, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "permission_error": ("permission_error", None),
    "not_found_error": ("invalid_request_error", "not_found"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "timeout_error": ("timeout_error", "upstream_timeout"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
}


def anthropic_error_to_openai(payload: bytes, status: int) -> bytes:
    """OpenAI's error JSON for an Anthropic error body answered with HTTP ``status``.

    Anything but Anthropic's ``{"type": "error", "error": {...}}`` is wrapped as it is.
    """
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
        kind, code = OPENAI_ERRORS.get(error.get("type"), default)
        return _error_body(error["message"], kind, code)
    text = payload[:500].decode("utf-8", "replace").strip() or "(empty body)"
    return _error_body(f"upstream returned HTTP {status}: {text}", "upstream_error", None)


def _error_body(message: str, kind: str, code: str | None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def error_chunk(message: str, kind: str, code: str | None) -> bytes:
    """A stream chunk carrying an error, on which the OpenAI SDKs raise ``APIError``."""
    return b"data: " + _error_body(message, kind, code) + b"\n\n"


def chat_id(message_id: object) -> str:
    """The completion id for a message id (a fresh one when there is none)."""
    if isinstance(message_id, str) and message_id:
        return "chatcmpl-" + message_id
    return "chatcmpl-" + secrets.token_hex(12)


def token_count(value: object) -> int | None:
    """A usage count, or None when the field is absent or not a count."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _usage(raw: object) -> Usage:
    return anthropic_usage(raw) or Usage()


def chat_usage(usage: Usage) -> dict[str, Any]:
    """OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }
