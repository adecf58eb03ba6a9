"""JSON for session records, without the ``json`` module's set-up on every call.

``JSONEncoder.encode`` builds a new C encoder for each value, and ``json.loads``
passes through three Python functions before its C scanner: together about a
microsecond of a request whose whole session costs a few. Here the C encoder is
built once, and the scanner that ``raw_decode`` calls reads what the session
wrote. The answers are ``json``'s own: an encoder that does not write exactly
what ``JSONEncoder`` writes (another Python, no C accelerator) is not used, and
text that the scanner does not read whole goes to ``json.loads``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["decode", "encode"]

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# What raw_decode calls; typeshed does not list the attribute.
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _c_encoder() -> Callable[[Any], str] | None:
    """``JSONEncoder.iterencode``'s C encoder, built once; None where it is not the same."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        # The arguments iterencode gives it (CPython 3.6 to 3.13). No markers: a shared
        # dict would keep the ids an error left behind; a cycle is a RecursionError.
        chunks = make(
            None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", *[False] * 3
        )
    except TypeError:
        return None

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    probe = {"d": {"s": 'naïve "☃"\n', "n": [1, -2.5, 1e100, None, True]}, "c": 1}
    try:
        same = encode(probe) == _ENCODER.encode(probe)
    except Exception:  # any surprise means: use json's own
        return None
    return encode if same else None


#: ``JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode``
encode: Callable[[Any], str] = _c_encoder() or _ENCODER.encode


def decode(text: str) -> Any:
    """``json.loads(text)``."""
    try:
        value, end = _scan_once(text, 0)  # what raw_decode calls
    except StopIteration:
        return json.loads(text)  # leading blanks, or an error to raise as json.loads does
    if end != len(text):
        return json.loads(text)
    return value
