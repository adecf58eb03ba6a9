"""Setting up an authenticator app, on the account page and in a sign-in the policy holds up.

The secret is shown as its ``otpauth://`` URI in text, in groups of four to type
by hand, and as a QR code drawn here as inline SVG (segno): no image from
elsewhere, no script. Recovery codes are made here too, shown once by the page
that answers the POST that made them.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import segno
from markupsafe import Markup
from starlette.requests import Request

from ...accounts.users import User
from ...events import EventKind
from ..state import ServerState
from .audit import record

__all__ = [
    "WRONG_SETUP_CODE",
    "new_recovery_codes",
    "setup_context",
    "shown_here",
    "waiting_secret",
]

#: The session key of the SHA-256 of the waiting secret this session was shown.
SHOWN_SETUP = "_totp_shown"

WRONG_SETUP_CODE = (
    "That code is not right. Check that the app shows the code for this account, and that "
    "the phone's clock is right, then type the code it shows now."
)


async def waiting_secret(request: Request, server: ServerState, user: User) -> str:
    """The secret waiting for its first code, when this session was the one shown it; else a
    new one, which ends any other's. No other session (someone with the password, under the
    policy) learns the secret the owner then sets their app up with."""
    state = await server.doorman.totp.state(user)
    if state is not None and not state.on and shown_here(request, state.secret):
        return state.secret
    secret = await server.doorman.totp.start(user)
    request.scope["session"][SHOWN_SETUP] = _digest(secret)
    return secret


def shown_here(request: Request, secret: str) -> bool:
    """Whether this session was shown ``secret`` by ``waiting_secret``."""
    shown = request.scope["session"].get(SHOWN_SETUP)
    return isinstance(shown, str) and hmac.compare_digest(shown, _digest(secret))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def setup_context(server: ServerState, user: User, secret: str) -> dict[str, Any]:
    """What the set-up shows: the URI, the secret in groups of four, the QR code."""
    uri = server.doorman.totp.provisioning_uri(
        secret, username=user.username, issuer=server.settings.site_name
    )
    qr = segno.make(uri, error="m")
    # segno escapes nothing it writes but the URI it encodes as modules: the SVG is ours.
    svg = qr.svg_inline(scale=4, border=4, dark="#000", light="#fff", title="QR code")
    return {
        "otpauth_uri": uri,
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "qr_svg": Markup(svg),  # noqa: S704 - made here from our own data, no input in it
    }


async def new_recovery_codes(
    request: Request, server: ServerState, user: User, *, actor: str | None = None
) -> list[str]:
    """Ten new recovery codes for ``user`` (the old ones end), logged; shown once by the caller."""
    codes = await server.doorman.recovery_codes.regenerate(user)
    await record(request, EventKind.RECOVERY_CODES_CREATED, user, actor=actor)
    return codes
