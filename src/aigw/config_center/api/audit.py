"""The audit trail of everything that is not a configuration version: admin users, sign-ins.

Configuration changes have their own history (``/api/v1/versions``: who, when, what).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import func, select

from aigw.config_center.auth import Principal, admin
from aigw.config_center.db.tables import AuditEvent

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    detail: str


class AuditPage(BaseModel):
    items: list[AuditEntry]
    total: int
    offset: int
    limit: int


@router.get("", response_model=AuditPage)
async def list_audit_events(
    request: Request,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    actor: str | None = Query(None, max_length=128),
    principal: Principal = Depends(admin),
) -> dict[str, Any]:
    """Newest first; filter by actor."""
    query = select(AuditEvent)
    count = select(func.count()).select_from(AuditEvent)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
        count = count.where(AuditEvent.actor == actor)
    async with request.app.state.sessions() as session:
        total = (await session.scalar(count)) or 0
        rows = await session.scalars(
            query.order_by(AuditEvent.id.desc()).offset(offset).limit(limit)
        )
        items = [
            AuditEntry(
                id=row.id,
                at=row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC),
                actor=row.actor,
                action=row.action,
                detail=row.detail,
            )
            for row in rows
        ]
    return {"items": items, "total": total, "offset": offset, "limit": limit}
