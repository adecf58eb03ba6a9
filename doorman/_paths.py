"""Public paths are matched only on a path that every app would read the same way.

A public path lets a request through without sign-in, so doorman must not call
public what the app behind it may read as another path. Apps, frameworks and
servers differ: one undoes a second level of percent-encoding
(``%252e%252e``), one takes ``\\`` for ``/`` (as browsers and Windows do), one
cuts ``;params`` from a segment (as Java servers do, so ``/static/..;/secret``
is ``/secret`` there), one folds fullwidth dots and slashes (U+FF0E, U+FF0F)
to ``../`` (Unicode NFKC), Windows drops a segment's trailing dots and spaces
(``.. `` is ``..``).
``unambiguous_path`` therefore reads the path, and the raw path the client
sent when the server gives it, decoded again and again and NFKC-folded, and
answers None when any reading holds a ``\\``, a ``;``, a control character,
bytes that are not UTF-8, or a segment of dots and spaces alone; such a path is
never public, and needs sign-in like any other. Standard library only: the
gate uses it too.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

__all__ = ["unambiguous_path"]

_AMBIGUOUS = re.compile(r"[\\;\x00-\x1f\x7f\ufffd]")  # U+FFFD: bytes that were not UTF-8
#: More levels of encoding than this, and the path is read as ambiguous.
_DECODINGS = 4


def unambiguous_path(path: str, raw_path: bytes | None = None) -> str | None:
    """``path`` when no reading of it (or of ``raw_path``) could be another path; else None."""
    forms = [path]
    if isinstance(raw_path, bytes):
        forms.append(raw_path.split(b"?", 1)[0].decode("latin-1"))
    for form in forms:
        for _ in range(_DECODINGS):
            if _ambiguous(form) or _ambiguous(unicodedata.normalize("NFKC", form)):
                return None
            decoded = unquote(form)
            if decoded == form:
                break
            form = decoded
        else:
            return None  # still encoded after all that: nobody's static file
    return path


def _ambiguous(form: str) -> bool:
    return bool(_AMBIGUOUS.search(form)) or any(
        segment and not segment.rstrip(". ") for segment in form.split("/")
    )
