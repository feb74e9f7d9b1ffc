"""Forward a request to an upstream target and relay its answer to the caller.

This is the one boundary where aiohttp's exceptions become the gateway's errors, so the rest of
the pipeline decides by :class:`~aigw.gateway.core.errors.GatewayError` class only. Streams are
relayed chunk by chunk as they arrive; once the response has started, a failure can only end the
stream, and it is ended with an explicit error event rather than a silent finish.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import orjson

from aigw.config.snapshot import TargetEntry
from aigw.gateway.core.errors import (
    GatewayError,
    ProtocolUnsupported,
    UpstreamTimeout,
    UpstreamUnavailable,
    openai_error_body,
)
from aigw.gateway.core.http import JSON_HEADERS, Headers, Send, send_response
from aigw.gateway.routing.usage import (
    STREAM_TAIL_BYTES,
    Usage,
    UsageEventStripper,
    usage_from_body,
    usage_from_stream_tail,
)

_STREAM_CONTENT_TYPE = "text/event-stream"


@dataclass(frozen=True, slots=True)
class Relayed:
    """What was sent to the caller: the status, and the usage the upstream reported."""

    status: int
    usage: Usage | None = None


class UpstreamClient:
    """One pooled HTTP client per worker process, shared by every request."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,  # the gateway's own backpressure bounds concurrency, not the pool
            ttl_dns_cache=300,
            keepalive_timeout=60,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def relay(
        self,
        send: Send,
        target: TargetEntry,
        upstream_path: str,
        body: bytes,
        response_headers: Headers,
        strip_usage: bool = False,
    ) -> Relayed:
        """POST ``body`` to the target and relay the response to the caller."""
        session = self._session
        if session is None:  # first request of this worker
            await self.start()
            session = self._session
            assert session is not None
        provider = target.provider
        if provider.type == "anthropic":
            raise ProtocolUnsupported(
                f"model target on provider '{provider.name}' speaks Anthropic's Messages API; "
                "OpenAI-format requests cannot be translated to it by this gateway version"
            )
        timeout = aiohttp.ClientTimeout(
            total=provider.total_timeout,
            sock_connect=provider.connect_timeout,
            sock_read=provider.read_timeout,
        )
        try:
            response = await session.post(
                provider.base_url + upstream_path,
                data=body,
                headers=provider.headers,
                timeout=timeout,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise UpstreamTimeout(
                f"upstream provider '{provider.name}' did not answer in time"
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"could not reach upstream provider '{provider.name}': {_describe(exc)}"
            ) from None

        try:
            content_type = response.headers.get("Content-Type", "application/json")
            if response.status >= 400:
                payload = await _read(response, provider.name)
                error = _as_openai_error(payload, response.status)
                headers = JSON_HEADERS + response_headers
                retry_after = response.headers.get("Retry-After")
                if retry_after is not None:
                    headers.append((b"retry-after", retry_after.encode("latin-1")))
                await send_response(send, response.status, error, headers)
                return Relayed(response.status)
            headers = [(b"content-type", content_type.encode("latin-1")), *response_headers]
            if content_type.startswith(_STREAM_CONTENT_TYPE):
                stripper = UsageEventStripper() if strip_usage else None
                tail = await _relay_stream(send, response, headers, provider.name, stripper)
                return Relayed(response.status, usage_from_stream_tail(tail))
            payload = await _read(response, provider.name)
            await send_response(send, response.status, payload, headers)
            return Relayed(response.status, usage_from_body(payload))
        finally:
            response.release()


async def _read(response: aiohttp.ClientResponse, provider: str) -> bytes:
    try:
        return await response.read()
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise UpstreamTimeout(f"upstream provider '{provider}' stopped answering") from None
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(
            f"upstream provider '{provider}' broke off its answer: {_describe(exc)}"
        ) from None


async def _relay_stream(
    send: Send,
    response: aiohttp.ClientResponse,
    headers: Headers,
    provider: str,
    stripper: UsageEventStripper | None = None,
) -> bytes:
    """Relay the stream as it arrives; returns its last few KiB (where usage is reported)."""
    headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    failure: GatewayError | None = None
    tail = b""
    try:
        async for chunk in response.content.iter_any():
            tail = (tail + chunk)[-STREAM_TAIL_BYTES:]
            passed = chunk if stripper is None else stripper.feed(chunk)
            if passed:
                await send({"type": "http.response.body", "body": passed, "more_body": True})
    except (TimeoutError, aiohttp.ServerTimeoutError):
        failure = UpstreamTimeout(f"upstream provider '{provider}' stalled mid-stream")
    except aiohttp.ClientError as exc:
        failure = UpstreamUnavailable(
            f"upstream provider '{provider}' broke off the stream: {_describe(exc)}"
        )
    if failure is not None:
        # OpenAI's SDKs raise on a chunk carrying "error", so the caller never mistakes a cut
        # stream for a finished answer.
        event = b"\n\ndata: " + openai_error_body(failure) + b"\n\n"
        await send({"type": "http.response.body", "body": event, "more_body": False})
    else:
        rest = b"" if stripper is None else stripper.flush()
        await send({"type": "http.response.body", "body": rest, "more_body": False})
    return tail


def _as_openai_error(payload: bytes, status: int) -> bytes:
    """Keep an upstream's OpenAI-format error as it is; wrap anything else in one."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        return payload
    text = payload[:500].decode("utf-8", "replace").strip() or "(empty body)"
    return orjson.dumps(
        {
            "error": {
                "message": f"upstream returned HTTP {status}: {text}",
                "type": "upstream_error",
                "param": None,
                "code": f"upstream_{status}",
            }
        }
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
