"""``SessionSigner``: the session cookie's signature, and the one it had before.

A session cookie is ``<key>.<mac>``: the store's key (an id, or the cookie
store's data) and an HMAC-SHA256 of it truncated to 128 bits, 22 characters,
under a key derived from each secret for this purpose alone (salt
``doorman.session``). Until issue 14 the MAC was the whole 256 bits, 43
characters, under another derived key; such cookies are still read, so an
upgrade signs nobody out, and the next save writes the short MAC.

A browser sends the same cookie until it changes, so the cookies verified last
are remembered, as ``Doorman`` remembers verified auth hashes: a request whose
cookie is one of them costs a dict lookup, not an HMAC. Only cookies that passed
the constant-time check are remembered, and a lookup needs the cookie whole:
its hash and then every character must match, so a guess learns nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..signing import MIN_DIGEST_SIZE, MIN_SECRET_LENGTH, Signer

__all__ = ["SALT", "SessionSigner"]

SALT = "doorman.session"
#: How many verified cookies are remembered, up to ``REMEMBERED_LENGTH`` characters each.
REMEMBERED = 1024
REMEMBERED_LENGTH = 1024
_FULL_MAC_CHARACTERS = 43  # the whole HMAC-SHA256 in unpadded base64: the format before


class SessionSigner:
    """``sign`` a session key for its cookie; ``unsign`` a cookie of either format."""

    __slots__ = ("_before", "_signer", "_verified")

    def __init__(
        self,
        secrets: str | bytes | Sequence[str | bytes],
        *,
        min_length: int = MIN_SECRET_LENGTH,
    ) -> None:
        self._signer = Signer(
            secrets, salt=SALT, min_length=min_length, digest_size=MIN_DIGEST_SIZE
        )
        self._before = Signer(secrets, salt=SALT, min_length=min_length)
        self._verified: dict[str, tuple[str, bool]] = {}

    def sign(self, key: str) -> str:
        """``<key>.<mac>``, the MAC 128 bits long, made with the newest secret."""
        return self._signer.sign(key)

    def unsign(self, cookie: str) -> str:
        """The key a cookie carries, if one of the secrets signed it; else ``BadSignature``."""
        return self.unsign_newest(cookie)[0]

    def unsign_newest(self, cookie: str) -> tuple[str, bool]:
        """``unsign``, and whether the cookie is as ``sign`` would make it now.

        False for a cookie signed by an older secret or in the format before:
        saving the session again must sign it anew.
        """
        verified = self._verified.get(cookie)
        if verified is not None:
            return verified
        # The length of the MAC says which format: each is checked by its own signer only.
        if len(cookie) - cookie.rfind(".") - 1 == _FULL_MAC_CHARACTERS:
            verified = self._before.unsign(cookie), False
        else:
            verified = self._signer.unsign_newest(cookie)
        if len(cookie) <= REMEMBERED_LENGTH:
            self._remember(cookie, verified)
        return verified

    def _remember(self, cookie: str, verified: tuple[str, bool]) -> None:
        remembered = self._verified
        remembered[cookie] = verified
        if len(remembered) > REMEMBERED:
            remembered.pop(next(iter(remembered)), None)  # the oldest
