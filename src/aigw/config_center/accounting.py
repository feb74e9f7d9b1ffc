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

Delivery is at-least-once: a batch is added again when its sender retries after an answer it did
not get, so a lost answer may count a batch twice; a batch is never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Executable, func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker

from aigw.config_center.db.tables import UsageDaily
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

DayKey = tuple[date, str, str]


@dataclass(frozen=True, slots=True)
class DailyRow:
    day: date
    namespace: str
    model: str
    counters: UsageCounters


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

    def __init__(self, sessions: async_sessionmaker) -> None:  # type: ignore[type-arg]
        self._sessions = sessions
        self._statements: dict[str, Executable] = {}

    async def add(self, batch: Mapping[Key, UsageCounters]) -> int:
        """Add the batch's per-(namespace, model) counters to their days, in one transaction and
        one statement; returns the number of (day, namespace, model) rows touched. Raises (and
        stores nothing) when the database cannot take it."""
        rows = daily_rows(batch)
        if not rows:
            return 0
        parameters = [
            {"day": day, "namespace": namespace, "model": model, **counters.as_dict()}
            for (day, namespace, model), counters in sorted(rows.items(), key=lambda r: r[0])
        ]
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self._sessions() as session, session.begin():
                    statement = self._statement(session.get_bind().dialect.name)
                    await session.execute(statement, parameters)
                return len(parameters)
            except DBAPIError as exc:
                if attempt == _ATTEMPTS or not _transient(exc):
                    raise
                log.info("usage ledger: retrying a batch after %s", type(exc.orig).__name__)
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

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
