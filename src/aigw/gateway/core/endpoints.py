"""The endpoints the gateway forwards (OpenAI's, and Anthropic's Messages API), and the checks
it makes on their bodies.

The gateway checks only what it must understand to route and police a request (the model, the
shape of the prompt, streaming flags, numeric limits) and leaves every other field to the
upstream, so new OpenAI parameters pass through without a gateway release. The checks are cheap
type tests on an already-parsed body: no schema library on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from aigw.gateway.core.errors import InvalidRequest

Body = dict[str, Any]

_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str
    upstream_path: str
    """The path on an upstream of the caller's protocol (a translation picks its own)."""
    validate: Callable[[Body], None]
    streams: bool
    protocol: Literal["openai", "anthropic"] = "openai"
    """The caller's protocol: errors and answers are in it."""


def parse_json_body(raw: bytes) -> Body:
    """The request body as a JSON object, or a 400 saying precisely what is wrong with it."""
    if not raw:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "utf-8" in str(exc).lower():
            raise InvalidRequest("request body is not valid UTF-8") from None
        raise InvalidRequest(
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {_json_type(body)}")
    return body


def validate_common(body: Body) -> None:
    model = body.get("model")
    if model is None:
        raise InvalidRequest("you must provide a model parameter", param="model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' must be a non-empty string", param="model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _wrong_type("stream_options", "an object", options)
        if not stream:
            raise InvalidRequest(
                "'stream_options' is only allowed when 'stream' is true", param="stream_options"
            )
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (not _is_int(value) or value < 1):
            raise InvalidRequest(f"'{name}' must be an integer of at least 1", param=name)
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if value is not None and not _is_number(value):
            raise _wrong_type(name, "a number", value)


def validate_chat(body: Body) -> None:
    validate_common(body)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("you must provide a 'messages' parameter", param="messages")
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array", messages)
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _wrong_type(param, "an object", message)
        role = message.get("role")
        if not isinstance(role, str) or role not in _CHAT_ROLES:
            raise InvalidRequest(
                f"'{param}.role' must be one of {', '.join(sorted(_CHAT_ROLES))}",
                param=f"{param}.role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _wrong_type(f"{param}.content", "a string or an array", content)


def validate_completion(body: Body) -> None:
    validate_common(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest("you must provide a 'prompt' parameter", param="prompt")
    if not isinstance(prompt, str | list):
        raise _wrong_type("prompt", "a string or an array", prompt)


def validate_embedding(body: Body) -> None:
    validate_common(body)
    if body.get("stream"):
        raise InvalidRequest("embeddings cannot be streamed", param="stream")
    value = body.get("input")
    if value is None:
        raise InvalidRequest("you must provide an 'input' parameter", param="input")
    if not isinstance(value, str | list) or (isinstance(value, list) and not value):
        raise InvalidRequest("'input' must be a string or a non-empty array", param="input")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not _is_int(dimensions) or dimensions < 1):
        raise InvalidRequest("'dimensions' must be an integer of at least 1", param="dimensions")


_ANTHROPIC_ROLES = frozenset({"user", "assistant"})


def validate_messages(body: Body, *, needs_max_tokens: bool = True) -> None:
    """Anthropic's Messages API: what routing and limits rely on, as Anthropic checks it."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required (a non-empty string)", param="model")
    max_tokens = body.get("max_tokens")
    if needs_max_tokens or max_tokens is not None:
        if max_tokens is None:
            raise InvalidRequest("max_tokens: Field required", param="max_tokens")
        if not _is_int(max_tokens) or max_tokens < 1:
            raise InvalidRequest("max_tokens: must be an integer of at least 1", param="max_tokens")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Field required (an array)", param="messages")
    for index, message in enumerate(messages):
        param = f"messages.{index}"
        if not isinstance(message, dict):
            raise _wrong_type(param, "an object", message)
        if message.get("role") not in _ANTHROPIC_ROLES:
            raise InvalidRequest(
                f"{param}.role: must be 'user' or 'assistant'", param=f"{param}.role"
            )
        content = message.get("content")
        if not isinstance(content, str | list):
            raise _wrong_type(f"{param}.content", "a string or an array", content)
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise _wrong_type("system", "a string or an array", system)
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and not _is_number(value):
            raise _wrong_type(name, "a number", value)


def validate_count_tokens(body: Body) -> None:
    validate_messages(body, needs_max_tokens=False)


COUNT_TOKENS_PATH = "/v1/messages/count_tokens"

ENDPOINTS: dict[str, Endpoint] = {
    e.path: e
    for e in (
        Endpoint("/v1/chat/completions", "/chat/completions", validate_chat, streams=True),
        Endpoint("/v1/completions", "/completions", validate_completion, streams=True),
        Endpoint("/v1/embeddings", "/embeddings", validate_embedding, streams=False),
        Endpoint("/v1/messages", "/messages", validate_messages, True, "anthropic"),
        Endpoint(
            COUNT_TOKENS_PATH, "/messages/count_tokens", validate_count_tokens, False, "anthropic"
        ),
    )
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"'{param}' must be {expected}, not {_json_type(value)}", param=param)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
