"""Forward a request to an upstream target and relay its answer to the caller.

This is the one boundary where aiohttp's exceptions become the gateway's errors, so the rest of
the pipeline decides by :class:`~aigw.gateway.core.errors.GatewayError` class only. Streams are
relayed chunk by chunk as they arrive; once the response has started, a failure can only end the
stream, and it is ended with an explicit error event rather than a silent finish.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from aigw.config.snapshot import TargetEntry
from aigw.gateway.core.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from aigw.gateway.core.http import JSON_HEADERS, Headers, Send, send_response
from aigw.gateway.routing.exchange import Exchange, StreamRelay
from aigw.gateway.routing.usage import Usage

_STREAM_CONTENT_TYPE = "text/event-stream"


# Upstream answers worth another target: rate limited, or the upstream's own failure.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 529})


@dataclass(frozen=True, slots=True)
class Relayed:
    """What was sent to the caller: the status, and the usage the upstream reported."""

    status: int
    usage: Usage | None = None
    first_byte_seconds: float | None = None
    """From sending the request to the answer starting (a stream's first chunk)."""
    broken: bool = False
    """The upstream broke off a stream already under way (the caller got an error event)."""
    retry_after: float | None = None
    """An error answer's ``Retry-After``, in seconds."""


class RetryableStatus(Exception):
    """The upstream answered 429 or 5xx and another try may serve the request: nothing was sent
    to the caller. ``body`` and ``headers`` are the answer in the caller's protocol, to send if
    no other try can be made."""

    def __init__(
        self, status: int, retry_after: float | None, body: bytes, headers: Headers
    ) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.headers = headers


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

    def session(self) -> aiohttp.ClientSession | None:
        """The pooled client, once started (health checks share it)."""
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def relay(
        self,
        send: Send,
        target: TargetEntry,
        exchange: Exchange,
        response_headers: Headers,
        *,
        may_retry: bool = False,
    ) -> Relayed:
        """POST the exchange's body to the target and relay the answer to the caller, in the
        caller's protocol.

        Failures before anything reached the caller raise: ``UpstreamUnavailable`` and
        ``UpstreamTimeout`` (no answer, or no first chunk of a stream in time), and, when
        ``may_retry``, :class:`RetryableStatus` for a 429 or 5xx answer. Once the answer has
        started, a failure ends it with an error event (``Relayed.broken``)."""
        session = self._session
        if session is None:  # first request of this worker
            await self.start()
            session = self._session
            assert session is not None
        provider = target.provider
        timeout = aiohttp.ClientTimeout(
            total=target.total_timeout,
            sock_connect=target.connect_timeout,
            sock_read=target.read_timeout,
        )
        headers = provider.headers
        if exchange.headers:
            headers = {**headers, **exchange.headers}
        loop = asyncio.get_running_loop()
        started = loop.time()
        first_byte = target.first_byte_timeout
        # The wait for the answer to start is bounded by sock_read already; a shorter
        # first-byte timeout needs its own deadline.
        deadline = first_byte if first_byte < target.read_timeout else None
        url = provider.base_url + exchange.upstream_path
        start = self._start(session, url, exchange.body, headers, timeout)
        try:
            if deadline is None:
                response, streaming, first = await start
            else:
                async with asyncio.timeout(deadline):
                    response, streaming, first = await start
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise UpstreamTimeout(
                f"upstream provider '{provider.name}' did not answer in time"
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"could not reach upstream provider '{provider.name}': {_describe(exc)}"
            ) from None
        first_byte_seconds = loop.time() - started

        try:
            status = response.status
            if status >= 400:
                payload = await _read(response, provider.name)
                error = exchange.error(payload, status)
                headers_out = JSON_HEADERS + response_headers
                raw_retry_after = response.headers.get("Retry-After")
                if raw_retry_after is not None:
                    headers_out.append((b"retry-after", raw_retry_after.encode("latin-1")))
                if may_retry and status in RETRYABLE_STATUSES:
                    retry_after = _retry_after(raw_retry_after)
                    raise RetryableStatus(status, retry_after, error, headers_out)
                await send_response(send, status, error, headers_out)
                return Relayed(
                    status,
                    first_byte_seconds=first_byte_seconds,
                    retry_after=_retry_after(raw_retry_after),
                )
            content_type = response.headers.get("Content-Type", "application/json")
            if streaming:
                stream_headers = [(b"content-type", content_type.encode("latin-1"))]
                stream_headers += response_headers
                relay = exchange.stream()
                broken = await _relay_stream(
                    send, response, first, stream_headers, provider.name, relay, exchange
                )
                return Relayed(status, relay.usage, first_byte_seconds, broken)
            payload = await _read(response, provider.name)
            body, usage = exchange.answer(payload)
            headers_out = [(b"content-type", content_type.encode("latin-1")), *response_headers]
            await send_response(send, status, body, headers_out)
            return Relayed(status, usage, first_byte_seconds)
        finally:
            response.release()

    @staticmethod
    async def _start(
        session: aiohttp.ClientSession,
        url: str,
        body: bytes,
        headers: dict[str, str],
        limits: aiohttp.ClientTimeout,
    ) -> tuple[aiohttp.ClientResponse, bool, bytes]:
        """Send the request and wait for the answer to start: its headers and, for a
        stream, its first chunk (until then, another target may still serve the request)."""
        response = await session.post(url, data=body, headers=headers, timeout=limits)
        try:
            streaming = response.headers.get("Content-Type", "").startswith(_STREAM_CONTENT_TYPE)
            first = b""
            if streaming and response.status < 400:
                first = await response.content.readany()
        except BaseException:
            response.release()
            raise
        return response, streaming, first


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (a number of seconds; an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None


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
    first: bytes,
    headers: Headers,
    provider: str,
    relay: StreamRelay,
    exchange: Exchange,
) -> bool:
    """Relay the stream as it arrives, each chunk through ``relay`` (a pass-through or a
    translation); a stream the upstream breaks off ends with an error event (returns True)."""
    headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    failure: GatewayError | None = None
    try:
        passed = relay.feed(first)
        if passed:
            await send({"type": "http.response.body", "body": passed, "more_body": True})
        async for chunk in response.content.iter_any():
            passed = relay.feed(chunk)
            if passed:
                await send({"type": "http.response.body", "body": passed, "more_body": True})
    except (TimeoutError, aiohttp.ServerTimeoutError):
        failure = UpstreamTimeout(f"upstream provider '{provider}' stalled mid-stream")
    except aiohttp.ClientError as exc:
        failure = UpstreamUnavailable(
            f"upstream provider '{provider}' broke off the stream: {_describe(exc)}"
        )
    if failure is not None:
        # The caller's SDK raises on this event: a cut stream never passes for a finished one.
        event = exchange.failure_event(failure)
        await send({"type": "http.response.body", "body": event, "more_body": False})
        return True
    await send({"type": "http.response.body", "body": relay.finish(), "more_body": False})
    return relay.failed  # the upstream's own error event, or a stream ended too soon


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
