"""Verified addresses and invitations: the email flows.

- Users: ``email_verified`` (false until the person follows a link sent to the
  address; existing addresses start unverified) and ``pending_email``, a new
  address waiting for its link before it replaces the old one.
- Invitations: one row per invitation sent, holding a SHA-256 of its token
  (never the token), the address, what the new account gets, who invited,
  when it expires and when it was accepted.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-13
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "doorman_users",
        sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column("doorman_users", sa.Column("pending_email", sa.String(254), nullable=True))
    op.create_table(
        "doorman_invitations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("groups", sa.Text, nullable=False, server_default=""),
        sa.Column("invited_by", sa.String(150), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("accepted_at", sa.Float, nullable=True),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("doorman_users.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )


def downgrade() -> None:
    op.drop_table("doorman_invitations")
    with op.batch_alter_table("doorman_users") as batch:
        batch.drop_column("pending_email")
        batch.drop_column("email_verified")
