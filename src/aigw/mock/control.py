"""``/_mock/*``: inspect and steer a running mock from tests, benchmarks and the demo.

These routes are not API traffic: they are never logged, counted or subjected to faults.
"""

from __future__ import annotations

import dataclasses

import orjson
from aiohttp import web

from aigw.mock.responses import json_response
from aigw.mock.state import STATE

routes = web.RouteTableDef()


@routes.get("/_mock/config")
async def get_config(request: web.Request) -> web.Response:
    return json_response(dataclasses.asdict(request.app[STATE].options))


@routes.put("/_mock/config")
async def put_config(request: web.Request) -> web.Response:
    """Change some options live; the body is a JSON object of MockOptions fields."""
    try:
        changes = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        changes = None
    if not isinstance(changes, dict):
        return _bad_request("expected a JSON object of option fields")
    try:
        options = request.app[STATE].configure(changes)
    except ValueError as exc:
        return _bad_request(str(exc))
    return json_response(dataclasses.asdict(options))


@routes.get("/_mock/requests")
async def get_requests(request: web.Request) -> web.Response:
    """The most recent API requests, oldest first."""
    return json_response(list(request.app[STATE].requests))


@routes.delete("/_mock/requests")
async def clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].requests.clear()
    return web.Response(status=204)


@routes.get("/_mock/stats")
async def get_stats(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].stats())


def _bad_request(message: str) -> web.Response:
    return json_response({"error": message}, status=400)
