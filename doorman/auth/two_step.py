"""Signing in in two steps: a first proof now (a password), a second factor next.

Between the two, the session holds who is half-way there (``SESSION_PENDING``)
and nobody is signed in: ``login()`` runs, and cycles the session key, only
when the second step completes. The pending step lasts ``PENDING_FOR`` seconds,
and ends early when the account changes under it (disabled, deleted, a new
password, "sign out everywhere"): its auth hash is checked again at the end.

An app that uses doorman as a library offers two-factor with its own pages::

    user = await doorman.authenticate(username, password, client=...)
    if (await doorman.second_factors(user)).any:
        await begin_second_step(request, user)
        ...  # its own page asks for the code, then:
    pending = await pending_second_step(request)
    if pending and await doorman.verify_second_factor(pending.user, code, ...):
        await complete_second_step(request, pending, "otp")
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._scope import scope_of
from ..accounts.users import User
from ..core import Doorman
from ..sessions.session import load_session
from .guards import current_doorman
from .login import METHODS_BY_VIA, login

__all__ = [
    "PENDING_FOR",
    "SESSION_PENDING",
    "PendingSignIn",
    "begin_second_step",
    "complete_second_step",
    "forget_second_step",
    "pending_second_step",
]

#: The session key of a sign-in half done.
SESSION_PENDING = "_auth_pending"
#: How long the second step may wait, in seconds.
PENDING_FOR = 300.0


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """A sign-in waiting for its second factor: who, since when, how the first step went."""

    user: User
    started_at: float
    via: str
    methods: tuple[str, ...]
    next: str
    remember: bool
    #: The policy (``require_two_factor``) covers them and they have no second factor:
    #: they enrol one before the sign-in completes.
    must_enrol: bool = False


async def begin_second_step(
    conn: Any,
    user: User,
    *,
    doorman: Doorman | None = None,
    via: str = "password",
    methods: Sequence[str] | None = None,
    next: str = "",
    remember: bool = True,
    must_enrol: bool = False,
) -> None:
    """Note on this request's session that ``user`` passed the first step (``via``).

    ``next`` and ``remember`` are kept for the end: where to go, and whether the
    session outlives the browser; ``must_enrol``: the second step is enrolling a
    first factor (the policy covers them). Nobody is signed in yet.
    """
    doorman = doorman if doorman is not None else current_doorman(scope_of(conn))
    session = await load_session(conn)
    session[SESSION_PENDING] = {
        "user": user.id,
        "hash": doorman.session_auth_hash(user),
        "at": time.time(),
        "via": via,
        "methods": list(methods if methods is not None else METHODS_BY_VIA.get(via, ())),
        "next": next,
        "remember": remember,
        "enrol": must_enrol,
    }


async def pending_second_step(conn: Any, *, doorman: Doorman | None = None) -> PendingSignIn | None:
    """The sign-in waiting on this session for its second factor; None when there is none,
    it expired, or the account changed since the first step (the note is then dropped)."""
    doorman = doorman if doorman is not None else current_doorman(scope_of(conn))
    session = await load_session(conn)
    note = session.get(SESSION_PENDING)
    if note is None:
        return None
    pending = await _read(doorman, note)
    if pending is None:
        session.pop(SESSION_PENDING, None)
    return pending


async def complete_second_step(
    conn: Any, pending: PendingSignIn, method: str, *, doorman: Doorman | None = None
) -> dict[str, Any]:
    """Sign the pending user in, the second factor (``method``: ``otp``, ``hwk``...) proven;
    return the actor. The caller has checked the factor."""
    session = await load_session(conn)
    session.pop(SESSION_PENDING, None)
    methods = [*pending.methods, method]
    return await login(conn, pending.user, doorman=doorman, via=pending.via, methods=methods)


async def forget_second_step(conn: Any) -> None:
    """Drop a pending sign-in (the person cancelled, or signs in another way)."""
    session = await load_session(conn)
    session.pop(SESSION_PENDING, None)


async def _read(doorman: Doorman, note: object) -> PendingSignIn | None:
    if not isinstance(note, dict):
        return None
    user_id, started_at = note.get("user"), note.get("at")
    methods, via = note.get("methods"), note.get("via")
    if type(user_id) is not int or not isinstance(started_at, int | float):
        return None
    if not isinstance(via, str) or not isinstance(methods, list):
        return None
    if not 0 <= time.time() - started_at < PENDING_FOR:
        return None
    user = await doorman.users.get(user_id)
    if user is None or not user.is_active:
        return None
    if not doorman.session_auth_hash_matches(user, note.get("hash")):
        return None
    next_, remember = note.get("next"), note.get("remember")
    return PendingSignIn(
        user=user,
        started_at=float(started_at),
        via=via,
        methods=tuple(m for m in methods if isinstance(m, str)),
        next=next_ if isinstance(next_, str) else "",
        remember=remember is not False,
        must_enrol=note.get("enrol") is True,
    )
