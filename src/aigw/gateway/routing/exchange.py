"""How one request crosses the gateway: what goes upstream, and how each kind of answer comes back.

A caller speaks OpenAI's API (``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``) or Anthropic's Messages API (``/v1/messages``); an upstream speaks one of the
two as well. :func:`plan_exchange` pairs them:

============  ===========  ======================================================================
caller        upstream     what the gateway does
============  ===========  ======================================================================
OpenAI        OpenAI       passes the body on (model name replaced; ``include_usage`` asked for
                           on streams that settle limits, and its chunk hidden if unasked)
Anthropic     Anthropic    passes the body on (model name replaced); ``anthropic-beta`` too
OpenAI        Anthropic    translates (:mod:`aigw.gateway.translate.openai_to_anthropic`)
Anthropic     OpenAI       translates (:mod:`aigw.gateway.translate.anthropic_to_openai`)
============  ===========  ======================================================================

An :class:`Exchange` holds the upstream request and four converters the relay applies to what
comes back: a success body, an error body, a stream (chunk by chunk, with the usage it reports),
and the event that ends a stream the upstream broke off, each in the caller's protocol. Usage is
normalised to :class:`~aigw.gateway.routing.usage.Usage` whatever the upstream reported, so
limits and accounting settle the same way on every path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from aigw.config.snapshot import ModelEntry, TargetEntry
from aigw.gateway.core.errors import (
    GatewayError,
    ProtocolUnsupported,
    anthropic_error_body,
    anthropic_error_type,
    openai_error_body,
)
from aigw.gateway.routing.usage import (
    STREAM_TAIL_BYTES,
    Usage,
    UsageEventStripper,
    anthropic_usage,
    usage_from_body,
    usage_from_stream_tail,
)
from aigw.gateway.translate import anthropic_to_openai, openai_to_anthropic

CallerProtocol = Literal["openai", "anthropic"]

# Claude needs max_tokens; when neither the caller nor the configuration gives one.
FALLBACK_CLAUDE_MAX_TOKENS = 4096


class StreamRelay(Protocol):
    """Turns upstream stream bytes into the caller's, chunk by chunk."""

    failed: bool
    """Whether the upstream ended the stream with an error event (or cut it short)."""

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes:
        """What is still due once the upstream stream has ended."""
        ...

    @property
    def usage(self) -> Usage | None: ...


@dataclass(frozen=True, slots=True)
class Exchange:
    upstream_path: str
    body: bytes
    answer: Callable[[bytes], tuple[bytes, Usage | None]]
    """A success body → the caller's body and the usage it reports."""
    error: Callable[[bytes, int], bytes]
    """An upstream error body and status → the caller's error body."""
    stream: Callable[[], StreamRelay]
    failure_event: Callable[[GatewayError], bytes]
    """The last event of a stream the upstream broke off: an error the caller's SDK raises."""
    headers: dict[str, str] = field(default_factory=dict)
    """Headers for the upstream on top of the provider's (``anthropic-beta``)."""


def plan_exchange(
    caller: CallerProtocol,
    upstream_path: str,
    body: dict[str, Any],
    raw: bytes,
    model: ModelEntry,
    target: TargetEntry,
    *,
    settle_stream_usage: bool,
    default_max_tokens: int | None,
    caller_headers: dict[str, str],
) -> Exchange:
    """The exchange for a request already validated, routed and admitted.

    ``raw`` is the caller's body, sent as it is when nothing needs to change.
    ``settle_stream_usage``: limits need the real usage of a stream (ask OpenAI upstreams for
    it). ``default_max_tokens``: the policy's, for a Claude upstream when the request has none.
    """
    public_model = body["model"]
    to_anthropic = target.provider.type == "anthropic"
    if caller == "anthropic":
        if to_anthropic:
            return _anthropic_native(body, raw, target, caller_headers)
        return _anthropic_to_openai(body, target, public_model)
    if to_anthropic:
        if upstream_path != "/chat/completions":
            raise ProtocolUnsupported(
                f"model '{model.name}' is served by provider '{target.provider.name}', which "
                f"speaks Anthropic's Messages API: only chat completions can be translated to it"
            )
        max_tokens = default_max_tokens or model.default_max_tokens or FALLBACK_CLAUDE_MAX_TOKENS
        return _openai_to_anthropic(body, model, target, public_model, max_tokens)
    return _openai_native(upstream_path, body, raw, target, settle_stream_usage)


# -- OpenAI caller, OpenAI upstream -----------------------------------------------------------


def _openai_native(
    upstream_path: str,
    body: dict[str, Any],
    raw: bytes,
    target: TargetEntry,
    settle_stream_usage: bool,
) -> Exchange:
    strip_usage = settle_stream_usage and bool(body.get("stream")) and not _asks_for_usage(body)
    body = dict(body)  # the caller's stays as it came: another target may need it
    if strip_usage:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    if strip_usage or body["model"] != target.upstream_model:
        body["model"] = target.upstream_model
        raw = orjson.dumps(body)
    return Exchange(
        upstream_path=upstream_path,
        body=raw,
        answer=_passthrough_openai,
        error=openai_upstream_error,
        stream=lambda: OpenAIStream(strip_usage),
        failure_event=openai_failure_event,
    )


def _asks_for_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _passthrough_openai(payload: bytes) -> tuple[bytes, Usage | None]:
    return payload, usage_from_body(payload)


class OpenAIStream:
    """An OpenAI stream passed on as it is, but for a usage chunk the caller did not ask for;
    usage read from its last few KiB. Content deltas are counted as they pass (two byte
    searches per chunk), so a stream cut before its usage still tells how much was generated:
    OpenAI streams one token per content delta."""

    __slots__ = ("_deltas", "_stripper", "_tail", "failed")

    def __init__(self, strip_usage: bool) -> None:
        self._stripper = UsageEventStripper() if strip_usage else None
        self._tail = b""
        self._deltas = 0
        self.failed = False

    def feed(self, chunk: bytes) -> bytes:
        self._tail = (self._tail + chunk)[-STREAM_TAIL_BYTES:]
        self._deltas += chunk.count(b'"content":"') - chunk.count(b'"content":""')
        if b'data: {"error"' in chunk:  # the upstream's own mid-stream error event
            self.failed = True
        return chunk if self._stripper is None else self._stripper.feed(chunk)

    def finish(self) -> bytes:
        return b"" if self._stripper is None else self._stripper.flush()

    @property
    def usage(self) -> Usage | None:
        reported = usage_from_stream_tail(self._tail)
        if reported is None and self._deltas > 0:
            return Usage(completion_tokens=self._deltas)  # partial: the stream was cut
        return reported


def openai_upstream_error(payload: bytes, status: int) -> bytes:
    """Keep an upstream's OpenAI-format error as it is; wrap anything else in one."""
    document = _json(payload)
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        return payload
    return orjson.dumps(
        {
            "error": {
                "message": _upstream_said(payload, status),
                "type": "upstream_error",
                "param": None,
                "code": f"upstream_{status}",
            }
        }
    )


def openai_failure_event(failure: GatewayError) -> bytes:
    # OpenAI's SDKs raise on a chunk carrying "error": a cut stream never passes for a finished
    # answer. The blank lines first end whatever partial event the upstream left.
    return b"\n\ndata: " + openai_error_body(failure) + b"\n\n"


# -- Anthropic caller, Anthropic upstream -----------------------------------------------------


def _anthropic_native(
    body: dict[str, Any], raw: bytes, target: TargetEntry, caller_headers: dict[str, str]
) -> Exchange:
    if body["model"] != target.upstream_model:
        body = {**body, "model": target.upstream_model}
        raw = orjson.dumps(body)
    headers = {}
    beta = caller_headers.get("anthropic-beta")
    if beta:
        headers["anthropic-beta"] = beta
    return Exchange(
        upstream_path="/messages",
        body=raw,
        answer=_passthrough_anthropic,
        error=anthropic_upstream_error,
        stream=AnthropicStream,
        failure_event=anthropic_failure_event,
        headers=headers,
    )


def _passthrough_anthropic(payload: bytes) -> tuple[bytes, Usage | None]:
    document = _json(payload)
    usage = anthropic_usage(document.get("usage")) if isinstance(document, dict) else None
    return payload, usage


class AnthropicStream:
    """An Anthropic stream passed on untouched. Its usage is split between ``message_start``
    (input and cache tokens, at the head) and ``message_delta`` (output tokens, cumulative,
    near the end): both are read from a bounded head and tail, after the stream."""

    __slots__ = ("_head", "_tail", "failed")
    HEAD_BYTES = 8192

    def __init__(self) -> None:
        self._head = b""
        self._tail = b""
        self.failed = False

    def feed(self, chunk: bytes) -> bytes:
        if b"event: error" in chunk:
            self.failed = True
        if len(self._head) < self.HEAD_BYTES:
            self._head += chunk[: self.HEAD_BYTES - len(self._head)]
        self._tail = (self._tail + chunk)[-STREAM_TAIL_BYTES:]
        return chunk

    def finish(self) -> bytes:
        return b""

    @property
    def usage(self) -> Usage | None:
        started = _event_usage(self._head, b"message_start")
        delta = _event_usage(self._tail, b"message_delta")
        if started is None and delta is None:
            return None
        merged: dict[str, Any] = dict(started or {})
        merged.update({k: v for k, v in (delta or {}).items() if v is not None})
        return anthropic_usage(merged)


def _event_usage(data: bytes, kind: bytes) -> dict[str, Any] | None:
    """The usage of the last ``kind`` event whose data line lies whole within ``data``."""
    for line in reversed(data.split(b"\n")):
        if not line.startswith(b"data:") or kind not in line:
            continue
        event = _json(line[5:].strip())
        if not isinstance(event, dict) or event.get("type") != kind.decode():
            continue
        usage = event.get("usage")
        if kind == b"message_start":
            message = event.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
        if isinstance(usage, dict):
            return usage
    return None


def anthropic_upstream_error(payload: bytes, status: int) -> bytes:
    """Keep an upstream's Anthropic-format error as it is; wrap anything else in one."""
    document = _json(payload)
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        return payload
    return orjson.dumps(
        {
            "type": "error",
            "error": {
                "type": anthropic_error_type(status),
                "message": _upstream_said(payload, status),
            },
        }
    )


def anthropic_failure_event(failure: GatewayError) -> bytes:
    return b"\n\nevent: error\ndata: " + anthropic_error_body(failure) + b"\n\n"


def count_tokens_exchange(
    body: dict[str, Any], raw: bytes, target: TargetEntry, caller_headers: dict[str, str]
) -> Exchange:
    """``/v1/messages/count_tokens`` passed to a Claude provider's own endpoint."""
    native = _anthropic_native(body, raw, target, caller_headers)
    return Exchange(
        upstream_path="/messages/count_tokens",
        body=native.body,
        answer=lambda payload: (payload, None),  # counting is free: no usage to account
        error=anthropic_upstream_error,
        stream=AnthropicStream,
        failure_event=anthropic_failure_event,
        headers=native.headers,
    )


# -- translations -----------------------------------------------------------------------------


def _openai_to_anthropic(
    body: dict[str, Any],
    model: ModelEntry,
    target: TargetEntry,
    public_model: str,
    max_tokens: int,
) -> Exchange:
    request = openai_to_anthropic.chat_to_messages_request(
        body,
        upstream_model=target.upstream_model,
        default_max_tokens=max_tokens,
        drop_unsupported=model.drop_unsupported_params,
    )
    include_usage = _asks_for_usage(body)

    def answer(payload: bytes) -> tuple[bytes, Usage | None]:
        document = _json(payload)
        if not isinstance(document, dict):
            return payload, None  # not a Messages answer: passed on for the caller to see
        translated = openai_to_anthropic.messages_response_to_chat(document, model=public_model)
        return orjson.dumps(translated), anthropic_usage(document.get("usage"))

    return Exchange(
        upstream_path="/messages",
        body=orjson.dumps(request),
        answer=answer,
        error=openai_to_anthropic.anthropic_error_to_openai,
        stream=lambda: openai_to_anthropic.MessagesStreamToChat(
            model=public_model, include_usage=include_usage
        ),
        failure_event=openai_failure_event,
    )


def _anthropic_to_openai(body: dict[str, Any], target: TargetEntry, public_model: str) -> Exchange:
    request = anthropic_to_openai.messages_to_chat_request(
        body, upstream_model=target.upstream_model
    )

    def answer(payload: bytes) -> tuple[bytes, Usage | None]:
        document = _json(payload)
        if not isinstance(document, dict):
            return payload, None
        translated = anthropic_to_openai.chat_response_to_messages(document, model=public_model)
        return orjson.dumps(translated), usage_from_body(payload)

    return Exchange(
        upstream_path="/chat/completions",
        body=orjson.dumps(request),
        answer=answer,
        error=anthropic_to_openai.openai_error_to_anthropic,
        stream=lambda: anthropic_to_openai.ChatStreamToMessages(model=public_model),
        failure_event=anthropic_failure_event,
    )


# -- helpers ----------------------------------------------------------------------------------


def _json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _upstream_said(payload: bytes, status: int) -> str:
    text = payload[:500].decode("utf-8", "replace").strip() or "(empty body)"
    return f"upstream returned HTTP {status}: {text}"
