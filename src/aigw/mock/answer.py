"""What the mock says: a deterministic answer, one word per token, and fresh object ids."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache

SENTENCE = "This is a mock response from the aigw mock upstream ."
"""The answer cycles through this sentence, one whitespace-separated word per token."""

TOOL_CALL_TOKENS = 2
"""Output tokens charged for a tool call: the function name and its (empty) arguments."""

_WORDS = tuple(SENTENCE.split())
# Every token after the first carries its leading space, as real tokenizers emit them, so
# concatenating the streamed deltas gives exactly the non-streamed text.
_SPACED = tuple(" " + word for word in _WORDS)


@dataclass(frozen=True, slots=True)
class TextAnswer:
    """The answer to one request."""

    tokens: tuple[str, ...]
    text: str
    truncated: bool
    """True when the request's token limit cut the answer short."""


def text_answer(max_tokens: int | None, natural_tokens: int) -> TextAnswer:
    """An answer of ``natural_tokens`` tokens, cut to ``max_tokens`` when that is lower."""
    if max_tokens is not None and max_tokens < natural_tokens:
        return _answer(max_tokens, truncated=True)
    return _answer(natural_tokens, truncated=False)


def new_id(prefix: str) -> str:
    """A unique id in the providers' style, e.g. ``chatcmpl-…``, ``msg_…``, ``call_…``."""
    return prefix + secrets.token_hex(12)


# Requests overwhelmingly share a handful of lengths, so caching makes answers nearly free.
@lru_cache(maxsize=256)
def _answer(count: int, *, truncated: bool) -> TextAnswer:
    size = len(_WORDS)
    tokens = tuple(_WORDS[0] if i == 0 else _SPACED[i % size] for i in range(count))
    return TextAnswer(tokens, "".join(tokens), truncated)
