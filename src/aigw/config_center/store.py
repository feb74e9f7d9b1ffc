"""Versioned configuration storage: every change is a new, validated, immutable document.

A change is a function applied to a copy of the head document. The result is validated with
the same schema the gateway uses (an invalid change never becomes a version), its provider
credentials are encrypted, and it is inserted as version ``head + 1``. The version is the primary
key, so of two writers racing on the same head exactly one wins; the other either retries on the
new head (a plain change) or gets a :class:`VersionConflict` (a change made with ``If-Match``).
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from aigw.config.loader import validate_config
from aigw.config.schema import canonical_document
from aigw.config.secrets import SecretBox
from aigw.config_center.db.tables import ConfigVersion

Document = dict[str, Any]
# Applies a change to a document in place and returns a short description of it.
Mutation = Callable[[Document], str]

_MAX_RETRIES = 8


class VersionConflict(Exception):
    def __init__(self, expected: int, head: int) -> None:
        super().__init__(f"the configuration is at version {head}, not {expected}")
        self.expected = expected
        self.head = head


class VersionNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class StoredVersion:
    version: int
    created_at: datetime
    actor: str
    action: str
    document: Document  # provider credentials encrypted
    rolled_back_from: int | None = None


class ConfigStore:
    def __init__(self, sessions: async_sessionmaker, box: SecretBox) -> None:  # type: ignore[type-arg]
        self._sessions = sessions
        self.box = box
        self._listeners: list[Callable[[int], None]] = []

    def on_commit(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(version)`` after each successful commit by this process."""
        self._listeners.append(listener)

    async def head_version(self) -> int:
        """The newest version number; 0 before the first change."""
        async with self._sessions() as session:
            return (await session.scalar(select(func.max(ConfigVersion.version)))) or 0

    async def head(self) -> StoredVersion:
        """The newest version (an empty configuration at version 0 before any change)."""
        async with self._sessions() as session:
            row = await session.scalar(
                select(ConfigVersion).order_by(ConfigVersion.version.desc()).limit(1)
            )
        if row is None:
            return StoredVersion(0, datetime.fromtimestamp(0, UTC), "", "empty", {})
        return _stored(row)

    async def get(self, version: int) -> StoredVersion:
        if version == 0:
            return StoredVersion(0, datetime.fromtimestamp(0, UTC), "", "empty", {})
        async with self._sessions() as session:
            row = await session.get(ConfigVersion, version)
        if row is None:
            raise VersionNotFound(f"configuration version {version} does not exist")
        return _stored(row)

    async def history(self, offset: int, limit: int) -> tuple[list[StoredVersion], int]:
        """Versions newest first, without their documents; and the total count."""
        columns = (
            ConfigVersion.version,
            ConfigVersion.created_at,
            ConfigVersion.actor,
            ConfigVersion.action,
            ConfigVersion.rolled_back_from,
        )
        async with self._sessions() as session:
            total = (await session.scalar(select(func.count()).select_from(ConfigVersion))) or 0
            rows = await session.execute(
                select(*columns).order_by(ConfigVersion.version.desc()).offset(offset).limit(limit)
            )
        return [
            StoredVersion(r.version, _utc(r.created_at), r.actor, r.action, {}, r.rolled_back_from)
            for r in rows
        ], total

    async def change(
        self, mutate: Mutation, *, actor: str, expected: int | None = None
    ) -> StoredVersion:
        """Apply ``mutate`` to the head document and store the result as a new version.

        Raises ``ConfigError`` (invalid result), ``VersionConflict`` (``expected`` is not the
        head) or whatever ``mutate`` raises (the resource layer's 404s and 409s).
        """
        for _ in range(_MAX_RETRIES):
            head = await self.head()
            if expected is not None and head.version != expected:
                raise VersionConflict(expected, head.version)
            document = self.box.decrypt_document(copy.deepcopy(head.document))
            action = mutate(document)
            try:
                return await self._insert(head, document, actor, action)
            except VersionConflict:
                if expected is not None:
                    raise
        raise VersionConflict(expected or 0, await self.head_version())

    async def replace(
        self,
        document: Document,
        *,
        actor: str,
        action: str,
        expected: int | None = None,
        rolled_back_from: int | None = None,
    ) -> StoredVersion:
        """Store a whole document (an import or a rollback) as the next version."""
        head = await self.head()
        if expected is not None and head.version != expected:
            raise VersionConflict(expected, head.version)
        return await self._insert(
            head, self.box.decrypt_document(document), actor, action, rolled_back_from
        )

    async def _insert(
        self,
        head: StoredVersion,
        document: Document,
        actor: str,
        action: str,
        rolled_back_from: int | None = None,
    ) -> StoredVersion:
        version = head.version + 1
        canonical = canonical_document(validate_config(document, source="change"))
        stored = self.box.encrypt_document(canonical, previous=head.document)
        row = ConfigVersion(
            version=version,
            created_at=datetime.now(UTC),
            actor=actor[:128],
            action=action[:256],
            document=zlib.compress(orjson.dumps(stored)),
            rolled_back_from=rolled_back_from,
        )
        try:
            async with self._sessions() as session, session.begin():
                session.add(row)
        except IntegrityError:
            raise VersionConflict(version - 1, version) from None
        for listener in self._listeners:
            listener(version)
        return _stored(row)


def _stored(row: ConfigVersion) -> StoredVersion:
    return StoredVersion(
        version=row.version,
        created_at=_utc(row.created_at),
        actor=row.actor,
        action=row.action,
        document=orjson.loads(zlib.decompress(row.document)),
        rolled_back_from=row.rolled_back_from,
    )


def _utc(value: datetime) -> datetime:
    # MySQL and SQLite return naive datetimes for what was stored as UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
