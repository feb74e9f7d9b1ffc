"""Database engines and schema migrations (Alembic, applied on start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"

# Users write the URL they know; the async driver is ours to pick.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def async_url(url: str) -> str:
    """``mysql://…`` → ``mysql+asyncmy://…`` and so on; explicit drivers are kept."""
    parsed = make_url(url)
    if "+" not in parsed.drivername:
        driver = _ASYNC_DRIVERS.get(parsed.drivername)
        if driver is None:
            raise ValueError(
                f"unsupported database {parsed.drivername!r}: "
                "use sqlite, mysql/mariadb or postgresql"
            )
        parsed = parsed.set(drivername=driver)
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return create_async_engine(url, connect_args={"timeout": 30})
    return create_async_engine(url, pool_pre_ping=True, pool_recycle=1800)


def sessions(engine: AsyncEngine) -> async_sessionmaker:  # type: ignore[type-arg]
    return async_sessionmaker(engine, expire_on_commit=False)


# Instances starting together on an empty database would both create the tables (and one fail,
# on the databases without transactional DDL), so migrations run under a per-database lock.
_MIGRATION_LOCK_SECONDS = 600
_PG_MIGRATION_LOCK = 0x61696777  # "aigw"; advisory locks are per database
_MYSQL_MIGRATION_LOCK = "LEFT(CONCAT('aigw-migrate:', DATABASE()), 64)"  # GET_LOCK is server-wide


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration (idempotent; safe with several instances)."""
    async with engine.connect() as connection:
        dialect = connection.dialect.name
        if dialect == "mysql":
            # MySQL commits DDL implicitly, so this is a session lock, released below.
            locked = await connection.scalar(
                text(f"SELECT GET_LOCK({_MYSQL_MIGRATION_LOCK}, :seconds)"),
                {"seconds": _MIGRATION_LOCK_SECONDS},
            )
            await connection.commit()
            if locked != 1:
                raise RuntimeError("timed out waiting for another instance's schema migration")
        try:
            if dialect == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            elif dialect == "sqlite":
                await connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, now
            await connection.run_sync(_upgrade)
            await connection.commit()
        finally:
            if dialect == "mysql":
                await connection.rollback()
                await connection.execute(text(f"SELECT RELEASE_LOCK({_MYSQL_MIGRATION_LOCK})"))
                await connection.commit()


def _upgrade(connection: Connection) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
