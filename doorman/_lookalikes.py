"""Look-alike usernames: Unicode TR39 skeletons, and usernames that mix scripts.

``admin`` written with a Cyrillic a (U+0430), or with a dotless i (U+0131),
reads as ``admin``. Two checks keep such a name from registering beside the
one it imitates:

- ``lookalike_key``: the name's *skeleton* (Unicode TR39, section 4): each
  character replaced by the prototype it is confusable with (U+0430 and
  U+0131 by ``a`` and ``i``, ``m`` by ``rn``, ``1`` and ``I`` by ``l``), with case
  folded in too. Names with one skeleton look alike; the users table keeps a
  hash of it, unique, so a second one cannot be created, not even by two
  requests at once.
- ``mixed_scripts``: a name must be written in one script (Latin, Cyrillic,
  Greek...), digits and ``. @ + - _`` aside; Han may go with Hiragana and
  Katakana, Bopomofo or Hangul, as in Japanese, Chinese and Korean writing.
- ``invisible``: Unicode's default-ignorable characters, which show as nothing.
  Most are not letters, and no username may hold them anyway; the Hangul
  fillers (U+3164, U+FFA0, U+115F, U+1160) are, so ``admin`` followed by one
  read as ``admin``. The skeleton leaves them out, as TR39 says, and a new
  name may not hold one.

The data (Unicode's confusables.txt and Scripts.txt) comes from the
``confusable-homoglyphs`` package, read on first use. It keeps confusables
both ways round, so a character's prototype is told apart from its sources
here: a source lists exactly one character or sequence, its prototype; a
prototype lists every source. A pair that lists only each other is one class
either way, and one of the two stands for both.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

from confusable_homoglyphs import categories, confusables  # type: ignore[import-untyped]

__all__ = ["invisible", "lookalike_key", "mixed_scripts", "skeleton"]

#: Scripts that mean nothing on their own: digits, punctuation, combining marks.
_ANY_SCRIPT = frozenset({"COMMON", "INHERITED"})
#: Scripts that one name may mix: the writing of one language (TR39, "highly restrictive").
_WRITINGS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_LRM = "\u200e"  # the data wraps right-to-left characters in these
#: Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties.txt).
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def mixed_scripts(name: str) -> frozenset[str]:
    """The scripts ``name`` mixes (empty when it keeps to one writing)."""
    scripts = frozenset(categories.unique_aliases(name)) - _ANY_SCRIPT
    if len(scripts) <= 1 or any(scripts <= writing for writing in _WRITINGS):
        return frozenset()
    return scripts


def invisible(name: str) -> bool:
    """Whether ``name`` holds a character that shows as nothing (default-ignorable)."""
    return _INVISIBLE.search(name) is not None


def skeleton(text: str) -> str:
    """TR39's skeleton: NFD, default-ignorables out, every character replaced by its
    prototype, NFD again."""
    prototypes = _prototypes()
    decomposed = _INVISIBLE.sub("", unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", "".join(prototypes.get(c, c) for c in decomposed))


def lookalike_key(name: str) -> str:
    """What look-alike usernames share: a SHA-256 of the skeleton, case folded in.

    The skeleton is taken before folding case too, so that ``I`` (which looks
    like ``l``) counts as well as ``i``.
    """
    folded = skeleton(skeleton(unicodedata.normalize("NFKC", name)).casefold())
    return hashlib.sha256(folded.encode()).hexdigest()


@functools.cache
def _prototypes() -> dict[str, str]:
    """Each character that has a prototype other than itself, and that prototype (in NFD)."""
    graph: dict[str, list[str]] = {}
    for text, glyphs in confusables.confusables_data.items():
        graph.setdefault(text.replace(_LRM, ""), []).extend(
            glyph["c"].replace(_LRM, "") for glyph in glyphs
        )
    found: dict[str, str] = {}
    for char, others in graph.items():
        if len(char) != 1 or len(others) != 1:
            continue  # a sequence, or a character many resemble: a prototype
        other = others[0]
        # Its prototype: a sequence, or a character many resemble; of two characters
        # that only resemble each other, the lower stands for both.
        if len(other) > 1 or len(graph.get(other, ())) > 1 or other < char:
            found[char] = other
    # A prototype sequence may hold a character that stands for its class under another.
    return {
        char: unicodedata.normalize(
            "NFD", "".join(found.get(c, c) for c in unicodedata.normalize("NFD", target))
        )
        for char, target in found.items()
    }
