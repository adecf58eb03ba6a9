"""``SessionSigner``: the session cookie's signature, and the one it had before.

A session cookie is ``<key>.<mac>``: the store's key (an id, or the cookie
store's data) and an HMAC-SHA256 of it truncated to 128 bits, 22 characters,
under a key derived from each secret for this purpose alone (salt
``doorman.session``). Until issue 14 the MAC was the whole 256 bits, 43
characters, under another derived key; such cookies are still read, so an
upgrade signs nobody out, and the next save writes the short MAC.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..signing import MIN_DIGEST_SIZE, MIN_SECRET_LENGTH, Signer

__all__ = ["SALT", "SessionSigner"]

SALT = "doorman.session"
_FULL_MAC_CHARACTERS = 43  # the whole HMAC-SHA256 in unpadded base64: the format before


class SessionSigner:
    """``sign`` a session key for its cookie; ``unsign`` a cookie of either format."""

    __slots__ = ("_before", "_signer")

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
        # The length of the MAC says which format: each is checked by its own signer only.
        if len(cookie) - cookie.rfind(".") - 1 == _FULL_MAC_CHARACTERS:
            return self._before.unsign(cookie), False
        return self._signer.unsign_newest(cookie)
