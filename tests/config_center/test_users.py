"""Admin users: the /api/v1/users routes, the service on every database, and ``aigw admin``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from aigw.config_center.cli import admin
from aigw.config_center.db.engine import make_engine, migrate, sessions
from aigw.config_center.errors import Conflict, NotFound, TooManyAttempts, Unauthenticated
from aigw.config_center.users import InvalidUser, UserService
from tests.config_center.auth_fixtures import (
    BOOT_TOKEN,
    PASSWORD,
    Center,
    FakeClock,
    bearer,
    fast_hasher,
    running_center,
)
from tests.config_center.databases import database_fixture

USERS = "/api/v1/users"
BOOT = bearer(BOOT_TOKEN)

# A fresh empty database per test on sqlite, mariadb and postgresql (see databases.py).
backend_url = database_fixture(scope="function", name="backend_url")


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[Center]:
    async with running_center(tmp_path) as running:
        yield running


def assert_no_secrets(response: httpx.Response, *passwords: str) -> None:
    for secret in (*passwords, "$argon2", "password_hash"):
        assert secret not in response.text, f"{secret!r} leaked: {response.text}"


# -- the API -------------------------------------------------------------------------------


async def test_create_get_list_update_delete(center: Center) -> None:
    created = await center.client.post(
        USERS,
        json={
            "username": "ns.admin@example.com",
            "password": PASSWORD,
            "role": "namespace_admin",
            "namespace": "team-a",
        },
        headers=BOOT,
    )
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"username", "role", "namespace", "disabled", "created_at", "locked_until"}
    assert body["username"] == "ns.admin@example.com"
    assert body["namespace"] == "team-a" and body["disabled"] is False
    responses = [created]

    got = await center.client.get(f"{USERS}/ns.admin@example.com", headers=BOOT)
    assert got.json() == body
    responses.append(got)

    patched = await center.client.patch(
        f"{USERS}/ns.admin@example.com",
        json={"role": "viewer", "password": "another long password"},
        headers=BOOT,
    )
    assert patched.status_code == 200
    assert patched.json()["role"] == "viewer"
    assert patched.json()["namespace"] is None  # dropped with the namespace_admin role
    responses.append(patched)
    assert (await center.login("ns.admin@example.com", "another long password")).is_success

    listed = await center.client.get(USERS, headers=BOOT)
    assert listed.json()["total"] == 1
    responses.append(listed)

    deleted = await center.client.delete(f"{USERS}/ns.admin@example.com", headers=BOOT)
    assert deleted.status_code == 204 and deleted.content == b""
    missing = await center.client.get(f"{USERS}/ns.admin@example.com", headers=BOOT)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"
    for response in responses:
        assert_no_secrets(response, PASSWORD, "another long password")


async def test_list_is_paginated(center: Center) -> None:
    for name in ("dave", "bob", "carol", "alice", "erin"):
        await center.create_user(name, "viewer")
    page = await center.client.get(USERS, params={"offset": 1, "limit": 2}, headers=BOOT)
    assert page.status_code == 200
    body = page.json()
    assert [u["username"] for u in body["items"]] == ["bob", "carol"]
    assert (body["total"], body["offset"], body["limit"]) == (5, 1, 2)
    assert_no_secrets(page, PASSWORD)
    for bad in ({"limit": 501}, {"limit": 0}, {"offset": -1}):
        assert (await center.client.get(USERS, params=bad, headers=BOOT)).status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "bad name", "password": PASSWORD, "role": "viewer"}, "username"),
        ({"username": "a" * 129, "password": PASSWORD, "role": "viewer"}, "username"),
        ({"username": "alice", "password": "short", "role": "viewer"}, "password"),
        ({"username": "alice", "password": PASSWORD, "role": "root"}, "role"),
        ({"username": "alice", "password": PASSWORD, "role": "viewer", "x": 1}, "x"),
        ({"username": "alice", "password": PASSWORD, "role": "namespace_admin"}, "namespace"),
        (
            {"username": "alice", "password": PASSWORD, "role": "viewer", "namespace": "team-a"},
            "namespace",
        ),
        (
            {"username": "bootstrap-admin", "password": PASSWORD, "role": "admin"},
            "username",
        ),
    ],
)
async def test_invalid_users_are_refused(center: Center, body: dict[str, Any], field: str) -> None:
    response = await center.client.post(USERS, json=body, headers=BOOT)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert field in [d["field"] for d in error["details"]]
    assert_no_secrets(response, PASSWORD, "short")


async def test_duplicate_username_conflicts(center: Center) -> None:
    await center.create_user("alice")
    again = await center.client.post(
        USERS, json={"username": "alice", "password": PASSWORD, "role": "viewer"}, headers=BOOT
    )
    assert again.status_code == 409
    assert again.json()["error"]["type"] == "conflict"


async def test_patch_rules(center: Center) -> None:
    await center.create_user("alice", "viewer")
    to_ns_admin = await center.client.patch(
        f"{USERS}/alice", json={"role": "namespace_admin"}, headers=BOOT
    )
    assert to_ns_admin.status_code == 422  # needs a namespace
    ok = await center.client.patch(
        f"{USERS}/alice", json={"role": "namespace_admin", "namespace": "team-a"}, headers=BOOT
    )
    assert ok.json()["namespace"] == "team-a"
    moved = await center.client.patch(f"{USERS}/alice", json={"namespace": "team-b"}, headers=BOOT)
    assert (moved.json()["role"], moved.json()["namespace"]) == ("namespace_admin", "team-b")
    cleared = await center.client.patch(f"{USERS}/alice", json={"namespace": None}, headers=BOOT)
    assert cleared.status_code == 422  # a namespace admin needs one
    short = await center.client.patch(f"{USERS}/alice", json={"password": "short"}, headers=BOOT)
    assert short.status_code == 422
    unknown = await center.client.patch(f"{USERS}/nobody", json={"disabled": True}, headers=BOOT)
    assert unknown.status_code == 404


async def test_new_password_ends_sessions_and_lifts_the_lock(center: Center) -> None:
    token = await center.token_for("alice", "viewer")
    for _ in range(5):
        await center.login("alice", "wrong password!")
    assert (await center.login("alice")).status_code == 429
    reset = await center.client.patch(
        f"{USERS}/alice", json={"password": "a brand new password"}, headers=BOOT
    )
    assert reset.status_code == 200 and reset.json()["locked_until"] is None
    assert (await center.client.get("/api/v1/auth/me", headers=bearer(token))).status_code == 401
    assert (await center.login("alice", "a brand new password")).status_code == 200


@pytest.mark.parametrize("role", ["viewer", "namespace_admin"])
async def test_only_admins_reach_user_routes(center: Center, role: str) -> None:
    await center.create_user("target", "viewer")
    token = await center.token_for("someone", role, "team-a" if role == "namespace_admin" else None)
    headers = bearer(token)
    calls = [
        center.client.get(USERS, headers=headers),
        center.client.post(
            USERS, json={"username": "x", "password": PASSWORD, "role": "admin"}, headers=headers
        ),
        center.client.get(f"{USERS}/target", headers=headers),
        center.client.patch(f"{USERS}/target", json={"role": "admin"}, headers=headers),
        center.client.patch(f"{USERS}/someone", json={"role": "admin"}, headers=headers),
        center.client.delete(f"{USERS}/target", headers=headers),
    ]
    for response in await asyncio.gather(*calls):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["type"] == "forbidden"
    target = await center.client.get(f"{USERS}/target", headers=BOOT)
    assert target.json()["role"] == "viewer"


async def test_the_last_enabled_admin_stays(center: Center) -> None:
    alice = bearer(await center.token_for("alice", "admin"))
    refusals = [
        center.client.delete(f"{USERS}/alice", headers=alice),
        center.client.patch(f"{USERS}/alice", json={"role": "viewer"}, headers=alice),
        center.client.patch(f"{USERS}/alice", json={"disabled": True}, headers=alice),
        center.client.delete(f"{USERS}/alice", headers=BOOT),  # whoever asks
    ]
    for response in [await call for call in refusals]:
        assert response.status_code == 409, response.text
        assert "last enabled admin" in response.json()["error"]["message"]

    await center.create_user("bob", "admin")
    # A disabled admin does not count: alice is still the last enabled one.
    assert (
        await center.client.patch(f"{USERS}/bob", json={"disabled": True}, headers=alice)
    ).status_code == 200
    assert (await center.client.delete(f"{USERS}/alice", headers=alice)).status_code == 409
    assert (
        await center.client.patch(f"{USERS}/bob", json={"disabled": False}, headers=alice)
    ).status_code == 200
    # With bob enabled, alice may demote and then delete herself.
    demoted = await center.client.patch(f"{USERS}/alice", json={"role": "viewer"}, headers=alice)
    assert demoted.status_code == 200
    assert (await center.client.delete(f"{USERS}/alice", headers=BOOT)).status_code == 204


async def test_deleting_a_user_ends_their_sessions(center: Center) -> None:
    token = await center.token_for("alice", "viewer")
    assert (await center.client.delete(f"{USERS}/alice", headers=BOOT)).status_code == 204
    assert (await center.client.get("/api/v1/auth/me", headers=bearer(token))).status_code == 401


async def test_openapi_describes_users_without_secrets(center: Center) -> None:
    schema = (await center.client.get("/openapi.json")).json()
    user_out = schema["components"]["schemas"]["UserOut"]["properties"]
    assert "password" not in user_out and "password_hash" not in user_out
    user_in = schema["components"]["schemas"]["UserIn"]["properties"]
    assert user_in["password"]["minLength"] == 12
    create = schema["paths"]["/api/v1/users"]["post"]
    assert {"201", "401", "403", "409", "422"} <= set(create["responses"])


# -- the service on SQLite, MariaDB and PostgreSQL -----------------------------------------


async def test_service_on_every_database(backend_url: str) -> None:
    """Naive datetimes (MariaDB, SQLite), row locks and atomic counters, on each backend."""
    engine = make_engine(backend_url)
    try:
        await migrate(engine)
        clock = FakeClock()
        service = UserService(sessions(engine), 60, hasher=fast_hasher(), clock=clock)
        await service.create_user("root", PASSWORD, "admin", actor="test")
        await service.create_user("ns", PASSWORD, "namespace_admin", "team-a", actor="test")
        with pytest.raises(Conflict):
            await service.create_user("ns", PASSWORD, "viewer", actor="test")

        token, principal, expires_at = await service.login("ns", PASSWORD)
        assert (principal.name, principal.namespace) == ("ns", "team-a")
        assert expires_at == clock.now + timedelta(seconds=60)
        assert await service.principal_for_token(token) == principal
        clock.advance(61)
        assert await service.principal_for_token(token) is None

        for _ in range(5):
            with pytest.raises(Unauthenticated):
                await service.login("ns", "wrong password!")
        with pytest.raises(TooManyAttempts) as locked:
            await service.login("ns", PASSWORD)
        assert locked.value.headers["Retry-After"] == "30"
        locked_until = (await service.get_user("ns")).locked_until
        assert locked_until is not None  # MariaDB's DATETIME keeps whole seconds
        assert abs(locked_until - (clock.now + timedelta(seconds=30))) < timedelta(seconds=1)
        clock.advance(31)
        token, _, _ = await service.login("ns", PASSWORD)
        assert await service.logout(token) is True
        assert await service.logout(token) is False

        with pytest.raises(Conflict):
            await service.update_user("root", actor="test", role="viewer")
        with pytest.raises(InvalidUser):
            await service.update_user("ns", actor="test", role="namespace_admin", namespace=None)
        await service.update_user("ns", actor="test", role="admin")
        await service.delete_user("root", actor="test")
        with pytest.raises(NotFound):
            await service.get_user("root")
        page = await service.list_users(0, 10)
        assert (page.total, [u.username for u in page.items]) == (1, ["ns"])
    finally:
        await engine.dispose()


# -- aigw admin create ---------------------------------------------------------------------


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(admin, list(args), input=input, env=env, catch_exceptions=False)


async def test_cli_creates_a_user_who_can_sign_in(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"  # the database running_center uses
    result = await asyncio.to_thread(
        invoke,
        "create",
        "alice",
        "--role",
        "admin",
        "--password-stdin",
        "--database-url",
        url,
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "created user 'alice' (admin)"
    assert PASSWORD not in result.output

    prompted = await asyncio.to_thread(
        invoke,
        "create",
        "bob",
        "--role",
        "namespace_admin",
        "--namespace",
        "team-a",
        input="a prompted password\na prompted password\n",
        env={"AIGW_DATABASE_URL": url},
    )
    assert prompted.exit_code == 0, prompted.output
    assert "created user 'bob' (namespace_admin of namespace 'team-a')" in prompted.output
    assert "a prompted password" not in prompted.output

    async with running_center(tmp_path) as center:
        alice = await center.login("alice")
        assert alice.status_code == 200, alice.text
        assert alice.json()["user"]["role"] == "admin"
        bob = await center.login("bob", "a prompted password")
        assert bob.json()["user"] == {
            "username": "bob",
            "role": "namespace_admin",
            "namespace": "team-a",
        }


async def test_cli_defaults_to_the_data_dir_database(tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        invoke,
        "create",
        "alice",
        "--role",
        "viewer",
        "--password-stdin",
        input=PASSWORD + "\n",
        env={"AIGW_DATA_DIR": str(tmp_path / "state"), "AIGW_DATABASE_URL": ""},
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "state" / "aigw.db").is_file()


async def test_cli_reports_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    short = await asyncio.to_thread(
        invoke,
        "create",
        "alice",
        "--role",
        "admin",
        "--password-stdin",
        "--database-url",
        url,
        input="short\n",
    )
    assert short.exit_code == 1
    assert "password must be 12 to 1024 characters" in short.output
    assert "short\n" not in short.output.replace("Error", "")
    empty = await asyncio.to_thread(
        invoke,
        "create",
        "alice",
        "--role",
        "admin",
        "--password-stdin",
        "--database-url",
        url,
        input="",
    )
    assert empty.exit_code == 2 and "no password" in empty.output
    mismatch = await asyncio.to_thread(
        invoke,
        "create",
        "alice",
        "--role",
        "admin",
        "--database-url",
        url,
        input="first long password\nsecond long password\nfirst long password\n"
        "first long password\n",
    )
    assert mismatch.exit_code == 0, mismatch.output
    assert "do not match" in mismatch.output.lower()
    duplicate = await asyncio.to_thread(
        invoke,
        "create",
        "alice",
        "--role",
        "admin",
        "--password-stdin",
        "--database-url",
        url,
        input=PASSWORD + "\n",
    )
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    missing_ns = await asyncio.to_thread(
        invoke,
        "create",
        "carol",
        "--role",
        "namespace_admin",
        "--password-stdin",
        "--database-url",
        url,
        input=PASSWORD + "\n",
    )
    assert missing_ns.exit_code == 1 and "needs a namespace" in missing_ns.output
