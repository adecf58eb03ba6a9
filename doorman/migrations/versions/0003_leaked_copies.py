"""What a copy of the database must not give away.

- Sign-ins: the table now keeps a SHA-256 of each sign-in's key, never the key.
  The rows written before held their keys in plain text, so any copy or backup
  made until now names live sign-ins: they are deleted, which signs everyone
  out once (a session whose sign-in is gone is over).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM doorman_signins")


def downgrade() -> None:
    pass  # the sign-ins ended stay ended
