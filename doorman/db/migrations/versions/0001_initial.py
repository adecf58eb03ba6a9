"""Sessions, users, groups, API tokens, login throttling and doorman's own settings.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Long, and kept whole: the first schema, every table as it shipped, read in one place.
    # Before migrations existed, the SQL store created this table itself.
    if context.is_offline_mode() or not sa.inspect(op.get_bind()).has_table("doorman_sessions"):
        op.create_table(
            "doorman_sessions",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("data", sa.Text, nullable=False),
            sa.Column("expires_at", sa.Float, nullable=False),
        )
        op.create_index("ix_doorman_sessions_expires_at", "doorman_sessions", ["expires_at"])
    op.create_table(
        "doorman_users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("username_key", sa.String(150), nullable=False, unique=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("session_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_login", sa.Float, nullable=True),
    )
    op.create_table(
        "doorman_groups",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(150), nullable=False, unique=True),
    )
    op.create_table(
        "doorman_user_groups",
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("doorman_users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "group_id",
            sa.Integer,
            sa.ForeignKey("doorman_groups.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_index("ix_doorman_user_groups_group_id", "doorman_user_groups", ["group_id"])
    op.create_table(
        "doorman_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("doorman_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("scopes", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("last_used_at", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_index("ix_doorman_tokens_user_id", "doorman_tokens", ["user_id"])
    op.create_table(
        "doorman_throttle",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_doorman_throttle_expires_at", "doorman_throttle", ["expires_at"])
    op.create_table(
        "doorman_settings",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "doorman_settings",
        "doorman_throttle",
        "doorman_tokens",
        "doorman_user_groups",
        "doorman_groups",
        "doorman_users",
        "doorman_sessions",
    ):
        op.drop_table(table)
