"""The admin API's errors: small classes carrying their status, rendered by one handler."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 400
    type = "invalid_request"

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class Unauthenticated(ApiError):
    status = 401
    type = "unauthenticated"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status = 403
    type = "forbidden"


class NotFound(ApiError):
    status = 404
    type = "not_found"


class Conflict(ApiError):
    status = 409
    type = "conflict"


class Invalid(ApiError):
    status = 422
    type = "invalid_configuration"


class PreconditionRequired(ApiError):
    status = 428
    type = "precondition_required"


class TooManyAttempts(ApiError):
    status = 429
    type = "too_many_attempts"
