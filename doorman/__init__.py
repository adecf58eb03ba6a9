"""doorman: sessions, accounts and sign-in for ASGI apps."""

from __future__ import annotations

from typing import Any

from .exceptions import (
    BadSignature,
    ConfigError,
    DoormanError,
    SessionDataError,
    SessionError,
    SessionInterrupted,
    SessionNotLoaded,
    SessionTooLarge,
    SignatureExpired,
    StoreError,
)
from .sessions import Session, SessionMiddleware, clear_session, get_session, load_session
from .signing import JSONSigner, Signer, TimestampSigner
from .stores import CookieStore, MemoryStore, SessionStore

__version__ = "0.1.0.dev0"

__all__ = [
    "BadSignature",
    "ConfigError",
    "CookieStore",
    "DoormanError",
    "JSONSigner",
    "MemoryStore",
    "RedisStore",
    "SQLStore",
    "Session",
    "SessionDataError",
    "SessionError",
    "SessionInterrupted",
    "SessionMiddleware",
    "SessionNotLoaded",
    "SessionStore",
    "SessionTooLarge",
    "SignatureExpired",
    "Signer",
    "StoreError",
    "TimestampSigner",
    "clear_session",
    "get_session",
    "load_session",
]


def __getattr__(name: str) -> Any:
    if name in ("SQLStore", "RedisStore"):
        from . import stores

        return getattr(stores, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
