"""``SessionPolicy``: what all sessions of one middleware share; ``CookieUpdate``: its answer."""

from __future__ import annotations

from typing import NamedTuple

from ..stores.base import SessionStore, SyncLoadable
from .legacy import StarletteCookieReader
from .signer import SessionSigner

__all__ = ["DEFAULT_SERVER_LIFETIME", "DELETE_COOKIE", "CookieUpdate", "SessionPolicy"]

#: Server-side lifetime of a browser-session cookie (``max_age=None``) that
#: sets no idle or absolute timeout: a session must end somewhere.
DEFAULT_SERVER_LIFETIME = 14 * 24 * 3600


class CookieUpdate(NamedTuple):
    """A new cookie value to send; ``max_age=None`` makes a browser-session cookie."""

    value: str
    max_age: int | None


#: ``Session.commit()`` answer meaning "delete the session cookie".
DELETE_COOKIE = CookieUpdate("", 0)


class SessionPolicy:
    """What every session of one middleware shares: store, signer, lifetimes."""

    __slots__ = (
        "absolute_timeout",
        "fixed_lifetime",
        "idle_timeout",
        "legacy",
        "load_nowait",
        "max_age",
        "records_times",
        "save_nowait",
        "signer",
        "stateless",
        "store",
        "touch_interval",
    )

    def __init__(
        self,
        store: SessionStore,
        signer: SessionSigner,
        max_age: int | None,
        idle_timeout: int | None = None,
        absolute_timeout: int | None = None,
        legacy: StarletteCookieReader | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.max_age = max_age
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        #: Reads cookies Starlette signed, to carry them over; only with ``secret_key=``.
        self.legacy = legacy
        self.stateless = bool(store.stateless)
        # Looked up once here: a Protocol isinstance() per request costs microseconds.
        self.load_nowait = store.load_nowait if isinstance(store, SyncLoadable) else None
        self.save_nowait = getattr(store, "save_nowait", None)
        #: How stale an idle deadline may get before an unmodified session is re-saved.
        self.touch_interval = min(60, (idle_timeout or 0) // 10)
        #: Whether records keep when the session began and was saved. A cookie carries
        #: them only when a timeout needs them; server stores keep them always.
        self.records_times = bool(not self.stateless or idle_timeout or absolute_timeout)
        #: Server-side lifetime when only max_age applies: the common case, computed once.
        #: Starlette's max_age may be 0 or less: then sessions end at once.
        self.fixed_lifetime = (
            None
            if idle_timeout or absolute_timeout
            else (DEFAULT_SERVER_LIFETIME if max_age is None else max_age)
        )
