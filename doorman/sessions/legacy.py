"""Reading, once, a cookie that Starlette's ``SessionMiddleware`` signed.

A middleware built with Starlette's spelling, ``secret_key=``, takes over the
sessions Starlette left behind: the data becomes a doorman session and the
cookie is re-issued in doorman's format, so nobody is signed out by the switch.

Starlette signs ``base64(json)`` with itsdangerous's ``TimestampSigner``:
``<payload>.<timestamp>.<signature>``. The timestamp is the signing time in
seconds, big-endian bytes; the signature is HMAC-SHA1 of
``<payload>.<timestamp>`` under the key ``sha1(b"itsdangerous.Signer" +
b"signer" + secret)``; both in URL-safe base64 without padding. This is
checked here with the standard library only, as the middleware depends on
nothing else; the tests check it against itsdangerous itself.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

from ..exceptions import BadSignature
from ..signing import b64decode, b64encode

__all__ = ["StarletteCookieReader"]

_SALT = b"itsdangerous.Signer"
_MAX_TIMESTAMP_BYTES = 8  # what itsdangerous reads back
#: Encodes as the session does when it saves (doorman.sessions.session).
_storable = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON that doorman can store")


class StarletteCookieReader:
    """``loads`` a Starlette session cookie signed with one of ``secrets``; else None."""

    def __init__(self, secrets: Sequence[bytes], max_age: int | None) -> None:
        # Starlette's format, so its hash: HMAC-SHA1 is still a sound MAC.
        self._keys = [hashlib.sha1(_SALT + b"signer" + secret).digest() for secret in secrets]  # noqa: S324
        self.max_age = max_age

    def loads(self, value: str, *, now: float | None = None) -> dict[str, Any] | None:
        """The session data in ``value``, or None if Starlette did not sign it with our secret.

        None too when it is older than ``max_age`` (Starlette's rule) or dated in the future.
        """
        if not value.isascii():
            return None
        signed, sep, signature = value.rpartition(".")
        if not sep:
            return None
        given, message = signature.encode("ascii"), signed.encode("ascii")
        if not any(hmac.compare_digest(given, _mac(key, message)) for key in self._keys):
            return None
        payload, sep, stamp = signed.rpartition(".")
        signed_at = _timestamp(stamp) if sep else None
        if signed_at is None or not self._fresh(signed_at, now):
            return None
        try:
            data = json.loads(
                binascii.a2b_base64(payload.encode("ascii")), parse_constant=_refuse_constant
            )
            # What doorman could not save again (1e999 is a float infinity; a lone
            # surrogate is no UTF-8) would be a 500 on the way out: refused here.
            _storable(data).encode()
        except (ValueError, RecursionError):  # binascii.Error and UnicodeError are ValueErrors
            return None
        return data if type(data) is dict else None

    def _fresh(self, signed_at: int, now: float | None) -> bool:
        if self.max_age is None:
            return True
        age = int(time.time() if now is None else now) - signed_at
        return 0 <= age <= self.max_age


def _mac(key: bytes, message: bytes) -> bytes:
    return b64encode(hmac.digest(key, message, "sha1")).encode("ascii")


def _timestamp(stamp: str) -> int | None:
    try:
        raw = b64decode(stamp)
    except BadSignature:  # not base64
        return None
    if not raw or len(raw) > _MAX_TIMESTAMP_BYTES:
        return None
    return int.from_bytes(raw, "big")
