"""The store protocol: where session data lives between requests.

A store keeps an opaque text payload (JSON written by ``Session``) under a key,
until an absolute expiry time. Server-side stores mint the key themselves from
``secrets``; the SQL and Redis stores keep only a SHA-256 of it, so a leaked
database or Redis dump holds no usable session ids. The cookie store keeps nothing: its key *is* the
payload, and the middleware's signature is what protects it.

Every store passes the conformance suite in ``doorman.testing``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Protocol, runtime_checkable

__all__ = [
    "KEY_BYTES",
    "SessionStore",
    "SyncLoadable",
    "is_session_key",
    "new_session_key",
    "storage_id",
]

KEY_BYTES = 32  # 256 bits from the OS CSPRNG
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


def new_session_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def is_session_key(key: str) -> bool:
    """True for strings shaped like a key from ``new_session_key``."""
    return _KEY_PATTERN.fullmatch(key) is not None


def storage_id(key: str) -> str:
    """What a server-side store writes down instead of the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


@runtime_checkable
class SessionStore(Protocol):
    """Async storage for session payloads. Failures raise ``StoreError``."""

    #: True when the store keeps nothing server-side (the signed-cookie store).
    stateless: bool

    async def load(self, key: str) -> str | None:
        """The payload saved under ``key``, or None when unknown or expired."""

    async def save(self, key: str | None, payload: str, expires_at: float) -> str:
        """Save ``payload`` until ``expires_at`` (Unix time) and return the key.

        ``key=None`` creates a session under a new key. Saving under a key that
        no longer exists raises ``SessionInterrupted``: the session was ended
        elsewhere (a logout in another tab) and must not be brought back.
        """

    async def delete(self, key: str) -> None:
        """Forget ``key``; deleting an unknown key is not an error."""

    async def clear_expired(self) -> int:
        """Remove expired sessions; return how many were removed (if known)."""

    async def ping(self) -> None:
        """Return when the store answers; raise ``StoreError`` when it does not."""

    async def close(self) -> None:
        """Release connections."""


@runtime_checkable
class SyncLoadable(Protocol):
    """A store that can load without I/O, so sessions can load on first access."""

    def load_nowait(self, key: str) -> str | None: ...


# A store may also define ``save_nowait(key, payload, expires_at) -> str`` (same
# contract as ``save``) when saving needs no I/O; sessions then skip a coroutine.
