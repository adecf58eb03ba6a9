"""Sessions: the ASGI middleware and the ``Session`` mapping it provides."""

from __future__ import annotations

from .middleware import MAX_COOKIE_BYTES, SessionMiddleware
from .policy import SessionPolicy
from .session import Session, clear_session, get_session, load_session

__all__ = [
    "MAX_COOKIE_BYTES",
    "Session",
    "SessionMiddleware",
    "SessionPolicy",
    "clear_session",
    "get_session",
    "load_session",
]
