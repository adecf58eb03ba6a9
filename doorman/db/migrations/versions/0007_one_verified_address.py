"""A verified address belongs to one account: a unique index says so.

"One verified address, one account" was checked in the UPDATE that verifies
(``NOT EXISTS`` another account holding it verified). On PostgreSQL two
accounts verifying the same address at the same instant each saw the other
unverified and both won. A partial unique index on ``lower(email)`` where
``email_verified`` makes the database refuse the second.

A database where two accounts already hold one address verified keeps the
oldest account's (the lowest id) and marks the others unverified: they can
verify another address, or this one once the first lets it go.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEX = "ix_doorman_users_verified_email"


def upgrade() -> None:
    users = sa.table(
        "doorman_users",
        sa.column("id", sa.Integer),
        sa.column("email", sa.String),
        sa.column("email_verified", sa.Boolean),
    )
    older = users.alias("older")
    held_by_an_older_account = (
        sa.select(older.c.id)
        .where(
            older.c.email_verified == sa.true(),
            sa.func.lower(older.c.email) == sa.func.lower(users.c.email),
            older.c.id < users.c.id,
        )
        .exists()
    )
    keep_the_oldest = (
        users.update()
        .where(users.c.email_verified == sa.true(), held_by_an_older_account)
        .values(email_verified=False)
    )
    if op.get_context().as_sql:  # `doorman db schema`: the SQL is written out, not run
        op.execute(keep_the_oldest)
        unverified = None
    else:
        unverified = op.get_bind().execute(keep_the_oldest)
    if unverified is not None and unverified.rowcount:
        logging.getLogger("doorman").warning(
            "migration 0007: %s accounts held verified an address an older account holds "
            "verified too; theirs is unverified now (a verified address belongs to one account)",
            unverified.rowcount,
        )
    verified = sa.text("email_verified")
    op.create_index(
        INDEX,
        "doorman_users",
        [sa.text("lower(email)")],
        unique=True,
        sqlite_where=verified,
        postgresql_where=verified,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="doorman_users")
