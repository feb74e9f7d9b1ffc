"""Signing in and out of the admin API.

``POST /login`` answers with a bearer token (for scripts and the CLI) and sets the same token as
the ``aigw_session`` cookie (for the dashboard): HttpOnly, so page scripts cannot read it, and
SameSite=Strict, so other sites cannot make the browser send it (no CSRF on changing routes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from aigw.config_center.auth import Principal, Role, _bearer, viewer
from aigw.config_center.users import MAX_PASSWORD_LENGTH, UserService

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

SESSION_COOKIE = "aigw_session"  # the name aigw.config_center.auth reads


class ErrorDetail(BaseModel):
    type: str
    message: str
    details: Any | None = None


class ErrorOut(BaseModel):
    """The body of every error answer of the admin API."""

    error: ErrorDetail


class LoginIn(BaseModel):
    # No format rules beyond sizes: a sign-in must not tell which rule a guess broke.
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class Me(BaseModel):
    username: str
    role: Role
    namespace: str | None = Field(None, description="Set for namespace_admin only.")


class LoginOut(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'.")
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: Me


def user_service(request: Request) -> UserService:
    return request.app.state.users  # type: ignore[no-any-return]


def me(principal: Principal) -> Me:
    return Me(username=principal.name, role=principal.role, namespace=principal.namespace)


@router.post(
    "/login",
    response_model=LoginOut,
    responses={
        401: {"model": ErrorOut, "description": "Unknown user, wrong password or disabled."},
        429: {"model": ErrorOut, "description": "Account locked; see Retry-After."},
    },
)
async def login(body: LoginIn, request: Request, response: Response) -> LoginOut:
    """Sign in with a username and password; the token is also set as a session cookie."""
    token, principal, expires_at = await user_service(request).login(body.username, body.password)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=request.app.state.settings.session_ttl_seconds,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return LoginOut(token=token, expires_at=expires_at, user=me(principal))


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={401: {"model": ErrorOut}},
)
async def logout(request: Request, _: Principal = Depends(viewer)) -> Response:
    """End the session of the token (or cookie) this request was made with."""
    token = _bearer(request)
    if token is not None:
        await user_service(request).logout(token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.get("/me", response_model=Me, responses={401: {"model": ErrorOut}})
async def whoami(principal: Principal = Depends(viewer)) -> Me:
    """Who the token belongs to, and their role."""
    return me(principal)
