"""The session auth hash: what a signed-in session holds to prove it is still good.

A MAC (HMAC-SHA256, its own salt) of the user's id, session version and
password hash. A new password or ``Users.end_sessions`` changes it, which ends
every session that holds the old one, in every store, signed cookies included.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import BadSignature
from ..signing import Signer
from .users import User

__all__ = ["SessionAuth"]

#: Hashes remembered as verified (only good ones; each about 300 bytes).
_VERIFIED = 10_000


class SessionAuth:
    """Makes and checks session auth hashes with ``secret`` (or a list, newest first)."""

    def __init__(self, secret: str | Sequence[str]) -> None:
        self._signer = Signer(secret, salt="doorman.auth-hash")
        self._verified: dict[tuple[str, str], None] = {}

    def hash(self, user: User) -> str:
        """The hash to keep in the sessions of ``user`` now."""
        return self._signer.sign(_material(user)).rpartition(".")[2]

    def matches(self, user: User, given: object) -> bool:
        """Whether ``given`` (what a session holds) is ``user``'s hash, under any secret."""
        if not isinstance(given, str):
            return False
        material = _material(user)
        verified = self._verified
        if (material, given) in verified:  # checked before: every request of a session asks
            return True
        try:
            self._signer.unsign(f"{material}.{given}")
        except BadSignature:
            return False
        verified[material, given] = None
        if len(verified) > _VERIFIED:
            del verified[next(iter(verified))]  # the oldest
        return True


def _material(user: User) -> str:
    return f"{user.id}:{user.session_version}:{user.password_hash or ''}"
