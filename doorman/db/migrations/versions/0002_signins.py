"""Sign-ins: one row per signed-in session, to list and revoke them one by one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "doorman_signins",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("doorman_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("user_agent", sa.String(300), nullable=False, server_default=""),
        sa.Column("address", sa.String(64), nullable=True),
    )
    op.create_index("ix_doorman_signins_user_id", "doorman_signins", ["user_id"])
    op.create_index("ix_doorman_signins_last_seen", "doorman_signins", ["last_seen"])


def downgrade() -> None:
    op.drop_table("doorman_signins")
