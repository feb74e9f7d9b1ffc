"""The mock upstream application and its standalone runner."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

from aiohttp import web

from aigw.mock import anthropic_messages, control, models, openai_embeddings, openai_generation
from aigw.mock.errors import ApiError
from aigw.mock.lifecycle import Call, endpoint
from aigw.mock.options import MockOptions
from aigw.mock.responses import Reply
from aigw.mock.state import STATE, MockState

_BACKLOG = 1024
"""Listen backlog, sized for benchmark bursts of new connections."""
_SHUTDOWN_TIMEOUT_S = 0.25
"""Grace period for in-flight requests on shutdown; hanging ones would otherwise hold it."""


def create_app(options: MockOptions) -> web.Application:
    """The mock upstream as an aiohttp application.

    It works from a copy of ``options``: change a running mock through ``PUT /_mock/config``.
    Serve it with ``handler_cancellation=True`` (as ``run_mock`` does) so handlers of
    departed clients stop at once; hangs end and are counted either way.
    """
    app = web.Application()
    app[STATE] = MockState(dataclasses.replace(options))
    app.add_routes(
        [
            web.post("/v1/chat/completions", endpoint(openai=openai_generation.chat_completions)),
            web.post("/v1/completions", endpoint(openai=openai_generation.completions)),
            web.post("/v1/embeddings", endpoint(openai=openai_embeddings.embeddings)),
            web.get(
                "/v1/models", endpoint(openai=models.list_openai, anthropic=models.list_anthropic)
            ),
            web.get(
                "/v1/models/{model_id:.+}",
                endpoint(openai=models.get_openai, anthropic=models.get_anthropic),
            ),
            web.post("/v1/messages", endpoint(anthropic=anthropic_messages.messages)),
            web.post(
                "/v1/messages/count_tokens", endpoint(anthropic=anthropic_messages.count_tokens)
            ),
            # Last, so it only catches what no route above serves.
            web.route(
                "*",
                "/v1/{path:.*}",
                endpoint(openai=_unknown_endpoint, anthropic=_unknown_endpoint),
            ),
        ]
    )
    app.add_routes(control.routes)
    return app


def _unknown_endpoint(call: Call) -> Reply:
    """Like the real APIs, answer unknown URLs with a JSON 404 (and log them like the rest)."""
    raise ApiError(404, f"Invalid URL (/v1/{call.path_params['path']}).")


def run_mock(host: str, port: int, options: MockOptions) -> None:
    """Serve the mock until SIGINT or SIGTERM.

    The socket is bound before the "listening" line is printed, so whoever waits for that
    line can connect at once; with port 0 the line tells the port the OS picked.
    """
    family = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0][0]
    sock = socket.create_server((host, port), family=family, backlog=_BACKLOG)
    bound_port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host  # IPv6 literals are bracketed in URLs
    print(f"mock upstream listening on http://{url_host}:{bound_port}", flush=True)
    web.run_app(
        create_app(options),
        sock=sock,
        print=None,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        loop=_new_event_loop(),
    )


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
