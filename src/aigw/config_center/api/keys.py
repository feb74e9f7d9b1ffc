"""API keys of a namespace: created server-side, shown once, stored only as a hash."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict

from aigw.config.keys import display_prefix, generate_key, hash_key
from aigw.config.schema import Name, Policy
from aigw.config_center.api.common import (
    PageParams,
    ensure_absent,
    find,
    head,
    index_of,
    merge_fields,
    page_params,
    paginate,
    write,
)
from aigw.config_center.api.namespaces import readable
from aigw.config_center.auth import Principal, namespace_admin, viewer
from aigw.config_center.errors import Forbidden

router = APIRouter(prefix="/api/v1/namespaces/{namespace}/keys", tags=["keys"])


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    expires_at: datetime | None = None
    policy: Policy | None = None


class KeyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_at: datetime | None = None
    disabled: bool | None = None
    policy: Policy | None = None


class KeyOut(BaseModel):
    namespace: str
    name: str
    prefix: str | None = None
    expires_at: datetime | None = None
    disabled: bool = False
    policy: dict[str, Any] | None = None


class KeyCreated(KeyOut):
    key: str
    """The key itself. Shown in this answer only: the gateway stores just its hash."""


class KeyPage(BaseModel):
    items: list[KeyOut]
    total: int
    offset: int
    limit: int


def _out(namespace: str, entry: dict[str, Any]) -> KeyOut:
    return KeyOut(
        namespace=namespace,
        name=entry["name"],
        prefix=entry.get("prefix"),
        expires_at=entry.get("expires_at"),
        disabled=entry.get("disabled", False),
        policy=entry.get("policy"),
    )


def _manageable(principal: Principal, namespace: str) -> None:
    readable(principal, namespace)
    if not principal.can_manage(namespace):
        raise Forbidden(f"you cannot manage the keys of namespace '{namespace}'")


def _keys(document: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    return find(document.get("namespaces", []), namespace, "namespace").setdefault("keys", [])


@router.get("", response_model=KeyPage)
async def list_keys(
    namespace: str,
    request: Request,
    response: Response,
    page: PageParams = Depends(page_params),
    principal: Principal = Depends(viewer),
) -> dict[str, Any]:
    readable(principal, namespace)
    document = await head(request, response)
    result = paginate(_keys(document, namespace), page, lambda k: k["name"])
    result["items"] = [_out(namespace, k) for k in result["items"]]
    return result


@router.post("", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
async def create_key(
    namespace: str,
    body: KeyIn,
    request: Request,
    response: Response,
    principal: Principal = Depends(namespace_admin),
) -> KeyCreated:
    _manageable(principal, namespace)
    key = generate_key()
    entry = {
        **body.model_dump(mode="json", exclude_none=True),
        "key_hash": hash_key(key),
        "prefix": display_prefix(key),
    }

    def mutate(document: dict[str, Any]) -> str:
        keys = _keys(document, namespace)
        ensure_absent(keys, body.name, "key")
        keys.append(entry)
        return f"create key {namespace}/{body.name}"

    await write(request, response, principal, mutate)
    return KeyCreated(key=key, **_out(namespace, entry).model_dump())


@router.get("/{name}", response_model=KeyOut)
async def get_key(
    namespace: str,
    name: str,
    request: Request,
    response: Response,
    principal: Principal = Depends(viewer),
) -> KeyOut:
    readable(principal, namespace)
    document = await head(request, response)
    return _out(namespace, find(_keys(document, namespace), name, "key"))


@router.patch("/{name}", response_model=KeyOut)
async def update_key(
    namespace: str,
    name: str,
    body: KeyPatch,
    request: Request,
    response: Response,
    principal: Principal = Depends(namespace_admin),
) -> KeyOut:
    _manageable(principal, namespace)
    changes = body.model_dump(mode="json", exclude_unset=True)
    return await _change_key(request, response, principal, namespace, name, changes, "update")


@router.post("/{name}/revoke", response_model=KeyOut)
async def revoke_key(
    namespace: str,
    name: str,
    request: Request,
    response: Response,
    principal: Principal = Depends(namespace_admin),
) -> KeyOut:
    """Disable the key: every gateway refuses it as soon as it has the new version."""
    _manageable(principal, namespace)
    return await _change_key(
        request, response, principal, namespace, name, {"disabled": True}, "revoke"
    )


@router.post("/{name}/rotate", response_model=KeyCreated)
async def rotate_key(
    namespace: str,
    name: str,
    request: Request,
    response: Response,
    principal: Principal = Depends(namespace_admin),
) -> KeyCreated:
    """Replace the key's secret (the old one stops working); the new key is shown once."""
    _manageable(principal, namespace)
    key = generate_key()
    changes = {"key_hash": hash_key(key), "prefix": display_prefix(key), "disabled": False}
    out = await _change_key(request, response, principal, namespace, name, changes, "rotate")
    return KeyCreated(key=key, **out.model_dump())


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_key(
    namespace: str,
    name: str,
    request: Request,
    response: Response,
    principal: Principal = Depends(namespace_admin),
) -> Response:
    _manageable(principal, namespace)

    def mutate(document: dict[str, Any]) -> str:
        keys = _keys(document, namespace)
        del keys[index_of(keys, name, "key")]
        return f"delete key {namespace}/{name}"

    await write(request, response, principal, mutate)
    response.status_code = status.HTTP_204_NO_CONTENT
    return response


async def _change_key(
    request: Request,
    response: Response,
    principal: Principal,
    namespace: str,
    name: str,
    changes: dict[str, Any],
    verb: str,
) -> KeyOut:
    updated: dict[str, Any] = {}

    def mutate(document: dict[str, Any]) -> str:
        entry = find(_keys(document, namespace), name, "key")
        merge_fields(entry, changes)
        updated.update(entry)
        return f"{verb} key {namespace}/{name}"

    await write(request, response, principal, mutate)
    return _out(namespace, updated)
