"""Usage: gateways write it, the dashboard reads it, the ledger keeps it.

- ``POST /internal/v1/usage`` (gateway token, like the config feed): a gateway worker's batch of
  counters ``{"batch_id": "...", "items": [{"minute", "dimension", "name", <counters>}]}``. It
  is added to the durable ledger in SQL (``config_center/accounting.py``: the ``namespace_model``
  entries, per day), then to the realtime store. If either fails the answer is 503 and the
  gateway keeps the batch and sends it again, unchanged: nothing is lost. A batch with a
  ``batch_id`` is applied once: the id is recorded in the ledger's transaction, a duplicate adds
  nothing to the ledger, and reaches the realtime store only if it had not before (one case
  remains at-least-once for the realtime series: the config center failing between the realtime
  write and noting it). Without a ``batch_id`` (older gateways) a retried batch may be counted
  twice. Gateways following a config center always send here; only gateways serving a static
  file with ``AIGW_REDIS_URL`` write to Redis directly (and have no ledger).
- ``GET /api/v1/usage/series`` and ``GET /api/v1/usage/top`` (viewer): per-minute or per-day
  series of one namespace or model, and the busiest namespaces or models of the last minutes.
- ``GET /api/v1/usage/daily`` (viewer): pages of the ledger's rows (day, namespace, model).
  A namespace admin may only read ``namespace=<its namespace>`` (``dimension=namespace&name=...``
  for the realtime routes).

The realtime store is ``app.state.realtime`` (:func:`setup_realtime`): Redis when the config
center has ``AIGW_REDIS_URL``, else in process (one worker only: each worker would hold its own
counters). The ledger is ``app.state.ledger``.
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aigw.config_center.accounting import MAX_LIMIT, DailyRow, UsageLedger
from aigw.config_center.auth import Principal, viewer
from aigw.config_center.errors import ApiError, Forbidden, Unauthenticated
from aigw.config_center.settings import CenterSettings
from aigw.state.realtime import (
    COUNTERS,
    MAX_MINUTE_BUCKETS,
    PAIR,
    STEP,
    MemoryRealtimeStore,
    RealtimeStore,
    RedisRealtimeStore,
    SeriesPoint,
    UsageBatch,
    UsageCounters,
)

log = logging.getLogger("aigw.config_center.usage")

MAX_ITEMS = 10_000
"""Entries in one POST (gateways send at most 5,000 at a time)."""
DEFAULT_BUCKETS = {"minute": 60, "day": 30}
"""Buckets a series covers when the range is not given: the last hour, or the last 30 days."""
COUNTER_MAX = 2**63 - 1  # Redis HINCRBY works on signed 64-bit integers
NAMESPACE_MAX, MODEL_MAX = 128, 256  # the configuration schema's limits, and the ledger's columns
DEFAULT_DAYS = 30
"""Days a daily query covers when the range is not given: the last 30, today included."""


class InvalidQuery(ApiError):
    status = 422
    type = "invalid_request"


class Unavailable(ApiError):
    status = 503
    type = "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


def setup_realtime(app: FastAPI, settings: CenterSettings) -> RealtimeStore:
    """The realtime store of this config center, as ``app.state.realtime``."""
    store: RealtimeStore
    if settings.redis_url:
        store = RedisRealtimeStore(settings.redis_url, cluster=settings.redis_cluster)
    else:
        store = MemoryRealtimeStore()
    app.state.realtime = store
    return store


def _store(request: Request) -> RealtimeStore:
    return request.app.state.realtime  # type: ignore[no-any-return]


async def gateway(request: Request) -> None:
    """Only callers presenting ``Authorization: Bearer <gateway token>`` get through."""
    expected = request.app.state.settings.gateway_token
    if not expected:
        raise Unauthenticated("this config center has no gateway token: set AIGW_GATEWAY_TOKEN")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Unauthenticated("invalid gateway token")


router = APIRouter(tags=["usage"])


# -- written by gateways ------------------------------------------------------------------------

Counter = Annotated[int, Field(ge=0, le=COUNTER_MAX)]


class UsageItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minute: int = Field(ge=0, description="Unix seconds of the minute's start (UTC).")
    dimension: Literal["namespace", "model", "namespace_model"] = Field(
        description="namespace_model: one namespace's use of one model, named 'namespace/model' "
        "('namespace/' for requests without a model); counted for both series and kept per day "
        "in the ledger."
    )
    name: str = Field(min_length=1, max_length=NAMESPACE_MAX + 1 + MODEL_MAX)
    requests: Counter = 0
    errors: Counter = 0
    prompt_tokens: Counter = 0
    completion_tokens: Counter = 0
    cost_micro_usd: Counter = 0
    latency_ms_total: Counter = 0

    @field_validator("minute")
    @classmethod
    def _minute_start(cls, value: int) -> int:
        if value % 60:
            raise ValueError("must be the start of a minute (a multiple of 60)")
        return value

    @model_validator(mode="after")
    def _name_fits(self) -> UsageItem:
        if self.dimension != PAIR:
            if len(self.name) > MODEL_MAX:
                raise ValueError(f"name: at most {MODEL_MAX} characters")
            return self
        namespace, slash, model = self.name.partition("/")
        if not slash or not 1 <= len(namespace) <= NAMESPACE_MAX or len(model) > MODEL_MAX:
            raise ValueError(
                f"name: a {PAIR} name is 'namespace/model' (namespace 1-{NAMESPACE_MAX} "
                f"characters, model at most {MODEL_MAX}, empty for requests without one)"
            )
        return self


class UsagePost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[0-9A-Za-z._-]+$",
        description="Names the batch: a batch sent again under the same id is applied once.",
    )
    items: list[UsageItem] = Field(max_length=MAX_ITEMS)


@router.post("/internal/v1/usage", dependencies=[Depends(gateway)], tags=["gateway feed"])
async def add_usage(request: Request, body: UsagePost) -> dict[str, int]:
    """Add a gateway worker's counters to the durable ledger, then to the realtime store, once
    per ``batch_id``.

    503 when either cannot take them: the gateway keeps the batch and sends it again (the ledger
    only ever commits a batch whole, and once)."""
    batch = UsageBatch()
    for item in body.items:
        counters = UsageCounters(*(getattr(item, c) for c in COUNTERS))
        batch.add(item.minute, item.dimension, item.name, counters)
    ledger: UsageLedger = request.app.state.ledger
    try:
        applied = await ledger.add(batch, body.batch_id)
    except Exception as exc:
        _outage("usage ledger", exc)
        raise Unavailable(
            f"the usage ledger is unavailable ({type(exc).__name__}); retry"
        ) from None
    if applied.duplicate:
        log.info("usage: batch %s was applied before; not counted again", body.batch_id)
    if not applied.realtime_done:
        await _add_realtime(request, batch, body.batch_id)
    _recovered()
    request.app.state.metrics.usage_batches.inc()
    return {"accepted": len(body.items)}


async def _add_realtime(request: Request, batch: UsageBatch, batch_id: str | None) -> None:
    try:
        await _store(request).add(batch)
    except Exception as exc:
        _outage("realtime store", exc)
        raise Unavailable(f"the realtime usage store is unavailable ({exc}); retry") from None
    if batch_id is None:
        return
    ledger: UsageLedger = request.app.state.ledger
    try:
        await ledger.realtime_done(batch_id)
    except Exception as exc:  # answering 503 would make the gateway add it to realtime again
        log.warning("usage: cannot note batch %s reached the realtime store: %s", batch_id, exc)


_down: set[str] = set()


def _outage(what: str, exc: Exception) -> None:
    if what not in _down:  # once per outage; the gateways retry every few seconds
        _down.add(what)
        log.warning("usage: the %s failed (%s: %s); answering 503", what, type(exc).__name__, exc)


def _recovered() -> None:
    if _down:
        log.warning("usage: %s working again", " and ".join(sorted(_down)))
        _down.clear()


# -- read by the dashboard ------------------------------------------------------------------------


def _readable(principal: Principal, dimension: str, name: str | None) -> None:
    if principal.role != "namespace_admin":
        return
    if dimension != "namespace" or name is None or not principal.can_read(name):
        raise Forbidden("namespace admins can only read the usage of their own namespace")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _range(
    resolution: str, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    """The range asked for; by default the last 60 minutes / 30 days, the current one included."""
    span = timedelta(seconds=STEP[resolution] * DEFAULT_BUCKETS[resolution])
    if start is not None and end is None:
        return _utc(start), _utc(start) + span
    if end is None:
        step = STEP[resolution]
        now = int(datetime.now(UTC).timestamp())
        end = datetime.fromtimestamp(now - now % step + step, UTC)
    end = _utc(end)
    return (_utc(start) if start is not None else end - span), end


def _point(point: SeriesPoint) -> dict[str, Any]:
    return {"time": point.time.isoformat().replace("+00:00", "Z"), **point.counters.as_dict()}


@router.get("/api/v1/usage/series")
async def series(
    request: Request,
    dimension: Literal["namespace", "model"] = Query(..., description="namespace or model"),
    name: str = Query(..., min_length=1, max_length=256),
    resolution: Literal["minute", "day"] = Query("minute"),
    start: datetime | None = Query(
        None, description="ISO 8601 (UTC if no offset); default: end minus 60 minutes / 30 days"
    ),
    end: datetime | None = Query(
        None, description="Exclusive; default: the end of the current minute / day"
    ),
    principal: Principal = Depends(viewer),
) -> dict[str, Any]:
    """One point per minute (at most 1,440) or per UTC day (at most 400), zero-filled."""
    _readable(principal, dimension, name)
    try:
        start, end = _range(resolution, start, end)
        points = await _store(request).series(dimension, name, resolution, start, end)
    except (ValueError, OverflowError) as exc:
        raise InvalidQuery(str(exc)) from None
    total = UsageCounters()
    for point in points:
        total.add(point.counters)
    return {
        "dimension": dimension,
        "name": name,
        "resolution": resolution,
        "step_seconds": STEP[resolution],
        "start": _point(points[0])["time"] if points else None,
        "end": end.isoformat().replace("+00:00", "Z"),
        "total": total.as_dict(),
        "points": [_point(p) for p in points],
    }


@router.get("/api/v1/usage/top")
async def top(
    request: Request,
    dimension: Literal["namespace", "model"] = Query(..., description="namespace or model"),
    minutes: int = Query(60, ge=1, le=MAX_MINUTE_BUCKETS, description="The last N minutes."),
    limit: int = Query(10, ge=1, le=100),
    principal: Principal = Depends(viewer),
) -> dict[str, Any]:
    """The busiest namespaces or models (by requests) in the last ``minutes`` minutes."""
    _readable(principal, dimension, None)
    try:
        entries = await _store(request).top(dimension, minutes, limit)
    except ValueError as exc:
        raise InvalidQuery(str(exc)) from None
    return {
        "dimension": dimension,
        "minutes": minutes,
        "items": [{"name": e.name, **e.counters.as_dict()} for e in entries],
    }


def _day_range(start: date | None, end: date | None) -> tuple[date, date]:
    """Both days included; by default the last 30 days (UTC), today included."""
    span = timedelta(days=DEFAULT_DAYS - 1)
    if end is None:
        end = start + span if start is not None else datetime.now(UTC).date()
    return (start if start is not None else end - span), end


def _row(row: DailyRow) -> dict[str, Any]:
    return {
        "day": row.day.isoformat(),
        "namespace": row.namespace,
        "model": row.model,
        **row.counters.as_dict(),
    }


@router.get("/api/v1/usage/daily")
async def daily(
    request: Request,
    namespace: str | None = Query(None, min_length=1, max_length=NAMESPACE_MAX),
    model: str | None = Query(
        None, max_length=MODEL_MAX, description="'' (model=) for requests without a model"
    ),
    start: date | None = Query(None, description="First day (UTC), YYYY-MM-DD"),
    end: date | None = Query(
        None, description="Last day (UTC, included); default: today, or start + 29 days"
    ),
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    principal: Principal = Depends(viewer),
) -> dict[str, Any]:
    """The durable ledger: one row per UTC day, namespace and model (at most 400 days), ordered
    by day, namespace and model, a page at a time; ``sum`` adds up every matching row."""
    if principal.role == "namespace_admin" and (
        namespace is None or not principal.can_read(namespace)
    ):
        raise Forbidden("namespace admins can only read the usage of their own namespace")
    ledger: UsageLedger = request.app.state.ledger
    try:
        first, last = _day_range(start, end)
        page = await ledger.daily(namespace, model, first, last, offset, limit)
    except (ValueError, OverflowError) as exc:
        raise InvalidQuery(str(exc)) from None
    return {
        "namespace": namespace,
        "model": model,
        "start": first.isoformat(),
        "end": last.isoformat(),
        "items": [_row(r) for r in page.items],
        "total": page.total,
        "offset": offset,
        "limit": limit,
        "sum": page.sum.as_dict(),
    }
