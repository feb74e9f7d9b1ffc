"""Configuration versions (history, diff, rollback) and the whole document (export, import)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel

from aigw.config.diff import diff_documents
from aigw.config.loader import validate_config
from aigw.config.schema import canonical_document
from aigw.config.secrets import redact_document
from aigw.config_center.api.common import expected_version, store, tag
from aigw.config_center.auth import Principal, admin, global_reader, viewer

router = APIRouter(tags=["versions"])

# Versions are BIGINT in every database; larger numbers cannot exist (and overflow drivers).
MAX_VERSION = 2**62


class VersionInfo(BaseModel):
    version: int
    created_at: datetime
    actor: str
    action: str
    rolled_back_from: int | None = None


class VersionPage(BaseModel):
    items: list[VersionInfo]
    total: int
    offset: int
    limit: int


class Change(BaseModel):
    path: str
    op: str
    before: Any = None
    after: Any = None


class VersionDiff(BaseModel):
    from_version: int
    to_version: int
    changes: list[Change]


class ImportResult(BaseModel):
    dry_run: bool
    changes: list[Change]
    version: int | None = None
    """The new version; none for a dry run or when nothing changed."""


def _info(stored: Any) -> VersionInfo:
    return VersionInfo(
        version=stored.version,
        created_at=stored.created_at,
        actor=stored.actor,
        action=stored.action,
        rolled_back_from=stored.rolled_back_from,
    )


@router.get("/api/v1/versions", response_model=VersionPage)
async def list_versions(
    request: Request,
    response: Response,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    principal: Principal = Depends(viewer),
) -> dict[str, Any]:
    global_reader(principal)
    items, total = await store(request).history(offset, limit)
    tag(response, await store(request).head_version())
    return {"items": [_info(v) for v in items], "total": total, "offset": offset, "limit": limit}


@router.get("/api/v1/versions/diff", response_model=VersionDiff)
async def diff_versions(
    request: Request,
    from_version: int = Query(alias="from", ge=0, le=MAX_VERSION),
    to_version: int = Query(alias="to", ge=0, le=MAX_VERSION),
    principal: Principal = Depends(viewer),
) -> VersionDiff:
    global_reader(principal)
    box = store(request).box
    before = await store(request).get(from_version)
    after = await store(request).get(to_version)
    changes = diff_documents(
        box.decrypt_document(before.document), box.decrypt_document(after.document)
    )
    return VersionDiff(from_version=from_version, to_version=to_version, changes=changes)


@router.get("/api/v1/versions/{version}")
async def get_version(
    request: Request,
    version: int = Path(ge=0, le=MAX_VERSION),
    principal: Principal = Depends(viewer),
) -> dict[str, Any]:
    """A version with its whole document (provider credentials masked)."""
    global_reader(principal)
    stored = await store(request).get(version)
    return {**_info(stored).model_dump(mode="json"), "document": redact_document(stored.document)}


@router.post("/api/v1/versions/{version}/rollback", response_model=VersionInfo)
async def rollback(
    request: Request,
    response: Response,
    version: int = Path(ge=0, le=MAX_VERSION),
    principal: Principal = Depends(admin),
) -> VersionInfo:
    """Make an earlier version current again; the rollback is itself a new version."""
    target = await store(request).get(version)
    created = await store(request).replace(
        target.document,
        actor=principal.name,
        action=f"roll back to version {version}",
        expected=expected_version(request),
        rolled_back_from=version,
    )
    tag(response, created)
    return _info(created)


@router.get("/api/v1/config")
async def export_config(
    request: Request, response: Response, principal: Principal = Depends(admin)
) -> dict[str, Any]:
    """The whole configuration, as stored: credentials stay encrypted (``enc:v1:``), so the
    export round-trips into any config center holding the same master key."""
    head = await store(request).head()
    tag(response, head)
    return head.document


@router.put("/api/v1/config", response_model=ImportResult)
async def import_config(
    request: Request,
    response: Response,
    document: dict[str, Any] = Body(),
    dry_run: bool = Query(False, description="Validate and show the changes; store nothing."),
    principal: Principal = Depends(admin),
) -> ImportResult:
    """Replace the whole configuration (config as code). Unchanged content is not a new version."""
    config_store = store(request)
    head = await config_store.head()
    box = config_store.box
    incoming = canonical_document(validate_config(box.decrypt_document(document), source="body"))
    changes = diff_documents(box.decrypt_document(head.document), incoming)
    tag(response, head)
    if dry_run or not changes:
        return ImportResult(dry_run=dry_run, changes=changes)
    created = await config_store.replace(
        incoming,
        actor=principal.name,
        action="import configuration",
        expected=expected_version(request),
    )
    tag(response, created)
    return ImportResult(dry_run=False, changes=changes, version=created.version)
