"""Step-up ("sudo mode"): a recent proof of who the person is, before what could lock them out.

``login()`` notes when the person last proved who they are
(``SESSION_AUTHENTICATED_AT``); a step-up (the password again, later a TOTP
code or a passkey) notes it anew. Changing the password, the email address or
the second factors, and making API tokens, ask for a proof no older than the
``step_up_after`` setting: a session left open on a shared computer, or a
stolen cookie, cannot take the account over. Only sessions step up: an API
token's scopes say what it may do.
"""

from __future__ import annotations

import math
import time
from collections.abc import MutableMapping
from typing import Any

from .signed_in import SESSION_AUTH_METHODS, SESSION_AUTHENTICATED_AT

__all__ = ["last_proved", "mark_proved", "proof_is_fresh"]

#: A proof dated this far ahead of the clock is taken as made now (clocks of workers differ).
_CLOCK_SKEW = 60.0


def last_proved(session: MutableMapping[str, Any] | None) -> float | None:
    """When the session's person last proved who they are (Unix seconds); None when it does
    not say (a session from before step-up existed, or a value that is not a time)."""
    found = session.get(SESSION_AUTHENTICATED_AT) if session is not None else None
    if not isinstance(found, int | float) or isinstance(found, bool) or not math.isfinite(found):
        return None
    return float(found)


def proof_is_fresh(session: MutableMapping[str, Any] | None, max_age: float) -> bool:
    """Whether the last proof is younger than ``max_age`` seconds; never for a session that
    does not say when."""
    proved = last_proved(session)
    if proved is None:
        return False
    age = time.time() - proved
    return -_CLOCK_SKEW <= age < max_age


def mark_proved(session: MutableMapping[str, Any], method: str) -> None:
    """The person proved who they are just now, by ``method`` (an ``amr`` value: ``pwd``,
    ``otp``, ``hwk``): the time is noted, and the method joins the session's methods (a
    session signed in by a mailed link that then gives the password says ``email,pwd``)."""
    session[SESSION_AUTHENTICATED_AT] = time.time()
    methods = session.get(SESSION_AUTH_METHODS)
    methods = [m for m in methods if isinstance(m, str)] if isinstance(methods, list) else []
    if method not in methods:
        session[SESSION_AUTH_METHODS] = [*methods, method]
