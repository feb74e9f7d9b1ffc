"""Waiting on behalf of a client without outliving it."""

from __future__ import annotations

import asyncio

from aiohttp import web

# How often a long wait checks that the client is still connected. aiohttp only cancels
# handlers of vanished clients when the server runs with handler_cancellation=True; this
# check makes hangs end (and get counted) under any runner configuration.
_LIVENESS_CHECK_S = 0.05


async def pause(request: web.BaseRequest, seconds: float) -> None:
    """Sleep ``seconds`` (may be ``math.inf``); raise ConnectionResetError if the client leaves."""
    if seconds <= 0:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client disconnected")
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, _LIVENESS_CHECK_S))
