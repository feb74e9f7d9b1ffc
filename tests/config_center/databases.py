"""Empty, throw-away databases on SQLite, MariaDB and PostgreSQL for config-center tests.

``database_fixture()`` makes a fixture, parametrised over the three backends (ids ``sqlite``,
``mariadb``, ``postgresql``), that yields the URL of a brand-new empty database and drops it
afterwards. Import one into a ``conftest.py`` to run every test that requests it on all three::

    database_url = database_fixture()  # one database per test module and backend

MariaDB and PostgreSQL are expected on 127.0.0.1 (this machine and CI run them): a server that is
not reachable FAILS the tests, with the command that starts it. It never skips them.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncmy
import asyncpg
import pytest

BACKENDS = ("sqlite", "mariadb", "postgresql")

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
POSTGRESQL = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
# Databases the PostgreSQL admin connection may use to run CREATE/DROP DATABASE.
POSTGRESQL_ADMIN_DATABASES = ("test", "postgres")
CONNECT_TIMEOUT = 5.0

START_COMMANDS = {
    "mariadb": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    "postgresql": ("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"),
}


class DatabaseUnavailable(Exception):
    pass


def _unavailable(backend: str, address: dict[str, Any], exc: BaseException) -> DatabaseUnavailable:
    name = "MariaDB" if backend == "mariadb" else "PostgreSQL"
    return DatabaseUnavailable(
        f"{name} is not reachable on {address['host']}:{address['port']} as "
        f"{address['user']!r} ({type(exc).__name__}: {exc}). The config-center tests need it: "
        f"start it with `{START_COMMANDS[backend]}` (or run scripts/ensure-services.sh)."
    )


def _run(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run admin coroutines on their own loop, in a thread, away from pytest-asyncio's loops."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


async def _mariadb(statement: str) -> None:
    try:
        connection = await asyncio.wait_for(
            asyncmy.connect(**MARIADB, connect_timeout=CONNECT_TIMEOUT), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError, asyncmy.errors.Error) as exc:
        raise _unavailable("mariadb", MARIADB, exc) from exc
    try:
        async with connection.cursor() as cursor:
            await cursor.execute(statement)
    finally:
        await connection.ensure_closed()


async def _postgresql(statement: str) -> None:
    error: BaseException | None = None
    for database in POSTGRESQL_ADMIN_DATABASES:
        try:
            connection = await asyncpg.connect(
                **POSTGRESQL, database=database, timeout=CONNECT_TIMEOUT
            )
        except asyncpg.InvalidCatalogNameError as exc:  # no such admin database: try the next
            error = exc
            continue
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise _unavailable("postgresql", POSTGRESQL, exc) from exc
        try:
            await connection.execute(statement)
        finally:
            await connection.close()
        return
    assert error is not None
    raise _unavailable("postgresql", POSTGRESQL, error)


@contextmanager
def empty_database(backend: str, directory: Path) -> Iterator[str]:
    """Create an empty database on ``backend``, yield its URL, and drop it afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'x.db'}"
        return
    name = f"aigw_t_{secrets.token_hex(6)}"
    if backend == "mariadb":
        create = lambda: _mariadb(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")  # noqa: E731
        drop = lambda: _mariadb(f"DROP DATABASE `{name}`")  # noqa: E731
        url = f"mysql://{MARIADB['user']}@{MARIADB['host']}:{MARIADB['port']}/{name}"
    elif backend == "postgresql":
        create = lambda: _postgresql(f'CREATE DATABASE "{name}"')  # noqa: E731
        # FORCE: a connection a failed test leaked must not keep the database alive.
        drop = lambda: _postgresql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # noqa: E731
        url = f"postgresql://{POSTGRESQL['user']}@{POSTGRESQL['host']}:{POSTGRESQL['port']}/{name}"
    else:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if problem := _attempt(create):
        pytest.fail(problem, pytrace=False)
    try:
        yield url
    finally:
        if problem := _attempt(drop):
            pytest.fail(f"could not drop test database {name}: {problem}", pytrace=False)


def _attempt(make: Callable[[], Coroutine[Any, Any, Any]]) -> str | None:
    """Run an admin statement; the reason it could not reach the server, if it could not."""
    try:
        _run(make)
    except DatabaseUnavailable as exc:
        return str(exc)
    return None


def database_fixture(scope: str = "module", name: str = "database_url") -> Any:
    """A fixture yielding an empty database URL, parametrised over :data:`BACKENDS`.

    The default gives each test module its own database per backend; ``scope="function"`` gives
    each test its own (creating one costs a few milliseconds on MariaDB and ~50 ms on PostgreSQL).
    """

    @pytest.fixture(scope=scope, params=BACKENDS, name=name)  # type: ignore[call-overload]
    def _database_url(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[str]:
        backend = request.param
        with empty_database(backend, tmp_path_factory.mktemp(backend)) as url:
            yield url

    return _database_url
