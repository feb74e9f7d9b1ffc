"""``aigw web``: serve the dashboard's static files and proxy the two APIs it uses.

- ``/api/*`` goes to the config center, cookies included (the session cookie it sets on sign-in
  is then first-party to the dashboard's origin).
- ``/gateway/*`` goes to a gateway without the prefix (the playground's chat and model list);
  cookies are dropped both ways, since the gateway knows callers by their key only.
- Answers are relayed chunk by chunk as they arrive, so a server-sent event stream reaches the
  browser unbuffered; a browser that goes away cancels the upstream request.
- Anything else is a file of the build, or ``index.html`` for the application's own routes.

Everything the page loads comes from this origin (the Content-Security-Policy says so), so the
dashboard works with no internet access.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, DummyCookieJar, TCPConnector, web
from multidict import CIMultiDict
from yarl import URL

log = logging.getLogger("aigw.web")

STATIC_DIR = Path(__file__).parent / "static"
"""Where ``npm run build`` in ``web/`` writes the application."""

MAX_BODY = 64 * 1024 * 1024
"""Largest request body relayed (a whole configuration document can be imported)."""

# Headers that describe one connection, not the message (RFC 9110 §7.6.1), and those the relay
# sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>aigw</title>
<h1>The aigw dashboard is not built</h1>
<p>Build it with <code>make web</code>
(or <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>) and restart
<code>aigw web</code>. The proxies under <code>/api/</code> and <code>/gateway/</code>
work meanwhile.</p>
"""

CENTER_KEY = web.AppKey("config_center", URL)
GATEWAY_KEY = web.AppKey("gateway", URL)
STATIC_KEY = web.AppKey("static_dir", Path)
CLIENT_KEY = web.AppKey("client", ClientSession)


def create_app(config_center: str, gateway: str, static_dir: Path | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_security_headers])
    app[CENTER_KEY] = URL(config_center.rstrip("/"))
    app[GATEWAY_KEY] = URL(gateway.rstrip("/"))
    app[STATIC_KEY] = (static_dir or STATIC_DIR).resolve()
    app.cleanup_ctx.append(_client)
    app.router.add_get("/healthz", _healthz)
    app.router.add_route("*", "/api/{tail:.*}", _to_center)
    app.router.add_route("*", "/gateway/{tail:.*}", _to_gateway)
    app.router.add_route("GET", "/{tail:.*}", _static)
    app.router.add_route("HEAD", "/{tail:.*}", _static)
    return app


async def _client(app: web.Application) -> AsyncIterator[None]:
    # No total timeout: streams and the config center's long answers end when they end; the
    # gateway enforces its own deadlines.
    session = ClientSession(
        timeout=ClientTimeout(total=None, sock_connect=10),
        connector=TCPConnector(limit=256),
        auto_decompress=False,  # relay bodies as they are, with their Content-Encoding
        cookie_jar=DummyCookieJar(),  # cookies belong to the browser, not to the relay
        trust_env=False,  # never through an HTTP proxy from the environment
    )
    app[CLIENT_KEY] = session
    yield
    await session.close()


@web.middleware
async def _security_headers(request: web.Request, handler):  # type: ignore[no-untyped-def]
    response = await handler(request)
    if not request.path.startswith(("/api/", "/gateway/")):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _to_center(request: web.Request) -> web.StreamResponse:
    return await _relay(
        request, _target(request.app[CENTER_KEY], request.raw_path), "config center"
    )


async def _to_gateway(request: web.Request) -> web.StreamResponse:
    raw = request.raw_path[len("/gateway") :] or "/"
    return await _relay(request, _target(request.app[GATEWAY_KEY], raw), "gateway", cookies=False)


def _target(base: URL, raw_path_qs: str) -> URL:
    """``base`` with the request's path and query appended, bytes as the browser sent them."""
    return URL(str(base) + raw_path_qs, encoded=True)


def _forward_headers(request: web.Request, cookies: bool) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or (not cookies and lower == "cookie"):
            continue
        headers.add(name, value)
    peer = request.remote or ""
    previous = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers


def _copy_back(headers: Iterable[tuple[str, str]], cookies: bool) -> CIMultiDict[str]:
    copied: CIMultiDict[str] = CIMultiDict()
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP and lower != "content-length":
            continue
        if not cookies and lower == "set-cookie":
            continue
        copied.add(name, value)
    return copied


async def _relay(
    request: web.Request, url: URL, what: str, *, cookies: bool = True
) -> web.StreamResponse:
    body = await request.read() if request.body_exists else None
    response: web.StreamResponse | None = None
    try:
        async with request.app[CLIENT_KEY].request(
            request.method,
            url,
            headers=_forward_headers(request, cookies),
            data=body,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            response.headers.update(_copy_back(upstream.headers.items(), cookies))
            if request.method == "HEAD" or upstream.status in (204, 304):
                response.headers.pop("Content-Length", None)
                await response.prepare(request)
                await response.write_eof()
                return response
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)  # each chunk as it comes: SSE stays live
            await response.write_eof()
            return response
    except (ClientError, OSError) as exc:
        if response is not None and response.prepared:
            raise  # the headers are sent: all that can be done is to end the stream
        log.warning("web: the %s at %s cannot be reached: %s", what, url.origin(), exc)
        return web.json_response(
            {
                "error": {
                    "type": "bad_gateway",
                    "code": "upstream_unreachable",
                    "message": f"the {what} cannot be reached ({type(exc).__name__})",
                }
            },
            status=502,
        )


async def _static(request: web.Request) -> web.StreamResponse:
    root = request.app[STATIC_KEY]
    index = root / "index.html"
    if not index.is_file():
        return web.Response(
            text=NOT_BUILT,
            status=503,
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )
    relative = request.match_info["tail"]
    if relative:
        candidate = (root / relative).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            immutable = candidate.parent.name == "assets"
            return web.FileResponse(
                candidate,
                headers={
                    "Cache-Control": "public, max-age=31536000, immutable"
                    if immutable
                    else "no-cache"
                },
            )
        if relative.startswith("assets/") or "." in relative.rsplit("/", 1)[-1]:
            raise web.HTTPNotFound()  # a missing file, not one of the application's routes
    return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


def run(host: str, port: int, config_center: str, gateway: str, static_dir: Path | None) -> None:
    """Serve until SIGINT/SIGTERM (blocking)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = create_app(config_center, gateway, static_dir)
    if not (app[STATIC_KEY] / "index.html").is_file():
        log.warning(
            "web: no dashboard build in %s: run `make web`; serving the proxies only",
            app[STATIC_KEY],
        )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        handler_cancellation=True,  # a closed tab cancels the relayed request (and the stream)
        print=lambda _: print(
            f"aigw web dashboard on http://{shown}:{port} "
            f"(config center {config_center}, gateway {gateway})",
            flush=True,
        ),
    )
