"""A verified address belongs to one account: a unique index says so.

"One verified address, one account" was checked in the UPDATE that verifies
(``NOT EXISTS`` another account holding it verified). On PostgreSQL two
accounts verifying the same address at the same instant each saw the other
unverified and both won. A partial unique index on the address folded to
lower case (A-Z only: ``lower(email)`` on SQLite, ``lower(email COLLATE "C")``
on PostgreSQL, whose own ``lower()`` follows its locale past ASCII) where
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
    postgresql = op.get_context().dialect.name == "postgresql"

    def folded(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        return sa.func.lower(sa.collate(column, "C") if postgresql else column)

    users = sa.table(
        "doorman_users",
        sa.column("id", sa.Integer),
        sa.column("username", sa.String),
        sa.column("email", sa.String),
        sa.column("email_verified", sa.Boolean),
    )
    older = users.alias("older")
    held_by_an_older_account = (
        sa.select(older.c.id)
        .where(
            older.c.email_verified == sa.true(),
            folded(older.c.email) == folded(users.c.email),
            older.c.id < users.c.id,
        )
        .exists()
    )
    sharing = sa.and_(users.c.email_verified == sa.true(), held_by_an_older_account)
    keep_the_oldest = users.update().where(sharing).values(email_verified=False)
    if op.get_context().as_sql:  # `doorman db schema`: the SQL is written out, not run
        op.execute(keep_the_oldest)
    else:
        connection = op.get_bind()
        names = connection.execute(sa.select(users.c.username).where(sharing)).scalars().all()
        connection.execute(keep_the_oldest)
        if names:
            shown = ", ".join(sorted(names)[:50]) + (" ..." if len(names) > 50 else "")
            logging.getLogger("doorman").warning(
                "migration 0007: %s accounts held verified an address that an older account "
                "holds verified too; theirs is unverified now (a verified address belongs to "
                "one account): %s",
                len(names),
                shown,
            )
    verified = sa.text("email_verified")
    op.create_index(
        INDEX,
        "doorman_users",
        [sa.text('lower(email COLLATE "C")' if postgresql else "lower(email)")],
        unique=True,
        sqlite_where=verified,
        postgresql_where=verified,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="doorman_users")
