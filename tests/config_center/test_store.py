"""ConfigStore on SQLite, MariaDB and PostgreSQL: versions, validation, races, encryption."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from aigw.config.keys import hash_key
from aigw.config.loader import ConfigError
from aigw.config.secrets import ENCRYPTED_PREFIX, SecretBox, SecretError
from aigw.config_center.db.engine import MIGRATIONS, make_engine, migrate, sessions
from aigw.config_center.store import (
    ConfigStore,
    Document,
    Mutation,
    StoredVersion,
    VersionConflict,
    VersionNotFound,
)
from tests.config_center.databases import database_fixture

# Every test here needs an empty store, so each gets its own database on each backend
# (overriding conftest's one-per-module `database_url`).
database_url = database_fixture(scope="function")

MASTER_KEY = "config-center-test-master-key"
SECRET = "sk-live-PLAINTEXT-credential-0123456789abcdef"
OTHER_SECRET = "sk-live-ROTATED-credential-9876543210fedcba"
# Timestamps: microseconds everywhere since DATETIME(6) on MariaDB; slack for slow machines.
CLOCK_SLACK = timedelta(seconds=2)
APP_TABLES = {
    "admin_users",
    "admin_tokens",
    "audit_events",
    "config_versions",
    "usage_daily",
    "request_log",
    "usage_batches",
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> ConfigStore:
    return ConfigStore(sessions(engine), SecretBox(MASTER_KEY))


# --- mutations -------------------------------------------------------------------------------


def add_provider(name: str, api_key: str | None = SECRET) -> Mutation:
    def mutate(document: Document) -> str:
        provider: dict[str, Any] = {"name": name, "base_url": f"https://{name}.example.com/v1"}
        if api_key is not None:
            provider["api_key"] = api_key
        document.setdefault("providers", []).append(provider)
        return f"add provider {name}"

    return mutate


def add_model(name: str, provider: str) -> Mutation:
    def mutate(document: Document) -> str:
        document.setdefault("models", []).append(
            {"name": name, "targets": [{"provider": provider, "model": name}]}
        )
        return f"add model {name}"

    return mutate


def set_api_key(provider: str, api_key: str) -> Mutation:
    def mutate(document: Document) -> str:
        [entry] = [p for p in document["providers"] if p["name"] == provider]
        entry["api_key"] = api_key
        return f"rotate {provider} key"

    return mutate


async def raw_document(engine: AsyncEngine, version: int) -> bytes:
    """The stored bytes of a version, decompressed, read without the store or the ORM."""
    async with engine.connect() as connection:
        blob = await connection.scalar(
            text("SELECT document FROM config_versions WHERE version = :v"), {"v": version}
        )
    assert blob is not None, f"no row for version {version}"
    return zlib.decompress(blob)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


async def count_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return (await connection.scalar(text("SELECT COUNT(*) FROM config_versions"))) or 0


def assert_utc(moment: datetime) -> None:
    assert moment.tzinfo is not None, f"{moment!r} is naive"
    assert moment.utcoffset() == timedelta(0), f"{moment!r} is not UTC"


# --- schema ----------------------------------------------------------------------------------


async def test_migrations_apply_on_empty_database_and_are_idempotent(database_url: str) -> None:
    head_revision = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    engine = make_engine(database_url)
    try:
        assert await table_names(engine) == set()

        await migrate(engine)
        assert await table_names(engine) == APP_TABLES | {"alembic_version"}
        store = ConfigStore(sessions(engine), SecretBox(MASTER_KEY))
        await store.change(add_provider("openai"), actor="alice")

        await migrate(engine)  # a second run (a restart, another instance) changes nothing
        assert await table_names(engine) == APP_TABLES | {"alembic_version"}
        async with engine.connect() as connection:
            revisions = await connection.execute(text("SELECT version_num FROM alembic_version"))
            assert [r[0] for r in revisions] == [head_revision]
        assert await store.head_version() == 1
    finally:
        await engine.dispose()


async def test_instances_migrating_an_empty_database_together_both_succeed(
    database_url: str,
) -> None:
    engines = [make_engine(database_url) for _ in range(2)]
    try:
        # Without the migration lock one failed ("table already exists") or both hung.
        await asyncio.wait_for(asyncio.gather(*(migrate(e) for e in engines)), timeout=60)
        assert await table_names(engines[0]) == APP_TABLES | {"alembic_version"}
        await migrate(engines[1])  # and the lock was released
    finally:
        for engine in engines:
            await engine.dispose()


# --- versions --------------------------------------------------------------------------------


async def test_empty_store_is_at_version_zero(store: ConfigStore) -> None:
    assert await store.head_version() == 0
    head = await store.head()
    assert head.version == 0
    assert head.document == {}  # the canonical form of an empty configuration
    assert (await store.get(0)).version == 0
    assert await store.history(0, 10) == ([], 0)
    with pytest.raises(VersionNotFound):
        await store.get(1)


async def test_changes_create_monotonic_versions(store: ConfigStore) -> None:
    committed: list[int] = []
    store.on_commit(committed.append)
    before = datetime.now(UTC)

    v1 = await store.change(add_provider("openai"), actor="alice")
    v2 = await store.change(add_model("gpt-4o", "openai"), actor="bob")
    v3 = await store.change(add_model("gpt-4o-mini", "openai"), actor="carol")

    after = datetime.now(UTC)
    assert [v.version for v in (v1, v2, v3)] == [1, 2, 3]
    assert committed == [1, 2, 3]
    assert await store.head_version() == 3
    assert (await store.head()).version == 3

    stored = [await store.get(n) for n in (1, 2, 3)]
    assert [(s.actor, s.action) for s in stored] == [
        ("alice", "add provider openai"),
        ("bob", "add model gpt-4o"),
        ("carol", "add model gpt-4o-mini"),
    ]
    for returned, read in zip((v1, v2, v3), stored, strict=True):
        assert_utc(returned.created_at)
        assert_utc(read.created_at)
        assert before - CLOCK_SLACK <= read.created_at <= after + CLOCK_SLACK
        assert abs(read.created_at - returned.created_at) < CLOCK_SLACK
        assert read.document == returned.document
        assert read.rolled_back_from is None
    assert stored[0].created_at <= stored[1].created_at <= stored[2].created_at
    # Each version builds on the previous one.
    assert [m["name"] for m in stored[2].document["models"]] == ["gpt-4o", "gpt-4o-mini"]


async def test_invalid_change_raises_config_error_and_creates_no_version(
    store: ConfigStore, engine: AsyncEngine
) -> None:
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        await store.change(add_model("gpt-4o", "nope"), actor="alice")
    assert await store.head_version() == 0

    await store.change(add_provider("openai"), actor="alice")
    head = await store.head()
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        await store.change(add_model("gpt-4o", "nope"), actor="alice")

    def broken(document: Document) -> str:
        document["providers"] = "not a list"
        raise LookupError("the resource layer's 404")

    with pytest.raises(LookupError):
        await store.change(broken, actor="alice")

    assert await store.head_version() == 1
    assert await count_rows(engine) == 1
    assert (await store.head()).document == head.document


async def test_expected_version_mismatch_raises_version_conflict(store: ConfigStore) -> None:
    await store.change(add_provider("openai"), actor="alice")

    with pytest.raises(VersionConflict) as stale:
        await store.change(add_model("gpt-4o", "openai"), actor="bob", expected=0)
    assert (stale.value.expected, stale.value.head) == (0, 1)
    with pytest.raises(VersionConflict) as ahead:
        await store.change(add_model("gpt-4o", "openai"), actor="bob", expected=5)
    assert (ahead.value.expected, ahead.value.head) == (5, 1)
    assert await store.head_version() == 1

    v2 = await store.change(add_model("gpt-4o", "openai"), actor="bob", expected=1)
    assert v2.version == 2


# --- races -----------------------------------------------------------------------------------


class RacingStore(ConfigStore):
    """Waits, after its first read of the head, until the other store has read it too.

    So both stores really base their change on the same head and race to insert the same version.
    """

    def __init__(
        self,
        sessions: async_sessionmaker,  # type: ignore[type-arg]
        barrier: asyncio.Barrier,
    ) -> None:
        super().__init__(sessions, SecretBox(MASTER_KEY))
        self.barrier = barrier
        self.head_reads = 0

    async def head(self) -> StoredVersion:
        head = await super().head()
        self.head_reads += 1
        if self.head_reads == 1:
            await asyncio.wait_for(self.barrier.wait(), timeout=20)
        return head


@dataclass
class RaceOutcome:
    results: list[Any]  # a StoredVersion or the exception, per call
    head_reads: list[int]  # per store: 1 = no retry
    head: StoredVersion
    total: int


async def race(
    database_url: str, make_calls: Callable[[RacingStore, RacingStore], list[Any]]
) -> RaceOutcome:
    """Run two changes at once, through two stores on two engines, on the same empty head."""
    engines = [make_engine(database_url) for _ in range(3)]
    try:
        await migrate(engines[0])
        barrier = asyncio.Barrier(2)
        stores = [RacingStore(sessions(e), barrier) for e in engines[:2]]
        results = await asyncio.gather(*make_calls(*stores), return_exceptions=True)
        # Read the outcome through a third, independent engine.
        observer = ConfigStore(sessions(engines[2]), SecretBox(MASTER_KEY))
        _, total = await observer.history(0, 10)
        return RaceOutcome(
            list(results), [s.head_reads for s in stores], await observer.head(), total
        )
    finally:
        for engine in engines:
            await engine.dispose()


async def test_concurrent_changes_without_expected_both_succeed(database_url: str) -> None:
    outcome = await race(
        database_url,
        lambda a, b: [
            a.change(add_provider("alpha"), actor="alice"),
            b.change(add_provider("beta"), actor="bob"),
        ],
    )
    for result in outcome.results:
        if isinstance(result, BaseException):
            raise result
    assert sorted(r.version for r in outcome.results) == [1, 2]
    # The loser retried once, on the winner's version, and kept the winner's change.
    assert sorted(outcome.head_reads) == [1, 2]
    assert outcome.total == 2
    assert outcome.head.version == 2
    assert sorted(p["name"] for p in outcome.head.document["providers"]) == ["alpha", "beta"]


async def test_concurrent_changes_with_same_expected_exactly_one_wins(database_url: str) -> None:
    outcome = await race(
        database_url,
        lambda a, b: [
            a.change(add_provider("alpha"), actor="alice", expected=0),
            b.change(add_provider("beta"), actor="bob", expected=0),
        ],
    )
    winners = [r for r in outcome.results if isinstance(r, StoredVersion)]
    losers = [r for r in outcome.results if isinstance(r, VersionConflict)]
    assert len(winners) == 1 and len(losers) == 1, outcome.results
    assert winners[0].version == 1
    assert (losers[0].expected, losers[0].head) == (0, 1)
    assert outcome.head_reads == [1, 1]  # no retry with If-Match
    assert outcome.total == 1
    assert outcome.head.version == 1
    assert outcome.head.document["providers"] == winners[0].document["providers"]


# --- credentials -----------------------------------------------------------------------------


async def test_provider_api_key_is_stored_encrypted(
    store: ConfigStore, engine: AsyncEngine
) -> None:
    v1 = await store.change(add_provider("openai"), actor="alice")

    raw = await raw_document(engine, 1)
    assert SECRET.encode() not in raw
    stored_key = orjson.loads(raw)["providers"][0]["api_key"]
    assert stored_key.startswith(ENCRYPTED_PREFIX)
    assert store.box.decrypt(stored_key) == SECRET
    with pytest.raises(SecretError):
        SecretBox("another master key").decrypt(stored_key)
    # What the store hands out is encrypted too.
    assert v1.document["providers"][0]["api_key"] == stored_key
    assert (await store.get(1)).document["providers"][0]["api_key"] == stored_key

    # Unchanged credential: the same ciphertext in the next version, byte for byte.
    await store.change(add_model("gpt-4o", "openai"), actor="alice")
    raw2 = await raw_document(engine, 2)
    assert SECRET.encode() not in raw2
    assert orjson.loads(raw2)["providers"][0]["api_key"] == stored_key

    # Changed credential: new ciphertext, still no plaintext.
    await store.change(set_api_key("openai", OTHER_SECRET), actor="alice")
    raw3 = await raw_document(engine, 3)
    assert OTHER_SECRET.encode() not in raw3 and SECRET.encode() not in raw3
    rotated = orjson.loads(raw3)["providers"][0]["api_key"]
    assert rotated != stored_key
    assert store.box.decrypt(rotated) == OTHER_SECRET


# --- reading and replacing -------------------------------------------------------------------


async def test_get_and_history(store: ConfigStore) -> None:
    changes = [
        (add_provider("openai"), "alice"),
        (add_model("m1", "openai"), "bob"),
        (add_model("m2", "openai"), "carol"),
        (add_model("m3", "openai"), "dave"),
        (add_model("m4", "openai"), "erin"),
    ]
    written = [await store.change(mutate, actor=actor) for mutate, actor in changes]

    for version in written:
        got = await store.get(version.version)
        assert (got.version, got.actor, got.action) == (
            version.version,
            version.actor,
            version.action,
        )
        assert got.document == version.document
    with pytest.raises(VersionNotFound):
        await store.get(6)

    page, total = await store.history(0, 2)
    assert total == 5
    assert [(v.version, v.actor) for v in page] == [(5, "erin"), (4, "dave")]
    assert all(v.document == {} for v in page)  # history leaves the documents out
    for v in page:
        assert_utc(v.created_at)
    page, total = await store.history(2, 2)
    assert [v.version for v in page] == [3, 2] and total == 5
    page, total = await store.history(4, 10)
    assert [v.version for v in page] == [1] and total == 5
    assert await store.history(10, 10) == ([], 5)


async def test_replace(store: ConfigStore, engine: AsyncEngine) -> None:
    v1 = await store.change(add_provider("openai"), actor="alice")
    await store.change(add_model("gpt-4o", "openai"), actor="alice")
    await store.change(set_api_key("openai", OTHER_SECRET), actor="alice")

    # A rollback: an earlier, encrypted document stored again as the next version.
    v4 = await store.replace(
        (await store.get(1)).document, actor="bob", action="rollback to 1", rolled_back_from=1
    )
    assert (v4.version, v4.actor, v4.action, v4.rolled_back_from) == (
        4,
        "bob",
        "rollback to 1",
        1,
    )
    assert store.box.decrypt_document(v4.document) == store.box.decrypt_document(v1.document)
    assert SECRET.encode() not in await raw_document(engine, 4)
    [latest], _ = await store.history(0, 1)
    assert (latest.version, latest.rolled_back_from) == (4, 1)

    # An import: a plaintext document, encrypted on the way in.
    imported = {
        "providers": [
            {"name": "vllm", "base_url": "http://vllm.local:8000/v1", "api_key": OTHER_SECRET}
        ],
        "models": [{"name": "llama", "targets": [{"provider": "vllm", "model": "llama"}]}],
    }
    v5 = await store.replace(imported, actor="carol", action="import", expected=4)
    assert v5.version == 5 and v5.rolled_back_from is None
    assert OTHER_SECRET.encode() not in await raw_document(engine, 5)
    assert store.box.decrypt_document(v5.document) == imported

    with pytest.raises(VersionConflict):
        await store.replace(imported, actor="carol", action="import", expected=4)
    invalid = {
        **imported,
        "models": [{"name": "x", "targets": [{"provider": "nope", "model": "x"}]}],
    }
    with pytest.raises(ConfigError):
        await store.replace(invalid, actor="carol", action="import")
    assert await store.head_version() == 5


async def test_large_document_round_trips(store: ConfigStore, engine: AsyncEngine) -> None:
    keys = [{"name": f"key-{i}", "key_hash": hash_key(f"sk-aigw-test-{i}")} for i in range(2000)]

    def add_namespace(document: Document) -> str:
        document["namespaces"] = [{"name": "big", "keys": keys}]
        return "add 2000 keys"

    v1 = await store.change(add_namespace, actor="alice")
    async with engine.connect() as connection:
        blob = await connection.scalar(text("SELECT document FROM config_versions"))
    # Bigger than MySQL's plain BLOB even compressed, so a truncating column would show.
    assert len(blob) > 64 * 1024
    got = await store.get(1)
    assert got.document == v1.document
    assert got.document["namespaces"][0]["keys"] == keys

    if engine.dialect.name == "mysql":
        async with engine.connect() as connection:
            column_type = await connection.scalar(
                text(
                    "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                    "DATABASE() AND TABLE_NAME = 'config_versions' AND COLUMN_NAME = 'document'"
                )
            )
        assert column_type.lower() == "longblob"
