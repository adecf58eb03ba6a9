"""What a copy of the database must not give away; look-alike usernames.

- Sign-ins: the table now keeps a SHA-256 of each sign-in's key, never the key.
  The rows written before held their keys in plain text, so any copy or backup
  made until now names live sign-ins: they are deleted, which signs everyone
  out once (a session whose sign-in is gone is over).
- Users: ``username_skeleton``, unique, a hash of the username's TR39 skeleton
  (``doorman._lookalikes``), so that no new username looks like another.
  Existing users get theirs; where two already look alike, the one created
  later keeps NULL (nobody is renamed or removed).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM doorman_signins")
    op.add_column("doorman_users", sa.Column("username_skeleton", sa.String(64), nullable=True))
    if not context.is_offline_mode():  # printed SQL is for new databases: no users yet
        _fill_skeletons()
    op.create_index(
        "ix_doorman_users_username_skeleton", "doorman_users", ["username_skeleton"], unique=True
    )


def _fill_skeletons() -> None:
    from doorman._lookalikes import lookalike_key

    users = sa.table(
        "doorman_users",
        sa.column("id", sa.Integer),
        sa.column("username", sa.String),
        sa.column("username_skeleton", sa.String),
    )
    bind = op.get_bind()
    taken: set[str] = set()
    rows = []
    for user_id, username in bind.execute(sa.select(users.c.id, users.c.username).order_by("id")):
        key = lookalike_key(username)
        if key not in taken:
            taken.add(key)
            rows.append({"user_id": user_id, "key": key})
    if rows:
        bind.execute(
            users.update()
            .where(users.c.id == sa.bindparam("user_id"))
            .values(username_skeleton=sa.bindparam("key")),
            rows,
        )


def downgrade() -> None:
    op.drop_index("ix_doorman_users_username_skeleton", "doorman_users")
    op.drop_column("doorman_users", "username_skeleton")
