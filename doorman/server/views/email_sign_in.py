"""Sign-in by email link (setting ``email_sign_in``, off by default): no password.

``/-/sign-in-link`` takes an address and answers the same words, at once,
whether or not an account has it; the sending happens in the background and
is throttled like reset links. The message's link, ``/-/sign-in-link/<token>``,
moves its token into a cookie of these pages and shows a "Sign in" button at
``/-/sign-in-link/new``: a mail scanner that opens links signs nobody in. The
link works once (a sign-in spends it), for 15 minutes, and follows a verified
address into the account. See docs/email.md.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..._scope import client_address
from ..._types import Scope
from ...accounts.users import User
from ...exceptions import NoTrustedOrigin, Throttled
from ...mail import check_address
from ..state import ServerState, state_of
from .common import checked_form, field, json_error, refuse_csrf, wants_json
from .errors import way_on
from .forms import FormErrors
from .held_links import HeldLink, private
from .recovery import duration
from .signin import signed_in
from .verification import user_for, verify_by_link

__all__ = ["routes"]

_SIGN_IN_LINK = HeldLink("doorman_sign_in_link", "sign-in-link", held_for=900)
SENT = (
    "If an account has that address, a sign-in link is on its way. It works once, for {valid_for}."
)
REFUSED = (
    "This sign-in link does not work: it was used already, it expired, or the account "
    "signed in since. Ask for a new one."
)


def routes(prefix: str) -> list[BaseRoute]:
    return [
        Route(f"{prefix}/sign-in-link", ask_for_link, methods=["GET", "POST"]),
        Route(f"{prefix}/sign-in-link/new", sign_in_page, methods=["GET", "POST"]),
        Route(f"{prefix}/sign-in-link/{{token}}", follow_link, methods=["GET", "POST"]),
    ]


def _offered(server: ServerState) -> bool:
    return server.settings.email_sign_in and server.outbox.can_send


async def ask_for_link(request: Request) -> Response:
    server = state_of(request)
    if not _offered(server):
        return await _not_offered(request, server)
    if request.method == "GET":
        return await _ask_form(request, server, FormErrors())
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    email = field(fields, "email", 300).strip()
    try:
        check_address(email)
        server.outbox.links.base(request.scope)
        attempt = await server.doorman.mail_throttle.attempt(email, client_address(request.scope))
    except ValueError:
        errors = FormErrors()
        errors.add("Enter the email address of your account, such as alice@example.com.", "email")
        return await _ask_form(request, server, errors, email, status=400)
    except (NoTrustedOrigin, Throttled) as error:
        headers = {"retry-after": str(error.retry_after)} if isinstance(error, Throttled) else {}
        errors = FormErrors.of(str(error) if isinstance(error, Throttled) else _NO_ORIGIN)
        return await _ask_form(request, server, errors, email, status=error.status_code, **headers)
    async with attempt:
        pass
    server.background.spawn(_send_links(server, email, request.scope))
    sent = SENT.format(valid_for=duration(server.doorman.links.max_ages["sign-in"]))
    if wants_json(request):
        return private(JSONResponse({"sent": True, "message": sent}))
    return await _ask_form(request, server, FormErrors(), notice=sent)


_NO_ORIGIN = "This site cannot send links until its administrator sets public_url."


async def _send_links(server: ServerState, email: str, scope: Scope) -> None:
    for user in await server.doorman.users.by_email(email):
        assert user.email is not None
        token = server.doorman.links.make("sign-in", user)
        await server.outbox.send(
            "sign_in_link",
            to=user.email,
            username=user.username,
            link=server.outbox.links.url("sign-in-link", token, scope=scope),
            valid_for=duration(server.doorman.links.max_ages["sign-in"]),
        )


async def follow_link(request: Request) -> Response:
    server = state_of(request)
    if not _offered(server):
        return await _not_offered(request, server)
    token = request.path_params["token"]
    if request.method == "POST":
        return await _sign_in(request, server, token)
    if await user_for(server, "sign-in", token) is None:
        return await _refused(request, server)
    return _SIGN_IN_LINK.hand_over(request, server, token)


async def sign_in_page(request: Request) -> Response:
    server = state_of(request)
    if not _offered(server):
        return await _not_offered(request, server)
    token = _SIGN_IN_LINK.token(request)
    if request.method == "POST":
        return await _sign_in(request, server, token)
    user = await user_for(server, "sign-in", token)
    if user is None:
        return await _refused(request, server)
    page = await server.templates.render(
        request, "sign_in_link.html", username=user.username, errors=[], notice=""
    )
    return private(page)


async def _sign_in(request: Request, server: ServerState, token: str) -> Response:
    if await checked_form(request) is None:
        return await refuse_csrf(request)
    if await user_for(server, "sign-in", token) is None:  # no claim (no write) for a bad link
        return await _refused(request, server)
    max_age = server.doorman.links.max_ages["sign-in"]
    async with server.doorman.link_claims.claim(token, max_age) as claim:
        # Checked again once held: a request with the same link may have spent it since.
        user = await user_for(server, "sign-in", token) if claim.granted else None
        if user is None:
            return await _refused(request, server)
        claim.spend()  # whatever follows: a sign-in, or the page that refuses an unverified one
        return await _signed_in(request, server, user)


async def _signed_in(request: Request, server: ServerState, user: User) -> Response:
    user = await verify_by_link(request, server, user, "sign-in link")
    response = await signed_in(request, user, server.login_redirect, via="email-link")
    _SIGN_IN_LINK.forget(response, server)
    return private(response)


async def _ask_form(
    request: Request,
    server: ServerState,
    errors: FormErrors,
    email: str = "",
    *,
    status: int = 200,
    notice: str = "",
    **headers: str,
) -> Response:
    if errors and wants_json(request):
        return json_error(" ".join(errors.messages), status, **headers)
    response = await server.templates.render(
        request,
        "sign_in_link_ask.html",
        status,
        email=email,
        notice=notice,
        **errors.context(),
    )
    response.headers.update(headers)
    return response


async def _refused(request: Request, server: ServerState) -> Response:
    return await _SIGN_IN_LINK.refuse(request, server, REFUSED, ask_again=True)


async def _not_offered(request: Request, server: ServerState) -> Response:
    message = "This site does not offer sign-in by email link."
    if wants_json(request):
        return json_error(message, 404)
    return await server.templates.render(
        request, "message.html", 404, title="Not available", message=message, link=way_on(request)
    )
