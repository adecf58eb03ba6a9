"""doorman's tables, as SQLAlchemy Core objects: what the queries use.

The migrations in ``doorman/db/migrations`` create and upgrade these tables; a
test checks that the two agree. Every name starts with ``doorman_``, so the
tables can live in an app's own database. Times are Unix seconds (float).

A table whose rows workers keep between requests names its change *epoch*
(``info={"epoch": ...}``, see ``doorman.db.epochs``): an UPDATE or DELETE of
it moves that epoch once committed (``doorman.db.transaction``). An INSERT
moves nothing (no worker can have kept a row that was not there: only
answers found are kept), unless workers keep what the table lacks too
(``"inserts": True``: an account without second factors); nor does a
``bookkeeping`` update of the columns the table lists as such (those no
worker keeps: when a row was last used, the last TOTP step taken).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

__all__ = [
    "bookkeeping",
    "changes",
    "events_table",
    "groups_table",
    "invitations_table",
    "metadata",
    "passkeys_table",
    "recovery_codes_table",
    "sessions_table",
    "settings_table",
    "signins_table",
    "throttle_table",
    "tokens_table",
    "totp_table",
    "user_groups_table",
    "users_table",
]

metadata = sa.MetaData()

sessions_table = sa.Table(
    "doorman_sessions",
    metadata,
    # SHA-256 (hex) of the session key: the key itself is never written down.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    info={"epoch": "sessions"},
)

users_table = sa.Table(
    "doorman_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(150), nullable=False),
    # NFKC + casefold of the username: "Alice" and "alice" cannot both exist.
    sa.Column("username_key", sa.String(150), nullable=False, unique=True),
    # SHA-256 of the username's TR39 skeleton: "admin" with a Cyrillic a cannot join "admin".
    # NULL for a look-alike that was there before (kept, see doorman._lookalikes).
    sa.Column("username_skeleton", sa.String(64), nullable=True),
    sa.Column("email", sa.String(254), nullable=True),
    # True once the person followed a link sent to ``email`` (or an admin set it).
    sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.false()),
    # A new address waiting for its verification link before it replaces ``email``.
    sa.Column("pending_email", sa.String(254), nullable=True),
    # None: no usable password (the user signs in some other way, or not at all).
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    # Bumped to end every session of the user, the signed-cookie ones included.
    sa.Column("session_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_login", sa.Float, nullable=True),
    sa.Index("ix_doorman_users_username_skeleton", "username_skeleton", unique=True),
    info={"epoch": "accounts", "bookkeeping": {"last_login"}},
)


class ascii_lower(GenericFunction[str]):
    """``lower()`` of A-Z alone, as ``doorman._text.ascii_lower`` does in Python: SQLite's
    ``lower()`` is that already; PostgreSQL's under the "C" collation."""

    type = sa.String()
    inherit_cache = True


@compiles(ascii_lower)
def _ascii_lower(element: ascii_lower, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(ascii_lower, "postgresql")
def _ascii_lower_postgresql(element: ascii_lower, compiler: Any, **kw: Any) -> str:
    return f'lower({compiler.process(element.clauses, **kw)} COLLATE "C")'


# A verified address belongs to one account (compared without ASCII case): migration 0007.
sa.Index(
    "ix_doorman_users_verified_email",
    ascii_lower(users_table.c.email),
    unique=True,
    sqlite_where=users_table.c.email_verified,
    postgresql_where=users_table.c.email_verified,
)

groups_table = sa.Table(
    "doorman_groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(150), nullable=False, unique=True),
    info={"epoch": "accounts"},
)

user_groups_table = sa.Table(
    "doorman_user_groups",
    metadata,
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
        index=True,
    ),
    info={"epoch": "accounts"},
)

tokens_table = sa.Table(
    "doorman_tokens",
    metadata,
    # The public part of the token (shown in lists); the secret part is only hashed.
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("doorman_users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    # JSON list of the actions the token is limited to; NULL: whatever its user may do.
    sa.Column("scopes", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
    info={"epoch": "accounts", "bookkeeping": {"last_used_at"}},
)

throttle_table = sa.Table(
    "doorman_throttle",
    metadata,
    # A hash of what is counted (an account or a client address), never the raw value.
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("hits", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

settings_table = sa.Table(
    "doorman_settings",
    metadata,
    # Values doorman keeps for itself, such as the secret generated on first start.
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

signins_table = sa.Table(
    "doorman_signins",
    metadata,
    # One row per signed-in session, whatever the session store: the session holds a
    # key, the row its SHA-256. Deleting the row signs that session out, signed cookies
    # included.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("doorman_users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False, index=True),
    sa.Column("user_agent", sa.String(300), nullable=False, server_default=""),
    sa.Column("address", sa.String(64), nullable=True),
    info={"epoch": "accounts", "bookkeeping": {"last_seen"}},
)

events_table = sa.Table(
    "doorman_events",
    metadata,
    # The security event log (doorman.accounts.event_log): what happened, to whom, by
    # whom, from where. Never a password, a token, a cookie or a link.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("kind", sa.String(40), nullable=False),
    # The account the event is about. NULL once it is deleted (its username stays), and
    # for a failed sign-in with a name that no account has.
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("doorman_users.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("username", sa.String(150), nullable=True),
    # The id of the actor who did it (an admin, or the user themselves); NULL: nobody
    # signed in, or the command line.
    sa.Column("actor", sa.String(150), nullable=True),
    sa.Column("address", sa.String(64), nullable=True),
    # A small JSON object: the reason of a failure, the fields an admin changed...
    sa.Column("detail", sa.Text, nullable=True),
    sa.Index("ix_doorman_events_user_id", "user_id", "id"),
    sa.Index("ix_doorman_events_kind", "kind", "id"),
    sa.Index("ix_doorman_events_username", "username", "id"),
    sa.Index("ix_doorman_events_actor", "actor", "id"),
)

invitations_table = sa.Table(
    "doorman_invitations",
    metadata,
    # Invitations to make an account (doorman.accounts.invitations): the token's
    # SHA-256, never the token; what the account gets; used once (accepted_at).
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


def _owner(*, primary_key: bool = False) -> sa.Column[int]:
    """The account a second factor belongs to: it goes when the account goes."""
    return sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("doorman_users.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
        index=not primary_key,
    )


totp_table = sa.Table(
    "doorman_totp",
    metadata,
    # One TOTP secret per account (RFC 6238). On only once ``confirmed_at`` is set, after
    # a correct code. ``last_step``: the time step of the last code taken; a code is taken
    # only for a later step, in one conditional UPDATE, so no code works twice anywhere.
    _owner(primary_key=True),
    sa.Column("secret", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("confirmed_at", sa.Float, nullable=True),
    sa.Column("last_step", sa.BigInteger, nullable=True),
    # Workers keep whether an account has a second factor (HTTP Basic asks on every request).
    info={"epoch": "accounts", "inserts": True, "bookkeeping": {"last_step"}},
)

recovery_codes_table = sa.Table(
    "doorman_recovery_codes",
    metadata,
    # Single-use codes in place of a second factor: a SHA-256 of each, never the code.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _owner(),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float, nullable=True),
)

passkeys_table = sa.Table(
    "doorman_passkeys",
    metadata,
    # WebAuthn credentials (base64url ids and COSE public keys). ``user_handle``: the
    # random handle the authenticator keeps for the account, never its id or name.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _owner(),
    sa.Column("credential_id", sa.String(1400), nullable=False, unique=True),
    sa.Column("user_handle", sa.String(100), nullable=False, index=True),
    sa.Column("public_key", sa.Text, nullable=False),
    sa.Column("sign_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("transports", sa.String(200), nullable=False, server_default=""),
    sa.Column("aaguid", sa.String(36), nullable=False, server_default=""),
    sa.Column("backup_eligible", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("backed_up", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float, nullable=True),
    info={
        "epoch": "accounts",
        "inserts": True,
        "bookkeeping": {"sign_count", "backed_up", "last_used_at"},
    },
)

#: The execution option that marks a ``bookkeeping`` update.
_BOOKKEEPING = "doorman_bookkeeping"


def changes(statement: object) -> str | None:
    """The epoch ``statement`` moves: its table's, for an UPDATE or a DELETE (and an
    INSERT, where the table says so); else None."""
    if not isinstance(statement, sa.Insert | sa.Update | sa.Delete):
        return None
    info = getattr(statement.table, "info", {})
    if isinstance(statement, sa.Insert) and not info.get("inserts"):
        return None
    if statement.get_execution_options().get(_BOOKKEEPING):
        return None
    epoch: str | None = info.get("epoch")
    return epoch


def bookkeeping(table: sa.Table, where: sa.ColumnElement[bool], **values: Any) -> sa.Update:
    """An UPDATE of bookkeeping columns only (``last_seen``, say): it moves no epoch.

    What workers keep does not depend on these columns, so a write of them
    need not make every worker read again. Any other column is refused.
    """
    watched = set(values) - table.info.get("bookkeeping", set())
    if watched:
        raise ValueError(
            f"{table.name}.{sorted(watched)[0]} is not bookkeeping: write it with update(), "
            "which moves the table's epoch"
        )
    return table.update().where(where).values(**values).execution_options(**{_BOOKKEEPING: True})
