"""The gateway's ASGI application: the request pipeline of the seed, in order.

    namespace_matcher → read and check the body → router.resolve_model → policy_enforcer
    → router.plan → routing.failover (upstream relay, the next target on failure)
    → monitoring.metrics

Each phase is a plain function of the current :class:`Snapshot`; a phase that refuses the
request raises a :class:`GatewayError`, rendered once, here, in the caller's protocol. The hot
path does no I/O but the upstream call itself.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from aigw import __version__
from aigw.config.snapshot import KeyEntry, Snapshot, TargetEntry
from aigw.gateway.auth.limit_enforcer import LimitEnforcer, estimate_tokens
from aigw.gateway.auth.namespace_matcher import match_namespace, split_namespace_path
from aigw.gateway.auth.policy_enforcer import enforce_policy
from aigw.gateway.core.endpoints import COUNT_TOKENS_PATH, ENDPOINTS, Endpoint, parse_json_body
from aigw.gateway.core.errors import (
    AuthenticationFailed,
    GatewayError,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    NotReady,
    anthropic_error_body,
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
from aigw.gateway.monitoring.prometheus import Metrics, circuit_value
from aigw.gateway.monitoring.realtime import close_default_recorder, start_default_recorder
from aigw.gateway.monitoring.request_log import close_default_shipper, start_default_shipper
from aigw.gateway.routing.exchange import Exchange, count_tokens_exchange, plan_exchange
from aigw.gateway.routing.failover import forward
from aigw.gateway.routing.health import HealthChecker, checked_providers
from aigw.gateway.routing.router import Router, resolve_model
from aigw.gateway.routing.upstream import Relayed, UpstreamClient
from aigw.state.limits import Admission

if TYPE_CHECKING:
    from aigw.gateway.core.config_sync import ConfigFollower

log = logging.getLogger("aigw.gateway")

METRICS_TOKEN_ENV = "AIGW_METRICS_TOKEN"
# Probes and scrapes: not traffic, not in the request metrics.
_UNCOUNTED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
METRICS_WRITE_SECONDS = 1.0
PROMETHEUS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

# Bodies above this are parsed and re-serialised in a worker thread, so one huge prompt cannot
# stall every other request on the event loop.
OFFLOAD_JSON_BYTES = 1024 * 1024


class GatewayApp:
    """One instance per worker process; ``snapshot`` is replaced whole on a config change."""

    def __init__(self, snapshot: Snapshot | None, upstream: UpstreamClient | None = None) -> None:
        self.snapshot = snapshot
        self.upstream = upstream or UpstreamClient()
        self.router = Router()
        self._health: asyncio.Task[None] | None = None
        self.metrics = Metrics.from_env(self._gauges)
        self._metrics_writer: asyncio.Task[None] | None = None
        self._sinks_started: asyncio.Task[None] | None = None
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
                checker = HealthChecker(self.router, lambda: self.snapshot, self.upstream.session)
                loop = asyncio.get_running_loop()
                self._health = loop.create_task(checker.run())
                self._metrics_writer = loop.create_task(self._write_metrics())
                # What workers killed earlier left in the spool goes out now, not at the first
                # request; in the background, so that a config center that is down cannot hold
                # up serving.
                self._sinks_started = loop.create_task(_start_sinks())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in (self._health, self._metrics_writer, self._sinks_started):
                    if task is not None:
                        task.cancel()
                if self.follower is not None:
                    await self.follower.stop()
                await self.limits.close()  # pending settles reach the shared store
                await close_default_recorder()  # the last second of usage counts
                await close_default_shipper()  # and of request records
                self._save_metrics()  # and of the metrics, for the workers still running
                await self.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = (header(scope, b"x-request-id") or uuid.uuid4().hex.encode())[:128]
        response_headers: Headers = [(b"x-request-id", request_id)]
        path_namespace, path = split_namespace_path(scope["path"])
        record = RequestRecord(request_id.decode("latin-1"), scope["method"], path)
        endpoint = ENDPOINTS.get(path)
        counted = path not in _UNCOUNTED_PATHS
        self.metrics.in_flight += counted
        try:
            if endpoint is not None:
                if scope["method"] != "POST":
                    raise MethodNotAllowed(f"use POST for {endpoint.path}")
                await self._proxy(
                    scope, receive, send, endpoint, path_namespace, response_headers, record
                )
            else:
                await self._local(scope, path, path_namespace, send, response_headers, record)
        except GatewayError as error:
            record.status = error.status
            record.error_type = error.type
            record.error_code = error.code
            headers = JSON_HEADERS + response_headers
            headers.extend((k.encode(), v.encode()) for k, v in error.headers.items())
            await send_response(send, error.status, _render(scope, path, error), headers)
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
                    send, 500, _render(scope, path, error), JSON_HEADERS + response_headers
                )
            except Exception:  # the response had already started: nothing more can be said
                pass
        finally:
            self.metrics.in_flight -= counted
            record_request(record)
            try:
                if counted:
                    self.metrics.observe(record)
            except Exception:  # a metric must never fail a request
                log.exception("metrics: cannot count request %s", record.request_id)

    async def _proxy(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: Endpoint,
        path_namespace: str | None,
        response_headers: Headers,
        record: RequestRecord,
    ) -> None:
        snapshot = self._ready_snapshot()
        key = match_namespace(scope, snapshot, path_namespace)
        record.namespace, record.key = key.namespace, key.prefix
        raw = await read_body(scope, receive, snapshot.max_request_body_bytes)
        record.request_body = (raw, snapshot.request_log) if snapshot.request_log.bodies else None
        large = len(raw) > OFFLOAD_JSON_BYTES
        body = await asyncio.to_thread(parse_json_body, raw) if large else parse_json_body(raw)
        endpoint.validate(body)
        model = resolve_model(snapshot, body["model"])
        record.model, record.stream = model.name, bool(body.get("stream"))
        enforce_policy(key, model, body, client_address(scope, snapshot.trusted_proxies))
        targets = self.router.plan(model, snapshot.circuit_breaker)
        target = targets[0]
        record.provider, record.upstream_model = target.provider.name, target.upstream_model
        if endpoint.path == COUNT_TOKENS_PATH:
            if target.provider.count_tokens_upstream:
                exchange = count_tokens_exchange(body, raw, target, _anthropic_headers(scope))
                relayed = await self._unless_disconnected(
                    receive, self.upstream.relay(send, target, exchange, response_headers)
                )
                record.status = relayed.status
            else:
                await self._count_tokens(send, key, target, body, response_headers, record)
            return
        # Settling a stream's limits needs its real usage (asked of OpenAI upstreams).
        settles = key.limit_plan is not None and key.limit_plan.needs_settle()
        caller_headers = _anthropic_headers(scope) if endpoint.protocol == "anthropic" else {}
        first_exchange: Exchange | None = None

        def exchange_for(chosen: TargetEntry) -> Exchange:
            if chosen is target and first_exchange is not None:
                return first_exchange
            return plan_exchange(
                endpoint.protocol,
                endpoint.upstream_path,
                body,
                raw,
                model,
                chosen,
                settle_stream_usage=settles,
                default_max_tokens=key.default_max_tokens,
                caller_headers=caller_headers,
            )

        # Planned (and a translation refused) before limits reserve anything.
        first_exchange = (
            await asyncio.to_thread(exchange_for, target) if large else exchange_for(target)
        )
        admission, counted_prompt = await self.limits.admit(
            key, model, target.upstream_model, endpoint.path, body, response_headers
        )
        relayed: Relayed | None = None
        try:
            relayed = await self._unless_disconnected(
                receive,
                forward(
                    self.router,
                    self.upstream,
                    send,
                    model,
                    targets,
                    exchange_for,
                    response_headers,
                    snapshot.circuit_breaker,
                    record,
                ),
            )
        finally:
            if relayed is not None:
                record.status = relayed.status
                usage = relayed.usage
                if usage is not None:
                    if relayed.broken and not usage.prompt_tokens and counted_prompt:
                        # A cut stream reported no usage: its prompt as counted here, and the
                        # completion streamed so far.
                        usage = replace(usage, prompt_tokens=counted_prompt)
                    record.count_usage(usage, model.price)
            if admission is not None and admission.plan.needs_settle():
                self.limits.settle_later(admission, *_actual_usage(admission, relayed, record))

    async def _count_tokens(
        self,
        send: Send,
        key: KeyEntry,
        target: TargetEntry,
        body: dict[str, Any],
        response_headers: Headers,
        record: RequestRecord,
    ) -> None:
        """Anthropic's ``/v1/messages/count_tokens``, answered by the gateway's counter: exact
        for OpenAI models, the documented estimate for Claude (unless the provider asks its own
        endpoint: ``count_tokens: upstream``). Free: no limits are charged."""
        estimate = await estimate_tokens(key, target.upstream_model, "/v1/messages", body)
        record.status = 200
        answer = orjson.dumps({"input_tokens": estimate.prompt_tokens})
        await send_response(send, 200, answer, JSON_HEADERS + response_headers)

    async def _unless_disconnected(
        self, receive: Receive, forwarding: Coroutine[Any, Any, Relayed]
    ) -> Relayed:
        """Run ``forwarding``, cancelling it (and its upstream request) as soon as the caller
        goes away."""
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
            return await forwarding
        except asyncio.CancelledError:
            if disconnected.is_set():
                task.uncancel()
                raise ClientDisconnected from None
            raise
        finally:
            watcher.cancel()

    async def _local(
        self,
        scope: Scope,
        path: str,
        path_namespace: str | None,
        send: Send,
        response_headers: Headers,
        record: RequestRecord,
    ) -> None:
        """Endpoints the gateway answers itself."""
        if scope["method"] != "GET" and (
            path in ("/healthz", "/readyz", "/metrics") or path.startswith("/v1/models")
        ):
            raise MethodNotAllowed(f"use GET for {path}")
        if path == "/metrics":
            await self._metrics_endpoint(scope, send, response_headers, record)
            return
        if path == "/healthz":
            body: Any = {"status": "ok", "version": __version__}
        elif path == "/readyz":
            body = {"status": "ready", "config_version": self._ready_snapshot().version}
            if self.config_center_version is not None:
                body["config_center_version"] = self.config_center_version
            body["limits"] = self.limits.describe()
            body["targets"] = self.router.describe()
        elif path == "/v1/models" or path.startswith("/v1/models/"):
            snapshot = self._ready_snapshot()
            key = match_namespace(scope, snapshot, path_namespace)
            record.namespace, record.key = key.namespace, key.prefix
            model_id = path.removeprefix("/v1/models").strip("/")
            if header(scope, b"anthropic-version") is not None:  # Anthropic's SDK asks
                body = _anthropic_models_response(snapshot, key, model_id)
            else:
                body = _models_response(snapshot, key, model_id)
        else:
            raise NotFound(f"unknown path {path}; see /v1/models for what this gateway serves")
        record.status = 200
        await send_response(send, 200, orjson.dumps(body), JSON_HEADERS + response_headers)

    async def _metrics_endpoint(
        self, scope: Scope, send: Send, response_headers: Headers, record: RequestRecord
    ) -> None:
        """Prometheus's scrape: every worker's metrics, merged (``monitoring/prometheus.py``).
        With ``AIGW_METRICS_TOKEN`` set, the scrape must bring it as a bearer token."""
        token = os.environ.get(METRICS_TOKEN_ENV)
        if token:
            sent = header(scope, b"authorization") or b""
            if not hmac.compare_digest(sent, b"Bearer " + token.encode()):
                raise AuthenticationFailed("/metrics needs the metrics bearer token")
        mine = self.metrics.snapshot()  # on the loop: it copies live counters
        body = await asyncio.to_thread(self.metrics.exposition, mine)
        record.status = 200
        headers = [(b"content-type", PROMETHEUS_CONTENT_TYPE), *response_headers]
        await send_response(send, 200, body, headers)

    async def _write_metrics(self) -> None:
        while True:
            await asyncio.sleep(METRICS_WRITE_SECONDS)
            self._save_metrics()

    def _save_metrics(self) -> None:
        try:
            self.metrics.write()
        except OSError as exc:  # a full disk must not stop the gateway
            log.warning("metrics: cannot save this worker's metrics: %s", exc)

    def _gauges(self) -> Iterator[tuple[str, tuple[str, ...], float]]:
        """This worker's gauges (and the limit store's own counter) for the metrics."""
        for name, state in self.router.target_states():
            yield "gateway_circuit_state", (name,), circuit_value(state.breaker.state)
        snapshot = self.snapshot
        if snapshot is not None:
            for provider in checked_providers(snapshot):
                healthy = provider.name not in self.router.unhealthy_providers
                yield "gateway_provider_healthy", (provider.name,), 1 if healthy else 0
        limits = self.limits.describe()
        if limits.get("store") == "redis":
            yield "gateway_limits_store_up", (), 1 if limits.get("breaker") == "closed" else 0
            yield "gateway_limits_fail_open", (), limits.get("fail_open_admissions", 0)
        if self.config_center_version is not None:
            yield "gateway_config_version", (), self.config_center_version
        follower = self.follower
        if follower is not None and follower.last_contact is not None:
            yield "gateway_config_sync_age_seconds", (), time.monotonic() - follower.last_contact

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


def _anthropic_models_response(snapshot: Snapshot, key: KeyEntry, model_id: str) -> dict[str, Any]:
    """``/v1/models`` as Anthropic's API lists models (its SDK's ``models.list()``)."""
    entries = [
        {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}
        for model in snapshot.models_for(key)
        for name in model.names
    ]
    if not model_id:
        return {
            "data": entries,
            "has_more": False,
            "first_id": entries[0]["id"] if entries else None,
            "last_id": entries[-1]["id"] if entries else None,
        }
    for entry in entries:
        if entry["id"] == model_id:
            return entry
    raise ModelNotFound(f"model: {model_id}", param="model")


def _render(scope: Scope, path: str, error: GatewayError) -> bytes:
    """The error in the caller's protocol: Anthropic's on its endpoints, or for its SDK (which
    always sends ``anthropic-version``) on a shared one such as ``/v1/models``."""
    if path.startswith("/v1/messages") or header(scope, b"anthropic-version") is not None:
        return anthropic_error_body(error)
    return openai_error_body(error)


def _anthropic_headers(scope: Scope) -> dict[str, str]:
    beta = header(scope, b"anthropic-beta")
    return {"anthropic-beta": beta.decode("latin-1")} if beta is not None else {}


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


async def _start_sinks() -> None:
    """Start this worker's usage and request-log flushes (they recover the spool first)."""
    await start_default_recorder()
    await start_default_shipper()
