"""One-time links for accounts: a password reset, an address to verify, a sign-in by email.

Stateless, as Django's ``PasswordResetTokenGenerator``: a token is the user's id,
the time it was made and a MAC, keyed by doorman's secret and a salt of the
link's purpose, over those and what the link must not outlive: for a reset
or a sign-in, the password hash, the last sign-in and the address; for an
address to verify, the address, whether it is verified and the address
waiting to replace it. A reset changes the hash and signs the person in, so
its link works once; a newer password, a sign-in since or another address
supersedes it; a link made for one purpose is never accepted for another.
Nothing is stored, so nothing leaks from a copy of the database either.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Literal

from ..exceptions import BadSignature
from ..signing import Signer
from .user import User

__all__ = ["DEFAULT_MAX_AGES", "AccountLinks", "Purpose"]

Purpose = Literal["password-reset", "verify-email", "resend-verification", "sign-in"]
#: How long each kind of link works, in seconds.
DEFAULT_MAX_AGES: Mapping[Purpose, int] = {
    "password-reset": 3600,
    "verify-email": 3 * 86400,
    #: Lets a refused sign-in ask for the verification link again, and nothing else.
    "resend-verification": 900,
    "sign-in": 900,
}
_TOKEN = re.compile(r"([0-9a-z]{1,13})-([0-9a-z]{1,8})-([A-Za-z0-9_-]{43})")
#: The largest id a database's integer holds; 13 base-36 digits go past it.
_MAX_ID = 2**63 - 1


class AccountLinks:
    """``make("password-reset", user)``: a token; ``check(purpose, token, user)``: still good?"""

    def __init__(
        self,
        secret: str | bytes | Sequence[str | bytes],
        *,
        max_ages: Mapping[Purpose, int] | None = None,
    ) -> None:
        self.max_ages = {**DEFAULT_MAX_AGES, **(max_ages or {})}
        self._signers = {
            purpose: Signer(secret, salt=f"doorman.link.{purpose}") for purpose in self.max_ages
        }

    def make(self, purpose: Purpose, user: User, *, now: float | None = None) -> str:
        made_at = int(time.time() if now is None else now)
        signed = self._signers[purpose].sign(_material(purpose, user, made_at))
        return f"{_base36(user.id)}-{_base36(made_at)}-{signed.rpartition('.')[2]}"

    @staticmethod
    def user_id(token: str) -> int | None:
        """The id of the user a well-formed token names (not yet checked), else None."""
        found = _TOKEN.fullmatch(token) if isinstance(token, str) else None
        user_id = int(found.group(1), 36) if found else None
        return user_id if user_id is not None and user_id <= _MAX_ID else None

    def check(self, purpose: Purpose, token: str, user: User, *, now: float | None = None) -> bool:
        """Whether ``token`` is a ``purpose`` link for ``user`` as they are now, unexpired."""
        found = _TOKEN.fullmatch(token) if isinstance(token, str) else None
        if found is None or int(found.group(1), 36) != user.id:
            return False
        made_at = int(found.group(2), 36)
        age = (time.time() if now is None else now) - made_at
        if not -60 <= age <= self.max_ages[purpose]:  # a minute of clock skew between workers
            return False
        try:
            self._signers[purpose].unsign(f"{_material(purpose, user, made_at)}.{found.group(3)}")
        except BadSignature:
            return False
        return user.is_active


def _material(purpose: Purpose, user: User, made_at: int) -> str:
    """What a link is bound to: any change to it ends every link made before.

    A sign-in (``last_login``) ends reset and sign-in links, which sign in; it
    does not end an address's link, which a new account gets before signing in.
    """
    state: tuple[str, ...]
    if purpose in ("verify-email", "resend-verification"):
        state = (user.email or "", repr(user.email_verified), user.pending_email or "")
    else:
        state = (user.password_hash or "", repr(user.last_login), user.email or "")
    return "|".join((str(user.id), str(made_at), *state))


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text
