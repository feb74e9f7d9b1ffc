"""How the gateway asks for token counts: in-process or from the token service, one interface.

:class:`LocalTokenCounter` counts in the calling process (no network hop; each worker holds the
tokenizer tables, ~100 MB). :class:`RemoteTokenCounter` asks ``aigw token-service`` over HTTP
(one round trip, a few hundred microseconds on a local network; the tables live in the service).
Both raise :class:`~aigw.tokens.counting.TokenCountError` for input that cannot be counted, so the
caller handles bad input the same way whichever it uses; the remote one also raises
:class:`TokenServiceUnavailable` when the service cannot answer, so that a caller can fall back to
counting locally or skip counting instead of failing the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import aiohttp
import orjson

from aigw.tokens.counting import (
    TokenCount,
    TokenCountError,
    count_chat_async,
    count_completion_prompt_async,
    count_embedding_input_async,
)

COUNT_PATH = "/v1/tokens/count"


@runtime_checkable
class TokenCounter(Protocol):
    """Prompt-token counts for the three kinds of OpenAI requests."""

    async def count_chat(
        self, model: str, messages: Sequence[Any], tools: Sequence[Any] | None = None
    ) -> TokenCount: ...

    async def count_completion_prompt(self, model: str, prompt: Any) -> TokenCount: ...

    async def count_embedding_input(self, model: str, input: Any) -> TokenCount: ...

    async def aclose(self) -> None: ...


class LocalTokenCounter:
    """Counts in this process; large inputs run in a worker thread (see counting.py)."""

    async def count_chat(
        self, model: str, messages: Sequence[Any], tools: Sequence[Any] | None = None
    ) -> TokenCount:
        return await count_chat_async(model, messages, tools)

    async def count_completion_prompt(self, model: str, prompt: Any) -> TokenCount:
        return await count_completion_prompt_async(model, prompt)

    async def count_embedding_input(self, model: str, input: Any) -> TokenCount:
        return await count_embedding_input_async(model, input)

    async def aclose(self) -> None:
        return None


class TokenServiceUnavailable(Exception):
    """The token service did not answer, or answered with something other than a count."""


class RemoteTokenCounter:
    """Counts with ``aigw token-service`` at ``url`` (e.g. ``http://127.0.0.1:8002``).

    It opens its own pooled aiohttp session on first use unless given one (then the caller owns
    and closes it); ``timeout`` bounds each call, connection included.
    """

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.endpoint = url.rstrip("/") + COUNT_PATH
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def count_chat(
        self, model: str, messages: Sequence[Any], tools: Sequence[Any] | None = None
    ) -> TokenCount:
        payload: dict[str, Any] = {"model": model, "messages": list(messages)}
        if tools is not None:
            payload["tools"] = list(tools)
        return await self._count(payload)

    async def count_completion_prompt(self, model: str, prompt: Any) -> TokenCount:
        return await self._count({"model": model, "prompt": prompt})

    async def count_embedding_input(self, model: str, input: Any) -> TokenCount:
        return await self._count({"model": model, "input": input})

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def _count(self, payload: dict[str, Any]) -> TokenCount:
        try:
            body = orjson.dumps(payload)
        except TypeError as exc:
            raise TokenCountError(f"the input cannot be sent as JSON: {exc}") from None
        session = self._session_for_call()
        try:
            async with session.post(
                self.endpoint,
                data=body,
                headers={"content-type": "application/json"},
                timeout=self._timeout,
            ) as response:
                status = response.status
                answer = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TokenServiceUnavailable(
                f"token service {self.endpoint}: {type(exc).__name__}: {exc}"
            ) from exc
        return _result(self.endpoint, status, answer)

    def _session_for_call(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session


def _result(endpoint: str, status: int, answer: bytes) -> TokenCount:
    try:
        data = orjson.loads(answer)
    except orjson.JSONDecodeError:
        data = None
    if status == 200 and isinstance(data, dict):
        try:
            return TokenCount(
                tokens=int(data["tokens"]),
                exact=bool(data["exact"]),
                encoding=str(data["encoding"]),
            )
        except (KeyError, TypeError, ValueError):
            pass
    elif status in (400, 413, 422):
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            raise TokenCountError(
                str(error.get("message") or "invalid input"),
                error.get("param") if isinstance(error.get("param"), str) else None,
            )
    raise TokenServiceUnavailable(f"token service {endpoint} answered {status}: {answer[:200]!r}")
