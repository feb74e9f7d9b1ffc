"""usage_batches: the usage batches already applied to the ledger, so each is applied once

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-19 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_batches",
        # ASCII ids (the gateways' spool segment names): 128 bytes on every database.
        sa.Column("batch_id", sa.String(length=128), nullable=False),
        sa.Column("applied_at", sa.BigInteger(), nullable=False),
        sa.Column("realtime", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_usage_batches")),
    )
    op.create_index("ix_usage_batches_applied_at", "usage_batches", ["applied_at"])


def downgrade() -> None:
    op.drop_table("usage_batches")
