"""What happened, as plain data: handed to the ``on_login`` family of plugin hooks,
and written to the security event log (``doorman.accounts.event_log``).

Events never carry a password, not even a wrong one. ``at`` is a Unix time
(``time.time()``), filled in when the event is made unless given. ``EventKind``
names what each row of the security event log records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "EventKind",
    "LoginEvent",
    "LoginFailedEvent",
    "LoginFailure",
    "LogoutEvent",
    "PermissionDeniedEvent",
    "WebSocketRefusedEvent",
    "kind_label",
]

#: Why a sign-in failed. "bad-credentials" covers unknown users too: the reason never says which.
LoginFailure = Literal["bad-credentials", "throttled", "disabled"]


@dataclass(frozen=True, slots=True)
class LoginEvent:
    """An actor signed in; ``via`` says how ("session", "token", "basic" or a plugin's word)."""

    actor: dict[str, Any]
    via: str
    client: str | None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class LogoutEvent:
    """A session ended on request; ``actor`` is None when nobody was signed in."""

    actor: dict[str, Any] | None
    client: str | None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class LoginFailedEvent:
    """A sign-in was refused: the username as typed, never the password."""

    username: str
    client: str | None
    reason: LoginFailure
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class PermissionDeniedEvent:
    """An actor (None when anonymous) was refused ``action`` on ``resource``."""

    actor: dict[str, Any] | None
    action: str
    resource: str | None
    client: str | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class WebSocketRefusedEvent:
    """A websocket handshake from a page of another origin was refused before the app saw it.

    ``origin`` is the ``Origin`` header as sent (cut to 200 characters); no cookie is kept.
    """

    origin: str
    path: str
    client: str | None
    at: float = field(default_factory=time.time)


class EventKind(StrEnum):
    """What a row of the security event log records: its ``kind``, as stored.

    The values are stable (scripts filter on them). Plugins may record kinds of
    their own: lower-case words joined by hyphens, such as ``"export-started"``.
    """

    SIGNED_IN = "signed-in"
    SIGN_IN_FAILED = "sign-in-failed"
    SIGN_IN_THROTTLED = "sign-in-throttled"
    SIGNED_OUT = "signed-out"
    SESSION_REVOKED = "session-revoked"
    SESSIONS_ENDED = "sessions-ended"
    PASSWORD_CHANGED = "password-changed"  # noqa: S105 - a word
    PASSWORD_RESET_REQUESTED = "password-reset-requested"  # noqa: S105 - a word
    PASSWORD_RESET = "password-reset"  # noqa: S105 - a word
    EMAIL_CHANGED = "email-changed"
    EMAIL_VERIFIED = "email-verified"
    TOKEN_CREATED = "token-created"  # noqa: S105 - a word
    TOKEN_REVOKED = "token-revoked"  # noqa: S105 - a word
    INVITATION_SENT = "invitation-sent"
    INVITATION_ACCEPTED = "invitation-accepted"
    USER_CREATED = "user-created"
    USER_EDITED = "user-edited"
    USER_DISABLED = "user-disabled"
    USER_ENABLED = "user-enabled"
    USER_UNLOCKED = "user-unlocked"
    USER_DELETED = "user-deleted"
    TWO_FACTOR_ENABLED = "two-factor-enabled"
    TWO_FACTOR_DISABLED = "two-factor-disabled"
    TWO_FACTOR_FAILED = "two-factor-failed"
    TWO_FACTOR_RESET = "two-factor-reset"
    RECOVERY_CODES_CREATED = "recovery-codes-created"
    RECOVERY_CODE_USED = "recovery-code-used"
    PASSKEY_ADDED = "passkey-added"
    PASSKEY_REMOVED = "passkey-removed"
    PASSKEY_FAILED = "passkey-failed"
    REAUTHENTICATED = "reauthenticated"
    PERMISSION_DENIED = "permission-denied"
    WEBSOCKET_REFUSED = "websocket-refused"

    @property
    def label(self) -> str:
        """The kind in words, for pages: "Sign-in failed"."""
        return _LABELS[self]


_LABELS = {
    EventKind.SIGNED_IN: "Signed in",
    EventKind.SIGN_IN_FAILED: "Sign-in failed",
    EventKind.SIGN_IN_THROTTLED: "Sign-in refused: too many attempts",
    EventKind.SIGNED_OUT: "Signed out",
    EventKind.SESSION_REVOKED: "A session was signed out",
    EventKind.SESSIONS_ENDED: "Signed out everywhere",
    EventKind.PASSWORD_CHANGED: "Password changed",
    EventKind.PASSWORD_RESET_REQUESTED: "Password reset asked for",
    EventKind.PASSWORD_RESET: "Password reset by email link",
    EventKind.EMAIL_CHANGED: "Email address changed",
    EventKind.EMAIL_VERIFIED: "Email address verified",
    EventKind.TOKEN_CREATED: "API token created",
    EventKind.TOKEN_REVOKED: "API token revoked",
    EventKind.INVITATION_SENT: "Invitation sent",
    EventKind.INVITATION_ACCEPTED: "Invitation accepted",
    EventKind.USER_CREATED: "Account created",
    EventKind.USER_EDITED: "Account details changed",
    EventKind.USER_DISABLED: "Account disabled",
    EventKind.USER_ENABLED: "Account enabled",
    EventKind.USER_UNLOCKED: "Sign-in unlocked",
    EventKind.USER_DELETED: "Account deleted",
    EventKind.TWO_FACTOR_ENABLED: "Authenticator app turned on",
    EventKind.TWO_FACTOR_DISABLED: "Authenticator app turned off",
    EventKind.TWO_FACTOR_FAILED: "Wrong second-factor code",
    EventKind.TWO_FACTOR_RESET: "Second factors reset by an admin",
    EventKind.RECOVERY_CODES_CREATED: "New recovery codes",
    EventKind.RECOVERY_CODE_USED: "Recovery code used",
    EventKind.PASSKEY_ADDED: "Passkey added",
    EventKind.PASSKEY_REMOVED: "Passkey removed",
    EventKind.PASSKEY_FAILED: "Passkey refused",
    EventKind.REAUTHENTICATED: "Identity confirmed again",
    EventKind.PERMISSION_DENIED: "Permission denied",
    EventKind.WEBSOCKET_REFUSED: "WebSocket from another site refused",
}


def kind_label(kind: str) -> str:
    """A kind in words: doorman's own by their label, a plugin's as it is written."""
    try:
        return EventKind(kind).label
    except ValueError:
        return kind
