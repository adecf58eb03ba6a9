"""The ``doorman_device`` cookie on the sign-in server's answers (see ``auth.devices``).

Set after every sign-in with a password, and after a password change (which
turns the account's older marks untrusted). ``Path`` is the route prefix: only
doorman's own pages need it. ``HttpOnly``, ``SameSite=Lax``, ``Secure`` under
the same rule as the session cookie, and no ``Domain``: this host only.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..accounts.devices import DEVICE_COOKIE
from ..accounts.users import User
from .state import state_of

__all__ = ["device_cookie", "remember_device"]


def device_cookie(request: Request) -> str | None:
    """The browser's device cookie, as sent (checked by ``DeviceCookies``)."""
    return request.cookies.get(DEVICE_COOKIE)


def remember_device(request: Request, response: Response, user: User) -> None:
    """Add ``user``'s mark to this browser's device cookie, on ``response``."""
    server = state_of(request)
    devices = server.doorman.devices
    response.set_cookie(
        DEVICE_COOKIE,
        devices.remember(device_cookie(request), user),
        max_age=devices.max_age,
        path=server.prefix + "/",
        secure=server.settings.cookie_secure or request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )
