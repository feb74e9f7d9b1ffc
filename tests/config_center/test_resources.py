"""The config center's resource API: CRUD, validation, versions, secrets, isolation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from aigw.config.keys import hash_key
from aigw.config_center.auth import Principal
from tests.config_center.api_client import act_as, config_center

SECRET = "sk-upstream-very-secret-value"
PROVIDER = {"name": "openai", "base_url": "https://api.openai.com/v1", "api_key": SECRET}
MODEL = {
    "name": "gpt-4o",
    "aliases": ["smart"],
    "targets": [{"provider": "openai", "model": "gpt-4o"}],
}


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with config_center(tmp_path) as pair:
        yield pair


@pytest.fixture
async def client(center: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return center[1]


async def _seed(client: httpx.AsyncClient) -> None:
    for path, body in [
        ("/api/v1/providers", PROVIDER),
        ("/api/v1/models", MODEL),
        ("/api/v1/namespaces", {"name": "team-a"}),
        ("/api/v1/namespaces", {"name": "team-b", "policy": {"models": {"allow": ["gpt-*"]}}}),
    ]:
        response = await client.post(path, json=body)
        assert response.status_code == 201, response.text


async def test_every_change_is_a_new_version_with_actor_and_etag(client: httpx.AsyncClient) -> None:
    await _seed(client)
    response = await client.get("/api/v1/versions")
    assert response.headers["etag"] == '"4"'
    history = response.json()
    assert [v["version"] for v in history["items"]] == [4, 3, 2, 1]
    assert history["items"][0]["action"] == "create namespace team-b"
    assert {v["actor"] for v in history["items"]} == {"bootstrap-admin"}


async def test_crud_round_trip_for_models_and_prices(client: httpx.AsyncClient) -> None:
    await _seed(client)
    assert (await client.get("/api/v1/models/gpt-4o")).json()["aliases"] == ["smart"]
    patched = await client.patch("/api/v1/models/gpt-4o", json={"aliases": ["smarter"]})
    assert patched.status_code == 200 and patched.json()["aliases"] == ["smarter"]
    price = {"model": "gpt-4o", "input_per_million": 2.5, "output_per_million": 10.0}
    assert (await client.post("/api/v1/prices", json=price)).status_code == 201
    listed = (await client.get("/api/v1/prices")).json()
    assert listed["total"] == 1 and listed["items"][0]["output_per_million"] == 10.0
    assert (await client.delete("/api/v1/prices/gpt-4o")).status_code == 204
    assert (await client.get("/api/v1/prices/gpt-4o")).status_code == 404
    assert (await client.post("/api/v1/models", json=MODEL)).status_code == 409


async def test_invalid_changes_are_422_naming_the_field_and_store_nothing(
    client: httpx.AsyncClient,
) -> None:
    await _seed(client)
    bad_target = {"name": "x", "targets": [{"provider": "nope", "model": "x"}]}
    response = await client.post("/api/v1/models", json=bad_target)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "models[1].targets[0].provider"
    response = await client.post(
        "/api/v1/providers", json={**PROVIDER, "name": "b", "base_url": "ftp://x"}
    )
    assert response.status_code == 422
    assert "base_url" in response.json()["error"]["message"]
    # Deleting a provider that a model still uses would leave a dangling reference.
    response = await client.delete("/api/v1/providers/openai")
    assert response.status_code == 422 and "unknown provider 'openai'" in response.text
    assert (await client.get("/api/v1/versions")).json()["total"] == 4


async def test_if_match_conflicts_are_409(client: httpx.AsyncClient) -> None:
    await _seed(client)
    stale = await client.post(
        "/api/v1/namespaces", json={"name": "team-c"}, headers={"If-Match": '"3"'}
    )
    assert stale.status_code == 409 and stale.headers["etag"] == '"4"'
    fresh = await client.post(
        "/api/v1/namespaces", json={"name": "team-c"}, headers={"If-Match": '"4"'}
    )
    assert fresh.status_code == 201 and fresh.headers["etag"] == '"5"'


async def test_keys_are_shown_once_and_stored_as_hashes(client: httpx.AsyncClient) -> None:
    await _seed(client)
    created = await client.post("/api/v1/namespaces/team-a/keys", json={"name": "ci"})
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("sk-aigw-") and created.json()["prefix"] == key[:12]
    listed = await client.get("/api/v1/namespaces/team-a/keys")
    assert key not in listed.text and "key_hash" not in listed.text
    exported = (await client.get("/api/v1/config")).json()
    stored = exported["namespaces"][0]["keys"][0]
    assert stored["key_hash"] == hash_key(key) and key not in str(exported)

    revoked = await client.post("/api/v1/namespaces/team-a/keys/ci/revoke")
    assert revoked.json()["disabled"] is True
    rotated = await client.post("/api/v1/namespaces/team-a/keys/ci/rotate")
    new_key = rotated.json()["key"]
    assert new_key != key and rotated.json()["disabled"] is False
    stored = (await client.get("/api/v1/config")).json()["namespaces"][0]["keys"][0]
    assert stored["key_hash"] == hash_key(new_key)


async def test_provider_credentials_never_leave_in_clear(client: httpx.AsyncClient) -> None:
    await _seed(client)
    await client.patch("/api/v1/providers/openai", json={"api_key": SECRET + "-2"})
    responses = [
        await client.get("/api/v1/providers"),
        await client.get("/api/v1/providers/openai"),
        await client.get("/api/v1/config"),
        await client.get("/api/v1/versions/1"),
        await client.get("/api/v1/versions/diff?from=1&to=5"),
    ]
    for response in responses:
        assert response.status_code == 200
        assert SECRET not in response.text
    assert (await client.get("/api/v1/providers/openai")).json()["api_key_set"] is True
    diff = (await client.get("/api/v1/versions/diff?from=4&to=5")).json()["changes"]
    assert diff == [
        {
            "path": "providers[openai].api_key",
            "op": "changed",
            "before": "********",
            "after": "********",
        }
    ]


async def test_diff_and_rollback(client: httpx.AsyncClient) -> None:
    await _seed(client)
    await client.patch("/api/v1/namespaces/team-a", json={"description": "research"})
    diff = (await client.get("/api/v1/versions/diff?from=4&to=5")).json()["changes"]
    assert diff == [
        {
            "path": "namespaces[team-a].description",
            "op": "added",
            "before": None,
            "after": "research",
        }
    ]
    rolled = await client.post("/api/v1/versions/4/rollback")
    assert rolled.status_code == 200 and rolled.json()["version"] == 6
    assert rolled.json()["rolled_back_from"] == 4
    assert (await client.get("/api/v1/namespaces/team-a")).json()["description"] == ""
    assert (await client.get("/api/v1/versions/diff?from=4&to=6")).json()["changes"] == []
    assert (await client.get("/api/v1/versions/99")).status_code == 404


async def test_import_dry_run_then_apply(client: httpx.AsyncClient) -> None:
    await _seed(client)
    document = (await client.get("/api/v1/config")).json()
    document["namespaces"].append({"name": "team-c"})
    dry = await client.put("/api/v1/config?dry_run=true", json=document)
    assert dry.status_code == 200
    assert dry.json() == {
        "dry_run": True,
        "version": None,
        "changes": [
            {
                "path": "namespaces[team-c]",
                "op": "added",
                "before": None,
                "after": {"name": "team-c"},
            }
        ],
    }
    assert (await client.get("/api/v1/versions")).json()["total"] == 4
    applied = await client.put("/api/v1/config", json=document)
    assert applied.json()["version"] == 5
    unchanged = await client.put("/api/v1/config", json=document)
    assert unchanged.json()["version"] is None and unchanged.json()["changes"] == []
    invalid = await client.put("/api/v1/config", json={**document, "models": [{"name": "m"}]})
    assert invalid.status_code == 422 and "models[0].targets" in invalid.text


async def test_namespace_admin_sees_and_manages_only_its_namespace(
    center: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = center
    await _seed(client)
    assert (await client.post("/api/v1/namespaces/team-b/keys", json={"name": "b1"})).is_success
    act_as(app, Principal("alice", "namespace_admin", "team-a"))
    names = [n["name"] for n in (await client.get("/api/v1/namespaces")).json()["items"]]
    assert names == ["team-a"]
    assert (await client.get("/api/v1/namespaces/team-b")).status_code == 404
    assert (await client.get("/api/v1/namespaces/team-b/keys")).status_code == 404
    assert (
        await client.post("/api/v1/namespaces/team-b/keys", json={"name": "x"})
    ).status_code == 404
    assert (await client.post("/api/v1/namespaces/team-b/keys/b1/revoke")).status_code == 404
    assert (await client.delete("/api/v1/namespaces/team-b/keys/b1")).status_code == 404
    assert (
        await client.post("/api/v1/namespaces/team-a/keys", json={"name": "mine"})
    ).status_code == 201
    for path in ["/api/v1/providers", "/api/v1/versions", "/api/v1/config"]:
        assert (await client.get(path)).status_code == 403, path
    # Models and prices are shared by every namespace: readable, but only admins change them.
    assert (await client.get("/api/v1/models")).status_code == 200
    assert (await client.patch("/api/v1/models/gpt-4o", json={"aliases": []})).status_code == 403
    price = {"model": "gpt-4o", "input_per_million": 1, "output_per_million": 1}
    assert (await client.post("/api/v1/prices", json=price)).status_code == 403
    assert (
        await client.patch("/api/v1/namespaces/team-a", json={"description": "x"})
    ).status_code == 403
    assert (await client.post("/api/v1/namespaces", json={"name": "mine"})).status_code == 403


async def test_viewer_reads_but_cannot_change(center: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = center
    await _seed(client)
    act_as(app, Principal("victor", "viewer"))
    assert (await client.get("/api/v1/providers")).status_code == 200
    assert (await client.get("/api/v1/namespaces/team-b/keys")).status_code == 200
    assert (
        await client.post("/api/v1/namespaces/team-a/keys", json={"name": "k"})
    ).status_code == 403
    assert (await client.delete("/api/v1/models/gpt-4o")).status_code == 403
    assert (await client.put("/api/v1/config", json={})).status_code == 403


async def test_lists_are_paginated_and_filterable(client: httpx.AsyncClient) -> None:
    await _seed(client)
    for index in range(7):
        await client.post("/api/v1/namespaces/team-a/keys", json={"name": f"svc-{index}"})
    page = (await client.get("/api/v1/namespaces/team-a/keys?offset=2&limit=3")).json()
    assert [k["name"] for k in page["items"]] == ["svc-2", "svc-3", "svc-4"]
    assert page["total"] == 7
    assert (await client.get("/api/v1/namespaces?q=TEAM-B")).json()["total"] == 1
    assert (await client.get("/api/v1/namespaces?limit=501")).status_code == 422


async def test_audit_trail_lists_admin_user_events(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/v1/users",
        json={"username": "auditor", "password": "a long enough password", "role": "viewer"},
    )
    assert created.status_code == 201, created.text
    page = (await client.get("/api/v1/audit?limit=5")).json()
    assert page["total"] >= 1
    assert page["items"][0]["actor"] == "bootstrap-admin"
    assert "auditor" in page["items"][0]["action"] + page["items"][0]["detail"]
    assert (await client.get("/api/v1/audit?actor=nobody")).json()["total"] == 0


async def test_anthropic_providers_are_stored_with_their_own_protocol(
    client: httpx.AsyncClient,
) -> None:
    provider = {
        "name": "claude",
        "type": "anthropic",
        "base_url": "https://api.anthropic.com/v1",
        "api_key": "sk-ant-secret",
    }
    response = await client.post("/api/v1/providers", json=provider)
    assert response.status_code == 201
    shown = {k: v for k, v in provider.items() if k != "api_key"}
    assert response.json() == {**shown, "api_key_set": True}
    assert "sk-ant-secret" not in response.text
