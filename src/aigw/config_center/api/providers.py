"""Upstream providers. Credentials are write-only: no answer ever contains them."""

from __future__ import annotations

from typing import Any

from aigw.config.schema import Provider
from aigw.config_center.api.collection import collection_router
from aigw.config_center.auth import global_reader


def provider_out(entry: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in entry.items() if k != "api_key"}
    shown["api_key_set"] = bool(entry.get("api_key"))
    return shown


router = collection_router(
    path="/api/v1/providers",
    field="providers",
    what="provider",
    schema=Provider,
    out=provider_out,
    reader=global_reader,
)
