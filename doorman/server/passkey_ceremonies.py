"""The WebAuthn ceremonies' server half: relying party, challenges, options, verification.

- The relying-party id is the ``webauthn_rp_id`` setting, else ``public_url``'s
  host, else the request's host. The expected origin is ``public_url``'s, else
  the request's own scheme, host and port: never an ``Origin`` the client names.
- A challenge is 32 random bytes, kept in the session under its purpose with an
  expiry, and single use twice over: popped from the session when it is
  checked, and claimed once in the throttle's shared counter
  (``Doorman.link_claims``). A session in the cookie store can be replayed, and
  a challenge spent on one worker must be refused on every other.
- py_webauthn checks the signature, the origin, the rp id hash and the flags
  (the sign counter is checked where it is stored: ``Passkeys.record_use``);
  anything it refuses, or cannot parse, is a ``CeremonyFailed`` with a
  sentence fit for the person (never a 500).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import secrets
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from starlette.requests import Request

from ..accounts.passkeys import Passkey
from ..accounts.users import User
from ..auth import csrf
from ..exceptions import BadSignature
from .state import ServerState

if TYPE_CHECKING:
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

__all__ = [
    "CHALLENGE_FOR",
    "SESSION_CHALLENGES",
    "Asserted",
    "CeremonyFailed",
    "Purpose",
    "Registered",
    "RelyingParty",
    "authentication_options",
    "registration_options",
    "relying_party",
    "take_challenge",
    "verify_assertion",
    "verify_registration",
]

security_log = logging.getLogger("doorman.security")
#: A value py_webauthn quotes in its messages: "https://evil.example", a type name...
_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')

Purpose = Literal["register", "second-step", "sign-in", "confirm"]
PURPOSES: tuple[Purpose, ...] = ("register", "second-step", "sign-in", "confirm")
#: The session key of the challenges given out, by purpose.
SESSION_CHALLENGES = "_passkey_challenges"
#: How long a challenge may wait for its answer, in seconds.
CHALLENGE_FOR = 180
_TIMEOUT_MS = CHALLENGE_FOR * 1000


# py_webauthn (with cryptography, cbor2 and pyasn1: 0.25 s of a worker's start) is imported
# by the first ceremony, not by every worker and command that never sees a passkey.


@functools.cache
def _transports() -> dict[str, AuthenticatorTransport]:
    from webauthn.helpers.structs import AuthenticatorTransport

    return {t.value: t for t in AuthenticatorTransport}


def base64url_to_bytes(text: str) -> bytes:
    """Base64url, its padding optional (py_webauthn's reading, which it checks against)."""
    return urlsafe_b64decode(f"{text}===")


def bytes_to_base64url(value: bytes) -> str:
    return urlsafe_b64encode(value).decode("ascii").rstrip("=")


class CeremonyFailed(Exception):
    """A passkey ceremony refused: ``str()`` is for the person, ``reason`` for the event log."""

    def __init__(self, message: str, reason: str, status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class RelyingParty:
    id: str
    name: str
    origin: str


def relying_party(request: Request, server: ServerState) -> RelyingParty:
    """This site as WebAuthn sees it: its rp id, its name, the one origin it accepts."""
    settings = server.settings
    public = urlsplit(settings.public_url) if settings.public_url else None
    if public is not None and public.hostname:
        origin = f"{public.scheme}://{public.netloc}"
        host = public.hostname
    else:
        origin = f"{request.url.scheme}://{request.url.netloc}"
        host = request.url.hostname or ""
    return RelyingParty(id=settings.webauthn_rp_id or host, name=settings.site_name, origin=origin)


# -- challenges ------------------------------------------------------------------------


def _keep_challenge(request: Request, purpose: Purpose, user_id: int | None, **extra: Any) -> bytes:
    challenge = secrets.token_bytes(32)
    session = request.scope["session"]
    kept = session.get(SESSION_CHALLENGES)
    kept = dict(kept) if isinstance(kept, dict) else {}
    kept[purpose] = {
        "challenge": bytes_to_base64url(challenge),
        "until": time.time() + CHALLENGE_FOR,
        "user": user_id,
        **extra,
    }
    session[SESSION_CHALLENGES] = kept
    if csrf.SESSION_KEY not in session:
        # A visitor's token was bound to their csrf cookie; now that the session holds
        # data, the session's token counts: the same one, checked a moment ago.
        session[csrf.SESSION_KEY] = request.headers.get(csrf.HEADER.decode(), "")
    return challenge


@dataclass(frozen=True, slots=True)
class Challenge:
    value: bytes
    user_id: int | None
    extra: dict[str, Any]


@asynccontextmanager
async def take_challenge(
    request: Request, server: ServerState, purpose: Purpose, credential: object = None
) -> AsyncIterator[Challenge]:
    """The challenge given out for ``purpose``, popped from the session (or, for a
    passwordless sign-in, read back from ``credential`` and its signature checked) and
    claimed once in the shared counter (spent when the block ends without an exception
    that is not ours)."""
    if purpose == "sign-in":
        challenge = _signed_challenge_of(server, credential)
    else:
        challenge = _challenge_of(_pop_challenge(request, purpose))
    if challenge is None:
        raise CeremonyFailed(
            "This passkey request has expired. Please try again.", "no or stale challenge"
        )
    text = bytes_to_base64url(challenge.value)
    async with server.doorman.link_claims.claim("passkey:" + text, CHALLENGE_FOR) as claim:
        if not claim.granted:
            raise CeremonyFailed(
                "This passkey request was used already. Please try again.", "challenge reused"
            )
        claim.spend()  # whatever comes next, this challenge is used up
        yield challenge


def _pop_challenge(request: Request, purpose: Purpose) -> object:
    session = request.scope["session"]
    kept = session.get(SESSION_CHALLENGES)
    note = kept.get(purpose) if isinstance(kept, dict) else None
    if isinstance(kept, dict) and purpose in kept:
        session[SESSION_CHALLENGES] = {k: v for k, v in kept.items() if k != purpose}
    return note


def _new_signed_challenge(server: ServerState) -> bytes:
    """A passwordless sign-in's challenge: random, with its end, signed. The login page asks
    for one at every visit (autofill), and a visitor's session would be stored to keep it:
    this one keeps itself. Used once all the same: ``take_challenge`` claims it."""
    value = f"{secrets.token_urlsafe(18)}.{int(time.time() + CHALLENGE_FOR)}"
    return server.challenge_signer.sign(value).encode("ascii")


def _signed_challenge_of(server: ServerState, credential: object) -> Challenge | None:
    """The challenge a passwordless answer signed, if we made it and it has not ended."""
    response = credential.get("response") if isinstance(credential, dict) else None
    text = response.get("clientDataJSON") if isinstance(response, dict) else None
    if not isinstance(text, str) or len(text) > 4096:
        return None
    try:
        client_data = json.loads(base64url_to_bytes(text))
        value = base64url_to_bytes(client_data["challenge"])
        _nonce, _, until = server.challenge_signer.unsign(value.decode("ascii")).rpartition(".")
    except (ValueError, TypeError, KeyError, RecursionError, BadSignature):
        return None
    if not (until.isascii() and until.isdigit()) or time.time() > int(until):
        return None
    return Challenge(value, None, {})


def _challenge_of(note: object) -> Challenge | None:
    if not isinstance(note, dict):
        return None
    text, until, user_id = note.get("challenge"), note.get("until"), note.get("user")
    if not isinstance(text, str) or not isinstance(until, int | float) or time.time() > until:
        return None
    if user_id is not None and type(user_id) is not int:
        return None
    try:
        value = base64url_to_bytes(text)
    except ValueError:
        return None
    extra = {k: v for k, v in note.items() if k not in ("challenge", "until", "user")}
    return Challenge(value, user_id, extra)


# -- options ---------------------------------------------------------------------------


def _descriptors(passkeys: Sequence[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

    known = _transports()
    return [
        PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(p.credential_id),
            transports=[known[t] for t in p.transports if t in known] or None,
        )
        for p in passkeys
    ]


def registration_options(
    request: Request,
    server: ServerState,
    user: User,
    handle: str,
    existing: Sequence[Passkey],
) -> dict[str, Any]:
    """Options for ``navigator.credentials.create()``: a discoverable credential for ``user``."""
    from webauthn import generate_registration_options
    from webauthn.helpers import options_to_json_dict
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    rp = relying_party(request, server)
    challenge = _keep_challenge(request, "register", user.id, handle=handle)
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_name=user.username,
        user_id=base64url_to_bytes(handle),
        user_display_name=user.username,
        challenge=challenge,
        timeout=_TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(existing),
    )
    return options_to_json_dict(options)


def authentication_options(
    request: Request,
    server: ServerState,
    purpose: Purpose,
    user_id: int | None,
    allowed: Sequence[Passkey],
) -> dict[str, Any]:
    """Options for ``navigator.credentials.get()``: ``allowed`` passkeys, or any (sign-in)."""
    from webauthn import generate_authentication_options
    from webauthn.helpers import options_to_json_dict
    from webauthn.helpers.structs import UserVerificationRequirement

    rp = relying_party(request, server)
    required = purpose == "sign-in"
    if required:
        challenge = _new_signed_challenge(server)
    else:
        challenge = _keep_challenge(request, purpose, user_id)
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=challenge,
        timeout=_TIMEOUT_MS,
        allow_credentials=_descriptors(allowed) if purpose != "sign-in" else None,
        user_verification=(
            UserVerificationRequirement.REQUIRED
            if required
            else UserVerificationRequirement.PREFERRED
        ),
    )
    return options_to_json_dict(options)


# -- verification ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registered:
    credential_id: str
    public_key: str
    sign_count: int
    aaguid: str
    backup_eligible: bool
    backed_up: bool
    transports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Asserted:
    sign_count: int
    backed_up: bool
    user_verified: bool


def verify_registration(rp: RelyingParty, challenge: bytes, credential: object) -> Registered:
    """The new credential of a ``navigator.credentials.create()`` answer, checked."""
    from webauthn import verify_registration_response

    if not isinstance(credential, dict):
        raise CeremonyFailed("The passkey's answer is not readable.", "not a credential")
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
        )
    except Exception as error:  # py_webauthn's, or a parser's on garbage: the client's fault
        raise CeremonyFailed(
            "This passkey could not be checked. Please try again.", _reason(error)
        ) from error
    response = credential.get("response")
    transports = response.get("transports") if isinstance(response, dict) else None
    return Registered(
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        backup_eligible=verified.credential_device_type == "multi_device",
        backed_up=verified.credential_backed_up,
        transports=tuple(t for t in transports if isinstance(t, str))
        if isinstance(transports, list)
        else (),
    )


def verify_assertion(
    rp: RelyingParty,
    challenge: bytes,
    credential: dict[str, Any],
    passkey: Passkey,
    *,
    require_user_verification: bool,
) -> Asserted:
    """A ``navigator.credentials.get()`` answer made with ``passkey``, checked."""
    from webauthn import verify_authentication_response

    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=base64url_to_bytes(passkey.public_key),
            # The counter is ours to check (Passkeys.record_use): one conditional UPDATE
            # compares it with the stored one, so two workers cannot both take one count.
            credential_current_sign_count=0,
            require_user_verification=require_user_verification,
        )
    except Exception as error:  # py_webauthn's, or a parser's on garbage: the client's fault
        raise CeremonyFailed(
            "This passkey could not be checked. Please try again.", _reason(error), 401
        ) from error
    return Asserted(
        sign_count=verified.new_sign_count,
        backed_up=verified.credential_backed_up,
        user_verified=verified.user_verified,
    )


def _reason(error: Exception) -> str:
    """What py_webauthn said, its quoted values left out: they come from the client (an
    origin it claims...), and a reason that varies would let a loop of refused passkeys
    write a row each (the event log keeps one a minute of each reason, per address)."""
    security_log.info("passkey refused: %.300s", f"{type(error).__name__}: {error}")
    return _QUOTED.sub('"…"', f"{type(error).__name__}: {error}")[:200]
