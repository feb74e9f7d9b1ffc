"""``aigw web``'s server (aigw/web/server.py) in process, against small upstreams standing in for
the config center and the gateway: static files with the SPA fallback, and the two proxies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aigw.web.server import create_app
from tests.helpers import free_port


@pytest.fixture
def static(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><div id=root></div>")
    (root / "assets" / "app-123.js").write_text("console.log(1)")
    (root / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside")
    return root


class Upstream:
    """Records what reached it; streams on /stream until `release` is set."""

    def __init__(self) -> None:
        self.seen: list[web.Request] = []
        self.bodies: list[bytes] = []
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/stream", self.stream)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.app = app

    async def echo(self, request: web.Request) -> web.Response:
        self.seen.append(request)
        self.bodies.append(await request.read())
        if request.path.endswith("/empty"):
            return web.Response(status=204)
        response = web.json_response(
            {"path": request.raw_path, "method": request.method}, status=201
        )
        response.set_cookie("aigw_session", "s3cret", httponly=True, samesite="Strict")
        response.headers["ETag"] = '"7"'
        return response

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"n": 1}\n\n')
        await self.release.wait()
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[Upstream, Upstream, str, str]]:
    center, gateway = Upstream(), Upstream()
    servers = [TestServer(center.app), TestServer(gateway.app)]
    for server in servers:
        await server.start_server()
    yield center, gateway, str(servers[0].make_url("")), str(servers[1].make_url(""))
    for server in servers:
        await server.close()


@pytest.fixture
async def client(
    upstreams: tuple[Upstream, Upstream, str, str], static: Path
) -> AsyncIterator[TestClient]:
    _, _, center_url, gateway_url = upstreams
    async with TestClient(TestServer(create_app(center_url, gateway_url, static))) as test_client:
        yield test_client


async def test_serves_the_build_and_falls_back_to_the_application(client: TestClient) -> None:
    index = await client.get("/")
    assert index.status == 200 and "id=root" in await index.text()
    assert index.headers["Cache-Control"] == "no-cache"
    assert "default-src 'self'" in index.headers["Content-Security-Policy"]
    asset = await client.get("/assets/app-123.js")
    assert asset.status == 200 and "immutable" in asset.headers["Cache-Control"]
    # The application's own routes (deep links, reloads) get index.html.
    for route in ("/requests", "/keys/team-a", "/versions?x=1"):
        response = await client.get(route)
        assert response.status == 200 and "id=root" in await response.text(), route
    # A missing file is a 404, not the application.
    assert (await client.get("/assets/gone-1.js")).status == 404
    assert (await client.get("/robots.txt")).status == 404
    # Nothing outside the build is served.
    assert "outside" not in await (await client.get("/../secret.txt")).text()
    assert "outside" not in await (await client.get("/assets/%2e%2e/%2e%2e/secret.txt")).text()
    assert (await client.get("/healthz")).status == 200


async def test_relays_the_config_center_api_with_cookies(
    client: TestClient, upstreams: tuple[Upstream, Upstream, str, str]
) -> None:
    center, gateway, _, _ = upstreams
    response = await client.post(
        "/api/v1/prices/org%2Fmodel?dry_run=true",
        json={"name": "team-a"},
        headers={"Cookie": "aigw_session=abc", "If-Match": '"6"'},
    )
    assert response.status == 201
    assert await response.json() == {
        "path": "/api/v1/prices/org%2Fmodel?dry_run=true",
        "method": "POST",
    }
    assert "aigw_session=s3cret" in response.headers["Set-Cookie"]
    assert response.headers["ETag"] == '"7"'
    seen = center.seen[-1]
    assert seen.headers["Cookie"] == "aigw_session=abc"
    assert seen.headers["If-Match"] == '"6"'
    assert seen.headers["X-Forwarded-For"] == "127.0.0.1"
    assert center.bodies[-1] == b'{"name": "team-a"}'
    assert not gateway.seen
    empty = await client.delete("/api/v1/namespaces/empty")
    assert empty.status == 204 and await empty.read() == b""


async def test_relays_the_gateway_without_the_prefix_and_without_cookies(
    client: TestClient, upstreams: tuple[Upstream, Upstream, str, str]
) -> None:
    center, gateway, _, _ = upstreams
    response = await client.get(
        "/gateway/v1/models",
        headers={"Authorization": "Bearer sk-aigw-x", "Cookie": "aigw_session=abc"},
    )
    assert response.status == 201
    assert (await response.json())["path"] == "/v1/models"
    assert "Set-Cookie" not in response.headers  # the gateway cannot set the dashboard's cookies
    seen = gateway.seen[-1]
    assert seen.headers["Authorization"] == "Bearer sk-aigw-x"
    assert "Cookie" not in seen.headers  # nor read the admin's session
    assert not center.seen


async def test_streams_pass_through_unbuffered(
    client: TestClient, upstreams: tuple[Upstream, Upstream, str, str]
) -> None:
    _, gateway, _, _ = upstreams
    response = await client.post("/gateway/stream", json={"stream": True})
    assert response.headers["Content-Type"] == "text/event-stream"
    # The first event arrives while the upstream is still holding the stream open.
    first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), timeout=10)
    assert first == b'data: {"n": 1}\n\n'
    gateway.release.set()
    assert await asyncio.wait_for(response.content.read(), timeout=10) == b"data: [DONE]\n\n"


async def test_an_unreachable_upstream_is_a_502_in_the_api_error_shape(static: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with TestClient(TestServer(create_app(dead, dead, static))) as client:
        for path in ("/api/v1/auth/me", "/gateway/v1/models"):
            response = await client.get(path)
            assert response.status == 502
            body = await response.json()
            assert (
                body["error"]["type"] == "bad_gateway"
                and "cannot be reached" in (body["error"]["message"])
            )


async def test_without_a_build_it_says_how_to_make_one(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with TestClient(TestServer(create_app(dead, dead, tmp_path / "none"))) as client:
        response = await client.get("/overview")
        assert response.status == 503
        assert "make web" in await response.text()
