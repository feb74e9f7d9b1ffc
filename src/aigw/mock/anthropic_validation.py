"""The checks the Anthropic Messages API makes of a request, worded as it words them.

Only what a client or a protocol translator plausibly gets wrong is checked: roles, content
blocks and their sources, pairing of ``tool_use`` with ``tool_result``, stop sequences, the
temperature range and the tool choice. Messages follow the API's ``path: problem`` style.
"""

from __future__ import annotations

import math
import re
from typing import Any

from aigw.mock.errors import ApiError

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_-]+")

_BLOCK_TYPES = {
    "user": frozenset({"text", "image", "document", "tool_result", "search_result"}),
    "assistant": frozenset(
        {
            "text",
            "tool_use",
            "thinking",
            "redacted_thinking",
            "server_tool_use",
            "web_search_tool_result",
        }
    ),
}
_TOOL_RESULT_BLOCK_TYPES = frozenset({"text", "image", "document", "search_result"})
_TOOL_CHOICE_TYPES = ("auto", "any", "tool", "none")


def check_request(body: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    """Raise ApiError(400) for the first problem the real API would refuse the request for."""
    _check_system(body.get("system"))
    for index, message in enumerate(messages):
        _check_message(message, index, last=index == len(messages) - 1)
    _check_tool_pairing(messages)
    _check_stop_sequences(body.get("stop_sequences"))
    temperature = body.get("temperature")
    if temperature is not None and not (
        isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and math.isfinite(temperature)
        and 0 <= temperature <= 1
    ):
        raise _bad("temperature: range: 0..1")


def tool_choice(body: dict[str, Any], names: list[str]) -> tuple[str, str | None]:
    """The request's tool choice as (mode, forced tool name); ``auto`` when absent."""
    choice = body.get("tool_choice")
    if choice is None:
        return "auto", None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in _TOOL_CHOICE_TYPES:
        raise _bad("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if not names:
        raise _bad("tool_choice: tool_choice may only be specified while providing tools.")
    if kind != "tool":
        return kind, None
    name = choice.get("name")
    if name not in names:
        raise _bad(f"tool_choice.name: Tool '{name}' not found in the provided tools.")
    return "tool", name


def _check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if isinstance(system, list):
        for index, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _bad(f"system.{index}.type: Input should be 'text'")
            _check_text(block, f"system.{index}")
        return
    raise _bad("system: Input should be a valid string or a list of text blocks")


def _check_message(message: dict[str, Any], index: int, *, last: bool) -> None:
    where = f"messages.{index}"
    role = message["role"]
    if role not in _BLOCK_TYPES:
        raise _bad(
            f"{where}.role: Input should be 'user' or 'assistant'"
            + (
                " (the Messages API takes a top-level `system` parameter, not a system role)"
                if role == "system"
                else ""
            )
        )
    content = message.get("content")
    if not content and not (last and role == "assistant" and content in ("", [])):
        raise _bad(
            "messages: all messages must have non-empty content except for the optional "
            "final assistant message"
        )
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad(f"{where}.content: Input should be a valid string or list")
    for position, block in enumerate(content):
        _check_block(block, f"{where}.content.{position}", _BLOCK_TYPES[role])


def _check_block(block: object, where: str, allowed: frozenset[str]) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in allowed or not isinstance(block, dict):
        expected = ", ".join(f"'{name}'" for name in sorted(allowed))
        raise _bad(f"{where}.type: Input should be one of {expected}")
    if kind == "text":
        _check_text(block, where)
    elif kind == "image":
        _check_image(block.get("source"), f"{where}.image.source")
    elif kind == "document":
        _check_document(block.get("source"), f"{where}.document.source")
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not _TOOL_USE_ID.fullmatch(block["id"]):
            raise _bad(f"{where}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
            raise _bad(f"{where}.tool_use: 'name' (a string) and 'input' (an object) are required")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise _bad(f"{where}.tool_result.tool_use_id: Field required")
        inner = block.get("content")
        if isinstance(inner, list):
            for position, nested in enumerate(inner):
                _check_block(
                    nested, f"{where}.tool_result.content.{position}", _TOOL_RESULT_BLOCK_TYPES
                )
        elif inner is not None and not isinstance(inner, str):
            raise _bad(f"{where}.tool_result.content: Input should be a valid string or list")


def _check_text(block: dict[str, Any], where: str) -> None:
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad(f"{where}.text: Input should be a valid string")
    if not text:
        raise _bad("messages: text content blocks must be non-empty")


def _check_image(source: object, where: str) -> None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        assert isinstance(source, dict)
        if source.get("media_type") not in IMAGE_MEDIA_TYPES:
            allowed = ", ".join(f"'{media}'" for media in IMAGE_MEDIA_TYPES)
            raise _bad(f"{where}.base64.media_type: Input should be {allowed}")
        _check_data(source, f"{where}.base64")
    elif kind == "url":
        _check_url(source, f"{where}.url")
    elif kind != "file":
        raise _bad(f"{where}.type: Input should be 'base64', 'url' or 'file'")


def _check_document(source: object, where: str) -> None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        assert isinstance(source, dict)
        if source.get("media_type") != "application/pdf":
            raise _bad(f"{where}.base64.media_type: Input should be 'application/pdf'")
        _check_data(source, f"{where}.base64")
    elif kind == "text":
        assert isinstance(source, dict)
        if source.get("media_type") != "text/plain" or not isinstance(source.get("data"), str):
            raise _bad(f"{where}.text: 'media_type' 'text/plain' and string 'data' are required")
    elif kind == "url":
        _check_url(source, f"{where}.url")
    elif kind not in ("content", "file"):
        raise _bad(f"{where}.type: Input should be 'base64', 'text', 'content', 'url' or 'file'")


def _check_data(source: dict[str, Any], where: str) -> None:
    data = source.get("data")
    if not isinstance(data, str) or not data:
        raise _bad(f"{where}.data: Field required")


def _check_url(source: object, where: str) -> None:
    url = source.get("url") if isinstance(source, dict) else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise _bad(f"{where}.url: Input should be a valid URL")


def _check_tool_pairing(messages: list[dict[str, Any]]) -> None:
    """Each tool_use is answered by a tool_result in the very next message, and vice versa."""
    previous_uses: set[str] = set()
    for index, message in enumerate(messages):
        blocks = message.get("content")
        blocks = blocks if isinstance(blocks, list) else []
        for position, block in enumerate(blocks):
            if block.get("type") == "tool_result" and block["tool_use_id"] not in previous_uses:
                raise _bad(
                    f"messages.{index}.content.{position}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {block['tool_use_id']}. Each `tool_result` block "
                    "must have a corresponding `tool_use` block in the previous message."
                )
        if previous_uses:
            answered = {b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"}
            missing = sorted(previous_uses - answered)
            if missing:
                raise _bad(
                    f"messages.{index - 1}: `tool_use` ids were found without `tool_result` "
                    f"blocks immediately after: {', '.join(missing)}. Each `tool_use` block "
                    "must have a corresponding `tool_result` block in the next message."
                )
        previous_uses = {
            block["id"]
            for block in blocks
            if message["role"] == "assistant" and block.get("type") == "tool_use"
        }


def _check_stop_sequences(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _bad("stop_sequences: Input should be a valid list of strings")
    if not all(item.strip() for item in value):
        raise _bad("stop_sequences: each stop sequence must contain non-whitespace")


def _bad(message: str) -> ApiError:
    return ApiError(400, message)
