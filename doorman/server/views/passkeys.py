"""``/-/passkeys/...``: the WebAuthn ceremonies as JSON endpoints, and naming or removing a passkey.

Every ceremony is two POSTs, each with the CSRF token in ``X-CSRFToken``:
``.../options`` gives the browser what to ask the authenticator, the second
sends the authenticator's answer back.

- ``register/options``, ``register``: a signed-in person (or a pending sign-in
  that must enrol a factor first) adds a passkey;
- ``authenticate/options``, ``authenticate`` with ``purpose``:
  ``second-step`` (after a password), ``sign-in`` (a passkey alone, no username),
  ``confirm`` (step-up: a signed-in person proves it is them again).

``POST /-/passkeys/{id}/rename`` (``name``) and ``/-/passkeys/{id}/remove`` are
forms of the account page (JSON too).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...accounts.passkeys import Passkey, clean_name
from ...accounts.users import User
from ...auth.step_up import mark_proved
from ...auth.two_step import PendingSignIn, complete_second_step, pending_second_step
from ...events import EventKind
from ...exceptions import AccountError, RequestTooLarge
from ...redirects import safe_path
from ..passkey_ceremonies import (
    PURPOSES,
    CeremonyFailed,
    Purpose,
    authentication_options,
    registration_options,
    relying_party,
    take_challenge,
    verify_assertion,
    verify_registration,
)
from ..state import ServerState, state_of
from .audit import record
from .common import json_error
from .passkeys_manage import manage_routes, signed_in_user
from .signin import after_sign_in, destination_of, signed_in
from .step_up import step_up_needed

__all__ = ["routes"]

#: A passkey's answer is a few kilobytes; anything much larger is not one.
_MAX_BODY = 64 * 1024
_UNKNOWN = "This passkey is not registered for this account."
_NO_STORE = {"cache-control": "no-store"}


def routes(prefix: str) -> list[BaseRoute]:
    p = f"{prefix}/passkeys"
    return [
        Route(f"{p}/register/options", register_options, methods=["POST"]),
        Route(f"{p}/register", register, methods=["POST"]),
        Route(f"{p}/authenticate/options", authenticate_options, methods=["POST"]),
        Route(f"{p}/authenticate", authenticate, methods=["POST"]),
        *manage_routes(p),
    ]


class _Refused(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, its CSRF token checked; ``_Refused`` otherwise."""
    server = state_of(request)
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise _Refused("Requests from other sites are refused.", 403)
    given = request.headers.get("x-csrftoken")
    if not server.csrf.verify(request.scope, given):
        raise _Refused("This page has expired. Reload it and try again.", 403)
    try:
        body = await request.body()
    except (RequestTooLarge, ClientDisconnect):
        raise _Refused("The request is too large or was cut short.", 400) from None
    if len(body) > _MAX_BODY:
        raise _Refused("The request is too large.", 413)
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise _Refused("The request is not JSON.", 400) from None
    if not isinstance(data, dict):
        raise _Refused("The request is not a JSON object.", 400)
    return data


def _refusal(error: _Refused | CeremonyFailed) -> JSONResponse:
    return json_error(str(error), error.status)


async def _failed(
    request: Request, error: CeremonyFailed, purpose: str, user: User | None
) -> JSONResponse:
    await record(
        request, EventKind.PASSKEY_FAILED, user, {"purpose": purpose, "reason": error.reason}
    )
    return _refusal(error)


# -- registration ----------------------------------------------------------------------


async def _registrant(
    request: Request, server: ServerState
) -> tuple[User, PendingSignIn | None] | None:
    """Who may add a passkey: the signed-in person, or a sign-in that must enrol first."""
    user = await signed_in_user(request, server)
    if user is not None:
        return user, None
    pending = await pending_second_step(request)
    if pending is not None and pending.must_enrol:
        return pending.user, pending
    return None


async def _may_register(
    request: Request, server: ServerState
) -> tuple[dict[str, Any], User, PendingSignIn | None] | Response:
    """The request's body, who adds a passkey and their pending sign-in; else the refusal."""
    try:
        data = await _json_body(request)
    except _Refused as error:
        return _refusal(error)
    found = await _registrant(request, server)
    if found is None:
        return json_error("Sign in to add a passkey.", 401)
    stale = step_up_needed(request, back=server.url("account/two-factor"))
    if stale is not None:
        return stale
    return data, *found


async def register_options(request: Request) -> Response:
    server = state_of(request)
    allowed = await _may_register(request, server)
    if isinstance(allowed, Response):
        return allowed
    user = allowed[1]
    existing = await server.doorman.passkeys.list(user.id)
    handle = await server.doorman.passkeys.user_handle(user.id)
    options = registration_options(request, server, user, handle, existing)
    return JSONResponse(options, headers=_NO_STORE)


async def register(request: Request) -> Response:
    server = state_of(request)
    allowed = await _may_register(request, server)
    if isinstance(allowed, Response):
        return allowed
    data, user, pending = allowed
    try:
        async with take_challenge(request, server, "register") as challenge:
            handle = challenge.extra.get("handle")
            if challenge.user_id != user.id or not isinstance(handle, str):
                raise CeremonyFailed(
                    "This passkey request was for another account.", "challenge of another user"
                )
            rp = relying_party(request, server)
            new = verify_registration(rp, challenge.value, data.get("credential"))
    except CeremonyFailed as error:
        return await _failed(request, error, "register", user)
    existing = await server.doorman.passkeys.list(user.id)
    name = clean_name(data.get("name"), default=f"Passkey {len(existing) + 1}")
    try:
        passkey = await server.doorman.passkeys.add(
            user.id,
            credential_id=new.credential_id,
            user_handle=handle,
            public_key=new.public_key,
            sign_count=new.sign_count,
            name=name,
            transports=new.transports,
            aaguid=new.aaguid,
            backup_eligible=new.backup_eligible,
            backed_up=new.backed_up,
        )
    except AccountError as error:
        return json_error(str(error), 409)
    await record(request, EventKind.PASSKEY_ADDED, user, {"passkey_id": passkey.id, "name": name})
    answer: dict[str, Any] = {"passkey": _public(passkey)}
    if pending is None:
        return JSONResponse(answer, 201, headers=_NO_STORE)
    return await _complete(request, server, pending, answer)


# -- authentication --------------------------------------------------------------------


def _purpose_of(data: dict[str, Any]) -> Purpose | None:
    purpose = data.get("purpose")
    return next((p for p in PURPOSES if p == purpose and p != "register"), None)


async def _asker(request: Request, server: ServerState, purpose: Purpose) -> User | bool | None:
    """Whose passkeys may answer: the pending user (second step), the signed-in person
    (confirm), nobody in particular (sign-in: None); False when the purpose does not fit."""
    if purpose == "second-step":
        pending = await pending_second_step(request)
        return pending.user if pending is not None else False
    if purpose == "confirm":
        user = await signed_in_user(request, server)
        return user if user is not None else False
    return None


async def authenticate_options(request: Request) -> Response:
    server = state_of(request)
    try:
        purpose = _purpose_of(await _json_body(request))
    except _Refused as error:
        return _refusal(error)
    if purpose is None:
        return json_error("Say what the passkey is for: second-step, sign-in or confirm.", 400)
    user = await _asker(request, server, purpose)
    if user is False:
        return json_error("There is no sign-in waiting for a passkey here.", 401)
    allowed = await server.doorman.passkeys.list(user.id) if isinstance(user, User) else []
    user_id = user.id if isinstance(user, User) else None
    if isinstance(user, User) and not allowed:
        return json_error("You have no passkey.", 400)
    options = authentication_options(request, server, purpose, user_id, allowed)
    return JSONResponse(options, headers=_NO_STORE)


async def authenticate(request: Request) -> Response:
    server = state_of(request)
    try:
        data = await _json_body(request)
    except _Refused as error:
        return _refusal(error)
    purpose = _purpose_of(data)
    if purpose is None:
        return json_error("Say what the passkey is for: second-step, sign-in or confirm.", 400)
    asker = await _asker(request, server, purpose)
    if asker is False:
        return json_error("There is no sign-in waiting for a passkey here.", 401)
    expected = asker if isinstance(asker, User) else None
    try:
        passkey = await _proven(request, server, purpose, expected, data.get("credential"))
    except CeremonyFailed as error:
        return await _failed(request, error, purpose, expected)
    return await _proof_done(request, server, purpose, passkey, data)


async def _proven(
    request: Request, server: ServerState, purpose: Purpose, expected: User | None, credential: Any
) -> Passkey:
    """The passkey that answered the challenge for ``purpose``, every check passed."""
    async with take_challenge(request, server, purpose, credential) as challenge:
        if challenge.user_id != (expected.id if expected else None):
            raise CeremonyFailed("This passkey request was for another account.", "wrong user")
        if not isinstance(credential, dict) or not isinstance(credential.get("id"), str):
            raise CeremonyFailed("The passkey's answer is not readable.", "not a credential")
        passkey = await server.doorman.passkeys.find(credential["id"])
        if passkey is None or (expected is not None and passkey.user_id != expected.id):
            # The same answer for both: a stranger learns nothing of whose a credential is.
            raise CeremonyFailed(_UNKNOWN, "unknown credential or another user's", 401)
        if expected is None and not _handle_matches(credential, passkey):
            raise CeremonyFailed(_UNKNOWN, "user handle does not match", 401)
        asserted = verify_assertion(
            relying_party(request, server),
            challenge.value,
            credential,
            passkey,
            require_user_verification=purpose == "sign-in",
        )
        if not await server.doorman.passkeys.record_use(
            passkey, asserted.sign_count, backed_up=asserted.backed_up
        ):
            raise CeremonyFailed(
                "This passkey's counter went backwards: it may have been copied. "
                "Use another way to sign in, and remove this passkey.",
                "sign counter did not go up",
                401,
            )
    return passkey


def _handle_matches(credential: dict[str, Any], passkey: Passkey) -> bool:
    response = credential.get("response")
    handle = response.get("userHandle") if isinstance(response, dict) else None
    if not isinstance(handle, str) or not handle:
        return False
    given = handle.rstrip("=").encode("utf-8", "surrogatepass")  # JSON may hold a lone one
    return hmac.compare_digest(given, passkey.user_handle.encode())


async def _proof_done(
    request: Request, server: ServerState, purpose: Purpose, passkey: Passkey, data: dict[str, Any]
) -> Response:
    if purpose == "second-step":
        pending = await pending_second_step(request)
        if pending is None or pending.user.id != passkey.user_id:
            return json_error("The sign-in expired. Please start again.", 401)
        return await _complete(request, server, pending, {})
    user = await server.doorman.users.get(passkey.user_id)
    if user is None or not user.is_active:
        return json_error(_UNKNOWN, 401)
    if purpose == "confirm":
        mark_proved(request.scope["session"], "hwk")
        await record(request, EventKind.REAUTHENTICATED, user, {"method": "hwk"})
        target = safe_path(data.get("next"), default="")
        return JSONResponse({"confirmed": True, "redirect": target}, headers=_NO_STORE)
    destination = destination_of(server, {k: v for k, v in data.items() if isinstance(v, str)})
    also = {"redirect": destination.url}  # where the page goes next
    return await signed_in(request, user, destination.url, via="passkey", also=also)


async def _complete(
    request: Request, server: ServerState, pending: PendingSignIn, answer: dict[str, Any]
) -> Response:
    """The pending sign-in done with a passkey; the page is told where to go next."""
    actor = await complete_second_step(request, pending, "hwk")
    target = pending.next or server.login_redirect
    response = JSONResponse({**answer, "redirect": target}, headers=_NO_STORE)
    return await after_sign_in(
        request, pending.user, actor, target, remember=pending.remember, response=response
    )


def _public(passkey: Passkey) -> dict[str, Any]:
    """What the page shows of a passkey (no key, no handle)."""
    return {
        "id": passkey.id,
        "name": passkey.name,
        "created_at": passkey.created_at,
        "last_used_at": passkey.last_used_at,
        "synced": passkey.synced,
    }
