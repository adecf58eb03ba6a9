"""The signed-cookie store: session data travels in the cookie itself.

Nothing is kept server-side, so it scales to any number of workers with no
shared state, but a copied cookie stays valid until it expires: ending it
early needs server state (the per-user session version of ``doorman.auth``).
The key is the payload behind its expiry, as URL-safe base64 without padding:
4 bytes of expiry (Unix time, big-endian), then the payload in UTF-8. The
middleware signs it (HMAC-SHA256, 128 bits), which is what makes it
trustworthy. Browsers drop cookies over about 4 KB, so the middleware refuses
to send one (``SessionTooLarge``).

Keys written before issue 14, ``<expiry>.<standard base64 payload>``, are
still read; the middleware verifies them with the signature of then.
"""

from __future__ import annotations

import binascii
import time

from ..exceptions import BadSignature
from ..signing import b64decode, b64encode

__all__ = ["CookieStore"]

_EXPIRY_BYTES = 4
_LAST_EXPIRY = 2**32 - 1  # 2106: "no end" for a cookie
_REMEMBERED = 1024  # keys decoded, as many as the middleware remembers signatures
_REMEMBERED_LENGTH = 1024  # characters: a 2 MB bound in all


class CookieStore:
    """Stateless store: ``save`` encodes, ``load`` decodes; nothing to delete."""

    stateless = True

    def __init__(self) -> None:
        # The last keys decoded, with their expiry and payload: a browser sends the same
        # cookie until it changes, and decoding is most of a load. Keys come here only
        # once the middleware has checked their signature.
        self._decoded: dict[str, tuple[int, str | None]] = {}

    def load_nowait(self, key: str) -> str | None:
        decoded = self._decoded.get(key)
        if decoded is None:
            decoded = self._decode(key)
            if len(key) <= _REMEMBERED_LENGTH:
                remembered = self._decoded
                remembered[key] = decoded
                if len(remembered) > _REMEMBERED:
                    remembered.pop(next(iter(remembered)), None)  # the oldest
        expiry, payload = decoded
        return payload if expiry > time.time() else None

    @staticmethod
    def _decode(key: str) -> tuple[int, str | None]:
        """The key's expiry and payload; 0 and None for a key that is not one."""
        if "." in key:  # not in base64's URL-safe alphabet: a key of the format before
            return _decode_before(key)
        try:
            packed = b64decode(key)
            return int.from_bytes(packed[:_EXPIRY_BYTES], "big"), packed[_EXPIRY_BYTES:].decode()
        except (BadSignature, UnicodeDecodeError):
            return 0, None

    async def load(self, key: str) -> str | None:
        return self.load_nowait(key)

    def save_nowait(self, key: str | None, payload: str, expires_at: float) -> str:
        expiry = min(max(int(expires_at), 0), _LAST_EXPIRY)
        return b64encode(expiry.to_bytes(_EXPIRY_BYTES, "big") + payload.encode())

    async def save(self, key: str | None, payload: str, expires_at: float) -> str:
        return self.save_nowait(key, payload, expires_at)

    async def delete(self, key: str) -> None:
        return None

    async def clear_expired(self) -> int:
        return 0

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _decode_before(key: str) -> tuple[int, str | None]:
    """The expiry and payload of a key of the format before issue 14; 0 and None if not one."""
    stamp, sep, encoded = key.partition(".")
    if not (sep and stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        return 0, None
    try:
        return int(stamp), binascii.a2b_base64(encoded, strict_mode=True).decode()
    except (binascii.Error, ValueError):
        return 0, None
