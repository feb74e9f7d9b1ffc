"""Forward a request to an upstream target and relay its answer to the caller.

This is the one boundary where aiohttp's exceptions become the gateway's errors, so the rest of
the pipeline decides by :class:`~aigw.gateway.core.errors.GatewayError` class only. Streams are
relayed chunk by chunk as they arrive; once the response has started, a failure can only end the
stream, and it is ended with an explicit error event rather than a silent finish.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from aigw.config.snapshot import TargetEntry
from aigw.gateway.core.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from aigw.gateway.core.http import JSON_HEADERS, Headers, Send, send_response
from aigw.gateway.routing.exchange import Exchange, StreamRelay
from aigw.gateway.routing.usage import Usage

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
        exchange: Exchange,
        response_headers: Headers,
    ) -> Relayed:
        """POST the exchange's body to the target and relay the answer to the caller, in the
        caller's protocol."""
        session = self._session
        if session is None:  # first request of this worker
            await self.start()
            session = self._session
            assert session is not None
        provider = target.provider
        timeout = aiohttp.ClientTimeout(
            total=provider.total_timeout,
            sock_connect=provider.connect_timeout,
            sock_read=provider.read_timeout,
        )
        headers = provider.headers
        if exchange.headers:
            headers = {**headers, **exchange.headers}
        try:
            response = await session.post(
                provider.base_url + exchange.upstream_path,
                data=exchange.body,
                headers=headers,
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
                error = exchange.error(payload, response.status)
                headers_out = JSON_HEADERS + response_headers
                retry_after = response.headers.get("Retry-After")
                if retry_after is not None:
                    headers_out.append((b"retry-after", retry_after.encode("latin-1")))
                await send_response(send, response.status, error, headers_out)
                return Relayed(response.status)
            if content_type.startswith(_STREAM_CONTENT_TYPE):
                stream_headers = [(b"content-type", content_type.encode("latin-1"))]
                stream_headers += response_headers
                relay = exchange.stream()
                await _relay_stream(send, response, stream_headers, provider.name, relay, exchange)
                return Relayed(response.status, relay.usage)
            payload = await _read(response, provider.name)
            body, usage = exchange.answer(payload)
            headers_out = [(b"content-type", content_type.encode("latin-1")), *response_headers]
            await send_response(send, response.status, body, headers_out)
            return Relayed(response.status, usage)
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
    relay: StreamRelay,
    exchange: Exchange,
) -> None:
    """Relay the stream as it arrives, each chunk through ``relay`` (a pass-through or a
    translation); a stream the upstream breaks off ends with an error event."""
    headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    failure: GatewayError | None = None
    try:
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
    else:
        await send({"type": "http.response.body", "body": relay.finish(), "more_body": False})


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
