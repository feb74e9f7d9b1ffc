"""Messages API request → Chat Completions request (decisions: see the package notes)."""

from __future__ import annotations

from typing import Any

import orjson

from aigw.gateway.core.errors import InvalidRequest

_TOOL_RESULT_ERROR_PREFIX = "Error: "


def messages_to_chat_request(body: dict[str, Any], *, upstream_model: str) -> dict[str, Any]:
    """The Chat Completions request for a Messages API request body (see the module notes).

    Raises InvalidRequest (a 400) for what an OpenAI model cannot be asked.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    if body.get("mcp_servers"):
        raise InvalidRequest(
            "'mcp_servers' is not supported by this model (it is served by OpenAI)",
            param="mcp_servers",
        )
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    for i, message in enumerate(raw):
        messages.extend(_messages(message, f"messages[{i}]"))

    request: dict[str, Any] = {"model": upstream_model, "messages": messages}
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = body[name]
    stop = body.get("stop_sequences")
    if stop:
        request["stop"] = stop

    tools = _tools(body.get("tools"))
    if tools:
        request["tools"] = tools
        request.update(_tool_choice(body.get("tool_choice")))
    response_format = _response_format(body.get("output_config"))
    if response_format is not None:
        request["response_format"] = response_format

    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user, str) and user:
        request["user"] = user
    if body.get("stream") is True:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


def _system_text(raw: object) -> str:
    if raw is None or isinstance(raw, str):
        return raw or ""
    if isinstance(raw, list):
        texts = [block.get("text") for block in raw if isinstance(block, dict)]
        if all(isinstance(text, str) for text in texts) and len(texts) == len(raw):
            return "\n\n".join(t for t in texts if t)
    raise InvalidRequest("'system' must be a string or an array of text blocks", param="system")


def _messages(message: object, where: str) -> list[dict[str, Any]]:
    """The OpenAI messages for one Anthropic message (a user turn may need several)."""
    if not isinstance(message, dict):
        raise InvalidRequest(f"'{where}' must be an object", param=where)
    role = message.get("role")
    content = message.get("content")
    if role not in ("user", "assistant"):
        raise InvalidRequest(f"'{where}.role' must be 'user' or 'assistant'", param=where)
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}.content' must be a string or an array", param=where)
    if role == "assistant":
        message = _assistant_message(content, where)
        # Only thinking blocks: nothing OpenAI would accept is left of the turn.
        return [message] if message["content"] or "tool_calls" in message else []
    return _user_messages(content, where)


def _assistant_message(content: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise InvalidRequest(f"'{at}' needs an id and a name", param=at)
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):
            raise _unsupported_block(kind, at)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user_messages(content: list[Any], where: str) -> list[dict[str, Any]]:
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "document":
            parts.append(_document_part(block, at))
        elif kind == "tool_result":
            tool_messages.append(_tool_message(block, at, tool_images))
        else:
            raise _unsupported_block(kind, at)
    messages = tool_messages
    parts = tool_images + parts
    if len(parts) == 1 and parts[0]["type"] == "text":
        messages.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        messages.append({"role": "user", "content": parts})
    return messages


def _text(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"'{where}.text' must be a string", param=where)
    return text


def _source(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source")
    return source if isinstance(source, dict) else {}


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = _source(block)
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise InvalidRequest(
            f"image source type {kind!r} cannot be sent to this model (it is served by "
            "OpenAI); use base64 or url",
            param=where,
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = _source(block)
    kind = source.get("type")
    title = block.get("title")
    if kind == "base64" and source.get("media_type") == "application/pdf":
        name = title if isinstance(title, str) and title else "document.pdf"
        data_url = f"data:application/pdf;base64,{source.get('data')}"
        return {"type": "file", "file": {"filename": name, "file_data": data_url}}
    if kind == "text":
        text = source.get("data")
    elif kind == "content":
        inner = source.get("content")
        text = inner if isinstance(inner, str) else _joined_text(inner, where)
    else:
        raise InvalidRequest(
            f"document source type {kind!r} cannot be sent to this model (it is served by "
            "OpenAI); use a base64 PDF, text or content source",
            param=where,
        )
    if not isinstance(text, str):
        raise InvalidRequest(f"'{where}.source' has no text", param=where)
    if isinstance(title, str) and title:
        text = f"{title}\n\n{text}"
    return {"type": "text", "text": text}


def _joined_text(blocks: object, where: str) -> str:
    if not isinstance(blocks, list):
        raise InvalidRequest(f"'{where}' must hold text blocks", param=where)
    return "".join(_text(block, where) for block in blocks if isinstance(block, dict))


def _tool_message(
    block: dict[str, Any], where: str, images: list[dict[str, Any]]
) -> dict[str, Any]:
    tool_id = block.get("tool_use_id")
    if not isinstance(tool_id, str) or not tool_id:
        raise InvalidRequest(f"'{where}.tool_use_id' is missing", param=where)
    content = block.get("content")
    if content is None or isinstance(content, str):
        text = content or ""
    elif isinstance(content, list):
        texts = []
        for k, inner in enumerate(content):
            at = f"{where}.content[{k}]"
            kind = inner.get("type") if isinstance(inner, dict) else None
            if kind == "text":
                texts.append(_text(inner, at))
            elif kind == "image":
                if not images:
                    images.append({"type": "text", "text": "Images returned by the tools:"})
                images.append(_image_part(inner, at))
            else:
                raise _unsupported_block(kind, at)
        text = "\n".join(texts)
    else:
        raise InvalidRequest(f"'{where}.content' must be a string or an array", param=where)
    if block.get("is_error") is True:
        text = _TOOL_RESULT_ERROR_PREFIX + text
    return {"role": "tool", "tool_call_id": tool_id, "content": text}


def _unsupported_block(kind: object, where: str) -> InvalidRequest:
    return InvalidRequest(
        f"content block type {kind!r} cannot be sent to this model (it is served by OpenAI)",
        param=where,
    )


def _tools(raw: object) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    tools = []
    for i, tool in enumerate(raw):
        at = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
            raise InvalidRequest(
                "only custom tools (name, description, input_schema) can be offered to this "
                "model (it is served by OpenAI); Anthropic's server tools cannot",
                param=at,
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"'{at}.name' is missing", param=at)
        function: dict[str, Any] = {"name": name}
        description = tool.get("description")
        if isinstance(description, str) and description:
            function["description"] = description
        function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(raw: object) -> dict[str, Any]:
    """The ``tool_choice`` and ``parallel_tool_calls`` fields for Anthropic's ``tool_choice``."""
    if raw is None:
        return {}
    choice = raw if isinstance(raw, dict) else {}
    kind = choice.get("type")
    fields: dict[str, Any]
    if kind == "auto":
        fields = {"tool_choice": "auto"}
    elif kind == "any":
        fields = {"tool_choice": "required"}
    elif kind == "none":
        fields = {"tool_choice": "none"}
    elif kind == "tool" and isinstance(choice.get("name"), str):
        fields = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    else:
        raise InvalidRequest(
            "'tool_choice' must be of type 'auto', 'any', 'tool' (with a name) or 'none'",
            param="tool_choice",
        )
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        fields["parallel_tool_calls"] = False
    return fields


def _response_format(output_config: object) -> dict[str, Any] | None:
    spec = output_config.get("format") if isinstance(output_config, dict) else None
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "json_schema":
        raise InvalidRequest(
            "'output_config.format' must be of type 'json_schema'", param="output_config"
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest("'output_config.format.schema' is missing", param="output_config")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
