"""The request log: one row per request the gateways served, in SQL, kept for a retention period.

Gateways following this config center post their records in batches, every second and once more
when they stop (``gateway/monitoring/request_log.py``, ``POST /internal/v1/requests``). A batch
is one transaction and one INSERT executed with all of its rows (executemany). Each row carries a
``uid`` the gateway made, unique in the table, and a uid already stored is skipped (``ON CONFLICT
(uid) DO NOTHING`` on SQLite and PostgreSQL, ``ON DUPLICATE KEY UPDATE uid = uid`` on
MySQL/MariaDB), so a batch sent again after a lost answer is stored once.

Reads are newest first, by (``ts``, ``id``), a page at a time with keyset pagination: a cursor
names the last row of a page, and the next page is the rows strictly before it (``ts <= T AND
(ts < T OR id < I)``, a range on the (ts, id) and (namespace, ts, id) indexes), so pages neither
repeat nor skip rows however many arrive meanwhile, and a deep page costs what the first does.

Retention: :class:`Retention` deletes the rows older than ``AIGW_REQUEST_LOG_RETENTION_DAYS``
(default 7; 0 keeps them forever) every ``AIGW_REQUEST_LOG_PURGE_SECONDS`` (default 300), at most
:data:`PURGE_CHUNK` rows per statement and transaction, so a large backlog never holds long locks.
Several config-center instances may purge at once: deleting is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable, and_, delete, or_, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker

from aigw.config_center.db.tables import RequestLog

log = logging.getLogger("aigw.config_center.request_log")

RETENTION_ENV = "AIGW_REQUEST_LOG_RETENTION_DAYS"
PURGE_INTERVAL_ENV = "AIGW_REQUEST_LOG_PURGE_SECONDS"
DEFAULT_RETENTION_DAYS = 7.0
DEFAULT_PURGE_SECONDS = 300.0
PURGE_CHUNK = 5000
MAX_LIMIT = 1000
"""Rows in one page."""

_TABLE = RequestLog.__table__
COLUMNS = tuple(c.name for c in _TABLE.columns if c.name != "id")
"""What an inserted row holds (every key present, ``None`` for no value)."""
_LIST_COLUMNS = tuple(c for c in _TABLE.columns if c.name not in ("uid", "request_body"))
_DETAIL_COLUMNS = tuple(c for c in _TABLE.columns if c.name != "uid")
_CURSOR = re.compile(r"^(-?\d{1,19})_(\d{1,19})$")


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """Which rows a query reads; each unset field matches every row."""

    namespace: str | None = None
    model: str | None = None
    status: int | None = None
    status_class: int | None = None
    """1 to 5: every status in 100-199, ..., 500-599."""
    key_prefix: str | None = None
    since_us: int | None = None
    """Rows from this time on (Unix microseconds, included)."""
    until_us: int | None = None
    """Rows before this time (excluded)."""
    request_id: str | None = None

    def where(self) -> list[Any]:
        table = RequestLog
        where: list[Any] = []
        for name in ("namespace", "model", "key_prefix", "request_id", "status"):
            value = getattr(self, name)
            if value is not None:
                where.append(getattr(table, name) == value)
        if self.status_class is not None:
            low = self.status_class * 100
            where.extend((table.status >= low, table.status < low + 100))
        if self.since_us is not None:
            where.append(table.ts >= self.since_us)
        if self.until_us is not None:
            where.append(table.ts < self.until_us)
        return where


@dataclass(frozen=True, slots=True)
class RequestPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    """Give it back as ``cursor`` for the next (older) page; None on the last page."""


def encode_cursor(ts: int, row_id: int) -> str:
    return f"{ts}_{row_id}"


def decode_cursor(cursor: str) -> tuple[int, int]:
    match = _CURSOR.match(cursor)
    if match is None:
        raise ValueError("cursor: not a cursor this API gave (use next_cursor as it came)")
    return int(match.group(1)), int(match.group(2))


def _insert(dialect: str) -> Executable:
    """One INSERT that skips a row whose uid is already stored."""
    if dialect in ("sqlite", "postgresql"):
        module = sqlite if dialect == "sqlite" else postgresql
        return module.insert(_TABLE).on_conflict_do_nothing(index_elements=["uid"])
    if dialect in ("mysql", "mariadb"):
        insert = mysql.insert(_TABLE)
        return insert.on_duplicate_key_update(uid=insert.inserted.uid)
    raise ValueError(f"no insert for database {dialect!r}")


class RequestLogStore:
    """The ``request_log`` table: :meth:`add` batches, :meth:`page` and :meth:`get` read,
    :meth:`purge` deletes old rows."""

    def __init__(self, sessions: async_sessionmaker) -> None:  # type: ignore[type-arg]
        self._sessions = sessions
        self._statements: dict[str, Executable] = {}

    async def add(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert the rows (each with every key of :data:`COLUMNS`) in one transaction and one
        statement, skipping uids already stored; returns the number of rows given."""
        if not rows:
            return 0
        async with self._sessions() as session, session.begin():
            dialect = session.get_bind().dialect.name
            statement = self._statements.get(dialect)
            if statement is None:
                statement = self._statements[dialect] = _insert(dialect)
            await session.execute(statement, list(rows))
        return len(rows)

    async def page(
        self, where: RequestFilter, limit: int = 100, cursor: str | None = None
    ) -> RequestPage:
        """The newest ``limit`` matching rows (older than ``cursor`` when given), without bodies.
        Raises ``ValueError`` for a bad cursor or limit."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
        conditions = where.where()
        if cursor is not None:
            ts, row_id = decode_cursor(cursor)
            conditions.append(
                and_(RequestLog.ts <= ts, or_(RequestLog.ts < ts, RequestLog.id < row_id))
            )
        query = (
            select(*_LIST_COLUMNS)
            .where(*conditions)
            .order_by(RequestLog.ts.desc(), RequestLog.id.desc())
            .limit(limit + 1)
        )
        async with self._sessions() as session:
            rows = [dict(row._mapping) for row in await session.execute(query)]
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        return RequestPage(rows, encode_cursor(last["ts"], last["id"]) if last else None)

    async def get(self, request_id: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The newest row of ``request_id`` (of ``namespace`` when given), body included."""
        query = select(*_DETAIL_COLUMNS).where(RequestLog.request_id == request_id)
        if namespace is not None:
            query = query.where(RequestLog.namespace == namespace)
        query = query.order_by(RequestLog.ts.desc(), RequestLog.id.desc()).limit(1)
        async with self._sessions() as session:
            row = (await session.execute(query)).first()
        return None if row is None else dict(row._mapping)

    async def purge(self, before_us: int, chunk: int = PURGE_CHUNK, pause: float = 0.0) -> int:
        """Delete every row older than ``before_us``, at most ``chunk`` per transaction;
        returns how many were deleted."""
        deleted = 0
        while True:
            async with self._sessions() as session, session.begin():
                dialect = session.get_bind().dialect.name
                if dialect in ("mysql", "mariadb"):
                    statement = (
                        delete(RequestLog)
                        .where(RequestLog.ts < before_us)
                        .with_dialect_options(mysql_limit=chunk)
                    )
                else:
                    oldest = select(RequestLog.id).where(RequestLog.ts < before_us).limit(chunk)
                    statement = delete(RequestLog).where(RequestLog.id.in_(oldest))
                result = await session.execute(statement)
            count = max(result.rowcount or 0, 0)  # type: ignore[attr-defined]
            deleted += count
            if count < chunk:
                return deleted
            await asyncio.sleep(pause)  # let the other work of this process in between chunks


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not low <= number <= high:
        log.warning(
            "request log: %s=%r is not a number in [%s, %s]; using %s",
            name,
            value,
            low,
            high,
            default,
        )
        return default
    return number


def retention_days_from(env: Mapping[str, str]) -> float:
    """``AIGW_REQUEST_LOG_RETENTION_DAYS``: days rows are kept (0: forever); default 7."""
    return _number(env, RETENTION_ENV, DEFAULT_RETENTION_DAYS, 0, 36_500)


def purge_seconds_from(env: Mapping[str, str]) -> float:
    """``AIGW_REQUEST_LOG_PURGE_SECONDS``: how often old rows are deleted; default 300."""
    return _number(env, PURGE_INTERVAL_ENV, DEFAULT_PURGE_SECONDS, 0.1, 86_400)


class Retention:
    """Deletes rows older than ``days`` every ``interval`` seconds (the first time at start)."""

    def __init__(
        self,
        store: RequestLogStore,
        days: float,
        interval: float = DEFAULT_PURGE_SECONDS,
        *,
        chunk: int = PURGE_CHUNK,
        clock: Callable[[], float] = time.time,
        purged: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.days = days
        self.interval = interval
        self.chunk = chunk
        self._clock = clock
        self._purged = purged
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        if self.days > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="aigw-request-log-retention"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def run_once(self) -> int:
        """Delete what is past the retention period now; returns the number of rows deleted."""
        cutoff = round((self._clock() - self.days * 86_400) * 1_000_000)
        deleted = await self.store.purge(cutoff, self.chunk, pause=0.01)
        if deleted:
            log.info("request log: deleted %d rows older than %s days", deleted, self.days)
            if self._purged is not None:
                self._purged(deleted)
        return deleted

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
                if self._failing:
                    self._failing = False
                    log.warning("request log: retention purge working again")
            except Exception as exc:  # the database is away: next time
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "request log: retention purge failed (%s: %s); retrying every %s s",
                        type(exc).__name__,
                        exc,
                        self.interval,
                    )
            await asyncio.sleep(self.interval)
