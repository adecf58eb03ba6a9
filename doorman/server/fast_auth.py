"""Forward-auth at the server's entrance: ``/-/auth`` and ``/-/whoami`` without the page stack.

A proxy asks ``/-/auth`` before every request it lets through, and an API
client asks ``/-/whoami``, so their cost is paid on all of a site's traffic.
The sign-in server's stack is built for pages (websocket origins, ``doorman
protect``'s routing, security headers added by a wrapper, Starlette's
routing); ``FastPaths`` sends these two down short stacks of the same parts
instead: the session middleware, the auth middleware and the answer, with the
security headers written into it. A request with no credentials at all gets
the 401 at once, and a signed-in session or an API token whose answer was
just made and still stands gets it again at once (``kept_answers``).

Every answer is the one the full stack gives, byte for byte
(``tests/test_fast_auth.py`` checks): the same session and actor code runs, so
the same stores are read, the same events and log lines happen, and a store
that is down gives the same 503. Only the signed-in 200, the plain 401 and
``/-/whoami``'s JSON are written here; the rarer answers (a redirect to the
login page, a 403) come from the server's own ``ForwardAuth`` view.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from .._identity import identity_headers
from .._types import ASGIApp, Receive, Scope, Send
from ..auth.auth_methods import auth_methods, meets, methods_header, requirements
from ..auth.middleware import AuthMiddleware, bearer_token
from ..core import Doorman
from ..db.epoch_reads import request_arrived, request_done
from ..exceptions import StoreError
from ..sessions.middleware import SessionMiddleware
from .access_log import AccessLogMiddleware
from .cors import CORSMiddleware
from .headers import API_SECURITY_HEADERS, SecurityHeadersMiddleware
from .kept_answers import KeptAnswers, KeptTokenAnswers, TokenShortcut
from .state import ServerState
from .views.api import ForwardAuth, whoami_response

__all__ = [
    "FastPath",
    "FastPaths",
    "ForwardAuthAnswer",
    "ForwardAuthEntrance",
    "WhoamiAnswer",
    "fast_paths",
]

_OK = b"OK\n"
_NONE: frozenset[str] = frozenset()
_SIGN_IN_FIRST = b"Sign in first\n"
_VARY = (b"vary", b"Cookie, Authorization")
_OK_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"3"),
    (b"cache-control", b"no-store"),
    _VARY,
]
# As PlainTextResponse("Sign in first\n", 401, headers=...) sends them, then the security headers.
_SIGNED_OUT_HEADERS = [
    (b"cache-control", b"no-store"),
    _VARY,
    (b"content-length", b"14"),
    (b"content-type", b"text/plain; charset=utf-8"),
    *API_SECURITY_HEADERS,
]


def fast_paths(
    app: ASGIApp,
    server: ServerState,
    *,
    sessions: Callable[[ASGIApp], ASGIApp],
    forward_auth_methods: Collection[str],
) -> FastPaths:
    """``app``, with ``/-/auth`` and ``/-/whoami`` sent down short stacks.

    ``sessions`` wraps an app in the session middleware, as the full stack's is
    built; each short stack has its own, and its own ``AuthMiddleware``. With
    the ``access_log`` setting, every request gets its line here: ``app`` and
    the short stacks inside ``AccessLogMiddleware``, and the answers that
    ``ForwardAuthEntrance`` makes itself written by it.
    """
    settings, doorman = server.settings, server.doorman

    def logged(app: ASGIApp) -> ASGIApp:
        return AccessLogMiddleware(app) if settings.access_log else app

    def auth(answer: ASGIApp) -> ASGIApp:
        return AuthMiddleware(
            answer,
            doorman,
            basic_auth=settings.basic_auth,
            require_two_factor=settings.require_two_factor,
        )

    def cors(app: ASGIApp) -> ASGIApp:
        if not settings.cors_origins:
            return app
        return CORSMiddleware(app, origins=settings.cors_origins, prefix=server.prefix)

    # /-/auth: the plain 401 and kept signed-in answers at the entrance; the rest down the stack.
    kept = KeptAnswers(doorman)
    forward_auth = ForwardAuthAnswer(doorman, SecurityHeadersMiddleware(ForwardAuth(server)), kept)
    stack = sessions(auth(forward_auth))
    assert isinstance(stack, SessionMiddleware), "sessions() must wrap in a SessionMiddleware"
    log = AccessLogMiddleware(stack) if settings.access_log else None
    entrance = ForwardAuthEntrance(log or stack, stack, kept, doorman, log)
    # /-/whoami: a kept answer for an API token before the session middleware.
    tokens = KeptTokenAnswers(doorman)
    whoami = sessions(auth(WhoamiAnswer(tokens)))
    with_token = TokenShortcut(whoami, tokens, cookie=_cookie_name(whoami))
    return FastPaths(
        logged(app),
        {
            server.url("auth"): FastPath(
                cors(entrance), frozenset(forward_auth_methods), any_query=True
            ),
            # With ?csrf=1 it makes a CSRF cookie, which Starlette's stack sends.
            server.url("whoami"): FastPath(
                logged(cors(with_token)), frozenset({"GET", "HEAD"}), any_query=False
            ),
        },
        marks_arrivals=doorman.engine.dialect.name == "postgresql",
    )


@dataclass(frozen=True, slots=True)
class FastPath:
    """A short stack, and the requests it takes: these methods, any query string or none."""

    app: ASGIApp
    methods: frozenset[str]
    any_query: bool


class FastPaths:
    """Requests for a fast path go down its short stack; everything else to ``app``.

    Paths under a ``root_path`` take the full stack: only it knows how to route
    them. With ``marks_arrivals`` (the database is PostgreSQL), every http
    request is marked as arrived here, so that one read of PostgreSQL's change
    epochs that starts after this answers it (``doorman.db.epoch_reads``).
    """

    def __init__(
        self, app: ASGIApp, paths: Mapping[str, FastPath], *, marks_arrivals: bool = True
    ) -> None:
        self.app = app
        self.paths = dict(paths)
        self.marks_arrivals = marks_arrivals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.marks_arrivals:
            await self._route(scope)(scope, receive, send)
            return
        mark = request_arrived()  # PostgreSQL's change epochs: one read answers this request
        try:
            await self._route(scope)(scope, receive, send)
        finally:
            request_done(mark)

    def _route(self, scope: Scope) -> ASGIApp:
        fast = self.paths.get(scope["path"])
        if (
            fast is not None
            and scope["method"] in fast.methods
            and not scope.get("root_path")
            and (fast.any_query or not scope.get("query_string"))
        ):
            return fast.app
        return self.app


class WhoamiAnswer:
    """``/-/whoami``'s answer, as Starlette renders the view's, with the security headers.

    An answer for an API token is kept in ``tokens`` (see ``TokenShortcut``).
    """

    def __init__(self, tokens: KeptTokenAnswers) -> None:
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        actor = scope.get("actor")
        response = whoami_response(actor, auth_methods(scope))
        headers, body = [*response.raw_headers, *API_SECURITY_HEADERS], bytes(response.body)
        if actor is not None and actor.get("via") == "token":
            text = bearer_token(scope)
            if text is not None:
                await self.tokens.remember(text, actor, headers[:], body)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _cookie_name(sessions: ASGIApp) -> bytes:
    name = getattr(sessions, "cookie_name", None)
    assert isinstance(name, str), "sessions() must wrap in a SessionMiddleware"
    return name.encode("latin-1")


class ForwardAuthEntrance:
    """``/-/auth``'s two commonest answers at once; every other request down ``stack``.

    - No session cookie named, no ``Authorization``, no plugin's
      ``actor_from_request`` to ask, no ``?rd=`` and no browser: the plain 401.
      Down the stack, such a request would load no session, resolve no actor
      and be answered that 401 by ``ForwardAuthAnswer``, with nothing added.
    - A session cookie and no ``Authorization``: the session, loaded as
      ``sessions`` (the stack's own middleware) loads it, and its kept answer
      (``KeptAnswers``) while everything that answer rests on stands, with what
      ``sessions`` adds for a session that was read (``Vary: Cookie``; a renewed
      cookie under an idle timeout, saved first).

    Both are the stack's answers byte for byte, with the same access line
    (written through ``log``), but no middleware wraps ``send`` for them. A
    session store that fails gets the session middleware's 503, as down the stack.
    """

    def __init__(
        self,
        stack: ASGIApp,
        sessions: SessionMiddleware,
        kept: KeptAnswers,
        doorman: Doorman,
        log: AccessLogMiddleware | None,
    ) -> None:
        self.stack = stack
        self.sessions = sessions
        self.kept = kept
        self.doorman = doorman
        self.log = log
        self._named = _cookie_name(sessions) + b"="

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        named = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                await self.stack(scope, receive, send)
                return
            if name == b"cookie" and self._named in value:
                named = True
        status: int | None = 500  # logged if an answer made here fails half-way
        try:
            if named:
                status = await self._kept_answer(scope, send)
            elif self.doorman.plugins.hook.actor_from_request.get_hookimpls() or not _plain(scope):
                status = None
            else:
                await _sign_in_first(send)
                status = 401
        finally:
            if status is not None and self.log is not None and self.log.enabled():
                self.log.write(scope, status, started)
        if status is None:
            await self.stack(scope, receive, send)

    async def _kept_answer(self, scope: Scope, send: Send) -> int | None:
        """The status of the kept answer just sent, or None when the stack must answer."""
        sessions = self.sessions
        try:
            session = await sessions.session_for(scope)
        except StoreError as error:  # the stack's own answer, without asking the store twice
            await sessions.refuse(scope, send, error)
            return 503
        scope["session"] = session  # the stack's SessionMiddleware takes it as it is
        try:
            if session.cookie_present and session.loaded:
                headers = await self.kept.answer_for(session, scope.get("query_string", b""))
            else:
                headers = None
        except StoreError:
            headers = None  # the stack reads the epoch again: a 503 if it fails again
        if headers is None:
            session.accessed = False  # as the stack's middleware made it: nothing read yet
            return None
        try:
            added = await sessions.headers_after_read(session, scope)
        except StoreError as error:
            await sessions.refuse(scope, send, error)
            return 503
        await send({"type": "http.response.start", "status": 200, "headers": [*headers, *added]})
        await send({"type": "http.response.body", "body": _OK})
        return 200


async def _sign_in_first(send: Send) -> None:
    await send({"type": "http.response.start", "status": 401, "headers": _SIGNED_OUT_HEADERS[:]})
    await send({"type": "http.response.body", "body": _SIGN_IN_FIRST})


def _plain(scope: Scope) -> bool:
    """A signed-out request the answer is a 401 for: no ``?rd=`` (no query), no browser."""
    return not scope.get("query_string") and not _asks_for_html(scope)


class ForwardAuthAnswer:
    """The end of the short stack: ``ForwardAuth``'s answer with the security headers.

    The signed-in 200 (remembered in ``kept``) and the plain 401 are written
    here; every other answer is ``slow``'s: the server's ``ForwardAuth`` inside
    ``SecurityHeadersMiddleware`` (a bad ``?require=``, or one the session does
    not meet, among them).
    """

    def __init__(self, doorman: Doorman, slow: ASGIApp, kept: KeptAnswers) -> None:
        self.doorman = doorman
        self.slow = slow
        self.kept = kept

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        actor = scope.get("actor")
        required = requirements(scope["query_string"]) if scope.get("query_string") else _NONE
        methods = auth_methods(scope)
        if required is None:
            await self.slow(scope, receive, send)  # the 400
        elif actor is None:
            if _plain(scope):
                await _sign_in_first(send)
            else:
                await self.slow(scope, receive, send)  # a redirect to the login page
        elif not await self.doorman.allowed(actor, "view") or not meets(methods, required):
            await self.slow(scope, receive, send)  # the 403
        else:
            headers = [
                *_OK_HEADERS,
                *identity_headers(actor),
                methods_header(methods),
                *API_SECURITY_HEADERS,
            ]
            await self.kept.remember(scope.get("session"), actor, methods, headers[:])
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": _OK})


def _asks_for_html(scope: Scope) -> bool:
    """As ``ForwardAuth`` reads it: the first ``Accept`` header names ``text/html``."""
    for name, value in scope["headers"]:
        if name == b"accept":
            return b"text/html" in value
    return False
