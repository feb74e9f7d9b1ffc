"""Admin users of the config center (admins only).

Answers never contain a password or its hash. A change that would leave no enabled admin user
(deleting, demoting or disabling the last one) is refused with 409, so the deployment cannot be
locked out of its own control plane by accident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from aigw.config_center.api.auth import ErrorOut, user_service
from aigw.config_center.auth import Principal, Role, admin
from aigw.config_center.users import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    NAMESPACE_PATTERN,
    UNSET,
    USERNAME_PATTERN,
    UserInfo,
)

router = APIRouter(
    prefix="/api/v1/users",
    tags=["users"],
    responses={
        401: {"model": ErrorOut, "description": "Not signed in."},
        403: {"model": ErrorOut, "description": "Not an admin."},
    },
)

Username = Annotated[str, Path(max_length=128, description="The user's name.")]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=USERNAME_PATTERN, max_length=128)
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
    role: Role
    namespace: str | None = Field(
        None,
        pattern=NAMESPACE_PATTERN,
        description="Required for namespace_admin, not allowed for the other roles.",
    )


class UserPatch(BaseModel):
    """Only the fields sent are changed; ``namespace: null`` clears the namespace."""

    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    namespace: str | None = Field(None, pattern=NAMESPACE_PATTERN)
    disabled: bool | None = Field(None, description="Disabling ends the user's sessions.")
    password: str | None = Field(
        None,
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description="A new password; ends the user's sessions and lifts a lock.",
    )


class UserOut(BaseModel):
    username: str
    role: Role
    namespace: str | None
    disabled: bool
    created_at: datetime
    locked_until: datetime | None = Field(
        description="Set while sign-in is locked after repeated failures."
    )


class UserPage(BaseModel):
    items: list[UserOut]
    total: int
    offset: int
    limit: int


def user_out(user: UserInfo) -> UserOut:
    return UserOut(
        username=user.username,
        role=user.role,
        namespace=user.namespace,
        disabled=user.disabled,
        created_at=user.created_at,
        locked_until=user.locked_until,
    )


@router.get("", response_model=UserPage)
async def list_users(
    request: Request,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=500),
    _: Principal = Depends(admin),
) -> UserPage:
    """Users ordered by name, a page at a time."""
    page = await user_service(request).list_users(offset, limit)
    return UserPage(
        items=[user_out(u) for u in page.items], total=page.total, offset=offset, limit=limit
    )


@router.post(
    "",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"model": ErrorOut, "description": "The username is taken."}},
)
async def create_user(
    body: UserIn, request: Request, principal: Principal = Depends(admin)
) -> UserOut:
    created = await user_service(request).create_user(
        body.username, body.password, body.role, body.namespace, actor=principal.name
    )
    return user_out(created)


@router.get("/{username}", response_model=UserOut, responses={404: {"model": ErrorOut}})
async def get_user(request: Request, username: Username, _: Principal = Depends(admin)) -> UserOut:
    return user_out(await user_service(request).get_user(username))


@router.patch(
    "/{username}",
    response_model=UserOut,
    responses={
        404: {"model": ErrorOut},
        409: {"model": ErrorOut, "description": "It would leave no enabled admin."},
    },
)
async def update_user(
    body: UserPatch,
    request: Request,
    username: Username,
    principal: Principal = Depends(admin),
) -> UserOut:
    updated = await user_service(request).update_user(
        username,
        actor=principal.name,
        role=body.role if body.role is not None else UNSET,
        namespace=body.namespace if "namespace" in body.model_fields_set else UNSET,
        disabled=body.disabled,
        password=body.password,
    )
    return user_out(updated)


@router.delete(
    "/{username}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        404: {"model": ErrorOut},
        409: {"model": ErrorOut, "description": "The last enabled admin."},
    },
)
async def delete_user(
    request: Request, username: Username, principal: Principal = Depends(admin)
) -> Response:
    await user_service(request).delete_user(username, actor=principal.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
