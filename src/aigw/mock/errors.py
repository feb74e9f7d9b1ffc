"""API errors and their rendering in the OpenAI and Anthropic wire formats."""

from __future__ import annotations

import enum

from aiohttp import web

from aigw.mock.responses import json_response, sse_data, sse_event


class Protocol(enum.Enum):
    """Which provider's API an endpoint speaks; decides the shape of its error bodies."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class ApiError(Exception):
    """A failed API request, raised by handlers and rendered in the endpoint's protocol."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


# Error `type`/`code` the real APIs use for each status; other statuses fall back by class.
_OPENAI_KINDS: dict[int, tuple[str, str | None]] = {
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_response(protocol: Protocol, error: ApiError) -> web.Response:
    """Render ``error`` as the given provider would, with ``Retry-After`` on rate limits."""
    status = error.status
    headers = {"Retry-After": "1"} if status == 429 else None
    if protocol is Protocol.ANTHROPIC:
        fallback = "api_error" if status >= 500 else "invalid_request_error"
        kind = _ANTHROPIC_TYPES.get(status, fallback)
        body: dict[str, object] = {
            "type": "error",
            "error": {"type": kind, "message": error.message},
        }
    else:
        default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
        kind, default_code = _OPENAI_KINDS.get(status, default)
        body = {
            "error": {
                "message": error.message,
                "type": kind,
                "param": error.param,
                "code": error.code or default_code,
            }
        }
    return json_response(body, status=status, headers=headers)


def stream_error_event(protocol: Protocol) -> bytes:
    """The event of an error injected mid-stream, as each provider reports one after the 200:
    Anthropic's documented ``overloaded_error`` event, or an OpenAI chunk carrying ``error``."""
    if protocol is Protocol.ANTHROPIC:
        error = {"type": "overloaded_error", "message": "Overloaded"}
        return sse_event({"type": "error", "error": error})
    return sse_data(
        {
            "error": {
                "message": "The server had an error while processing your request "
                "(injected by the aigw mock upstream).",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
    )


def injected_error(status: int) -> ApiError:
    """The error answered when a fault is injected, worded so logs make its origin obvious."""
    if status == 429:
        return ApiError(429, "Rate limit reached (injected by the aigw mock upstream).")
    return ApiError(status, f"The aigw mock upstream injected a {status} error.")
