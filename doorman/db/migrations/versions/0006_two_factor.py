"""Second factors: TOTP, recovery codes and passkeys (WebAuthn).

- TOTP: one row per account. ``confirmed_at`` stays NULL until the person
  entered a correct code, and only then is the factor on. ``last_step`` is the
  30-second step of the last code accepted: a code is taken only for a later
  step, in one conditional UPDATE, so the same code is refused on every worker.
- Recovery codes: ten per account, each a SHA-256 (never the code), used once
  (``used_at``).
- Passkeys: one row per WebAuthn credential. ``user_handle`` is the random
  handle the authenticator keeps for the account (the same on all of an
  account's passkeys), never the account id or name.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _user_id(*, primary_key: bool = False) -> sa.Column[int]:
    return sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("doorman_users.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "doorman_totp",
        _user_id(primary_key=True),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("confirmed_at", sa.Float, nullable=True),
        sa.Column("last_step", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "doorman_recovery_codes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _user_id(),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
    )
    op.create_table(
        "doorman_passkeys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _user_id(),
        sa.Column("credential_id", sa.String(1400), nullable=False, unique=True),
        sa.Column("user_handle", sa.String(100), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("transports", sa.String(200), nullable=False, server_default=""),
        sa.Column("aaguid", sa.String(36), nullable=False, server_default=""),
        sa.Column("backup_eligible", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("backed_up", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float, nullable=True),
    )
    # Named one by one (not index=True) so that `doorman db schema` prints them in one order.
    op.create_index("ix_doorman_recovery_codes_user_id", "doorman_recovery_codes", ["user_id"])
    op.create_index("ix_doorman_passkeys_user_id", "doorman_passkeys", ["user_id"])
    op.create_index("ix_doorman_passkeys_user_handle", "doorman_passkeys", ["user_handle"])


def downgrade() -> None:
    op.drop_table("doorman_passkeys")
    op.drop_table("doorman_recovery_codes")
    op.drop_table("doorman_totp")
