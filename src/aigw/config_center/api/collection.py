"""CRUD routes for a top-level named list of the document (providers, models, prices).

Each resource is an item of one list in the configuration document, validated by the same
schema class the gateway uses; this builds its five routes once instead of once per resource.
"""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response, status
from pydantic import BaseModel

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
from aigw.config_center.auth import Principal, admin, viewer

Shape = Callable[[dict[str, Any]], dict[str, Any]]


def collection_router(
    *,
    path: str,
    field: str,
    what: str,
    schema: type[BaseModel],
    key: str = "name",
    out: Shape = lambda item: item,
    reader: Callable[[Principal], None] = lambda _: None,
) -> APIRouter:
    """Routes for ``document[field]``: list, create, get, patch (merge), delete."""
    router = APIRouter(prefix=path, tags=[field])

    @router.get("", summary=f"List {field}")
    async def list_items(
        request: Request,
        response: Response,
        page: PageParams = Depends(page_params),
        principal: Principal = Depends(viewer),
    ) -> dict[str, Any]:
        reader(principal)
        document = await head(request, response)
        result = paginate(document.get(field, []), page, lambda item: str(item[key]))
        result["items"] = [out(item) for item in result["items"]]
        return result

    @router.post("", status_code=status.HTTP_201_CREATED, summary=f"Create a {what}")
    async def create_item(
        request: Request,
        response: Response,
        body: schema = Body(),  # type: ignore[valid-type]
        principal: Principal = Depends(admin),
    ) -> dict[str, Any]:
        entry = _plain(body)

        def mutate(document: dict[str, Any]) -> str:
            items = document.setdefault(field, [])
            ensure_absent(items, entry[key], what, key)
            items.append(entry)
            return f"create {what} {entry[key]}"

        await write(request, response, principal, mutate)
        return out(entry)

    @router.get("/{name:path}", summary=f"Get a {what}")
    async def get_item(
        name: str, request: Request, response: Response, principal: Principal = Depends(viewer)
    ) -> dict[str, Any]:
        reader(principal)
        document = await head(request, response)
        return out(find(document.get(field, []), name, what, key))

    @router.patch("/{name:path}", summary=f"Change fields of a {what}")
    async def update_item(
        name: str,
        request: Request,
        response: Response,
        changes: dict[str, Any] = Body(),
        principal: Principal = Depends(admin),
    ) -> dict[str, Any]:
        updated: dict[str, Any] = {}

        def mutate(document: dict[str, Any]) -> str:
            entry = find(document.get(field, []), name, what, key)
            merge_fields(entry, changes)
            updated.update(entry)
            return f"update {what} {name}: {', '.join(sorted(changes)) or 'nothing'}"

        await write(request, response, principal, mutate)
        return out(updated)

    @router.delete(
        "/{name:path}", status_code=status.HTTP_204_NO_CONTENT, summary=f"Delete a {what}"
    )
    async def delete_item(
        name: str, request: Request, response: Response, principal: Principal = Depends(admin)
    ) -> Response:
        def mutate(document: dict[str, Any]) -> str:
            items = document.get(field, [])
            del items[index_of(items, name, what, key)]
            return f"delete {what} {name}"

        await write(request, response, principal, mutate)
        response.status_code = status.HTTP_204_NO_CONTENT
        return response

    return router


def _plain(body: BaseModel) -> dict[str, Any]:
    """A schema object as a document entry, secrets in clear (the store encrypts them)."""
    entry = body.model_dump(mode="json", exclude_defaults=True)
    secret = getattr(body, "api_key", None)
    if secret is not None:
        entry["api_key"] = secret.get_secret_value()
    return entry
