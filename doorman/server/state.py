"""What every view of the sign-in server needs, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from ..auth.csrf import CSRF
    from ..core import Doorman
    from ..mail import Outbox
    from ..origins import AllowedOrigins
    from ..settings import Settings
    from ..signing import Signer
    from ..stores.base import SessionStore
    from .background import Background
    from .redirects import NextSigner
    from .templates import Templates

__all__ = ["ServerState", "state_of"]


@dataclass(frozen=True, slots=True)
class ServerState:
    settings: Settings
    doorman: Doorman
    store: SessionStore
    templates: Templates
    next_signer: NextSigner
    #: Where a signed ``next`` may lead, and which pages may open websockets.
    origins: AllowedOrigins
    #: ``route_prefix`` without its trailing slash: "/-" by default.
    prefix: str
    #: Where a sign-in without ``next`` lands (``login_redirect``, checked).
    login_redirect: str
    #: CSRF tokens: the session's, or the ``doorman_csrf`` cookie's for visitors without one.
    csrf: CSRF
    #: Mail: ``outbox.can_send`` says whether any is sent; links start with public_url.
    outbox: Outbox
    #: Where views send mail without making the answer wait for it.
    background: Background
    #: Signs the challenges of passwordless sign-ins, which no session keeps (a visitor's).
    challenge_signer: Signer

    def url(self, path: str) -> str:
        """A doorman route: ``url("login")`` is "/-/login"."""
        return f"{self.prefix}/{path}"


def state_of(request: Request) -> ServerState:
    server: ServerState = request.app.state.server
    return server
