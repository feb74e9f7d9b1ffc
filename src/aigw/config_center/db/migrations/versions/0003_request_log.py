"""request_log: one row per request served, kept for a retention period

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-12 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _name(length: int) -> sa.types.TypeEngine:
    # Compared byte for byte on MySQL/MariaDB too (their default collations ignore case).
    return sa.String(length=length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    op.create_table(
        "request_log",
        # SQLite only auto-increments an INTEGER PRIMARY KEY.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("namespace", _name(128), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=True),
        sa.Column("path", sa.String(length=256), nullable=False),
        sa.Column("model", _name(256), nullable=True),
        sa.Column("provider", sa.String(length=128), nullable=True),
        sa.Column("upstream_model", sa.String(length=256), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("ttft_ms", sa.Double(), nullable=True),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=False),
        # MySQL's TEXT stops at 64 KiB; a body may be up to 1 MiB.
        sa.Column(
            "request_body",
            sa.Text().with_variant(mysql.MEDIUMTEXT(charset="utf8mb4"), "mysql", "mariadb"),
            nullable=True,
        ),
        sa.Column("request_body_bytes", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_log")),
        sa.UniqueConstraint("uid", name=op.f("uq_request_log_uid")),
    )
    op.create_index("ix_request_log_namespace_ts", "request_log", ["namespace", "ts", "id"])
    op.create_index("ix_request_log_ts", "request_log", ["ts", "id"])
    op.create_index("ix_request_log_request_id", "request_log", ["request_id"])


def downgrade() -> None:
    op.drop_table("request_log")
