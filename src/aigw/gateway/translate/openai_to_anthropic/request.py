"""Chat Completions request → Messages API request (decisions: see the package notes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from aigw.gateway.core.errors import InvalidRequest

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_ID_ALLOWED = re.compile(r"[A-Za-z0-9_-]+")
_TOOL_ID_FORBIDDEN = re.compile(r"[^A-Za-z0-9_-]")


def _is_set(value: object) -> bool:
    return value is not None


def _is_truthy(value: object) -> bool:
    return bool(value)


def _is_nonzero(value: object) -> bool:
    return value is not None and value != 0


# Parameter → "does this value ask for something Claude cannot do?"
_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "n": lambda value: value is not None and value != 1,
    "logprobs": _is_truthy,
    "top_logprobs": _is_nonzero,
    "logit_bias": _is_truthy,
    "presence_penalty": _is_nonzero,
    "frequency_penalty": _is_nonzero,
    "audio": _is_set,
    "modalities": lambda value: (
        value is not None
        and not (isinstance(value, list) and all(item == "text" for item in value))
    ),
    "reasoning_effort": _is_set,
    "verbosity": _is_set,
    "web_search_options": _is_set,
    "functions": _is_set,
    "function_call": _is_set,
}

_JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose before or after it "
    "and no Markdown code fence around it."
)


def chat_to_messages_request(
    body: dict[str, Any],
    *,
    upstream_model: str,
    default_max_tokens: int,
    drop_unsupported: bool = False,
) -> dict[str, Any]:
    """The Messages API request for a Chat Completions request body (see the module notes).

    Raises InvalidRequest (a 400) for what Claude cannot be asked.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    if not drop_unsupported:
        for name, unsupported in _UNSUPPORTED.items():
            if unsupported(body.get(name)):
                raise InvalidRequest(
                    f"'{name}' is not supported by this model (it is served by Anthropic "
                    "Claude); remove the parameter",
                    param=name,
                )

    system, messages = _conversation(body.get("messages"))
    request: dict[str, Any] = {
        "model": upstream_model,
        "max_tokens": _max_tokens(body, default_max_tokens),
        "messages": messages,
    }
    instruction = _response_format_instruction(body.get("response_format"))
    if instruction is not None:
        system.append({"type": "text", "text": instruction})
    if system:
        request["system"] = _compact(system)

    stop = _stop_sequences(body.get("stop"), drop_unsupported)
    if stop:
        request["stop_sequences"] = stop
    temperature = _temperature(body.get("temperature"), drop_unsupported)
    if temperature is not None:
        request["temperature"] = temperature
    top_p = body.get("top_p")
    if top_p is not None:
        request["top_p"] = _number(top_p, "top_p", 0, 1)

    tools = _tools(body.get("tools"))
    if tools:
        request["tools"] = tools
    tool_choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"), tools)
    if tool_choice is not None:
        request["tool_choice"] = tool_choice

    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        request["metadata"] = {"user_id": user}
    if body.get("stream") is True:
        request["stream"] = True
    return request


def _conversation(raw: object) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System text blocks, and the alternating Claude turns of ``messages``."""
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"'{where}' must be an object", param=where)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"{where}.content"))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), f"{where}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        elif role == "function":
            raise InvalidRequest(
                "legacy 'function' messages are not supported; use 'tools' and 'tool' messages",
                param=f"{where}.role",
            )
        else:
            raise InvalidRequest(f"'{where}.role' {role!r} is not a known role", param=where)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    if not turns:
        raise InvalidRequest(
            "'messages' needs at least one user or assistant message with content",
            param="messages",
        )
    return system, [{"role": role, "content": _compact(blocks)} for role, blocks in turns]


def _compact(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone text block without cache marker as the string shorthand most clients write."""
    if len(blocks) == 1 and blocks[0]["type"] == "text" and "cache_control" not in blocks[0]:
        text: str = blocks[0]["text"]
        return text
    return blocks


def _text_blocks(content: object, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}' must be a string or an array of parts", param=where)
    blocks = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise InvalidRequest(f"'{where}[{j}]' must be a text part", param=f"{where}[{j}]")
        block = _text_part(part, f"{where}[{j}]")
        if block is not None:
            blocks.append(block)
    return blocks


def _text_part(part: dict[str, Any], where: str) -> dict[str, Any] | None:
    text = part.get("text") if part.get("type") == "text" else part.get("refusal")
    if not isinstance(text, str):
        raise InvalidRequest(f"'{where}' needs its text", param=where)
    if not text:
        return None
    return _with_cache_control({"type": "text", "text": text}, part)


def _with_cache_control(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    marker = part.get("cache_control")
    if isinstance(marker, dict):
        block["cache_control"] = marker
    return block


def _user_blocks(content: object, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}' must be a string or an array of parts", param=where)
    blocks = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        block: dict[str, Any] | None
        if kind == "text":
            block = _text_part(part, at)
        elif kind == "image_url":
            block = _image_block(part, at)
        elif kind == "file":
            block = _document_block(part, at)
        else:
            raise InvalidRequest(
                f"content part type {kind!r} cannot be sent to this model (Anthropic Claude)",
                param=at,
            )
        if block is not None:
            blocks.append(block)
    return blocks


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"'{where}.image_url.url' is missing", param=where)
    if url.startswith("data:"):
        media_type, data = _data_url(url, where)
        if media_type not in _IMAGE_TYPES:
            raise InvalidRequest(
                f"image type '{media_type}' is not supported by Claude; use JPEG, PNG, GIF or WebP",
                param=where,
            )
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise InvalidRequest(
            f"'{where}.image_url.url' must be an http(s) URL or a base64 data URL", param=where
        )
    return _with_cache_control({"type": "image", "source": source}, part)


def _document_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    spec = part.get("file")
    data_url = spec.get("file_data") if isinstance(spec, dict) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise InvalidRequest(
            "file parts need their content inline ('file_data' as a base64 data URL); "
            "uploaded file ids mean nothing to this model (Anthropic Claude)",
            param=where,
        )
    media_type, data = _data_url(data_url, where)
    if media_type != "application/pdf":
        raise InvalidRequest(f"file type '{media_type}' is not supported; use PDF", param=where)
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }
    filename = spec.get("filename") if isinstance(spec, dict) else None
    if isinstance(filename, str) and filename:
        block["title"] = filename
    return _with_cache_control(block, part)


def _data_url(url: str, where: str) -> tuple[str, str]:
    """The media type and base64 payload of ``data:<type>;base64,<data>``."""
    header, comma, data = url[5:].partition(",")
    media_type, *options = header.split(";")
    if not comma or "base64" not in options or not data:
        raise InvalidRequest(f"'{where}' must hold a base64 data URL", param=where)
    return media_type.strip().lower(), data


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    if message.get("function_call") is not None:
        raise InvalidRequest(
            "legacy 'function_call' is not supported; use 'tool_calls'",
            param=f"{where}.function_call",
        )
    content = message.get("content")
    blocks = [] if content is None else _text_blocks(content, f"{where}.content")
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise InvalidRequest(f"'{where}.tool_calls' must be an array", param=f"{where}.tool_calls")
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"'{at}' must be a function call with a name", param=at)
        blocks.append(
            {
                "type": "tool_use",
                "id": _tool_id(call.get("id"), at),
                "name": function["name"],
                "input": _arguments(function.get("arguments"), f"{at}.function.arguments"),
            }
        )
    return blocks


def _arguments(raw: object, where: str) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    raise InvalidRequest(f"'{where}' must be a JSON object encoded as a string", param=where)


def _tool_id(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise InvalidRequest(f"'{where}' needs an id", param=where)
    if _TOOL_ID_ALLOWED.fullmatch(raw):
        return raw
    return _TOOL_ID_FORBIDDEN.sub("_", raw)


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": _tool_id(message.get("tool_call_id"), f"{where}.tool_call_id"),
    }
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        texts = _text_blocks(content, f"{where}.content")
        if texts:
            block["content"] = texts
    return block


def _max_tokens(body: dict[str, Any], default: int) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest(f"'{name}' must be an integer >= 1", param=name)
        return value
    return default


def _stop_sequences(raw: object, drop_unsupported: bool) -> list[str]:
    if raw is None:
        return []
    sequences = [raw] if isinstance(raw, str) else raw
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise InvalidRequest("'stop' must be a string or an array of strings", param="stop")
    usable = [s for s in sequences if s.strip()]
    if len(usable) < len(sequences) and not drop_unsupported:
        raise InvalidRequest(
            "this model (Anthropic Claude) does not accept stop sequences that are empty or "
            "only whitespace, such as a newline",
            param="stop",
        )
    return usable


def _temperature(raw: object, drop_unsupported: bool) -> float | None:
    if raw is None:
        return None
    value = _number(raw, "temperature", 0, 2)
    if value <= 1:
        return value
    if drop_unsupported:
        return 1.0
    raise InvalidRequest(
        "'temperature' above 1 is not supported by this model (Anthropic Claude takes 0 to 1)",
        param="temperature",
    )


def _number(raw: object, name: str, low: float, high: float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not low <= raw <= high:
        raise InvalidRequest(f"'{name}' must be a number from {low} to {high}", param=name)
    return raw


def _tools(raw: object) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    tools = []
    for i, tool in enumerate(raw):
        at = f"tools[{i}]"
        is_function = isinstance(tool, dict) and tool.get("type") == "function"
        function = tool.get("function") if is_function else None
        if not isinstance(function, dict):
            raise InvalidRequest(
                "only 'function' tools can be offered to this model (Anthropic Claude)", param=at
            )
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"'{at}.function.name' is missing", param=at)
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        converted: dict[str, Any] = {"name": name, "input_schema": schema}
        description = function.get("description")
        if isinstance(description, str) and description:
            converted["description"] = description
        tools.append(converted)
    return tools


def _tool_choice(
    raw: object, parallel_tool_calls: object, tools: list[dict[str, Any]]
) -> dict[str, Any] | None:
    choice: dict[str, Any] | None
    if raw is None:
        choice = None
    elif raw == "auto":
        choice = {"type": "auto"}
    elif raw == "none":
        choice = {"type": "none"}
    elif raw == "required":
        choice = {"type": "any"}
    elif (
        isinstance(raw, dict)
        and raw.get("type") == "function"
        and isinstance(raw.get("function"), dict)
        and isinstance(raw["function"].get("name"), str)
    ):
        choice = {"type": "tool", "name": raw["function"]["name"]}
    else:
        raise InvalidRequest(
            "'tool_choice' must be 'auto', 'none', 'required' or a named function",
            param="tool_choice",
        )
    if not tools:
        # Claude refuses tool_choice without tools; only a demand to call one is an error.
        if choice is not None and choice["type"] in ("any", "tool"):
            raise InvalidRequest("'tool_choice' requires 'tools'", param="tool_choice")
        return None
    if parallel_tool_calls is False and (choice is None or choice["type"] != "none"):
        choice = (choice or {"type": "auto"}) | {"disable_parallel_tool_use": True}
    return choice


def _response_format_instruction(raw: object) -> str | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return _JSON_OBJECT_INSTRUCTION
    spec = raw.get("json_schema") if isinstance(raw, dict) else None
    if kind == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        name = spec.get("name")
        named = f" (named '{name}')" if isinstance(name, str) and name else ""
        schema = orjson.dumps(spec["schema"]).decode()
        return (
            f"Respond with a single valid JSON value that conforms to this JSON Schema{named}, "
            "and nothing else: no prose before or after it and no Markdown code fence around "
            f"it.\nSchema: {schema}"
        )
    raise InvalidRequest(
        "'response_format' must be of type 'text', 'json_object' or 'json_schema' (with a "
        "'schema')",
        param="response_format",
    )
