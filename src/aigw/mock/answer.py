"""What the mock says: a deterministic answer, one word per token, and fresh object ids."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
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
    """The text as streamed, one piece per token."""
    text: str
    truncated: bool
    """True when the request's token limit cut the answer short."""
    generated: int
    """Output tokens the model spent: ``len(tokens)``, plus any a stop sequence swallowed."""
    stop_sequence: str | None = None
    """The stop sequence that ended the answer, if one did."""


def text_answer(
    max_tokens: int | None, natural_tokens: int, stop_sequences: Sequence[str] = ()
) -> TextAnswer:
    """An answer of ``natural_tokens`` tokens, cut to ``max_tokens`` when that is lower.

    Like a real model, generation stops as soon as the text contains one of the
    ``stop_sequences``: the answer is the text before it, the sequence itself excluded.
    """
    if max_tokens is not None and max_tokens < natural_tokens:
        answer = _answer(max_tokens, truncated=True)
    else:
        answer = _answer(natural_tokens, truncated=False)
    return _stopped(answer, stop_sequences) if stop_sequences else answer


def new_id(prefix: str) -> str:
    """A unique id in the providers' style, e.g. ``chatcmpl-…``, ``msg_…``, ``call_…``."""
    return prefix + secrets.token_hex(12)


# Requests overwhelmingly share a handful of lengths, so caching makes answers nearly free.
@lru_cache(maxsize=256)
def _answer(count: int, *, truncated: bool) -> TextAnswer:
    size = len(_WORDS)
    tokens = tuple(_WORDS[0] if i == 0 else _SPACED[i % size] for i in range(count))
    return TextAnswer(tokens, "".join(tokens), truncated, count)


def _stopped(answer: TextAnswer, stop_sequences: Sequence[str]) -> TextAnswer:
    """``answer`` ended by the stop sequence generated first, if any is."""
    matches = [
        (position + len(sequence), position, sequence)
        for sequence in stop_sequences
        if sequence and (position := answer.text.find(sequence)) >= 0
    ]
    if not matches:
        return answer
    end, start, sequence = min(matches)  # the one completed first stops generation
    tokens: list[str] = []
    offset = generated = 0
    for token in answer.tokens:
        if offset >= end:
            break
        generated += 1
        kept = token[: max(start - offset, 0)]
        if kept:
            tokens.append(kept)
        offset += len(token)
    return TextAnswer(tuple(tokens), answer.text[:start], False, generated, sequence)
