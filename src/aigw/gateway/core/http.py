"""Plain-ASGI request and response helpers for the hot path (no framework in between)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from aigw.gateway.core.errors import InvalidRequest, RequestTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]


class ClientDisconnected(Exception):
    """The caller went away while the gateway was still reading or answering."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a (lower-case) request header."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def client_address(
    scope: Scope, trusted_proxies: Sequence[IPv4Network | IPv6Network]
) -> IPv4Address | IPv6Address | None:
    """The caller's address: the peer, or, behind trusted proxies, the nearest untrusted address
    in ``X-Forwarded-For`` (read right to left, so a caller cannot forge its way past a proxy)."""
    client = scope.get("client")
    try:
        peer = ip_address(client[0]) if client else None
    except ValueError:
        return None
    if peer is None or not trusted_proxies or not _within(peer, trusted_proxies):
        return peer
    forwarded = header(scope, b"x-forwarded-for")
    if forwarded is None:
        return peer
    for hop in reversed(forwarded.decode("latin-1").split(",")):
        try:
            address = ip_address(hop.strip())
        except ValueError:
            return peer  # a malformed chain: trust only what we saw ourselves
        if not _within(address, trusted_proxies):
            return address
    return peer


def _within(
    address: IPv4Address | IPv6Address, networks: Sequence[IPv4Network | IPv6Network]
) -> bool:
    return any(address in network for network in networks)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes before reading them all."""
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise InvalidRequest("invalid Content-Length header") from None
        if length > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_response(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"request body is larger than the gateway's limit of {limit} bytes")
