"""The security event log: sign-ins, failures, sign-outs, changes to accounts, refusals.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "doorman_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("doorman_users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("username", sa.String(150), nullable=True),
        sa.Column("actor", sa.String(150), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_doorman_events_at", "doorman_events", ["at"])
    op.create_index("ix_doorman_events_user_id", "doorman_events", ["user_id", "id"])
    op.create_index("ix_doorman_events_kind", "doorman_events", ["kind", "id"])
    op.create_index("ix_doorman_events_username", "doorman_events", ["username", "id"])
    op.create_index("ix_doorman_events_actor", "doorman_events", ["actor", "id"])


def downgrade() -> None:
    op.drop_table("doorman_events")
