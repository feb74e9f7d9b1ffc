"""The gateway's ASGI application: the request pipeline of the seed, in order.

    namespace_matcher → read and check the body → router.resolve_model → policy_enforcer
    → router.choose_target → upstream relay → monitoring.metrics

Each phase is a plain function of the current :class:`Snapshot`; a phase that refuses the
request raises a :class:`GatewayError`, rendered once, here, in the caller's protocol. The hot
path does no I/O but the upstream call itself.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from aigw import __version__
from aigw.config.snapshot import KeyEntry, Snapshot
from aigw.gateway.auth.limit_enforcer import LimitEnforcer
from aigw.gateway.auth.namespace_matcher import match_namespace
from aigw.gateway.auth.policy_enforcer import enforce_policy
from aigw.gateway.core.endpoints import ENDPOINTS, Endpoint, parse_json_body
from aigw.gateway.core.errors import (
    GatewayError,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    NotReady,
    openai_error_body,
)
from aigw.gateway.core.http import (
    JSON_HEADERS,
    ClientDisconnected,
    Headers,
    Receive,
    Scope,
    Send,
    client_address,
    header,
    read_body,
    send_response,
)
from aigw.gateway.monitoring.metrics import RequestRecord, record_request
from aigw.gateway.monitoring.realtime import close_default_recorder
from aigw.gateway.routing.router import choose_target, resolve_model
from aigw.gateway.routing.upstream import Relayed, UpstreamClient
from aigw.state.limits import Admission

if TYPE_CHECKING:
    from aigw.gateway.core.config_sync import ConfigFollower

log = logging.getLogger("aigw.gateway")

# Bodies above this are parsed and re-serialised in a worker thread, so one huge prompt cannot
# stall every other request on the event loop.
OFFLOAD_JSON_BYTES = 1024 * 1024


class GatewayApp:
    """One instance per worker process; ``snapshot`` is replaced whole on a config change."""

    def __init__(self, snapshot: Snapshot | None, upstream: UpstreamClient | None = None) -> None:
        self.snapshot = snapshot
        self.upstream = upstream or UpstreamClient()
        self.limits = LimitEnforcer()
        # Set when the snapshot comes from the config center (config_sync.ConfigFollower).
        self.config_center_version: int | None = None
        self.follower: ConfigFollower | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.upstream.start()
                if self.follower is not None:
                    await self.follower.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.follower is not None:
                    await self.follower.stop()
                await self.limits.close()  # pending settles reach the shared store
                await close_default_recorder()  # the last second of usage counts
                await self.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = (header(scope, b"x-request-id") or uuid.uuid4().hex.encode())[:128]
        response_headers: Headers = [(b"x-request-id", request_id)]
        record = RequestRecord(request_id.decode("latin-1"), scope["method"], scope["path"])
        try:
            endpoint = ENDPOINTS.get(scope["path"])
            if endpoint is not None:
                if scope["method"] != "POST":
                    raise MethodNotAllowed(f"use POST for {endpoint.path}")
                await self._proxy(scope, receive, send, endpoint, response_headers, record)
            else:
                await self._local(scope, send, response_headers, record)
        except GatewayError as error:
            record.status = error.status
            record.error_type = error.type
            headers = JSON_HEADERS + response_headers
            headers.extend((k.encode(), v.encode()) for k, v in error.headers.items())
            await send_response(send, error.status, openai_error_body(error), headers)
        except ClientDisconnected:
            record.status = 499
            record.error_type = "client_disconnected"
        except Exception:
            log.exception("unexpected error handling %s %s", scope["method"], scope["path"])
            record.status = 500
            record.error_type = "server_error"
            error = GatewayError("the gateway failed to handle this request; see its logs")
            try:
                await send_response(
                    send, 500, openai_error_body(error), JSON_HEADERS + response_headers
                )
            except Exception:  # the response had already started: nothing more can be said
                pass
        finally:
            record_request(record)

    async def _proxy(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: Endpoint,
        response_headers: Headers,
        record: RequestRecord,
    ) -> None:
        snapshot = self._ready_snapshot()
        key = match_namespace(scope, snapshot)
        record.namespace, record.key = key.namespace, key.prefix
        raw = await read_body(scope, receive, snapshot.max_request_body_bytes)
        large = len(raw) > OFFLOAD_JSON_BYTES
        body = await asyncio.to_thread(parse_json_body, raw) if large else parse_json_body(raw)
        endpoint.validate(body)
        model = resolve_model(snapshot, body["model"])
        record.model, record.stream = model.name, bool(body.get("stream"))
        enforce_policy(key, model, body, client_address(scope, snapshot.trusted_proxies))
        target = choose_target(model)
        record.provider, record.upstream_model = target.provider.name, target.upstream_model
        upstream_model = target.upstream_model
        admission = await self.limits.admit(
            key, model, upstream_model, endpoint.path, body, response_headers
        )
        # Streams are settled with real usage: ask OpenAI upstreams for it, hide it if unasked.
        strip_usage = (
            admission is not None
            and admission.plan.needs_settle()
            and record.stream
            and target.provider.type != "anthropic"
            and not _asks_for_usage(body)
        )
        if strip_usage:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        if strip_usage or body["model"] != upstream_model:
            body["model"] = upstream_model
            raw = await asyncio.to_thread(orjson.dumps, body) if large else orjson.dumps(body)
        relayed: Relayed | None = None
        try:
            relayed = await self._relay_unless_disconnected(
                receive, send, target, endpoint.upstream_path, raw, response_headers, strip_usage
            )
        finally:
            if relayed is not None:
                record.status = relayed.status
                if relayed.usage is not None:
                    record.count_usage(relayed.usage, model.price)
            if admission is not None and admission.plan.needs_settle():
                self.limits.settle_later(admission, *_actual_usage(admission, relayed, record))

    async def _relay_unless_disconnected(self, receive: Receive, send: Send, *args: Any) -> Relayed:
        """Relay upstream, cancelling the upstream request as soon as the caller goes away."""
        task = asyncio.current_task()
        assert task is not None
        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()
            task.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            return await self.upstream.relay(send, *args)
        except asyncio.CancelledError:
            if disconnected.is_set():
                task.uncancel()
                raise ClientDisconnected from None
            raise
        finally:
            watcher.cancel()

    async def _local(
        self, scope: Scope, send: Send, response_headers: Headers, record: RequestRecord
    ) -> None:
        """Endpoints the gateway answers itself."""
        path = scope["path"]
        if scope["method"] != "GET" and (
            path in ("/healthz", "/readyz") or path.startswith("/v1/models")
        ):
            raise MethodNotAllowed(f"use GET for {path}")
        if path == "/healthz":
            body: Any = {"status": "ok", "version": __version__}
        elif path == "/readyz":
            body = {"status": "ready", "config_version": self._ready_snapshot().version}
            if self.config_center_version is not None:
                body["config_center_version"] = self.config_center_version
            body["limits"] = self.limits.describe()
        elif path == "/v1/models" or path.startswith("/v1/models/"):
            snapshot = self._ready_snapshot()
            key = match_namespace(scope, snapshot)
            record.namespace, record.key = key.namespace, key.prefix
            body = _models_response(snapshot, key, path.removeprefix("/v1/models").strip("/"))
        else:
            raise NotFound(f"unknown path {path}; see /v1/models for what this gateway serves")
        record.status = 200
        await send_response(send, 200, orjson.dumps(body), JSON_HEADERS + response_headers)

    def _ready_snapshot(self) -> Snapshot:
        snapshot = self.snapshot
        if snapshot is None:
            raise NotReady("the gateway has not loaded its configuration yet")
        return snapshot


def _models_response(snapshot: Snapshot, key: KeyEntry, model_id: str) -> dict[str, Any]:
    entries = [
        {"id": name, "object": "model", "created": 0, "owned_by": model.owned_by}
        for model in snapshot.models_for(key)
        for name in model.names
    ]
    if not model_id:
        return {"object": "list", "data": entries}
    for entry in entries:
        if entry["id"] == model_id:
            return entry
    raise ModelNotFound(
        f"the model '{model_id}' does not exist or you do not have access to it", param="model"
    )


def _asks_for_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _actual_usage(
    admission: Admission, relayed: Relayed | None, record: RequestRecord
) -> tuple[int, float]:
    """Tokens and spend to settle a reservation with.

    The upstream's reported usage when there is some; nothing for a request that failed before
    an answer; the reservation itself for an answer without usage (a cut stream), since its
    tokens were probably spent.
    """
    if relayed is not None and relayed.usage is not None:
        return record.prompt_tokens + record.completion_tokens, record.cost_usd
    if relayed is None or relayed.status >= 400:
        return 0, 0.0
    plan = admission.plan
    return plan.estimated_tokens, plan.estimated_cost_micro / 1_000_000
