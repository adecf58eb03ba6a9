"""What a security event may say: its kind, and a small ``detail`` without secrets.

The log is read by admins, copied into backups and shipped to other systems;
so the checks are strict and happen before anything is written. A key such as
``password``, ``token`` or ``link`` is a ``ValueError``: the caller has a bug,
and it should show in its tests rather than in the log. A value that looks
like a doorman API token is replaced by ``REDACTED`` (values may come from
clients: an ``Origin`` header, say). An API token's public id goes in ``token_id``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from .tokens import PREFIX as TOKEN_PREFIX

__all__ = ["REDACTED", "check_detail", "check_kind"]

#: What a value that looks like an API token is written as.
REDACTED = "[redacted: it looked like an API token]"

_KIND = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_KIND_LENGTH = 40
_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: Words that never appear in a detail's key: what they name must not be logged.
_SECRET_WORDS = ("password", "passwd", "secret", "cookie", "csrf", "hash", "otp")
#: A doorman API token: its public id, then the secret part.
_TOKEN = re.compile(re.escape(TOKEN_PREFIX) + r"[0-9a-fA-F]{16}_")
#: Keys refused as they are (``token_id`` is fine: a token's public part).
_SECRET_KEYS = frozenset({"token", "link", "url", "key", "code", "session", "signin"})
_MAX_KEYS = 16
_MAX_ITEMS = 20
_MAX_TEXT = 200


def check_kind(kind: str) -> str:
    """``kind`` as stored: lower-case words joined by hyphens, at most 40 characters."""
    text = str(kind)
    if len(text) > _KIND_LENGTH or not _KIND.fullmatch(text):
        raise ValueError(
            f"event kind {text[:60]!r}: use lower-case words joined by hyphens, "
            f"at most {_KIND_LENGTH} characters"
        )
    return text


def check_detail(detail: Mapping[str, Any] | None) -> str | None:
    """``detail`` as JSON text (None when empty): plain values, long text cut short."""
    if not detail:
        return None
    if len(detail) > _MAX_KEYS:
        raise ValueError(f"event detail: {len(detail)} keys; at most {_MAX_KEYS}")
    checked = {_check_key(key): _check_value(key, value) for key, value in detail.items()}
    return json.dumps(checked, ensure_ascii=False, sort_keys=True)


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"event detail key {key!r}: use lower-case letters, digits and _")
    if key in _SECRET_KEYS or any(word in key for word in _SECRET_WORDS):
        raise ValueError(f"event detail key {key!r} names a secret: the log never holds one")
    return key


def _check_value(key: str, value: object) -> Any:
    if isinstance(value, list | tuple):
        if len(value) > _MAX_ITEMS:
            value = value[:_MAX_ITEMS]
        return [_check_value(key, item) for item in value if not isinstance(item, list | tuple)]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN nor infinity
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return REDACTED if _TOKEN.search(value) else value[:_MAX_TEXT]
    raise ValueError(f"event detail {key!r}: {type(value).__name__} is not a plain value")
