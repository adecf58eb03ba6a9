"""The identity headers, ``X-Doorman-User``, ``-Groups`` and ``-Admin``: from the actor only.

Forward-auth answers them for the proxy to copy onto the request; ``doorman
protect`` puts them on the request it passes to the app. A client's own
copies never get through: every ``X-Doorman-*`` header is removed first, in
any case and with ``_`` for ``-`` too (some servers and frameworks read
``X_Doorman_User`` as ``X-Doorman-User``). Standard library only: the gate
removes them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ._types import Scope

__all__ = [
    "acts_as_admin",
    "drop_identity_headers",
    "header_safe",
    "identity_headers",
    "set_identity_headers",
]

_PREFIX = b"x-doorman-"


def identity_headers(actor: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    """The three headers that name ``actor``, as forward-auth answers them."""
    groups = b",".join(header_safe(str(group)) for group in actor.get("groups") or [])
    return [
        (b"x-doorman-user", header_safe(str(actor.get("username") or actor["id"]))),
        (b"x-doorman-groups", groups),
        (b"x-doorman-admin", b"true" if acts_as_admin(actor) else b"false"),
    ]


def acts_as_admin(actor: Mapping[str, Any] | None) -> bool:
    """An admin, and not held by a token's scopes to other actions than ``admin``.

    What the ``admin`` scope of ``scope["auth"]`` and the ``X-Doorman-Admin``
    header say: an admin's token limited to ``view`` is no admin to an app.
    """
    if actor is None or actor.get("admin") is not True:
        return False
    scopes = actor.get("scopes")
    return scopes is None or (isinstance(scopes, list | tuple) and "admin" in scopes)


def header_safe(value: str) -> bytes:
    """Percent-encoded UTF-8 beyond ASCII: "josé" is "jos%C3%A9", never "jos".

    Usernames and group names cannot contain "%" or ",", so this is unambiguous.
    """
    return quote(value, safe="@.+-_ ").encode("ascii")


def drop_identity_headers(scope: Scope) -> None:
    """Remove every ``X-Doorman-*`` header the client sent, whatever its spelling."""
    headers = scope["headers"]
    kept = [(k, v) for k, v in headers if not k.lower().replace(b"_", b"-").startswith(_PREFIX)]
    if len(kept) != len(headers):
        scope["headers"] = kept


def set_identity_headers(scope: Scope) -> None:
    """The client's ``X-Doorman-*`` headers out; the actor's (none when anonymous) in."""
    drop_identity_headers(scope)
    actor = scope.get("actor")
    if actor is not None:
        scope["headers"] = [*scope["headers"], *identity_headers(actor)]
