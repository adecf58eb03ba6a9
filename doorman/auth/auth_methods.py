"""How the person behind a request proved who they are, and what a proxy may demand of it.

A session keeps the RFC 8176 ``amr`` values of its sign-in
(``SESSION_AUTH_METHODS``, written by ``login()``): ``pwd``, ``otp``, ``hwk``
(a passkey), ``user`` (the authenticator verified the person), ``email`` (a
mailed link). ``/-/whoami`` answers them as ``auth_methods`` and ``/-/auth`` as
``X-Doorman-Auth-Methods``; ``/-/auth?require=mfa`` (or ``otp``, ``hwk``)
refuses a session without them. An API token proves nothing about how its
holder signed in: its methods are ``[]``. HTTP Basic is a password: ``["pwd"]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from .._types import Scope
from .signed_in import SESSION_AUTH_METHODS

__all__ = [
    "REQUIREMENTS",
    "auth_methods",
    "meets",
    "methods_header",
    "requirements",
    "session_auth_methods",
]

#: What ``?require=`` may name: one method, or ``mfa`` (a second factor joined another proof).
REQUIREMENTS = frozenset({"otp", "hwk", "mfa"})
_SECOND_FACTORS = frozenset({"otp", "hwk"})
_PROOFS = frozenset({"pwd", "email", "user", "otp", "hwk"})
# An amr value as a header carries it: short, lower case. Anything else in a session is dropped.
_METHOD = re.compile(r"[a-z]{1,16}")


def session_auth_methods(session: Mapping[str, Any] | None) -> list[str]:
    """The ``amr`` values a signed-in session keeps; ``[]`` for one from before they were kept."""
    found = session.get(SESSION_AUTH_METHODS) if session is not None else None
    if not isinstance(found, list):
        return []
    return [m for m in found if isinstance(m, str) and _METHOD.fullmatch(m)]


def auth_methods(scope: Scope) -> list[str]:
    """The methods of the request's actor: a session's own, ``["pwd"]`` for HTTP Basic,
    ``[]`` for an API token, a plugin's actor or nobody."""
    actor = scope.get("actor")
    via = actor.get("via") if isinstance(actor, dict) else None
    if via == "session":
        return session_auth_methods(scope.get("session"))
    if via == "basic":
        return ["pwd"]
    return []


def methods_header(methods: Iterable[str]) -> tuple[bytes, bytes]:
    """``X-Doorman-Auth-Methods: pwd,otp``, empty when none are known."""
    return (b"x-doorman-auth-methods", ",".join(methods).encode("ascii"))


def requirements(query_string: bytes) -> frozenset[str] | None:
    """What ``?require=`` asks (``require=mfa``, repeated or comma-separated); None when it
    names something unknown, or names nothing (``require=``): the caller answers 400."""
    asked: set[str] = set()
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        return None
    for name, value in pairs:
        if name != "require":
            continue
        names = value.split(",")
        if not all(n in REQUIREMENTS for n in names):
            return None
        asked.update(names)
    return frozenset(asked)


def meets(methods: Iterable[str], required: Iterable[str]) -> bool:
    """Whether ``methods`` satisfy every requirement: ``otp`` and ``hwk`` by name, ``mfa`` by a
    second factor (``otp`` or ``hwk``) beside another proof (a password, a mailed link, the
    authenticator's user verification, or the other second factor)."""
    have = set(methods)
    for need in required:
        if need == "mfa":
            if not (have & _SECOND_FACTORS) or len(have & _PROOFS) < 2:
                return False
        elif need not in have:
            return False
    return True
