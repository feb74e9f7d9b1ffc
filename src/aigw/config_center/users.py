"""Admin users, their passwords and their session tokens.

Passwords are hashed with Argon2id (argon2-cffi) and never kept, returned or logged in clear.
Hashing is deliberately slow and memory-hungry, so it runs in worker threads, a few at a time:
a burst of sign-ins must neither stall the event loop nor take 64 MiB per request.

Sessions are opaque random tokens (``aigw_sess_…``). Only their SHA-256 is stored, so a copy of
the database does not let anyone sign in, and resolving a token on every admin request is one
indexed lookup. A fast hash is enough here: the token has 256 bits of entropy, unlike a password.

Sign-in is throttled per account: after :attr:`LoginThrottle.max_failures` consecutive failures
the account is locked for a period that doubles with each further failure, up to a cap.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aigw.config_center.auth import ROLES, Principal, Role
from aigw.config_center.db.tables import AdminToken, AdminUser, AuditEvent
from aigw.config_center.errors import (
    ApiError,
    Conflict,
    NotFound,
    TooManyAttempts,
    Unauthenticated,
)

logger = logging.getLogger(__name__)

USERNAME_PATTERN: Final = r"^[A-Za-z0-9._@-]{1,128}$"
# The configuration schema's rule for namespace names (aigw.config.schema).
NAMESPACE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MIN_PASSWORD_LENGTH: Final = 12
# Argon2 accepts anything, but there is no reason to hash megabytes sent by a stranger.
MAX_PASSWORD_LENGTH: Final = 1024
TOKEN_PREFIX: Final = "aigw_sess_"
# auth.py names the holder of the bootstrap token so; a user of that name would blur the audit.
RESERVED_USERNAMES: Final = frozenset({"bootstrap-admin"})
BAD_CREDENTIALS: Final = "invalid username or password"

_USERNAME_RE = re.compile(USERNAME_PATTERN)
_NAMESPACE_RE = re.compile(NAMESPACE_PATTERN)
# Concurrent Argon2 computations (each takes the hasher's memory_cost, 64 MiB by default).
_HASH_CONCURRENCY = 4
_ACTOR_LENGTH = 128  # audit_events.actor


class InvalidUser(ApiError):
    """A user that cannot be stored as asked (bad name, short password, role without namespace)."""

    status = 422
    type = "invalid_request"


class _Unset:
    """Marks an argument the caller did not pass (``None`` is a value: "no namespace")."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """How long an account is locked after repeated failed sign-ins."""

    max_failures: int = 5
    base_lock_seconds: float = 30.0
    max_lock_seconds: float = 15 * 60.0

    def lock_for(self, failures: int) -> timedelta | None:
        """The lock after ``failures`` consecutive failures: none below the threshold, then
        the base period doubling with every further failure, capped."""
        if failures < self.max_failures:
            return None
        doublings = min(failures - self.max_failures, 32)  # 2**32 x base is far past any cap
        seconds = min(self.base_lock_seconds * 2**doublings, self.max_lock_seconds)
        return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class UserInfo:
    """What may be shown of a user: never the password hash."""

    username: str
    role: Role
    namespace: str | None
    disabled: bool
    created_at: datetime
    locked_until: datetime | None


@dataclass(frozen=True, slots=True)
class UserPage:
    items: list[UserInfo]
    total: int


class LoginResult(NamedTuple):
    token: str
    principal: Principal
    expires_at: datetime


def utc(value: datetime) -> datetime:
    """Datetimes are stored in UTC; MySQL and SQLite hand them back naive."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_username(username: str) -> None:
    if not _USERNAME_RE.match(username):
        raise InvalidUser(
            "username must be 1-128 characters of letters, digits, '.', '_', '@' or '-'",
            details=[{"field": "username", "message": "invalid username"}],
        )
    if username in RESERVED_USERNAMES:
        raise InvalidUser(
            f"the username '{username}' is reserved",
            details=[{"field": "username", "message": "reserved username"}],
        )


def check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidUser(
            f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
            details=[{"field": "password", "message": "invalid length"}],
        )


def check_role(role: str, namespace: str | None) -> Role:
    """A namespace admin manages exactly one namespace; other roles have none."""
    if role not in ROLES:
        raise InvalidUser(
            f"role must be one of {', '.join(ROLES)}",
            details=[{"field": "role", "message": "unknown role"}],
        )
    if role == "namespace_admin":
        if namespace is None:
            raise InvalidUser(
                "a namespace_admin needs a namespace",
                details=[{"field": "namespace", "message": "required for namespace_admin"}],
            )
        if not _NAMESPACE_RE.match(namespace):
            raise InvalidUser(
                "namespace must be 1-128 characters of letters, digits, '.', '_', ':' or '-', "
                "starting with a letter or digit",
                details=[{"field": "namespace", "message": "invalid namespace name"}],
            )
    elif namespace is not None:
        raise InvalidUser(
            "only a namespace_admin has a namespace",
            details=[{"field": "namespace", "message": f"not allowed for role {role}"}],
        )
    return cast(Role, role)


def _info(user: AdminUser) -> UserInfo:
    return UserInfo(
        username=user.username,
        role=cast(Role, user.role),
        namespace=user.namespace,
        disabled=user.disabled,
        created_at=utc(user.created_at),
        locked_until=utc(user.locked_until) if user.locked_until else None,
    )


def _now() -> datetime:
    return datetime.now(UTC)


class UserService:
    """Admin users and sessions, on the config center's database."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        session_ttl_seconds: int,
        *,
        hasher: PasswordHasher | None = None,
        throttle: LoginThrottle | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._sessions = sessions
        self._ttl = timedelta(seconds=session_ttl_seconds)
        self._hasher = hasher or PasswordHasher()
        self.throttle = throttle or LoginThrottle()
        self._clock = clock
        self._hashing = asyncio.Semaphore(_HASH_CONCURRENCY)
        # Verified when the username is unknown, so that answer takes as long as a wrong password
        # and sign-in cannot be used to find out which usernames exist.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    # -- users -----------------------------------------------------------------------------

    async def create_user(
        self,
        username: str,
        password: str,
        role: str,
        namespace: str | None = None,
        *,
        actor: str,
    ) -> UserInfo:
        check_username(username)
        check_password(password)
        checked_role = check_role(role, namespace)
        password_hash = await self._hash(password)
        now = self._clock()
        async with self._sessions() as session:
            user = AdminUser(
                username=username,
                password_hash=password_hash,
                role=checked_role,
                namespace=namespace,
                disabled=False,
                failed_logins=0,
                locked_until=None,
                created_at=now,
            )
            session.add(user)
            _audit(session, now, actor, "user.create", f"{username} role={role} ns={namespace}")
            try:
                await session.commit()
            except IntegrityError:
                raise Conflict(f"user '{username}' already exists") from None
            return _info(user)

    async def list_users(self, offset: int = 0, limit: int = 100) -> UserPage:
        async with self._sessions() as session:
            total = await session.scalar(select(func.count()).select_from(AdminUser)) or 0
            rows = await session.scalars(
                select(AdminUser).order_by(AdminUser.username).offset(offset).limit(limit)
            )
            return UserPage([_info(u) for u in rows], total)

    async def get_user(self, username: str) -> UserInfo:
        async with self._sessions() as session:
            return _info(await _user(session, username))

    async def update_user(
        self,
        username: str,
        *,
        actor: str,
        role: str | _Unset = UNSET,
        namespace: str | _Unset | None = UNSET,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> UserInfo:
        """Change a user. A new password or disabling ends the user's sessions and lock; a
        change that would leave no enabled admin is refused (409)."""
        password_hash: str | None = None
        if password is not None:
            check_password(password)
            # Hashed before the transaction, so row locks are not held for ~100 ms.
            password_hash = await self._hash(password)
        now = self._clock()
        async with self._sessions() as session, session.begin():
            enabled_admins = await _lock_enabled_admins(session)
            user = await _user(session, username, for_update=True)
            new_role = user.role if isinstance(role, _Unset) else role
            new_namespace = _next_namespace(user, new_role, namespace)
            check_role(new_role, new_namespace)
            will_be_admin = new_role == "admin" and not (
                user.disabled if disabled is None else disabled
            )
            if user.id in enabled_admins and not will_be_admin and len(enabled_admins) == 1:
                raise Conflict(f"'{username}' is the last enabled admin: add another one first")
            changes = _describe(user, new_role, new_namespace, disabled, password is not None)
            user.role, user.namespace = new_role, new_namespace
            if disabled is not None:
                user.disabled = disabled
            if password_hash is not None:
                user.password_hash = password_hash
                user.failed_logins, user.locked_until = 0, None
            if password is not None or disabled:
                await session.execute(delete(AdminToken).where(AdminToken.user_id == user.id))
            _audit(session, now, actor, "user.update", f"{username}: {changes or 'no change'}")
        return _info(user)

    async def delete_user(self, username: str, *, actor: str) -> None:
        """Delete a user and their sessions; the last enabled admin cannot be deleted (409)."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            enabled_admins = await _lock_enabled_admins(session)
            user = await _user(session, username, for_update=True)
            if user.id in enabled_admins and len(enabled_admins) == 1:
                raise Conflict(f"'{username}' is the last enabled admin: add another one first")
            # Explicitly: SQLite enforces ON DELETE CASCADE only with PRAGMA foreign_keys.
            await session.execute(delete(AdminToken).where(AdminToken.user_id == user.id))
            await session.delete(user)
            _audit(session, now, actor, "user.delete", username)

    # -- sessions --------------------------------------------------------------------------

    async def login(self, username: str, password: str) -> LoginResult:
        """Check a password and open a session; 401 with one message for every bad
        credential, 429 (with ``Retry-After``) while the account is locked.

        A locked account answers 429 without checking the password, so guessing stops during
        the lock. That answer does reveal that the account exists, to someone willing to
        spend five failures on it: the price of a per-account lock.
        """
        now = self._clock()
        async with self._sessions() as session:
            user = await session.scalar(select(AdminUser).where(AdminUser.username == username))
        if user is None:
            await self._verify(self._dummy_hash, password)
            # The attempted name is not recorded: people type their password there by mistake.
            await self._record("anonymous", "login.failure", "unknown username", now)
            raise Unauthenticated(BAD_CREDENTIALS)
        if user.locked_until is not None and utc(user.locked_until) > now:
            await self._record(user.username, "login.refused", "account locked", now)
            raise _locked(utc(user.locked_until) - now)
        if not await self._verify(user.password_hash, password):
            await self._fail(user, now)
            raise Unauthenticated(BAD_CREDENTIALS)
        if user.disabled:
            await self._record(user.username, "login.failure", "user disabled", now)
            raise Unauthenticated(BAD_CREDENTIALS)
        return await self._open_session(user, password, now)

    async def principal_for_token(self, token: str) -> Principal | None:
        """The signed-in user a session token belongs to; ``None`` if it is unknown, expired
        or its user disabled. One indexed query: this runs on every admin request.

        The database compares SHA-256 digests, not tokens, so its non-constant-time comparison
        reveals nothing about a valid token.
        """
        if not token.startswith(TOKEN_PREFIX):
            return None
        query = (
            select(
                AdminUser.username,
                AdminUser.role,
                AdminUser.namespace,
                AdminUser.disabled,
                AdminToken.expires_at,
            )
            .join(AdminUser, AdminUser.id == AdminToken.user_id)
            .where(AdminToken.token_hash == hash_token(token))
        )
        async with self._sessions() as session:
            row = (await session.execute(query)).first()
        if row is None or row.disabled or utc(row.expires_at) <= self._clock():
            return None
        return Principal(row.username, cast(Role, row.role), row.namespace)

    async def logout(self, token: str) -> bool:
        """End the session of ``token``; ``False`` if there was none (already ended, or the
        bootstrap token, which is not a session)."""
        digest = hash_token(token)
        now = self._clock()
        async with self._sessions() as session, session.begin():
            username = await session.scalar(
                select(AdminUser.username)
                .join(AdminToken, AdminToken.user_id == AdminUser.id)
                .where(AdminToken.token_hash == digest)
            )
            if username is None:
                return False
            await session.execute(delete(AdminToken).where(AdminToken.token_hash == digest))
            _audit(session, now, username, "logout", "")
        return True

    # -- internals -------------------------------------------------------------------------

    async def _open_session(self, user: AdminUser, password: str, now: datetime) -> LoginResult:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = now + self._ttl
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        if self._hasher.check_needs_rehash(user.password_hash):
            values["password_hash"] = await self._hash(password)
        async with self._sessions() as session, session.begin():
            await session.execute(update(AdminUser).where(AdminUser.id == user.id).values(values))
            # Expired sessions of this user are swept here rather than by a background job.
            await session.execute(
                delete(AdminToken).where(
                    AdminToken.user_id == user.id, AdminToken.expires_at <= now
                )
            )
            session.add(
                AdminToken(
                    token_hash=hash_token(token),
                    user_id=user.id,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            _audit(session, now, user.username, "login.success", "")
        principal = Principal(user.username, cast(Role, user.role), user.namespace)
        return LoginResult(token, principal, expires_at)

    async def _fail(self, user: AdminUser, now: datetime) -> None:
        """Count a failed sign-in (atomically: concurrent guesses all count) and lock the
        account once the throttle says so."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(AdminUser)
                .where(AdminUser.id == user.id)
                .values(failed_logins=AdminUser.failed_logins + 1)
            )
            failures = await session.scalar(
                select(AdminUser.failed_logins).where(AdminUser.id == user.id)
            )
            lock = self.throttle.lock_for(failures or 0)
            detail = "wrong password"
            if lock is not None:
                await session.execute(
                    update(AdminUser).where(AdminUser.id == user.id).values(locked_until=now + lock)
                )
                detail += f"; locked for {lock.total_seconds():g} s after {failures} failures"
            _audit(session, now, user.username, "login.failure", detail)

    async def _record(self, actor: str, action: str, detail: str, now: datetime) -> None:
        async with self._sessions() as session, session.begin():
            _audit(session, now, actor, action, detail)

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._hashing:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except VerificationError:  # includes VerifyMismatchError
                return False
            except InvalidHashError:
                logger.error("a stored admin password hash is malformed; that user cannot sign in")
                return False


async def _user(session: AsyncSession, username: str, *, for_update: bool = False) -> AdminUser:
    query = select(AdminUser).where(AdminUser.username == username)
    if for_update:
        query = query.with_for_update()
    user = await session.scalar(query)
    if user is None:
        raise NotFound(f"user '{username}' does not exist")
    return user


async def _lock_enabled_admins(session: AsyncSession) -> set[int]:
    """The ids of enabled admins, their rows locked (PostgreSQL, MySQL) until the transaction
    ends, so two concurrent demotions cannot both see "another admin remains"."""
    rows: Sequence[int] = (
        await session.scalars(
            select(AdminUser.id)
            .where(AdminUser.role == "admin", AdminUser.disabled.is_(False))
            .with_for_update()
        )
    ).all()
    return set(rows)


def _next_namespace(user: AdminUser, new_role: str, namespace: str | _Unset | None) -> str | None:
    """The namespace after an update: kept while the user stays a namespace admin, dropped
    when they stop being one (unless the caller explicitly sets one, which check_role refuses)."""
    if not isinstance(namespace, _Unset):
        return namespace
    return user.namespace if new_role == "namespace_admin" else None


def _describe(
    user: AdminUser,
    role: str,
    namespace: str | None,
    disabled: bool | None,
    password_changed: bool,
) -> str:
    """The audit detail of an update: which fields changed (a password only as "changed")."""
    changes = []
    if role != user.role:
        changes.append(f"role {user.role}->{role}")
    if namespace != user.namespace:
        changes.append(f"ns {user.namespace}->{namespace}")
    if disabled is not None and disabled != user.disabled:
        changes.append("disabled" if disabled else "enabled")
    if password_changed:
        changes.append("password changed")
    return ", ".join(changes)


def _audit(session: AsyncSession, at: datetime, actor: str, action: str, detail: str) -> None:
    session.add(AuditEvent(at=at, actor=actor[:_ACTOR_LENGTH], action=action, detail=detail))


def _locked(remaining: timedelta) -> TooManyAttempts:
    seconds = max(1, math.ceil(remaining.total_seconds()))
    return TooManyAttempts(
        f"too many failed sign-ins: try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )
