"""Every admin route is guarded, by exactly one of ``viewer``, ``namespace_admin`` or ``admin``.

The checks walk the live route table, so routes added later are covered without editing this
file. Since FastAPI 0.137 ``app.routes`` holds one opaque entry per included router, so the walk
uses ``fastapi.routing.iter_route_contexts`` (which yields effective paths and dependencies), and
a guard asserts the walk is not empty: a check over zero routes would pass while checking nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from aigw.config_center import auth
from tests.config_center.auth_fixtures import Center, bearer, running_center

try:  # FastAPI >= 0.137.2
    from fastapi.routing import iter_route_contexts
except ImportError:  # older FastAPI: app.routes is already flat
    iter_route_contexts = None

GUARDS: dict[Callable[..., Any], str] = {
    auth.viewer: "viewer",
    auth.namespace_admin: "namespace_admin",
    auth.admin: "admin",
}
PUBLIC = {("POST", "/api/v1/auth/login")}
# Non-GET routes a viewer may call: they change no configuration.
VIEWER_MAY_CALL = {("POST", "/api/v1/auth/logout")}
# Routes that must exist: if the walk misses them, it is broken, not the routes.
KNOWN = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/me"),
    ("GET", "/api/v1/users"),
    ("DELETE", "/api/v1/users/{username}"),
}
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    guards: tuple[str, ...]

    @property
    def url(self) -> str:
        """The path with every parameter filled ("1" parses as a name and as a number)."""
        return _PARAM.sub("1", self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _routes(app: FastAPI) -> Iterator[tuple[APIRoute, Any]]:
    """(route, effective route) pairs: the effective one has the included path and dependant."""
    if iter_route_contexts is None:
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route, route
        return
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context.original_route, context


def _guards(dependant: Dependant) -> list[str]:
    found = [GUARDS[d.call] for d in dependant.dependencies if d.call in GUARDS]
    for sub in dependant.dependencies:
        found.extend(_guards(sub))
    return found


def api_endpoints(app: FastAPI) -> list[Endpoint]:
    endpoints = []
    for _, effective in _routes(app):
        if not effective.path.startswith("/api/"):
            continue
        guards = tuple(sorted(set(_guards(effective.dependant))))
        for method in sorted(effective.methods):
            endpoints.append(Endpoint(method, effective.path, guards))
    return endpoints


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[Center]:
    async with running_center(tmp_path, replace_users=False) as running:
        yield running


@pytest.fixture
def endpoints(center: Center) -> list[Endpoint]:
    found = api_endpoints(center.app)
    missing = KNOWN - {(e.method, e.path) for e in found}
    assert not missing, f"the route walk missed {missing}: is it still walking included routers?"
    return [e for e in found if (e.method, e.path) not in PUBLIC]


def test_every_admin_route_has_exactly_one_guard(endpoints: list[Endpoint]) -> None:
    unguarded = [str(e) for e in endpoints if len(e.guards) != 1]
    assert not unguarded, (
        "each /api/ route needs exactly one of Depends(viewer | namespace_admin | admin) "
        f"from aigw.config_center.auth: {unguarded}"
    )


def test_login_is_the_only_public_route(center: Center) -> None:
    public = [e for e in api_endpoints(center.app) if not e.guards]
    assert {(e.method, e.path) for e in public} == PUBLIC


async def _call(center: Center, endpoint: Endpoint, headers: dict[str, str]) -> Any:
    body = None if endpoint.method in ("GET", "HEAD") else {}
    return await center.client.request(endpoint.method, endpoint.url, json=body, headers=headers)


async def test_every_admin_route_needs_a_token(center: Center, endpoints: list[Endpoint]) -> None:
    wrong = []
    for endpoint in endpoints:
        for headers in ({}, bearer("aigw_sess_not-a-session"), bearer("boot-token-12345")):
            response = await _call(center, endpoint, headers)
            if response.status_code != 401:
                wrong.append(f"{endpoint} {headers}: {response.status_code}")
    assert not wrong, f"answered without a valid token: {wrong}"


async def test_viewers_change_nothing(center: Center, endpoints: list[Endpoint]) -> None:
    token = await center.token_for("watcher", "viewer")
    changing = [
        e for e in endpoints if e.method != "GET" and (e.method, e.path) not in VIEWER_MAY_CALL
    ]
    assert changing
    wrong = []
    for endpoint in changing:
        response = await _call(center, endpoint, bearer(token))
        if response.status_code != 403:
            wrong.append(f"{endpoint}: {response.status_code}")
    assert not wrong, f"a viewer was not refused: {wrong}"


async def test_namespace_admins_do_not_reach_admin_routes(
    center: Center, endpoints: list[Endpoint]
) -> None:
    token = await center.token_for("tenant", "namespace_admin", "team-a")
    admin_only = [e for e in endpoints if e.guards == ("admin",)]
    assert admin_only
    wrong = []
    for endpoint in admin_only:
        response = await _call(center, endpoint, bearer(token))
        if response.status_code != 403:
            wrong.append(f"{endpoint}: {response.status_code}")
    assert not wrong, f"a namespace admin was not refused: {wrong}"
