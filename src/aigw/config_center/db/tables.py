"""The config center's tables (SQLAlchemy 2). Alembic migrations in ``migrations/`` create them.

The gateway configuration is stored as whole, immutable documents, one row per version: a change
is a new row whose primary key is the previous head plus one, so two concurrent writers can never
both commit on the same base (the second insert violates the key and gets a 409), on SQLite,
MySQL/MariaDB and PostgreSQL alike, without locks. Rollback, diff and export then fall out of it.
Admin users and their sessions are control-plane data, not gateway configuration, and live in
their own tables. ``usage_daily`` is the durable accounting ledger (see
``config_center/accounting.py``): one row of additive counters per UTC day, namespace and model.
``request_log`` holds one row per request the gateways served (``config_center/request_log.py``),
kept for a retention period. ``usage_batches`` names the usage batches already added to the
ledger, so that a batch sent again is added once.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations behave the same on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# MySQL's plain BLOB stops at 64 KiB; a configuration document can be larger.
Blob = LargeBinary(length=2**31 - 1)
# MySQL/MariaDB keep whole seconds unless asked for microseconds.
Timestamp = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def name_type(length: int) -> String:
    """A name compared byte for byte: MySQL/MariaDB's default collations ignore case, which
    would merge "GPT-4o" and "gpt-4o" in a key. The limits keep a three-part key of names within
    InnoDB's 3,072 bytes in utf8mb4."""
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ConfigVersion(Base):
    __tablename__ = "config_versions"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(256))
    # zlib-compressed JSON of the whole document (provider secrets encrypted).
    document: Mapped[bytes] = mapped_column(Blob)
    rolled_back_from: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AdminUser(Base):
    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(32))
    namespace: Mapped[str | None] = mapped_column(String(128), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class AdminToken(Base):
    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(80), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)


class AuditEvent(Base):
    """Changes that are not configuration versions: admin users, logins, tokens."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(Timestamp)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(256))
    detail: Mapped[str] = mapped_column(Text, default="")


class UsageDaily(Base):
    """Usage per UTC day, namespace and model ('' for requests refused before a model was
    resolved). Counters only ever grow: each batch a gateway sends is added with one upsert."""

    __tablename__ = "usage_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    namespace: Mapped[str] = mapped_column(name_type(128), primary_key=True)
    model: Mapped[str] = mapped_column(name_type(256), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_micro_usd: Mapped[int] = mapped_column(BigInteger)
    latency_ms_total: Mapped[int] = mapped_column(BigInteger)


class UsageBatchApplied(Base):
    """A usage batch already added to ``usage_daily``, by the id its gateway gave it; inserted
    in the ledger's transaction, so a batch is added once however often it is sent. ``realtime``:
    it reached the realtime store too. Rows older than a retention period are deleted."""

    __tablename__ = "usage_batches"
    __table_args__ = (Index("ix_usage_batches_applied_at", "applied_at"),)

    batch_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    applied_at: Mapped[int] = mapped_column(BigInteger)
    """Unix seconds."""
    realtime: Mapped[bool] = mapped_column(Boolean)


# SQLite only auto-increments an INTEGER PRIMARY KEY; elsewhere the key needs 64 bits.
RowId = BigInteger().with_variant(Integer(), "sqlite")
# MySQL's TEXT stops at 64 KiB; a stored body may be up to 1 MiB.
Body = Text().with_variant(mysql.MEDIUMTEXT(charset="utf8mb4"), "mysql", "mariadb")


class RequestLog(Base):
    """One request a gateway served (its metadata; the body only when the configuration asks),
    as the gateway's request-log shipper sent it. ``ts`` is the request's arrival, in Unix
    microseconds; ``uid`` (unique, made by the gateway) makes a re-sent batch insert nothing
    twice. Newest first by (ts, id); rows older than the retention period are deleted."""

    __tablename__ = "request_log"
    __table_args__ = (
        Index("ix_request_log_namespace_ts", "namespace", "ts", "id"),
        Index("ix_request_log_ts", "ts", "id"),
        Index("ix_request_log_request_id", "request_id"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    ts: Mapped[int] = mapped_column(BigInteger)
    request_id: Mapped[str] = mapped_column(String(128))
    namespace: Mapped[str] = mapped_column(name_type(128))
    key_prefix: Mapped[str | None] = mapped_column(String(16), nullable=True)
    path: Mapped[str] = mapped_column(String(256))
    model: Mapped[str | None] = mapped_column(name_type(256), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(128), nullable=True)
    upstream_model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    stream: Mapped[bool] = mapped_column(Boolean)
    attempts: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[float] = mapped_column(Double)
    ttft_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[float] = mapped_column(Double)
    request_body: Mapped[str | None] = mapped_column(Body, nullable=True)
    request_body_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
