"""One request at a time per one-time link, on every worker.

A stateless link (``AccountLinks``) is spent by what its use changes: a reset
changes the password hash, a sign-in the last sign-in. Two requests that check
the same link before either has changed anything would both pass. A claim
closes that gap: the first request takes the link's only slot in the
throttle's counter (the database or Redis, shared by the workers); another
request with the same link, while the first runs or after it spent the link,
is refused. The counter keeps an HMAC of the token, never the token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from ..signing import normalize_secrets
from ..stores.base import Counter, Lease, Outcome

__all__ = ["Claim", "LinkClaims"]

#: How long a request may hold a link before another may try it (it crashed, say).
_LEASE = 60.0
#: Workers' clocks may differ by this much (``AccountLinks.check`` allows it too).
_SKEW = 60


class Claim:
    """A request's hold on a link: ``granted`` or not; ``spend()`` once it did its work."""

    def __init__(self, granted: bool) -> None:
        self.granted = granted
        self.spent = False

    def spend(self) -> None:
        self.spent = True


class LinkClaims:
    """``async with claims.claim(token, max_age) as claim: if claim.granted: ...``"""

    def __init__(self, counter: Counter, secret: str | bytes | Sequence[str | bytes]) -> None:
        self.counter = counter
        self._key = hmac.digest(normalize_secrets(secret)[0], b"doorman.link-claims", "sha256")

    @asynccontextmanager
    async def claim(self, token: str, max_age: int) -> AsyncIterator[Claim]:
        """Hold ``token`` for this request; spent, it stays refused for ``max_age``."""
        key = "lc:" + hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()[:40]
        lease = Lease.starting(_LEASE)
        verdict, _ = await self.counter.acquire(key, 1, lease)
        claim = Claim(verdict == "granted")
        if not claim.granted:
            yield claim
            return
        try:
            yield claim
        finally:
            outcome: Outcome = "count" if claim.spent else "refund"
            await self.counter.settle(key, outcome, float(max_age + _SKEW), lease)
