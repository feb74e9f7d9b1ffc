"""What the mock understands of a prompt: its text, its size, and whether it asks for a tool.

Token counts are a documented estimate rather than a real tokenizer, identical for every
endpoint: one token per whitespace-separated word, plus ``MESSAGE_OVERHEAD_TOKENS`` per
message of a conversation (a system prompt counts as a message). Token-id arrays count one
token per id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MESSAGE_OVERHEAD_TOKENS = 3
"""Per-message framing cost, like the role and separator tokens of real chat formats."""

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


def conversation_tokens(messages: Sequence[Mapping[str, object]], system: object = None) -> int:
    """Estimated prompt tokens of a chat or Messages API conversation."""
    total = 0
    if system:
        total += MESSAGE_OVERHEAD_TOKENS + count_words(content_text(system))
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS + count_words(content_text(message.get("content")))
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
