"""What every resource route shares: reading the head, writing a change, paging, ETags."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from fastapi import Query, Request, Response
from pydantic import BaseModel, Field

from aigw.config_center.auth import Principal
from aigw.config_center.errors import ApiError, Conflict, NotFound
from aigw.config_center.store import ConfigStore, Document, Mutation, StoredVersion

T = TypeVar("T")

_ETAG = re.compile(r'^\s*(?:W/)?"?(\d+)"?\s*$')


class PageParams(BaseModel):
    offset: int = Field(0, ge=0)
    limit: int = Field(50, ge=1, le=500)
    q: str | None = Field(None, max_length=128, description="Case-insensitive name filter.")


def page_params(
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    q: str | None = Query(None, max_length=128, description="Case-insensitive name filter."),
) -> PageParams:
    return PageParams(offset=offset, limit=limit, q=q)


def paginate(items: Iterable[T], page: PageParams, name: Callable[[T], str]) -> dict[str, Any]:
    matching = [i for i in items if page.q is None or page.q.lower() in name(i).lower()]
    return {
        "items": matching[page.offset : page.offset + page.limit],
        "total": len(matching),
        "offset": page.offset,
        "limit": page.limit,
    }


def store(request: Request) -> ConfigStore:
    return request.app.state.store  # type: ignore[no-any-return]


def expected_version(request: Request) -> int | None:
    """The configuration version named by ``If-Match``, if the caller sent one."""
    value = request.headers.get("if-match")
    if value is None or value.strip() == "*":
        return None
    match = _ETAG.match(value)
    if match is None:
        raise ApiError('If-Match must be a configuration version such as "42"')
    return int(match.group(1))


def tag(response: Response, version: StoredVersion | int) -> None:
    """Every answer says which configuration version it reflects (``ETag``)."""
    number = version if isinstance(version, int) else version.version
    response.headers["ETag"] = f'"{number}"'


async def head(request: Request, response: Response) -> Document:
    """The current document (credentials decrypted: never return them) with its ETag set."""
    current = await store(request).head()
    tag(response, current)
    return current.document


def find(items: list[dict[str, Any]], name: str, what: str, key: str = "name") -> dict[str, Any]:
    for item in items:
        if item.get(key) == name:
            return item
    raise NotFound(f"{what} '{name}' does not exist")


def index_of(items: list[dict[str, Any]], name: str, what: str, key: str = "name") -> int:
    for index, item in enumerate(items):
        if item.get(key) == name:
            return index
    raise NotFound(f"{what} '{name}' does not exist")


def merge_fields(entry: dict[str, Any], changes: dict[str, Any]) -> None:
    """A PATCH: set each changed field; ``null`` removes it (back to its default)."""
    for field, value in changes.items():
        if value is None:
            entry.pop(field, None)
        else:
            entry[field] = value


def ensure_absent(items: list[dict[str, Any]], name: str, what: str, key: str = "name") -> None:
    if any(item.get(key) == name for item in items):
        raise Conflict(f"{what} '{name}' already exists")


async def write(
    request: Request, response: Response, principal: Principal, mutate: Mutation
) -> StoredVersion:
    """Apply a change as a new configuration version (``If-Match`` honoured) and tag the answer."""
    version = await store(request).change(
        mutate, actor=principal.name, expected=expected_version(request)
    )
    tag(response, version)
    return version
