"""A running config center (real SQLite file, lifespan run) for the auth and users tests.

Test modules wrap :func:`running_center` in their own fixture. The user service is rebuilt with a
fast Argon2 profile (the production one costs ~80 ms a hash) and a clock the test moves, so that
lockouts and session expiry are tested without sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher
from fastapi import FastAPI

from aigw.config_center.app import create_app
from aigw.config_center.db.engine import sessions
from aigw.config_center.settings import CenterSettings
from aigw.config_center.users import LoginThrottle, UserService

BOOT_TOKEN = "boot-token-123456"
PASSWORD = "correct horse battery"
SESSION_TTL = 3600


def fast_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass
class FakeClock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Center:
    app: FastAPI
    client: httpx.AsyncClient
    clock: FakeClock
    db_path: Path

    @property
    def users(self) -> UserService:
        return self.app.state.users  # type: ignore[no-any-return]

    async def create_user(
        self,
        username: str,
        role: str = "admin",
        namespace: str | None = None,
        password: str = PASSWORD,
        token: str = BOOT_TOKEN,
    ) -> httpx.Response:
        body: dict[str, Any] = {"username": username, "password": password, "role": role}
        if namespace is not None:
            body["namespace"] = namespace
        response = await self.client.post("/api/v1/users", json=body, headers=bearer(token))
        assert response.status_code == 201, response.text
        return response

    async def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        """Sign in; the cookie the answer sets is dropped so later calls authenticate only
        with what the test sends."""
        response = await self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        self.client.cookies.clear()
        return response

    async def token_for(
        self, username: str, role: str = "admin", namespace: str | None = None
    ) -> str:
        await self.create_user(username, role, namespace)
        response = await self.login(username)
        assert response.status_code == 200, response.text
        return str(response.json()["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def settings_for(tmp_path: Path, **overrides: Any) -> CenterSettings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path}/t.db",
        "master_key": "test-master",
        "data_dir": tmp_path,
        "admin_token": BOOT_TOKEN,
        "session_ttl_seconds": SESSION_TTL,
    }
    values.update(overrides)
    return CenterSettings(**values)


@asynccontextmanager
async def running_center(
    tmp_path: Path,
    *,
    throttle: LoginThrottle | None = None,
    hasher: PasswordHasher | None = None,
    replace_users: bool = True,
) -> AsyncIterator[Center]:
    """The config center app with its lifespan running and a client on it.

    ``replace_users=False`` keeps the service the app built itself (production defaults).
    """
    settings = settings_for(tmp_path)
    app = create_app(settings)
    clock = FakeClock()
    async with app.router.lifespan_context(app):
        if replace_users:
            app.state.users = UserService(
                sessions(app.state.engine),
                settings.session_ttl_seconds,
                hasher=hasher or fast_hasher(),
                throttle=throttle,
                clock=clock,
            )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cc") as client:
            yield Center(app, client, clock, tmp_path / "t.db")
