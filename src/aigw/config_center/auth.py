"""Who is calling the admin API, and what they may do.

Every admin route depends on exactly one of :func:`viewer`, :func:`namespace_admin` or
:func:`admin` (a test walks the route table to keep it so). Roles:

- ``admin``: everything.
- ``viewer``: reads everything except admin users; changes nothing.
- ``namespace_admin``: reads and manages one namespace (its keys; its policy stays with admins);
  sees nothing of other namespaces, providers, versions or users.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from fastapi import Depends, Request

from aigw.config_center.errors import Forbidden, Unauthenticated

Role = Literal["admin", "viewer", "namespace_admin"]
ROLES: tuple[Role, ...] = ("admin", "viewer", "namespace_admin")


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    namespace: str | None = None

    def can_read(self, namespace: str) -> bool:
        return self.role in ("admin", "viewer") or self.namespace == namespace

    def can_manage(self, namespace: str) -> bool:
        return self.role == "admin" or (
            self.role == "namespace_admin" and self.namespace == namespace
        )


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get("aigw_session")


async def authenticate(request: Request) -> Principal:
    """The caller, from a bearer token (or the dashboard's session cookie); else 401."""
    token = _bearer(request)
    if token is None:
        raise Unauthenticated("sign in: send 'Authorization: Bearer <token>'")
    settings = request.app.state.settings
    if settings.admin_token and hmac.compare_digest(token, settings.admin_token):
        return Principal("bootstrap-admin", "admin")
    principal = await request.app.state.users.principal_for_token(token)
    if principal is None:
        raise Unauthenticated("invalid or expired token")
    return principal


async def viewer(principal: Principal = Depends(authenticate)) -> Principal:
    """Any signed-in user; namespace admins are further limited by each route."""
    return principal


async def namespace_admin(principal: Principal = Depends(authenticate)) -> Principal:
    """Admins and namespace admins; the route checks ``can_manage`` for the namespace."""
    if principal.role == "viewer":
        raise Forbidden("viewers cannot change anything")
    return principal


async def admin(principal: Principal = Depends(authenticate)) -> Principal:
    if principal.role != "admin":
        raise Forbidden("this needs the admin role")
    return principal


def global_reader(principal: Principal) -> None:
    """Resources outside any namespace are hidden from namespace admins."""
    if principal.role == "namespace_admin":
        raise Forbidden("namespace admins can only see their own namespace")
