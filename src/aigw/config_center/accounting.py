"""Durable accounting: usage and spend per UTC day, namespace and model, in SQL.

Gateways that follow a config center send it their usage batches (``POST /internal/v1/usage``,
every second and once more when they stop). Besides the realtime store, the config center folds
each batch into the ``usage_daily`` table (:class:`~aigw.config_center.db.tables.UsageDaily`):
one row per (day, namespace, model), ``model`` being ``''`` for requests refused before a model
was resolved, holding the six additive counters of :class:`~aigw.state.realtime.UsageCounters`.

Only the batch's per-(namespace, model) entries (dimension ``namespace_model``) are kept here;
plain ``namespace`` and ``model`` entries (gateways writing to Redis, older gateways) cannot be
attributed to a pair and are realtime only.

One batch is one transaction and one statement, executed with the batch's rows as parameters
(executemany): an upsert that *adds* to the counters, ``INSERT ... ON CONFLICT (day, namespace,
model) DO UPDATE SET x = usage_daily.x + excluded.x`` on SQLite and PostgreSQL, ``INSERT ... ON
DUPLICATE KEY UPDATE x = usage_daily.x + VALUES(x)`` on MySQL/MariaDB. The addition happens in
the database under the row's lock, so concurrent batches (several gateways, several config-center
workers) never lose each other's counts. Rows are summed per key first (a key appears once per
statement, as PostgreSQL requires) and sent in key order, so concurrent batches lock rows in the
same order; a deadlock or serialization failure the database reports anyway is retried here.

Exactly once: a gateway names each batch (``batch_id``: the spool segment it drains and the
part, e.g. ``usage-1f2e...-host-12-a1b2c3d4e5f6-000042.0``) and sends it again, unchanged and under
the same id, until it gets an answer; a worker recovering a dead worker's spool segment sends it
under the ids the dead worker used. The id is inserted into ``usage_batches`` in the same
transaction as the upsert: a batch already applied violates its primary key, the transaction
rolls back, and the batch is reported as a duplicate (nothing added). Ids are kept
:data:`BATCH_RETENTION_SECONDS` (2 days), purged at most hourly; a batch sent again later than
that would be added twice. Batches without an id (older gateways) are added each time they are
sent (at-least-once). A batch is never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Executable, delete, func, insert, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from aigw.config_center.db.tables import UsageBatchApplied, UsageDaily
from aigw.state.realtime import (
    COUNTERS,
    DAY,
    MAX_DAY_BUCKETS,
    PAIR,
    Key,
    UsageCounters,
    split_pair,
)

log = logging.getLogger("aigw.config_center.accounting")

MAX_DAYS = MAX_DAY_BUCKETS
"""A daily query covers at most 400 days."""
MAX_LIMIT = 500
"""Rows in one page of a daily query."""
_EPOCH = date(1970, 1, 1)
_ATTEMPTS = 3
_TABLE = UsageDaily.__table__
_KEY = ("day", "namespace", "model")
BATCH_RETENTION_SECONDS = 2 * 86_400
"""How long an applied batch id is remembered."""
BATCH_PURGE_SECONDS = 3600
"""How often (at most) the ids past their retention are deleted, by each ledger."""

DayKey = tuple[date, str, str]


@dataclass(frozen=True, slots=True)
class DailyRow:
    day: date
    namespace: str
    model: str
    counters: UsageCounters


@dataclass(frozen=True, slots=True)
class Applied:
    """What :meth:`UsageLedger.add` did with a batch."""

    rows: int
    """(day, namespace, model) rows added to (0 for a duplicate)."""
    duplicate: bool = False
    """The batch id was applied before: nothing was added this time."""
    realtime_done: bool = False
    """A duplicate whose realtime part was delivered too (see :meth:`UsageLedger.realtime_done`)."""


@dataclass(frozen=True, slots=True)
class DailyPage:
    items: list[DailyRow]
    total: int
    """Rows matching the query (all pages)."""
    sum: UsageCounters
    """The counters summed over every matching row (all pages)."""


def daily_rows(batch: Mapping[Key, UsageCounters]) -> dict[DayKey, UsageCounters]:
    """The batch's per-(namespace, model) entries summed per (UTC day, namespace, model)."""
    rows: dict[DayKey, UsageCounters] = {}
    days: dict[int, date] = {}
    for (minute, dimension, name), counters in batch.items():
        if dimension != PAIR or counters.is_zero():
            continue
        number = minute // DAY
        day = days.get(number)
        if day is None:
            day = days[number] = _EPOCH + timedelta(days=number)
        namespace, model = split_pair(name)
        key = (day, namespace, model)
        mine = rows.get(key)
        if mine is None:
            rows[key] = counters.copy()
        else:
            mine.add(counters)
    return rows


def _upsert(dialect: str) -> Executable:
    """One INSERT that adds to the counters of an existing (day, namespace, model) row."""
    if dialect in ("sqlite", "postgresql"):
        module = sqlite if dialect == "sqlite" else postgresql
        insert = module.insert(_TABLE)
        return insert.on_conflict_do_update(
            index_elements=list(_KEY),
            set_={c: _TABLE.c[c] + insert.excluded[c] for c in COUNTERS},
        )
    if dialect in ("mysql", "mariadb"):
        insert = mysql.insert(_TABLE)
        return insert.on_duplicate_key_update(
            {c: _TABLE.c[c] + insert.inserted[c] for c in COUNTERS}
        )
    raise ValueError(f"no upsert for database {dialect!r}")


def _transient(exc: DBAPIError) -> bool:
    """A deadlock or serialization failure: the transaction was rolled back, retrying is safe."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in ("40001", "40P01"):
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in (1205, 1213):  # MySQL: lock wait timeout, deadlock
        return True
    return "deadlock" in str(orig).lower()


class UsageLedger:
    """The ``usage_daily`` table: :meth:`add` batches, :meth:`daily` reads pages of rows."""

    def __init__(
        self,
        sessions: async_sessionmaker,  # type: ignore[type-arg]
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._statements: dict[str, Executable] = {}
        self._clock = clock
        self._next_purge = 0.0

    async def add(self, batch: Mapping[Key, UsageCounters], batch_id: str | None = None) -> Applied:
        """Add the batch's per-(namespace, model) counters to their days, in one transaction and
        one statement, once per ``batch_id`` (see the module doc). Raises (and stores nothing)
        when the database cannot take it."""
        rows = daily_rows(batch)
        if not rows and batch_id is None:
            return Applied(0)
        parameters = [
            {"day": day, "namespace": namespace, "model": model, **counters.as_dict()}
            for (day, namespace, model), counters in sorted(rows.items(), key=lambda r: r[0])
        ]
        await self._purge_old_batch_ids()
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                if not await self._apply(parameters, batch_id):
                    assert batch_id is not None
                    return Applied(0, duplicate=True, realtime_done=await self._realtime(batch_id))
                return Applied(len(parameters))
            except DBAPIError as exc:
                if attempt == _ATTEMPTS or not _transient(exc):
                    raise
                log.info("usage ledger: retrying a batch after %s", type(exc.orig).__name__)
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    async def _apply(self, parameters: list[dict[str, Any]], batch_id: str | None) -> bool:
        """One transaction: the batch id (first, so a concurrent duplicate waits on its key),
        then the upsert. False when the id was applied before (and nothing was)."""
        try:
            async with self._sessions() as session, session.begin():
                if batch_id is not None:
                    await session.execute(
                        insert(UsageBatchApplied).values(
                            batch_id=batch_id, applied_at=int(self._clock()), realtime=False
                        )
                    )
                if parameters:
                    statement = self._statement(session.get_bind().dialect.name)
                    await session.execute(statement, parameters)
        except IntegrityError:
            if batch_id is None:
                raise
            return False
        return True

    async def _realtime(self, batch_id: str) -> bool:
        query = select(UsageBatchApplied.realtime).where(UsageBatchApplied.batch_id == batch_id)
        async with self._sessions() as session:
            return bool((await session.execute(query)).scalar())

    async def realtime_done(self, batch_id: str) -> None:
        """Note that the batch reached the realtime store too: a duplicate of it then skips it."""
        statement = (
            update(UsageBatchApplied)
            .where(UsageBatchApplied.batch_id == batch_id)
            .values(realtime=True)
        )
        async with self._sessions() as session, session.begin():
            await session.execute(statement)

    async def purge_batch_ids(self, before: float) -> int:
        """Forget the batch ids applied before ``before`` (Unix seconds); how many."""
        statement = delete(UsageBatchApplied).where(UsageBatchApplied.applied_at < int(before))
        async with self._sessions() as session, session.begin():
            result = await session.execute(statement)
        return max(result.rowcount or 0, 0)  # type: ignore[attr-defined]

    async def _purge_old_batch_ids(self) -> None:
        now = self._clock()
        if now < self._next_purge:
            return
        self._next_purge = now + BATCH_PURGE_SECONDS
        try:
            deleted = await self.purge_batch_ids(now - BATCH_RETENTION_SECONDS)
        except DBAPIError as exc:  # the batch's own write will say whether the database is away
            log.warning("usage ledger: cannot purge old batch ids: %s", exc)
            return
        if deleted:
            log.info("usage ledger: forgot %d batch ids older than 2 days", deleted)

    def _statement(self, dialect: str) -> Executable:
        statement = self._statements.get(dialect)
        if statement is None:
            statement = self._statements[dialect] = _upsert(dialect)
        return statement

    async def daily(
        self,
        namespace: str | None,
        model: str | None,
        start_day: date,
        end_day: date,
        offset: int = 0,
        limit: int = 100,
    ) -> DailyPage:
        """Rows from ``start_day`` to ``end_day`` (both included, at most :data:`MAX_DAYS`),
        of one namespace and/or one model when given (``model=''``: requests without a model),
        ordered by day, namespace and model; one page of them, with the total count and the sum
        of every matching row. Raises ``ValueError`` for a range or page out of bounds."""
        if end_day < start_day:
            raise ValueError("end must not be before start")
        days = (end_day - start_day).days + 1
        if days > MAX_DAYS:
            raise ValueError(f"a daily query covers at most {MAX_DAYS} days; this one {days}")
        if offset < 0:
            raise ValueError(f"offset must be at least 0, not {offset}")
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
        where: list[Any] = [UsageDaily.day >= start_day, UsageDaily.day <= end_day]
        if namespace is not None:
            where.append(UsageDaily.namespace == namespace)
        if model is not None:
            where.append(UsageDaily.model == model)
        columns = [getattr(UsageDaily, c) for c in COUNTERS]
        summary = select(func.count(), *(func.coalesce(func.sum(c), 0) for c in columns)).where(
            *where
        )
        page = (
            select(UsageDaily.day, UsageDaily.namespace, UsageDaily.model, *columns)
            .where(*where)
            .order_by(UsageDaily.day, UsageDaily.namespace, UsageDaily.model)
            .offset(offset)
            .limit(limit)
        )
        async with self._sessions() as session:
            total, *sums = (await session.execute(summary)).one()
            rows = (await session.execute(page)).all()
        return DailyPage(
            items=[
                DailyRow(day, ns, m, UsageCounters.from_values(values))
                for day, ns, m, *values in rows
            ],
            total=int(total),
            sum=UsageCounters.from_values(sums),
        )
