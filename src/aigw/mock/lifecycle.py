"""What happens around every API request: logging, fault injection, errors, accounting."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web

from aigw.mock.errors import (
    ApiError,
    Protocol,
    error_response,
    injected_error,
    stream_error_event,
)
from aigw.mock.faults import plan_faults
from aigw.mock.options import MockOptions
from aigw.mock.pacing import pause
from aigw.mock.responses import EventStream, InjectedDisconnect, Reply, json_response, send_stream
from aigw.mock.state import STATE, MockState
from aigw.mock.validation import wants_stream

# Status recorded (e.g. in access logs) for answers nobody was left to receive, after nginx.
_CLIENT_CLOSED_REQUEST = 499


@dataclass(frozen=True, slots=True)
class Call:
    """What an API handler works from."""

    body: Any
    """The parsed JSON body; None when it is absent or not valid JSON."""
    options: MockOptions
    path_params: Mapping[str, str]


Handler = Callable[[Call], Reply | EventStream]
"""Builds the answer to one API call; raises ApiError for an invalid request."""


def endpoint(
    *, openai: Handler | None = None, anthropic: Handler | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler serving one API endpoint in one protocol.

    Given both, the protocol follows the ``anthropic-version`` header, which Anthropic
    clients always send: ``/v1/models`` exists in both APIs under the same path.
    """

    if openai is None and anthropic is None:
        raise TypeError("endpoint() needs at least one handler")

    async def handle(request: web.Request) -> web.StreamResponse:
        if anthropic is not None and (openai is None or "anthropic-version" in request.headers):
            return await _serve(request, Protocol.ANTHROPIC, anthropic)
        return await _serve(request, Protocol.OPENAI, cast(Handler, openai))

    return handle


async def _serve(request: web.Request, protocol: Protocol, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _read_json(request)
    state.record(request, body)
    try:
        response = await _answer(request, protocol, handler, state, body)
    except InjectedDisconnect as cut:
        return cut.response
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client leaves (with handler_cancellation).
        state.client_disconnects += 1
        raise
    except ConnectionResetError:
        # The client left while we waited or wrote. Returning (rather than raising) keeps
        # aiohttp from logging a traceback; its attempt to send this fails quietly.
        state.client_disconnects += 1
        return web.Response(status=_CLIENT_CLOSED_REQUEST)
    state.completed += 1
    return response


async def _answer(
    request: web.Request, protocol: Protocol, handler: Handler, state: MockState, body: object
) -> web.StreamResponse:
    try:
        plan = plan_faults(request.headers, state.options, state.rng, streaming=wants_stream(body))
        await pause(request, plan.latency_s)
        if plan.hang:
            await pause(request, math.inf)  # ends only by the client leaving
        if plan.error_status is not None:
            raise injected_error(plan.error_status)
        result = handler(Call(body, state.options, request.match_info))
        if isinstance(result, EventStream):
            return await send_stream(
                request,
                result,
                seconds_per_token=plan.seconds_per_token,
                cut_after=plan.cut_after,
                error_after=plan.error_after,
                error_event=stream_error_event(protocol),
            )
        await pause(request, plan.generation_s(result.generated_tokens))
        response = json_response(result.body)
    except ApiError as error:
        response = error_response(protocol, error)
    # Sent here rather than by aiohttp after we return, so that "completed" means the whole
    # answer was handed to the socket and a vanished client is noticed and counted.
    await response.prepare(request)
    await response.write_eof()
    return response


async def _read_json(request: web.Request) -> Any:
    if not request.body_exists:
        return None
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None
