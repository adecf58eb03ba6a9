"""What happened, as plain data: handed to the ``on_login`` family of plugin hooks.

Events never carry a password, not even a wrong one. ``at`` is a Unix time
(``time.time()``), filled in when the event is made unless given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "LoginEvent",
    "LoginFailedEvent",
    "LoginFailure",
    "LogoutEvent",
    "PermissionDeniedEvent",
    "WebSocketRefusedEvent",
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
