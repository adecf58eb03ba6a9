"""Sessions: the ASGI middleware and the ``Session`` mapping it provides."""

from __future__ import annotations

from .middleware import MAX_COOKIE_BYTES, SessionMiddleware
from .policy import SessionPolicy
from .session import Session, clear_session, get_session, load_session
from .signer import SessionSigner

__all__ = [
    "MAX_COOKIE_BYTES",
    "Session",
    "SessionMiddleware",
    "SessionPolicy",
    "SessionSigner",
    "clear_session",
    "get_session",
    "load_session",
]
