"""Signing in and out: sessions, cookies, lockout, expiry, disabled users, storage at rest."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from aigw.config_center.db.tables import AdminToken, AdminUser, AuditEvent
from aigw.config_center.users import LoginThrottle
from tests.config_center.auth_fixtures import (
    BOOT_TOKEN,
    PASSWORD,
    SESSION_TTL,
    Center,
    bearer,
    fast_hasher,
    running_center,
)


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[Center]:
    async with running_center(tmp_path) as running:
        yield running


async def audit_actions(center: Center) -> list[tuple[str, str, str]]:
    async with center.users._sessions() as session:
        rows = await session.execute(
            select(AuditEvent.actor, AuditEvent.action, AuditEvent.detail).order_by(AuditEvent.id)
        )
        return [(r.actor, r.action, r.detail) for r in rows]


async def test_login_me_logout(center: Center) -> None:
    await center.create_user("alice", "viewer")
    response = await center.client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"].startswith("aigw_sess_")
    assert body["token_type"] == "bearer"
    assert body["user"] == {"username": "alice", "role": "viewer", "namespace": None}
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert expires_at == center.clock.now + timedelta(seconds=SESSION_TTL)
    assert response.headers["cache-control"] == "no-store"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"aigw_session={body['token']};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    center.client.cookies.clear()

    token = body["token"]
    me = await center.client.get("/api/v1/auth/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json() == {"username": "alice", "role": "viewer", "namespace": None}

    out = await center.client.post("/api/v1/auth/logout", headers=bearer(token))
    assert out.status_code == 204
    assert 'aigw_session=""' in out.headers["set-cookie"]
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert (await center.client.get("/api/v1/auth/me", headers=bearer(token))).status_code == 401

    actions = [(actor, action) for actor, action, _ in await audit_actions(center)]
    assert actions == [
        ("bootstrap-admin", "user.create"),
        ("alice", "login.success"),
        ("alice", "logout"),
    ]


async def test_session_cookie_authenticates_the_dashboard(center: Center) -> None:
    await center.create_user("alice", "admin", password=PASSWORD)
    response = await center.client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 200
    # The client's jar now holds the cookie: no Authorization header from here on.
    me = await center.client.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["username"] == "alice"
    out = await center.client.post("/api/v1/auth/logout")
    assert out.status_code == 204
    assert "aigw_session" not in center.client.cookies
    assert (await center.client.get("/api/v1/auth/me")).status_code == 401


async def test_bootstrap_token_is_an_admin_without_a_session(center: Center) -> None:
    me = await center.client.get("/api/v1/auth/me", headers=bearer(BOOT_TOKEN))
    assert me.json() == {"username": "bootstrap-admin", "role": "admin", "namespace": None}
    # Logging out the bootstrap token is harmless: it is configuration, not a session.
    out = await center.client.post("/api/v1/auth/logout", headers=bearer(BOOT_TOKEN))
    assert out.status_code == 204
    assert (await center.client.get("/api/v1/auth/me", headers=bearer(BOOT_TOKEN))).is_success


async def test_wrong_password_and_unknown_user_look_the_same(center: Center) -> None:
    await center.create_user("alice")
    wrong = await center.login("alice", "not the password")
    unknown = await center.login("mallory", "not the password")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "set-cookie" not in response.headers
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["type"] == "unauthenticated"
    assert wrong.json()["error"]["message"] == "invalid username or password"


async def test_unknown_user_still_verifies_a_password(tmp_path: Path) -> None:
    """The unknown-user path spends the same Argon2 verification as a wrong password."""

    class CountingHasher(PasswordHasher):
        verifications = 0

        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            CountingHasher.verifications += 1
            return super().verify(hash, password)

    hasher = CountingHasher(time_cost=1, memory_cost=1024, parallelism=1)
    async with running_center(tmp_path, hasher=hasher) as center:
        response = await center.login("nobody", "whatever password")
        assert response.status_code == 401
        assert CountingHasher.verifications == 1
        # The attempted name is not stored: people type passwords into the username box.
        assert await audit_actions(center) == [("anonymous", "login.failure", "unknown username")]


async def test_login_body_is_validated(center: Center) -> None:
    response = await center.client.post("/api/v1/auth/login", json={"username": "alice"})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "invalid_request"


async def test_lockout_after_five_failures_then_unlock(center: Center) -> None:
    await center.create_user("alice")
    for _ in range(5):
        assert (await center.login("alice", "wrong password!")).status_code == 401

    locked = await center.login("alice")  # even the right password is refused now
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "30"
    assert locked.json()["error"]["type"] == "too_many_attempts"
    user = (await center.client.get("/api/v1/users/alice", headers=bearer(BOOT_TOKEN))).json()
    assert datetime.fromisoformat(user["locked_until"]) == center.clock.now + timedelta(seconds=30)

    center.clock.advance(20)
    still = await center.login("alice")
    assert still.status_code == 429 and still.headers["retry-after"] == "10"

    center.clock.advance(11)
    assert (await center.login("alice")).status_code == 200
    # Success resets the count: four more failures do not lock.
    for _ in range(4):
        assert (await center.login("alice", "wrong password!")).status_code == 401
    assert (await center.login("alice")).status_code == 200


async def test_lock_grows_with_each_further_failure(tmp_path: Path) -> None:
    throttle = LoginThrottle(max_failures=2, base_lock_seconds=10, max_lock_seconds=25)
    async with running_center(tmp_path, throttle=throttle) as center:
        await center.create_user("alice")
        expected = ["10", "20", "25"]  # doubling, capped
        assert (await center.login("alice", "wrong password!")).status_code == 401
        for retry_after in expected:
            assert (await center.login("alice", "wrong password!")).status_code == 401
            locked = await center.login("alice")
            assert locked.status_code == 429
            assert locked.headers["retry-after"] == retry_after
            center.clock.advance(int(retry_after))
        assert (await center.login("alice")).status_code == 200


def test_throttle_policy() -> None:
    throttle = LoginThrottle()
    assert throttle.lock_for(4) is None
    assert throttle.lock_for(5) == timedelta(seconds=30)
    assert throttle.lock_for(6) == timedelta(seconds=60)
    assert throttle.lock_for(10) == timedelta(seconds=900)
    assert throttle.lock_for(10_000) == timedelta(seconds=900)


async def test_expired_session_is_refused(center: Center) -> None:
    token = await center.token_for("alice")
    center.clock.advance(SESSION_TTL - 1)
    assert (await center.client.get("/api/v1/auth/me", headers=bearer(token))).status_code == 200
    center.clock.advance(1)
    expired = await center.client.get("/api/v1/auth/me", headers=bearer(token))
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "invalid or expired token"


async def test_expired_sessions_are_swept_at_next_login(center: Center) -> None:
    await center.token_for("alice")
    center.clock.advance(SESSION_TTL + 1)
    assert (await center.login("alice")).status_code == 200
    async with center.users._sessions() as session:
        assert len((await session.scalars(select(AdminToken))).all()) == 1


async def test_disabled_user_is_refused(center: Center) -> None:
    token = await center.token_for("alice", "viewer")
    response = await center.client.patch(
        "/api/v1/users/alice", json={"disabled": True}, headers=bearer(BOOT_TOKEN)
    )
    assert response.status_code == 200 and response.json()["disabled"] is True
    assert (await center.client.get("/api/v1/auth/me", headers=bearer(token))).status_code == 401
    refused = await center.login("alice")
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "invalid username or password"


async def test_disabled_flag_alone_refuses_a_live_session(center: Center) -> None:
    """Even if a session row survived (e.g. disabled by hand in SQL), it is refused."""
    token = await center.token_for("alice", "viewer")
    async with center.users._sessions() as session, session.begin():
        await session.execute(update(AdminUser).values(disabled=True))
    assert await center.users.principal_for_token(token) is None


async def test_garbage_tokens_are_refused(center: Center) -> None:
    for token in ("nope", "aigw_sess_" + "A" * 43, BOOT_TOKEN + "x"):
        response = await center.client.get("/api/v1/auth/me", headers=bearer(token))
        assert response.status_code == 401
    assert (await center.client.get("/api/v1/auth/me")).status_code == 401


async def test_secrets_are_stored_hashed(center: Center) -> None:
    token = await center.token_for("alice")
    async with center.users._sessions() as session:
        stored = (await session.scalars(select(AdminToken.token_hash))).one()
        password_hash = (await session.scalars(select(AdminUser.password_hash))).one()
        details = " ".join(str(d) for d in (await session.scalars(select(AuditEvent.detail))))
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in details
    raw = center.db_path.read_bytes()
    assert PASSWORD.encode() not in raw
    assert token.encode() not in raw


async def test_password_is_rehashed_when_parameters_change(tmp_path: Path) -> None:
    async with running_center(tmp_path) as center:
        await center.create_user("alice")
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    async with running_center(tmp_path, hasher=stronger) as center:
        async with center.users._sessions() as session:
            before = (await session.scalars(select(AdminUser.password_hash))).one()
        assert fast_hasher().check_needs_rehash(before) is False
        assert stronger.check_needs_rehash(before) is True
        assert (await center.login("alice")).status_code == 200
        async with center.users._sessions() as session:
            after = (await session.scalars(select(AdminUser.password_hash))).one()
        assert after != before and not stronger.check_needs_rehash(after)
        assert (await center.login("alice")).status_code == 200


async def test_production_service_signs_in(tmp_path: Path) -> None:
    """The service the app builds itself (default Argon2 profile) works end to end."""
    async with running_center(tmp_path, replace_users=False) as center:
        token = await center.token_for("alice", "namespace_admin", "team-a")
        me = await center.client.get("/api/v1/auth/me", headers=bearer(token))
        assert me.json() == {"username": "alice", "role": "namespace_admin", "namespace": "team-a"}
