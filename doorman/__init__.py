"""doorman: sessions, accounts and sign-in for ASGI apps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .exceptions import (
    AccountError,
    AddressTaken,
    AuthenticationFailed,
    BadSignature,
    ConfigError,
    DoormanError,
    MissingDependency,
    PasswordRejected,
    PermissionDenied,
    SessionDataError,
    SessionError,
    SessionInterrupted,
    SessionNotLoaded,
    SessionTooLarge,
    SignatureExpired,
    StoreError,
    Throttled,
    UsernameTaken,
    UsernameTooSimilar,
    UserNotFound,
    WeakSecretWarning,
)
from .sessions import Session, SessionMiddleware, clear_session, get_session, load_session
from .signing import JSONSigner, Signer, TimestampSigner
from .stores import CookieStore, MemoryStore, SessionStore

if TYPE_CHECKING:
    from .accounts.passwords import PasswordHasher
    from .accounts.throttle import LoginThrottle
    from .accounts.tokens import Token
    from .accounts.users import User
    from .auth.guards import allowed, guard, requires
    from .auth.login import login, logout, update_session_auth
    from .auth.middleware import AuthMiddleware
    from .auth.websockets import WebSocketOriginMiddleware
    from .core import Doorman
    from .gate import ExistingCookiesGate
    from .hookspecs import hookimpl
    from .stores import RedisStore, SQLStore

# The accounts side needs SQLAlchemy, argon2 and pluggy; it is imported on first
# use, so that an app using only the session middleware loads none of them.
_LAZY = {
    "SQLStore": "stores",
    "RedisStore": "stores",
    "Doorman": "core",
    "AuthMiddleware": "auth.middleware",
    "login": "auth.login",
    "logout": "auth.login",
    "update_session_auth": "auth.login",
    "allowed": "auth.guards",
    "guard": "auth.guards",
    "requires": "auth.guards",
    "User": "accounts.users",
    "Token": "accounts.tokens",
    "PasswordHasher": "accounts.passwords",
    "LoginThrottle": "accounts.throttle",
    "hookimpl": "hookspecs",
    "ExistingCookiesGate": "gate",
    "WebSocketOriginMiddleware": "auth.websockets",
}

__all__ = [
    "AccountError",
    "AddressTaken",
    "AuthMiddleware",
    "AuthenticationFailed",
    "BadSignature",
    "ConfigError",
    "CookieStore",
    "Doorman",
    "DoormanError",
    "ExistingCookiesGate",
    "JSONSigner",
    "LoginThrottle",
    "MemoryStore",
    "MissingDependency",
    "PasswordHasher",
    "PasswordRejected",
    "PermissionDenied",
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
    "Throttled",
    "TimestampSigner",
    "Token",
    "User",
    "UserNotFound",
    "UsernameTaken",
    "UsernameTooSimilar",
    "WeakSecretWarning",
    "WebSocketOriginMiddleware",
    "allowed",
    "clear_session",
    "get_session",
    "guard",
    "hookimpl",
    "load_session",
    "login",
    "logout",
    "requires",
    "update_session_auth",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
