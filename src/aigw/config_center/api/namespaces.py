"""Namespaces (tenants) and their policies."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from aigw.config.schema import Name, Policy
from aigw.config_center.api.common import (
    PageParams,
    ensure_absent,
    find,
    head,
    index_of,
    page_params,
    paginate,
    write,
)
from aigw.config_center.auth import Principal, admin, viewer
from aigw.config_center.errors import NotFound

router = APIRouter(prefix="/api/v1/namespaces", tags=["namespaces"])


class NamespaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    description: str = ""
    policy: Policy = Field(default_factory=Policy)


class NamespacePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    policy: Policy | None = None


class NamespaceOut(BaseModel):
    name: str
    description: str = ""
    policy: dict[str, Any] = Field(default_factory=dict)
    key_count: int = 0


class NamespacePage(BaseModel):
    items: list[NamespaceOut]
    total: int
    offset: int
    limit: int


def namespace_out(entry: dict[str, Any]) -> NamespaceOut:
    return NamespaceOut(
        name=entry["name"],
        description=entry.get("description", ""),
        policy=entry.get("policy", {}),
        key_count=len(entry.get("keys", [])),
    )


def readable(principal: Principal, name: str) -> None:
    """404, not 403, for another tenant's namespace: its existence is not disclosed."""
    if not principal.can_read(name):
        raise NotFound(f"namespace '{name}' does not exist")


@router.get("", response_model=NamespacePage)
async def list_namespaces(
    request: Request,
    response: Response,
    page: PageParams = Depends(page_params),
    principal: Principal = Depends(viewer),
) -> dict[str, Any]:
    document = await head(request, response)
    visible = [n for n in document.get("namespaces", []) if principal.can_read(n["name"])]
    result = paginate(visible, page, lambda n: n["name"])
    result["items"] = [namespace_out(n) for n in result["items"]]
    return result


@router.post("", response_model=NamespaceOut, status_code=status.HTTP_201_CREATED)
async def create_namespace(
    body: NamespaceIn, request: Request, response: Response, principal: Principal = Depends(admin)
) -> NamespaceOut:
    entry = body.model_dump(mode="json", exclude_defaults=True)

    def mutate(document: dict[str, Any]) -> str:
        namespaces = document.setdefault("namespaces", [])
        ensure_absent(namespaces, body.name, "namespace")
        namespaces.append(entry)
        return f"create namespace {body.name}"

    await write(request, response, principal, mutate)
    return namespace_out(entry)


@router.get("/{name}", response_model=NamespaceOut)
async def get_namespace(
    name: str, request: Request, response: Response, principal: Principal = Depends(viewer)
) -> NamespaceOut:
    readable(principal, name)
    document = await head(request, response)
    return namespace_out(find(document.get("namespaces", []), name, "namespace"))


@router.patch("/{name}", response_model=NamespaceOut)
async def update_namespace(
    name: str,
    body: NamespacePatch,
    request: Request,
    response: Response,
    principal: Principal = Depends(admin),
) -> NamespaceOut:
    changes = body.model_dump(mode="json", exclude_unset=True)
    updated: dict[str, Any] = {}

    def mutate(document: dict[str, Any]) -> str:
        entry = find(document.get("namespaces", []), name, "namespace")
        entry.update(changes)
        updated.update(entry)
        return f"update namespace {name}: {', '.join(changes) or 'nothing'}"

    await write(request, response, principal, mutate)
    return namespace_out(updated)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_namespace(
    name: str, request: Request, response: Response, principal: Principal = Depends(admin)
) -> Response:
    def mutate(document: dict[str, Any]) -> str:
        namespaces = document.get("namespaces", [])
        del namespaces[index_of(namespaces, name, "namespace")]
        return f"delete namespace {name} and its keys"

    await write(request, response, principal, mutate)
    response.status_code = status.HTTP_204_NO_CONTENT
    return response
