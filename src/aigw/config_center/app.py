"""The config center's HTTP API (FastAPI): the control plane of aigw.

It owns the configuration (versioned in SQL), its admin users, and the feed gateways follow.
Nothing here is on the gateways' request path: gateways hold a snapshot and are told of changes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from aigw import __version__
from aigw.config.loader import ConfigError
from aigw.config.secrets import SecretBox
from aigw.config_center.accounting import UsageLedger
from aigw.config_center.api.usage import setup_realtime
from aigw.config_center.db.engine import make_engine, migrate, sessions
from aigw.config_center.errors import ApiError
from aigw.config_center.feed import VersionFeed
from aigw.config_center.metrics import CenterMetrics, CountApiRequests
from aigw.config_center.request_log import (
    RequestLogStore,
    Retention,
    purge_seconds_from,
    retention_days_from,
)
from aigw.config_center.settings import CenterSettings
from aigw.config_center.store import ConfigStore, VersionConflict, VersionNotFound
from aigw.config_center.users import UserService


def create_app(settings: CenterSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        await migrate(engine)
        maker = sessions(engine)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = maker
        app.state.store = ConfigStore(maker, SecretBox(settings.master_key))
        app.state.users = UserService(maker, settings.session_ttl_seconds)
        realtime = setup_realtime(app, settings)
        app.state.ledger = UsageLedger(maker)
        app.state.request_log = RequestLogStore(maker)
        retention = _retention(app.state.request_log, settings, metrics)
        app.state.feed = VersionFeed(
            app.state.store, settings.redis_url, redis_cluster=settings.redis_cluster
        )
        await app.state.feed.start()
        retention.start()
        try:
            yield
        finally:
            await retention.stop()
            await app.state.feed.stop()
            await realtime.close()
            await engine.dispose()

    app = FastAPI(
        title="aigw config center",
        version=__version__,
        description="Configuration, versions, admin users, usage and request logs of an aigw "
        "deployment.",
        lifespan=lifespan,
    )
    metrics = app.state.metrics = CenterMetrics()
    app.add_middleware(CountApiRequests, metrics=metrics)
    _add_error_handlers(app)
    _add_routes(app)
    return app


def _retention(
    store: RequestLogStore, settings: CenterSettings, metrics: CenterMetrics
) -> Retention:
    days = settings.request_log_retention_days
    interval = settings.request_log_purge_seconds
    return Retention(
        store,
        retention_days_from(os.environ) if days is None else days,
        purge_seconds_from(os.environ) if interval is None else interval,
        purged=metrics.request_log_purged.inc,
    )


def _add_routes(app: FastAPI) -> None:
    from aigw.config_center.api import (
        audit,
        auth,
        feed,
        health,
        keys,
        models,
        namespaces,
        prices,
        providers,
        requests,
        usage,
        users,
        versions,
    )
    from aigw.config_center.metrics import router as metrics_router

    for module in (
        health,
        auth,
        users,
        namespaces,
        keys,
        providers,
        models,
        prices,
        versions,
        usage,
        requests,
        audit,
        feed,
    ):
        app.include_router(module.router)
    app.include_router(metrics_router)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ConfigError)
    async def invalid_configuration(_: Request, exc: ConfigError) -> JSONResponse:
        details = [{"field": i.path, "message": i.message} for i in exc.issues]
        message = "; ".join(f"{i.path}: {i.message}" if i.path else i.message for i in exc.issues)
        return JSONResponse(
            {"error": {"type": "invalid_configuration", "message": message, "details": details}},
            status_code=422,
        )

    @app.exception_handler(VersionConflict)
    async def conflict(_: Request, exc: VersionConflict) -> JSONResponse:
        return JSONResponse(
            {
                "error": {
                    "type": "conflict",
                    "message": f"{exc}; reload and try again",
                    "details": {"head": exc.head},
                }
            },
            status_code=409,
            headers={"ETag": f'"{exc.head}"'},
        )

    @app.exception_handler(VersionNotFound)
    async def version_not_found(_: Request, exc: VersionNotFound) -> JSONResponse:
        return JSONResponse({"error": {"type": "not_found", "message": str(exc)}}, 404)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
            for e in exc.errors()
        ]
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return JSONResponse(
            {"error": {"type": "invalid_request", "message": message, "details": details}}, 422
        )
