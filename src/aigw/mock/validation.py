"""Checks on request bodies, failing with OpenAI-style messages that name the bad parameter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aigw.mock.errors import ApiError

_JSON_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def request_object(body: object) -> dict[str, Any]:
    """The parsed body, which must be a JSON object."""
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "We could not parse the JSON body of your request: the API expects a JSON object.",
        )
    return body


def wants_stream(body: object) -> bool:
    """True for a request asking for a server-sent-event stream."""
    return isinstance(body, dict) and body.get("stream") is True


def required_string(body: dict[str, Any], name: str) -> str:
    value = _required(body, name)
    if not isinstance(value, str):
        raise _invalid_type(name, "a string", value)
    return value


def required_int(body: dict[str, Any], name: str, *, minimum: int) -> int:
    value = optional_int(body, name, minimum=minimum)
    if value is None:
        raise _missing(name)
    return value


def optional_int(body: dict[str, Any], name: str, *, minimum: int) -> int | None:
    """An integer parameter; absent and ``null`` both mean "not given"."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(name, "an integer", value)
    if value < minimum:
        raise ApiError(
            400,
            f"Invalid '{name}': integer below minimum value. "
            f"Expected a value >= {minimum}, but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    return value


def one_of(body: dict[str, Any], name: str, allowed: Sequence[str], default: str) -> str:
    value = body.get(name)
    if value is None:
        return default
    for option in allowed:
        if value == option:
            return option
    expected = ", ".join(repr(option) for option in allowed)
    raise ApiError(
        400,
        f"Invalid value for '{name}': expected one of {expected}, but got {value!r} instead.",
        param=name,
        code="invalid_value",
    )


def messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-empty ``messages`` array; every message must be an object with a ``role``."""
    value = _non_empty_array(body, "messages")
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise _invalid_type(f"messages[{index}]", "an object", message)
        if not isinstance(message.get("role"), str):
            raise _missing(f"messages[{index}].role")
    return value


def text_or_tokens(body: dict[str, Any], name: str) -> str | list[Any]:
    """A completions prompt or embeddings input: a string, or a non-empty array of strings,
    of token ids, or of token-id arrays."""
    value = _required(body, name)
    if isinstance(value, str):
        return value
    if (
        isinstance(value, list)
        and value
        and (
            all(isinstance(item, str) for item in value)
            or all(_is_token_id(item) for item in value)
            or all(isinstance(item, list) and all(map(_is_token_id, item)) for item in value)
        )
    ):
        return value
    raise ApiError(
        400,
        f"Invalid '{name}': expected a string, or a non-empty array of strings, "
        "of integers, or of integer arrays.",
        param=name,
        code="invalid_value",
    )


def tool_names(body: dict[str, Any], *path: str) -> list[str]:
    """Names of the offered ``tools``, each found under ``path``; empty when none are offered."""
    tools = body.get("tools")
    if not tools:
        return []
    if not isinstance(tools, list):
        raise _invalid_type("tools", "an array", tools)
    names = []
    for index, tool in enumerate(tools):
        node: object = tool
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, str) or not node:
            raise _missing(f"tools[{index}]." + ".".join(path))
        names.append(node)
    return names


def string_list(body: dict[str, Any], name: str) -> list[str]:
    """A string or an array of strings (like ``stop``), as a list; empty when absent."""
    value = body.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise _invalid_type(name, "a string or an array of strings", value)


def _required(body: dict[str, Any], name: str) -> object:
    value = body.get(name)
    if value is None:
        raise _missing(name)
    return value


def _non_empty_array(body: dict[str, Any], name: str) -> list[Any]:
    value = _required(body, name)
    if not isinstance(value, list):
        raise _invalid_type(name, "an array", value)
    if not value:
        raise ApiError(
            400,
            f"Invalid '{name}': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param=name,
            code="empty_array",
        )
    return value


def _is_token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _missing(name: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{name}'.",
        param=name,
        code="missing_required_parameter",
    )


def _invalid_type(name: str, expected: str, value: object) -> ApiError:
    actual = _JSON_TYPE_NAMES.get(type(value), "an unsupported type")
    return ApiError(
        400,
        f"Invalid type for '{name}': expected {expected}, but got {actual} instead.",
        param=name,
        code="invalid_type",
    )
