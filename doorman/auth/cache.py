"""What a process remembers of signed-in users and API tokens between requests.

``Users.get_signed_in`` runs on every signed-in request, ``Tokens.verify_with_user``
on every API request. Their answers are kept here under the database's change
epoch (``doorman.epochs``): any write that could end or change a session moves
the epoch, and an entry read under an older epoch is never used again. So a
password change, a disabled user, a revoked sign-in or token made by any
worker is seen by every worker on its very next request.

Entries also expire after ``max_age`` seconds, which bounds how long a change
made behind doorman's back (an ``UPDATE`` typed into the database) goes
unseen. Only positive answers are kept: a session that fails the check is
flushed, so it is never asked about again.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from ..epochs import MAX_AGE, EpochCache

if TYPE_CHECKING:
    from .tokens import Token
    from .users import User

__all__ = ["MAX_AGE", "EpochCache", "SignedInCache", "TokenCache", "signed_in_cache", "token_cache"]

#: Per sign-in id: the user and the sign-in's ``last_seen`` (both there: only those are kept).
SignedInCache = EpochCache[tuple["User | None", "float | None"]]
#: Per token id: the token's stored hash, the token and its user.
TokenCache = EpochCache[tuple[str, "Token", "User"]]

_signed_in: weakref.WeakKeyDictionary[AsyncEngine, SignedInCache] = weakref.WeakKeyDictionary()
_tokens: weakref.WeakKeyDictionary[AsyncEngine, TokenCache] = weakref.WeakKeyDictionary()


def signed_in_cache(engine: AsyncEngine) -> SignedInCache:
    """The sign-ins kept for ``engine``'s database, shared by everything in this process."""
    cache = _signed_in.get(engine)
    if cache is None:
        cache = _signed_in[engine] = EpochCache()
    return cache


def token_cache(engine: AsyncEngine) -> TokenCache:
    """The API tokens kept for ``engine``'s database, shared by everything in this process."""
    cache = _tokens.get(engine)
    if cache is None:
        cache = _tokens[engine] = EpochCache()
    return cache
