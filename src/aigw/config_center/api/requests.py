"""The request log: gateways write it, admins read it (``config_center/request_log.py``).

- ``POST /internal/v1/requests`` (gateway token): a gateway worker's batch of request records,
  ``{"items": [...]}``, stored in one transaction; a record already stored (same ``uid``) is
  skipped. 503 (``Retry-After: 1``) when the database cannot take it, and the gateway sends it
  again; 422 when the batch is invalid (the gateway drops it: sending it again cannot help).
- ``GET /api/v1/requests`` (viewer): pages of records, newest first, filtered; keyset pagination
  (``next_cursor``). ``GET /api/v1/requests/{request_id}``: one record, with its body when one
  was stored. A namespace admin reads its own namespace only (the list is limited to it; naming
  another is 403, and another's record is 404).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, IntegrityError

from aigw.config_center.api.usage import Unavailable, gateway
from aigw.config_center.auth import Principal, viewer
from aigw.config_center.errors import ApiError, Forbidden, NotFound
from aigw.config_center.request_log import (
    COLUMNS,
    MAX_LIMIT,
    RequestFilter,
    RequestLogStore,
)

log = logging.getLogger("aigw.config_center.requests")

MAX_ITEMS = 5000
"""Records in one POST (gateways send at most 1,000 at a time)."""
MAX_BODY_CHARS = 1024 * 1024 + 1024
"""A stored body (the gateway cuts it to ``max_body_bytes`` ≤ 1 MiB)."""
BIG = 2**62
_STATUS = re.compile(r"^(?:(\d{3})|([1-5])xx)$")


class InvalidQuery(ApiError):
    status = 422
    type = "invalid_request"


def _clean(value: str) -> str:
    """Text every database stores: no NUL (PostgreSQL refuses it), no lone surrogates."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode()
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode()
    return value


Clean = Annotated[str, AfterValidator(_clean)]
Count = Annotated[int, Field(ge=0, le=BIG)]
Millis = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]


class RequestRecordIn(BaseModel):
    """One request as a gateway sends it (``gateway/monitoring/request_log.py``)."""

    model_config = ConfigDict(extra="ignore")  # fields of newer gateways are not refused

    uid: str = Field(
        min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$", description="Unique per record."
    )
    ts: int = Field(ge=0, le=BIG, description="Arrival, Unix microseconds.")
    request_id: Clean = Field(max_length=128)
    namespace: Clean = Field(min_length=1, max_length=128)
    key_prefix: Clean | None = Field(None, max_length=16)
    path: Clean = Field("", max_length=256)
    model: Clean | None = Field(None, max_length=256)
    provider: Clean | None = Field(None, max_length=128)
    upstream_model: Clean | None = Field(None, max_length=256)
    status: int = Field(ge=0, le=999)
    error_type: Clean | None = Field(None, max_length=64)
    error_code: Clean | None = Field(None, max_length=64)
    stream: bool = False
    attempts: int = Field(0, ge=0, le=1000)
    duration_ms: Millis = 0.0
    ttft_ms: Millis | None = None
    prompt_tokens: Count = 0
    completion_tokens: Count = 0
    cached_tokens: Count = 0
    cost_usd: float = Field(0.0, ge=0, le=1e12, allow_inf_nan=False)
    request_body: Clean | None = Field(None, max_length=MAX_BODY_CHARS)
    request_body_bytes: Count | None = None


class RequestsPost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[RequestRecordIn] = Field(max_length=MAX_ITEMS)


class RequestRecordOut(BaseModel):
    """A request as stored (without its body)."""

    id: int = Field(description="The row's number in this config center's database.")
    timestamp: datetime = Field(description="When the request arrived at the gateway (UTC).")
    request_id: str = Field(description="x-request-id: the caller's, or one the gateway made.")
    namespace: str
    key_prefix: str | None = Field(description="The key's display prefix (never the key).")
    path: str
    model: str | None = Field(description="The public model name, once it was resolved.")
    provider: str | None
    upstream_model: str | None
    status: int
    error_type: str | None
    error_code: str | None
    stream: bool
    attempts: int = Field(description="Upstream tries (more than 1: failed over or retried).")
    duration_ms: float
    ttft_ms: float | None = Field(description="Streams: arrival to the first upstream chunk.")
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float
    request_body_bytes: int | None = Field(
        description="Size of the request body when it was stored (null: not stored)."
    )


class RequestRecordDetail(RequestRecordOut):
    request_body: str | None = Field(
        description="The request body as stored: secrets redacted, cut to the configured size; "
        "null unless the configuration had gateway.request_log.bodies on."
    )


class RequestPageOut(BaseModel):
    items: list[RequestRecordOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next, older page; null on the last page."
    )
    limit: int


router = APIRouter(tags=["requests"])


def _store(request: Request) -> RequestLogStore:
    return request.app.state.request_log  # type: ignore[no-any-return]


@router.post("/internal/v1/requests", dependencies=[Depends(gateway)], tags=["gateway feed"])
async def add_requests(request: Request, body: RequestsPost) -> dict[str, int]:
    """Store a gateway worker's request records (one transaction; a uid already stored is
    skipped). 503 when the database cannot take them: the gateway sends them again."""
    rows = [item.model_dump(include=set(COLUMNS)) for item in body.items]
    try:
        await _store(request).add(rows)
    except (DataError, IntegrityError) as exc:
        log.warning("request log: the database refused a batch: %s", exc)
        raise InvalidQuery(f"the database refused these records ({type(exc).__name__})") from None
    except Exception as exc:
        _outage(exc)
        raise Unavailable(f"the request log is unavailable ({type(exc).__name__}); retry") from None
    _recovered()
    request.app.state.metrics.request_records.inc(len(rows))
    return {"accepted": len(rows)}


_down = False


def _outage(exc: Exception) -> None:
    global _down
    if not _down:  # once per outage; the gateways retry every few seconds
        _down = True
        log.warning(
            "request log: cannot store records (%s: %s); answering 503", type(exc).__name__, exc
        )


def _recovered() -> None:
    global _down
    if _down:
        _down = False
        log.warning("request log: storing records again")


def _micros(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return round(moment.timestamp() * 1_000_000)


def _out(row: dict[str, Any]) -> dict[str, Any]:
    row["timestamp"] = datetime.fromtimestamp(row.pop("ts") / 1_000_000, UTC)
    return row


@router.get("/api/v1/requests", response_model=RequestPageOut)
async def list_requests(
    request: Request,
    namespace: str | None = Query(None, min_length=1, max_length=128),
    model: str | None = Query(None, max_length=256),
    status: str | None = Query(
        None, max_length=3, description="A status (404) or a class of them (4xx)."
    ),
    key_prefix: str | None = Query(None, max_length=16, description="A key's display prefix."),
    since: datetime | None = Query(None, description="ISO 8601 (UTC if no offset), included."),
    until: datetime | None = Query(None, description="ISO 8601 (UTC if no offset), excluded."),
    request_id: str | None = Query(None, max_length=128),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=64, description="`next_cursor` of a page."),
    principal: Principal = Depends(viewer),
) -> dict[str, Any]:
    """Request records, newest first, a page at a time (without bodies: see the record)."""
    if principal.role == "namespace_admin":
        if namespace is None:
            namespace = _own(principal)
        elif not principal.can_read(namespace):
            raise Forbidden("namespace admins can only read the requests of their own namespace")
    exact, status_class = _status(status)
    try:
        where = RequestFilter(
            namespace=namespace,
            model=model,
            status=exact,
            status_class=status_class,
            key_prefix=key_prefix,
            since_us=_micros(since),
            until_us=_micros(until),
            request_id=request_id,
        )
        page = await _store(request).page(where, limit, cursor)
    except (ValueError, OverflowError) as exc:
        raise InvalidQuery(str(exc)) from None
    return {
        "items": [_out(row) for row in page.items],
        "next_cursor": page.next_cursor,
        "limit": limit,
    }


def _own(principal: Principal) -> str:
    if principal.namespace is None:  # not made by the user service; refuse rather than widen
        raise Forbidden("this namespace admin has no namespace")
    return principal.namespace


def _status(value: str | None) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    match = _STATUS.match(value)
    if match is None:
        raise InvalidQuery("status: a status such as 404, or a class such as 4xx")
    exact, status_class = match.groups()
    return (int(exact), None) if exact else (None, int(status_class))


@router.get("/api/v1/requests/{request_id}", response_model=RequestRecordDetail)
async def get_request(
    request: Request, request_id: str, principal: Principal = Depends(viewer)
) -> dict[str, Any]:
    """The newest record with this request id (a caller may reuse ids: the list's
    ``request_id`` filter shows them all), with its body when one was stored."""
    namespace = _own(principal) if principal.role == "namespace_admin" else None
    row = await _store(request).get(request_id, namespace)
    if row is None:
        raise NotFound(f"no request '{request_id}' in the request log")
    return _out(row)
