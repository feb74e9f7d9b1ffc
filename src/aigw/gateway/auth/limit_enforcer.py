"""Rate limits, quotas and budgets, held exactly across every gateway by the shared state store.

Admission is one call to the store (one Redis round trip) after the static policy checks: the
request's prompt tokens are counted (in a thread when long), its completion is estimated from
``max_tokens`` (or the policy's ``default_max_tokens``), and every limit of its namespace and key
is checked and reserved at once. After the response, the reservation is settled with the usage
the upstream reported, in a background task: off the response path, awaited on shutdown.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from aigw.config.snapshot import KeyEntry, ModelEntry
from aigw.gateway.auth.prompt_counter import close_prompt_counter, prompt_counter
from aigw.gateway.core.errors import GatewayError, InvalidRequest, NotReady
from aigw.gateway.translate.anthropic_to_openai import messages_to_chat_request
from aigw.state.limits import Admission, LimitStore, limit_store_for
from aigw.state.redis_client import cluster_from_env, url_from_env
from aigw.tokens import counting

log = logging.getLogger("aigw.gateway.limits")

FAIL_MODE_ENV = "AIGW_LIMITS_FAIL_MODE"
TIMEOUT_ENV = "AIGW_LIMITS_TIMEOUT_MS"
# Completion tokens reserved when neither the request nor the policy says how many.
FALLBACK_COMPLETION_TOKENS = 1024
_QUOTA_KINDS = frozenset(
    {"tokens_per_day", "tokens_per_month", "spend_per_day_usd", "spend_per_month_usd"}
)


class RateLimited(GatewayError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class QuotaExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


@dataclass(frozen=True, slots=True)
class Estimate:
    prompt_tokens: int
    completion_tokens: int


class LimitEnforcer:
    """One per worker: the store (Redis behind a breaker, or in-process) and pending settles."""

    def __init__(self, store: LimitStore | None = None) -> None:
        self._store = store

    @property
    def store(self) -> LimitStore:
        if self._store is None:
            fail_mode = os.environ.get(FAIL_MODE_ENV, "open")
            timeout_ms = os.environ.get(TIMEOUT_ENV)
            self._store = limit_store_for(
                url_from_env(os.environ),
                cluster=cluster_from_env(os.environ),
                fail_mode="closed" if fail_mode == "closed" else "open",
                timeout=float(timeout_ms) / 1000 if timeout_ms else None,
            )
        return self._store

    async def admit(
        self,
        key: KeyEntry,
        model: ModelEntry,
        upstream_model: str,
        path: str,
        body: dict[str, Any],
        response_headers: list[tuple[bytes, bytes]],
    ) -> tuple[Admission | None, int | None]:
        """Check the prompt cap and every limit; reserve; add OpenAI's rate-limit headers.

        Returns the admission (None when the key has no limits: no round trip at all) and the
        prompt tokens counted (None when nothing needed them).
        """
        estimate = None
        if key.counts_tokens:
            estimate = await estimate_tokens(
                key, upstream_model, path, body, model.default_max_tokens
            )
        counted = estimate.prompt_tokens if estimate is not None else None
        if not key.has_limits:
            return None, counted
        tokens = estimate.prompt_tokens + estimate.completion_tokens if estimate else 0
        cost = 0
        if estimate is not None and model.price is not None:
            cost = round(
                model.price.cost(estimate.prompt_tokens, estimate.completion_tokens) * 1_000_000
            )
        assert key.limit_plan is not None
        plan = key.limit_plan.with_estimates(tokens, cost)
        admission = await self.store.admit(plan)
        headers = admission.headers()
        if admission.allowed:
            response_headers.extend((k.encode(), v.encode()) for k, v in headers.items())
            return admission, counted
        raise _refusal(admission, headers)

    def describe(self) -> dict[str, Any]:
        """For /readyz: where limits are counted, and the Redis breaker's state."""
        store = self._store
        if store is None:
            return {"store": "not used yet"}
        breaker = getattr(store, "state", None)
        if breaker is None:
            return {"store": "memory"}
        return {
            "store": "redis",
            "breaker": breaker,
            "fail_open_admissions": getattr(store, "fail_open_admissions", 0),
        }

    def settle_later(self, admission: Admission, tokens: int, cost_usd: float) -> None:
        """Correct the reservation with real usage, without holding up the response: the store
        batches it with other traffic and :meth:`close` waits for it."""
        self.store.settle_soon(admission, tokens, round(cost_usd * 1_000_000))

    async def close(self) -> None:
        """Finish every pending settle (graceful shutdown), then close the store."""
        if self._store is not None:
            await self._store.close()
        await close_prompt_counter()


async def estimate_tokens(
    key: KeyEntry,
    upstream_model: str,
    path: str,
    body: dict[str, Any],
    model_max_tokens: int | None = None,
) -> Estimate:
    """Prompt tokens (exact for OpenAI models, Claude's documented estimate) and the completion
    the request may use: its ``max_tokens``, else the policy's default, else the model's."""
    counter = prompt_counter()
    try:
        if path == "/v1/chat/completions":
            counted = await counter.count_chat(
                upstream_model, body.get("messages"), body.get("tools")
            )
        elif path == "/v1/messages":
            chat = _as_chat(body, upstream_model)
            counted = await counter.count_chat(
                upstream_model, chat.get("messages"), chat.get("tools")
            )
        elif path == "/v1/completions":
            counted = await counter.count_completion_prompt(upstream_model, body.get("prompt"))
        else:
            counted = await counter.count_embedding_input(upstream_model, body.get("input"))
        prompt = counted.tokens
    except counting.TokenCountError:
        prompt = 0  # content the counter cannot read: the upstream judges it, usage corrects us
    if key.max_prompt_tokens is not None and prompt > key.max_prompt_tokens:
        raise InvalidRequest(
            f"the prompt is {prompt} tokens, above this key's limit of {key.max_prompt_tokens}",
            param="prompt" if path == "/v1/completions" else "messages",
            code="prompt_too_long",
        )
    if path == "/v1/embeddings":
        return Estimate(prompt, 0)
    requested = body.get("max_completion_tokens") or body.get("max_tokens")
    completion = (
        requested
        if isinstance(requested, int)
        else (key.default_max_tokens or model_max_tokens or FALLBACK_COMPLETION_TOKENS)
    )
    n = body.get("n") if isinstance(body.get("n"), int) else 1
    return Estimate(prompt, completion * n)


def _as_chat(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """An Anthropic Messages request in Chat Completions form, to be counted like one (system
    prompt, tool calls and results, images and tools included).

    Parts with no chat form (a document by URL, a server tool), which Claude itself accepts,
    are left out of the count rather than refused; what remains is counted, so a prompt cap
    or a token limit cannot be slipped past by adding such a part."""
    try:
        return messages_to_chat_request(body, upstream_model=upstream_model)
    except GatewayError:
        pass
    try:
        return messages_to_chat_request(_countable(body), upstream_model=upstream_model)
    except GatewayError:
        # Still not translatable: count every piece of text in it, as one user message.
        text = "\n".join(_texts(body.get("system"), body.get("messages")))
        return {"messages": [{"role": "user", "content": text}]}


_COUNTABLE_BLOCKS = frozenset({"text", "image", "tool_use", "tool_result"})


def _countable(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without the blocks and tools the translation refuses."""
    messages = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = [
                block
                for block in content
                if isinstance(block, dict)
                and block.get("type") in _COUNTABLE_BLOCKS
                and (block.get("type") != "image" or _base64_source(block))
            ]
            message = {**message, "content": content or ""}
        messages.append(message)
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and "input_schema" in t]
    countable = {k: v for k, v in body.items() if k not in ("tools", "tool_choice")}
    countable["messages"] = messages
    if tools:
        countable["tools"] = tools
    return countable


def _base64_source(block: dict[str, Any]) -> bool:
    source = block.get("source")
    return isinstance(source, dict) and source.get("type") == "base64"


def _texts(*values: Any) -> list[str]:
    """Every string under ``text`` or ``content`` keys (and plain strings), depth first."""
    found: list[str] = []
    stack = list(reversed(values))
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list):
            stack.extend(reversed(value))
        elif isinstance(value, dict):
            for key in ("text", "content", "input"):
                if key in value:
                    item = value[key]
                    stack.append(item if not isinstance(item, dict) else str(item))
    return found


def _refusal(admission: Admission, headers: dict[str, str]) -> GatewayError:
    if admission.unavailable:
        return NotReady(
            "the rate-limit store is unreachable and this gateway fails closed; try again soon",
            code="limits_unavailable",
        )
    exceeded = admission.exceeded
    assert exceeded is not None
    error_class = QuotaExceeded if exceeded.kind in _QUOTA_KINDS else RateLimited
    wait = (
        f"; retry after {headers['retry-after']}s"
        if "retry-after" in headers
        else "; this request can never fit within it"
    )
    return error_class(
        f"{exceeded.kind} limit of {exceeded.limit} reached for {exceeded.scope} "
        f"(used {exceeded.current}, this request needs {exceeded.cost}){wait}",
        headers=headers,
    )
