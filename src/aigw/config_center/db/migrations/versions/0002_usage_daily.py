"""usage_daily: the durable accounting ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _name(length: int) -> sa.types.TypeEngine:
    # Compared byte for byte on MySQL/MariaDB too (their default collations ignore case); the
    # key (3 + 4 x (128 + 256) bytes in utf8mb4) stays within InnoDB's 3,072-byte limit.
    return sa.String(length=length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


COUNTERS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cost_micro_usd",
    "latency_ms_total",
)


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("namespace", _name(128), nullable=False),
        sa.Column("model", _name(256), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTERS),
        sa.PrimaryKeyConstraint("day", "namespace", "model", name=op.f("pk_usage_daily")),
    )


def downgrade() -> None:
    op.drop_table("usage_daily")
