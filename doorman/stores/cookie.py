"""The signed-cookie store: session data travels in the cookie itself.

Nothing is kept server-side, so it scales to any number of workers with no
shared state, but a copied cookie stays valid until it expires: ending it
early needs server state (the per-user session version of ``doorman.auth``).
The key is ``<expiry>.<base64 JSON>``; the middleware signs it with
HMAC-SHA256, which is what makes it trustworthy. Browsers drop cookies over
about 4 KB, so the middleware refuses to send one (``SessionTooLarge``).
"""

from __future__ import annotations

import binascii
import time

__all__ = ["CookieStore"]


class CookieStore:
    """Stateless store: ``save`` encodes, ``load`` decodes; nothing to delete."""

    stateless = True

    def load_nowait(self, key: str) -> str | None:
        stamp, sep, encoded = key.partition(".")
        if not (sep and stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
            return None
        if int(stamp) <= time.time():
            return None
        try:
            return binascii.a2b_base64(encoded, strict_mode=True).decode()
        except (binascii.Error, ValueError):
            return None

    async def load(self, key: str) -> str | None:
        return self.load_nowait(key)

    def save_nowait(self, key: str | None, payload: str, expires_at: float) -> str:
        # Standard base64: "+", "/" and "=" are all allowed in cookie values (RFC 6265).
        return f"{int(expires_at)}.{binascii.b2a_base64(payload.encode(), newline=False).decode()}"

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
