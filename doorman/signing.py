"""Signing with HMAC-SHA256, key rotation and timestamps.

Layers, as in itsdangerous: ``Signer`` (value.mac) -> ``TimestampSigner``
(value.time.mac, with a max age) -> ``JSONSigner`` (JSON in, JSON out).

Secrets are given newest first: the newest signs, every one verifies, so a new
secret can be rolled out without invalidating what the old one signed. Each
purpose gets its own ``salt``, so a value signed for one use (a session cookie)
is never accepted for another (a ``next`` URL).

The MAC is the whole HMAC-SHA256 (32 bytes) unless ``digest_size`` asks for
less: 16 bytes (128 bits, NIST SP 800-107's truncation) is what a value sent on
every request, the session cookie, uses. A shorter MAC gets a key of its own,
so it is never the prefix of a full one that the same secret and salt made.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

from .exceptions import BadSignature, ConfigError, SignatureExpired

__all__ = [
    "MAKE_A_SECRET",
    "MIN_DIGEST_SIZE",
    "MIN_SECRET_LENGTH",
    "JSONSigner",
    "Signer",
    "TimestampSigner",
    "normalize_secrets",
]

MIN_SECRET_LENGTH = 32
#: The shortest MAC a ``Signer`` makes: 128 bits.
MIN_DIGEST_SIZE = 16
#: The one piece of advice on making a secret, wherever a message or the docs give it.
MAKE_A_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"  # noqa: S105
_SEP = "."
_BLOCK = 64  # SHA-256 block size
_DIGEST_SIZE = 32  # SHA-256's, whole


def normalize_secrets(
    secrets: str | bytes | Sequence[str | bytes], *, min_length: int = MIN_SECRET_LENGTH
) -> list[bytes]:
    """Return the secrets as bytes, newest first; refuse none, or one under ``min_length``."""
    if isinstance(secrets, str | bytes):
        secrets = [secrets]
    keys = [s.encode() if isinstance(s, str) else bytes(s) for s in secrets]
    if not keys:
        raise ConfigError("secret: no secret given; set DOORMAN_SECRET or pass secret=...")
    for position, key in enumerate(keys, 1):
        if len(key) < min_length:
            raise ConfigError(
                f"secret #{position} is {len(key)} characters long; doorman needs at least "
                f"{min_length}. Make one with: {MAKE_A_SECRET}"
            )
    return keys


_b2a = binascii.b2a_base64
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64(data: bytes) -> bytes:
    # base64.urlsafe_b64encode, without its Python-level wrapper: this runs per request.
    return _b2a(data, newline=False).rstrip(b"=").translate(_TO_URLSAFE)


def b64encode(data: bytes) -> str:
    """Unpadded URL-safe base64."""
    return _b64(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Decode unpadded URL-safe base64; raise ``BadSignature`` on garbage."""
    try:
        # base64.urlsafe_b64decode without its wrapper, and strict: no character skipped.
        data = text.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(text) % 4)
        return binascii.a2b_base64(data, strict_mode=True)
    except ValueError as exc:  # binascii.Error and UnicodeEncodeError are ValueErrors
        raise BadSignature("value is not base64") from exc


def _hmac_states(key: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer pads already hashed."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    return inner, outer


class Signer:
    """Appends an HMAC-SHA256 of the value; verifies it in constant time.

    ``digest_size`` (16 to 32 bytes) truncates the MAC. ``min_length`` is lowered
    only for secrets that are accepted with a warning (Starlette's ``secret_key=``).
    """

    def __init__(
        self,
        secrets: str | bytes | Sequence[str | bytes],
        *,
        salt: str = "doorman.signer",
        min_length: int = MIN_SECRET_LENGTH,
        digest_size: int = _DIGEST_SIZE,
    ) -> None:
        if not MIN_DIGEST_SIZE <= digest_size <= _DIGEST_SIZE:
            raise ConfigError(
                f"digest_size={digest_size!r}: a MAC of {MIN_DIGEST_SIZE} to {_DIGEST_SIZE} "
                "bytes; 16 is 128 bits"
            )
        self.salt = salt
        self.digest_size = digest_size
        label = b"doorman.signing\x00" + salt.encode()
        if digest_size != _DIGEST_SIZE:
            label = b"doorman.signing.%d\x00" % digest_size + salt.encode()
        # One key per secret and purpose, derived once; each kept as HMAC's two
        # padded hash states, so a MAC costs two hash copies, not a key schedule.
        self._keys = [
            _hmac_states(hmac.digest(s, label, "sha256"))
            for s in normalize_secrets(secrets, min_length=min_length)
        ]

    def _mac(self, key: tuple[Any, Any], message: bytes) -> bytes:
        inner = key[0].copy()
        inner.update(message)
        outer = key[1].copy()
        outer.update(inner.digest())
        mac = _b2a(outer.digest()[: self.digest_size], newline=False)  # _b64, inlined
        return mac.rstrip(b"=").translate(_TO_URLSAFE)

    def sign(self, value: str) -> str:
        """Return ``value.mac``, signed with the newest secret."""
        return value + _SEP + self._mac(self._keys[0], value.encode()).decode("ascii")

    def unsign(self, signed: str) -> str:
        """Return the value if any configured secret signed it, else raise ``BadSignature``."""
        return self.unsign_newest(signed)[0]

    def unsign_newest(self, signed: str) -> tuple[str, bool]:
        """``unsign``, and whether the newest secret signed it: then it needs no re-signing."""
        value, sep, mac = signed.rpartition(_SEP)
        if not sep:
            raise BadSignature("no signature found")
        try:
            given = mac.encode("ascii")
        except UnicodeEncodeError:
            raise BadSignature("signature is not ASCII") from None
        message = value.encode()
        newest = True
        for key in self._keys:
            if hmac.compare_digest(given, self._mac(key, message)):
                return value, newest
            newest = False
        raise BadSignature("signature does not match")


class TimestampSigner(Signer):
    """Signs ``value.timestamp``; ``unsign`` can refuse values older than ``max_age``."""

    def __init__(
        self,
        secrets: str | bytes | Sequence[str | bytes],
        *,
        salt: str = "doorman.timestamp-signer",
    ) -> None:
        super().__init__(secrets, salt=salt)

    def sign(self, value: str, *, now: float | None = None) -> str:
        stamp = int(time.time() if now is None else now)
        return super().sign(f"{value}{_SEP}{stamp}")

    def unsign(self, signed: str, max_age: float | None = None) -> str:
        return self.unsign_timestamp(signed, max_age)[0]

    def unsign_timestamp(
        self, signed: str, max_age: float | None = None, *, now: float | None = None
    ) -> tuple[str, int]:
        """Return ``(value, signed_at)``; raise ``SignatureExpired`` past ``max_age`` seconds."""
        value, sep, stamp = super().unsign(signed).rpartition(_SEP)
        if not sep or not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
            raise BadSignature("no timestamp found")
        signed_at = int(stamp)
        if max_age is not None:
            age = (time.time() if now is None else now) - signed_at
            if age > max_age:
                raise SignatureExpired(
                    f"signature is {age:.0f}s old, more than {max_age}s", signed_at=signed_at
                )
        return value, signed_at


class JSONSigner:
    """``dumps`` a JSON value into a signed, URL-safe string; ``loads`` it back."""

    def __init__(
        self,
        secrets: str | bytes | Sequence[str | bytes],
        *,
        salt: str = "doorman.json",
    ) -> None:
        self._signer = TimestampSigner(secrets, salt=salt)

    def dumps(self, obj: Any) -> str:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
        return self._signer.sign(b64encode(text.encode()))

    def loads(self, signed: str, max_age: float | None = None) -> Any:
        payload = self._signer.unsign(signed, max_age)
        try:
            return json.loads(b64decode(payload))
        except ValueError as exc:  # a valid signature over bad JSON: only a leaked key does that
            raise BadSignature("signed payload is not JSON") from exc
