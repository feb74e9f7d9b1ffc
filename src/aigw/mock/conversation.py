"""What the mock understands of a prompt: its text, its size, and whether it asks for a tool.

Token counts are a documented estimate rather than a real tokenizer, identical for every
endpoint: one token per whitespace-separated word, plus ``MESSAGE_OVERHEAD_TOKENS`` per
message of a conversation (a system prompt counts as a message) and ``ATTACHMENT_TOKENS`` per
image or binary document. Token-id arrays count one token per id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MESSAGE_OVERHEAD_TOKENS = 3
"""Per-message framing cost, like the role and separator tokens of real chat formats."""

ATTACHMENT_TOKENS = 85
"""Per image or binary document (PDF, audio), whatever its size."""

TOOL_TRIGGER = "use a tool"
"""Text in the user's last turn that makes the mock call the first offered tool."""


def content_text(content: object) -> str:
    """The plain text of message content: a string, or the text of its parts.

    Parts are OpenAI content parts or Anthropic blocks; a block without text of its own
    (such as ``tool_result``) contributes the text of its nested ``content``.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        text = part.get("text")
        texts.append(text if isinstance(text, str) else content_text(part.get("content")))
    return " ".join(texts)


def count_words(text: str) -> int:
    """Tokens of a text under the mock's estimate."""
    return len(text.split())


def content_tokens(content: object) -> int:
    """Estimated tokens of message content: its words, and its attachments.

    A document of plain text (an Anthropic ``document`` with a ``text`` source) counts its
    words rather than as an attachment.
    """
    if isinstance(content, str):
        return count_words(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if not isinstance(part, Mapping):
            continue
        text = part.get("text")
        source = part.get("source")
        if isinstance(text, str):
            total += count_words(text)
        elif (
            isinstance(source, Mapping)
            and isinstance(source.get("data"), str)
            and (source.get("type") == "text")
        ):
            total += count_words(source["data"])
        elif part.get("type") in _ATTACHMENT_PARTS:
            total += ATTACHMENT_TOKENS
        else:
            total += content_tokens(part.get("content"))
    return total


_ATTACHMENT_PARTS = frozenset({"image", "image_url", "document", "file", "input_audio"})


def conversation_tokens(messages: Sequence[Mapping[str, object]], system: object = None) -> int:
    """Estimated prompt tokens of a chat or Messages API conversation."""
    total = 0
    if system:
        total += MESSAGE_OVERHEAD_TOKENS + content_tokens(system)
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS + content_tokens(message.get("content"))
    return total


def input_tokens(value: str | Sequence[object]) -> int:
    """Estimated tokens of a completions prompt or embeddings input (text or token ids)."""
    if isinstance(value, str):
        return count_words(value)
    total = 0
    for item in value:
        if isinstance(item, str):
            total += count_words(item)
        elif isinstance(item, list):
            total += len(item)
        else:  # a single token id of a flat token array
            total += 1
    return total


def asks_for_tool(messages: Sequence[Mapping[str, object]]) -> bool:
    """True when the conversation ends with a user turn containing ``TOOL_TRIGGER``.

    Only the final turn counts, so once a tool result follows (OpenAI's ``tool`` role, or an
    Anthropic ``tool_result`` block) the mock answers in text instead of looping.
    """
    last = messages[-1]
    return last.get("role") == "user" and TOOL_TRIGGER in content_text(last.get("content")).lower()


def tool_to_call(
    names: Sequence[str], mode: str, forced: str | None, messages: Sequence[Mapping[str, object]]
) -> str | None:
    """Which offered tool the mock calls, if any, under the request's tool choice.

    ``mode`` is ``auto`` (call the first tool when the user asks for one), ``any`` (always call
    the first tool), ``tool`` (always call ``forced``) or ``none`` (never call one).
    """
    if not names or mode == "none":
        return None
    if mode == "tool":
        return forced
    if mode == "any" or asks_for_tool(messages):
        return names[0]
    return None
