"""Where the gateway counts prompt tokens: in its own process, or at ``aigw token-service``.

By default each worker counts in process (``aigw.tokens``: no network hop; long prompts in a
thread). With ``AIGW_TOKEN_SERVICE=http://host:8002`` it asks the token service instead (one
HTTP round trip per counted request; the tokenizer tables live in the service), the split
deployment of the seed. When the service cannot answer, the request is not failed for it: the
worker counts that prompt itself, logs a warning (at most once a minute) and counts the fallback
in :attr:`PromptCounter.fallbacks`. Input that cannot be counted raises
:class:`~aigw.tokens.counting.TokenCountError` either way.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from aigw.tokens.client import (
    LocalTokenCounter,
    RemoteTokenCounter,
    TokenCounter,
    TokenServiceUnavailable,
)
from aigw.tokens.counting import TokenCount

log = logging.getLogger("aigw.gateway.tokens")

TOKEN_SERVICE_ENV = "AIGW_TOKEN_SERVICE"
WARN_EVERY_SECONDS = 60.0
# Bounds a call to the token service: past it the worker counts the prompt itself.
REMOTE_TIMEOUT_SECONDS = 2.0

T = TypeVar("T")


class PromptCounter:
    """The worker's counter: the token service when configured, else (and as fallback) local."""

    def __init__(self, remote: TokenCounter | None = None) -> None:
        self.remote = remote
        self.local = LocalTokenCounter()
        self.fallbacks = 0
        self._warned_at = -WARN_EVERY_SECONDS

    async def count_chat(
        self, model: str, messages: Sequence[Any], tools: Sequence[Any] | None = None
    ) -> TokenCount:
        return await self._either(lambda counter: counter.count_chat(model, messages, tools))

    async def count_completion_prompt(self, model: str, prompt: Any) -> TokenCount:
        return await self._either(lambda counter: counter.count_completion_prompt(model, prompt))

    async def count_embedding_input(self, model: str, input: Any) -> TokenCount:
        return await self._either(lambda counter: counter.count_embedding_input(model, input))

    async def aclose(self) -> None:
        if self.remote is not None:
            await self.remote.aclose()

    async def _either(self, count: Callable[[TokenCounter], Awaitable[T]]) -> T:
        if self.remote is not None:
            try:
                return await count(self.remote)
            except TokenServiceUnavailable as exc:
                self._fell_back(exc)
        return await count(self.local)

    def _fell_back(self, exc: TokenServiceUnavailable) -> None:
        self.fallbacks += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "token service unavailable (%s); counting in process (%d times so far)",
                exc,
                self.fallbacks,
            )


def counter_from_env(env: Mapping[str, str]) -> PromptCounter:
    url = env.get(TOKEN_SERVICE_ENV)
    if not url:
        return PromptCounter()
    return PromptCounter(RemoteTokenCounter(url, timeout=REMOTE_TIMEOUT_SECONDS))


_counter: PromptCounter | None = None


def prompt_counter() -> PromptCounter:
    """This worker's counter, made from the environment on first use."""
    global _counter
    if _counter is None:
        _counter = counter_from_env(os.environ)
    return _counter


async def close_prompt_counter() -> None:
    global _counter
    counter, _counter = _counter, None
    if counter is not None:
        await counter.aclose()
