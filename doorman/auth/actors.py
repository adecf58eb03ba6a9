"""The actor in the scope, with ``user`` and ``auth`` in the shapes Starlette reads.

Standard library only: the gate (``doorman.gate``) sets actors too, and must
not pull in the accounts side (SQLAlchemy, argon2) to do it.
"""

from __future__ import annotations

from typing import Any

from .._identity import acts_as_admin
from .._types import Scope

__all__ = ["AnonymousUser", "AuthCredentials", "AuthenticatedUser", "acts_as_admin", "set_actor"]


class AuthenticatedUser:
    """``scope["user"]`` for a signed-in actor (Starlette's ``BaseUser`` shape)."""

    __slots__ = ("actor",)
    is_authenticated = True

    def __init__(self, actor: dict[str, Any]) -> None:
        self.actor = actor

    @property
    def display_name(self) -> str:
        return str(self.actor.get("username") or self.actor["id"])

    @property
    def identity(self) -> str:
        return str(self.actor["id"])

    def __repr__(self) -> str:
        return f"<AuthenticatedUser {self.identity!r}>"


class AnonymousUser:
    """``scope["user"]`` when nobody is signed in."""

    __slots__ = ()
    is_authenticated = False
    display_name = ""
    identity = ""
    actor = None


class AuthCredentials:
    """``scope["auth"]``: ``scopes`` as Starlette's ``requires()`` reads them."""

    __slots__ = ("scopes",)

    def __init__(self, scopes: list[str]) -> None:
        self.scopes = scopes


_ANONYMOUS = AnonymousUser()


def set_actor(scope: Scope, actor: dict[str, Any] | None) -> None:
    """Put ``actor`` in the scope, with the Starlette-shaped ``user`` and ``auth`` beside it."""
    scope["actor"] = actor
    if actor is None:
        scope["user"], scope["auth"] = _ANONYMOUS, AuthCredentials([])
        return
    scopes = ["authenticated"]
    if acts_as_admin(actor):
        scopes.append("admin")
    scope["user"], scope["auth"] = AuthenticatedUser(actor), AuthCredentials(scopes)
