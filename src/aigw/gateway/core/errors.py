"""The gateway's error hierarchy, independent of the caller's protocol.

Every failure the pipeline can produce is one of these classes, carrying its HTTP status, an
error type and an optional machine-readable code. They are turned into a response in one place,
in the caller's protocol: :func:`openai_error_body` for OpenAI's API, :func:`anthropic_error_body`
for Anthropic's Messages API. A protocol adds a renderer, not a second set of errors.
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class RequestTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(InvalidRequest):
    status = 404


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(InvalidRequest):
    status = 405
    code = "method_not_allowed"


class UpstreamUnavailable(GatewayError):
    """No upstream answered: connection refused, reset, DNS, or nowhere to route."""

    status = 502
    type = "upstream_error"
    code = "upstream_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class ProtocolUnsupported(GatewayError):
    """The chosen upstream speaks a protocol this request cannot be translated to."""

    status = 501
    type = "invalid_request_error"
    code = "protocol_not_supported"


class NoUpstreamAvailable(GatewayError):
    """Every target of the model is skipped: circuit open, cooling after a 429, or unhealthy."""

    status = 503
    type = "upstream_error"
    code = "no_upstream_available"


class UpstreamRateLimited(NoUpstreamAvailable):
    """Every target is cooling after its provider answered 429: the caller should back off."""

    status = 429
    type = "requests"
    code = "upstream_rate_limited"


class NotReady(GatewayError):
    status = 503
    type = "server_error"
    code = "not_ready"


def openai_error_body(error: GatewayError) -> bytes:
    """OpenAI's error JSON: ``{"error": {"message", "type", "param", "code"}}``."""
    return orjson.dumps(
        {
            "error": {
                "message": error.message,
                "type": error.type,
                "param": error.param,
                "code": error.code,
            }
        }
    )


# Anthropic's error types by HTTP status (https://docs.anthropic.com/en/api/errors).
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status (4xx without its own type: invalid request;
    5xx: api_error; 503: overloaded)."""
    found = ANTHROPIC_ERROR_TYPES.get(status)
    if found is not None:
        return found
    if status == 503:
        return "overloaded_error"
    return "invalid_request_error" if status < 500 else "api_error"


def anthropic_error_body(error: GatewayError) -> bytes:
    """Anthropic's error JSON: ``{"type": "error", "error": {"type", "message"}}``."""
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": anthropic_error_type(error.status), "message": error.message},
        }
    )
