"""An in-process config center (real SQLite file, real migrations) driven over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from aigw.config_center.app import create_app
from aigw.config_center.auth import Principal, authenticate
from aigw.config_center.settings import CenterSettings

ADMIN_TOKEN = "test-admin-token-0123456789"


@asynccontextmanager
async def config_center(
    tmp: Path, database_url: str | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = CenterSettings(
        database_url=database_url or f"sqlite:///{tmp}/cc.db",
        master_key="test-master-key",
        data_dir=tmp,
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://cc",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as client:
            yield app, client


def act_as(app: FastAPI, principal: Principal | None) -> None:
    """Make every request come from ``principal`` (None: back to real authentication)."""
    if principal is None:
        app.dependency_overrides.pop(authenticate, None)
    else:
        app.dependency_overrides[authenticate] = lambda: principal
