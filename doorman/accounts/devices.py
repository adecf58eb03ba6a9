"""Device cookies: a browser that signed in to an account keeps a throttle bucket of its own.

OWASP's answer to account lockout ("Slow Down Online Guessing Attacks with
Device Cookies"): failures from elsewhere lock an account only for clients the
account never signed in from. After a sign-in with the right password, the
browser gets ``doorman_device``: a signed value (``JSONSigner``, salt
``doorman.device``) holding a random nonce for the browser and a *mark* for
each of the latest five accounts it signed in to. A mark is a MAC (its own
salt) of the account's id, session version and password hash: the cookie names
no account, only the server can tell whether it holds a mark for one, and a new
password or "sign out everywhere" turns the account's marks on every device
untrusted. Standard library and ``signing`` only.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..exceptions import BadSignature
from ..signing import JSONSigner, Signer

if TYPE_CHECKING:
    from .users import User

__all__ = ["DEVICE_COOKIE", "DEVICE_MAX_AGE", "DeviceCookies"]

DEVICE_COOKIE = "doorman_device"
#: How long a browser stays trusted without signing in again (each sign-in renews it).
DEVICE_MAX_AGE = 365 * 86400
_MAX_ACCOUNTS = 5
_MAX_COOKIE = 4096


class DeviceCookies:
    """Makes and reads ``doorman_device`` values; ``secret`` as the session middleware's."""

    def __init__(
        self, secret: str | bytes | Sequence[str | bytes], *, max_age: int = DEVICE_MAX_AGE
    ) -> None:
        self.max_age = max_age
        self._cookie = JSONSigner(secret, salt="doorman.device")
        self._mark = Signer(secret, salt="doorman.device-account")

    def device_for(self, cookie: str | None, user: User) -> str | None:
        """The id of this browser's own bucket for ``user``, or None: no valid mark for them."""
        found = self._read(cookie)
        if found is None:
            return None
        nonce, marks = found
        material = _material(user)
        for mark in marks:
            try:
                self._mark.unsign(f"{material}.{mark}")  # constant-time, every secret
            except BadSignature:
                continue
            return f"{nonce}:{user.id}"
        return None

    def remember(self, cookie: str | None, user: User) -> str:
        """The value to set after ``user`` signed in with this browser: their mark first."""
        nonce, marks = self._read(cookie) or (secrets.token_urlsafe(16), [])
        mark = self._mark.sign(_material(user)).rpartition(".")[2]
        kept = [mark, *(m for m in marks if m != mark)][:_MAX_ACCOUNTS]
        return self._cookie.dumps({"n": nonce, "a": kept})

    def _read(self, cookie: str | None) -> tuple[str, list[str]] | None:
        if not cookie or len(cookie) > _MAX_COOKIE:
            return None
        try:
            data = self._cookie.loads(cookie, max_age=self.max_age)
        except BadSignature:  # tampered, expired, or signed with a retired secret
            return None
        if not isinstance(data, dict):
            return None
        nonce, marks = data.get("n"), data.get("a")
        if not (isinstance(nonce, str) and nonce and isinstance(marks, list)):
            return None
        return nonce, [m for m in marks[:_MAX_ACCOUNTS] if isinstance(m, str)]


def _material(user: User) -> str:
    return f"{user.id}:{user.session_version}:{user.password_hash or ''}"
