"""Liveness and readiness of the config center (no authentication: probes call them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from aigw import __version__

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok", "version": __version__}


@router.get("/readyz")
async def readyz(request: Request) -> dict[str, Any]:
    version = await request.app.state.store.head_version()
    return {"status": "ready", "config_version": version}
