"""``Doorman``: accounts, tokens, throttling, permissions and plugins, wired once.

One ``Doorman`` is built per app at start-up and shared by ``AuthMiddleware``,
``login()``/``logout()``, the sign-in server and the CLI. Plugin hooks receive
it as their ``doorman`` argument.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pluggy
from sqlalchemy.ext.asyncio import AsyncEngine

from .accounts.devices import DeviceCookies
from .accounts.event_log import EventLog
from .accounts.invitations import Invitations
from .accounts.link_claims import LinkClaims
from .accounts.links import AccountLinks, Purpose
from .accounts.passkeys import Passkeys
from .accounts.passwords import PasswordHasher, validate_password
from .accounts.permissions import Rules, check_permission
from .accounts.recovery_codes import RecoveryCodes
from .accounts.second_factors import SecondFactors, SecondFactorsSummary
from .accounts.session_auth import SessionAuth
from .accounts.signins import SignIns
from .accounts.throttle import (
    Attempt,
    LoginThrottle,
    MailThrottle,
    RegistrationThrottle,
    SecondFactorThrottle,
    ThrottleLimits,
    counter_for,
)
from .accounts.tokens import Tokens
from .accounts.totp import TOTP
from .accounts.users import User, Users
from .db.engine import create_engine
from .db.migrations import ensure_schema
from .events import EventKind, LoginFailedEvent, LoginFailure
from .exceptions import Abandoned, AuthenticationFailed, PasswordRejected, Throttled
from .plugins import all_results, make_plugin_manager
from .stores.base import MakesTables, SessionStore

__all__ = ["Doorman"]

log = logging.getLogger("doorman.auth")
security_log = logging.getLogger("doorman.security")

#: The one answer to every failed sign-in: it never says whether the user exists.
BAD_CREDENTIALS = "Wrong username or password."
#: The answer to a wrong second-factor code, whichever kind was tried.
BAD_CODE = "That code is not right, or was used already."


class Doorman:
    """The accounts side of doorman, configured once.

    ``db`` is a SQLite path or a ``postgresql://`` URL (or pass ``engine``).
    ``secret`` is the same secret (or list, newest first) as the session
    middleware's. ``sessions`` is the session store: failed sign-ins are
    counted next to the sessions (Redis, or the database) so that every worker
    sees the same counts, within ``throttle_limits``; ``throttle`` and
    ``registrations`` replace the sign-in and sign-up throttles outright.
    ``rules`` are permission rules (see docs/permissions.md); ``plugins`` and
    ``plugins_dir`` add plugins to those installed under the ``doorman`` entry
    point. ``link_max_ages`` says how long each kind of one-time link by email
    works (``AccountLinks``). ``doorman serve`` builds its ``Doorman`` here too, from the settings
    (``doorman.assembly``).
    """

    def __init__(
        self,
        db: str = "doorman.db",
        *,
        secret: str | Sequence[str],
        engine: AsyncEngine | None = None,
        sessions: SessionStore | None = None,
        hasher: PasswordHasher | None = None,
        throttle: LoginThrottle | None = None,
        registrations: RegistrationThrottle | None = None,
        throttle_limits: ThrottleLimits | None = None,
        rules: Mapping[str, Any] | None = None,
        plugins: Iterable[object] = (),
        plugins_dir: str | os.PathLike[str] | None = None,
        entry_points: bool = True,
        password_min_length: int = 10,
        link_max_ages: Mapping[Purpose, int] | None = None,
    ) -> None:
        self.engine = engine if engine is not None else create_engine(db)
        self._owns_engine = engine is None
        self.session_auth = SessionAuth(secret)
        self.hasher = hasher if hasher is not None else PasswordHasher()
        self.users = Users(self.engine, self.hasher)
        self.tokens = Tokens(self.engine)
        self.signins = SignIns(self.engine)
        self.events = EventLog(self.engine, self.users)
        counter = (
            throttle.counter if throttle is not None else counter_for(sessions, engine=self.engine)
        )
        limits = throttle_limits or ThrottleLimits()
        login, registration = limits.throttles(counter, secret)
        self.throttle = throttle if throttle is not None else login
        self.registrations = registrations if registrations is not None else registration
        window = limits.window
        self.second_factor_throttle = SecondFactorThrottle(
            counter, per_account=limits.per_account, window=window, secret=secret
        )
        self.mail_throttle = MailThrottle(counter, window=window, secret=secret)
        self.links = AccountLinks(secret, max_ages=link_max_ages)
        self.link_claims = LinkClaims(counter, secret)
        self.invitations = Invitations(self.engine)
        self.factors = SecondFactors(self.engine)
        self.totp = TOTP(self.engine)
        self.recovery_codes = RecoveryCodes(self.engine)
        self.passkeys = Passkeys(self.engine)
        self.devices = DeviceCookies(secret)
        self.rules = Rules(rules or {})
        self.plugins: pluggy.PluginManager = make_plugin_manager(
            plugins=plugins, plugins_dir=plugins_dir, entry_points=entry_points
        )
        self.password_min_length = password_min_length

    async def startup(self) -> None:
        """Bring the tables up to date and run the plugins' ``startup`` hooks.

        The schema is made here, once, not on first use: the users' database,
        and the throttle's when it counts elsewhere (an SQL session store of its own).
        """
        await ensure_schema(self.engine)
        for counter in {
            id(c): c for c in (self.throttle.counter, self.registrations.counter)
        }.values():
            if isinstance(counter, MakesTables):
                await counter.create_table()
        await all_results(self.plugins.hook.startup, doorman=self)

    async def close(self) -> None:
        await self.events.flush()
        self.hasher.close()
        if self._owns_engine:
            await self.engine.dispose()

    # -- second factors ----------------------------------------------------

    async def second_factors(self, user: User) -> SecondFactorsSummary:
        """The second factors ``user`` has (``.any``: a password alone does not sign them in)."""
        return await self.factors.summary(user.id)

    async def verify_second_factor(self, user: User, code: str, *, client: str | None) -> str:
        """Check ``code`` (a TOTP code, or an unused recovery code, then spent) for ``user``;
        return the ``amr`` value it proves, ``"otp"``.

        ``AuthenticationFailed`` for a wrong code; ``Throttled`` (429) once the
        account had too many wrong codes lately (``throttle_per_account`` within
        ``throttle_window``, counted apart from wrong passwords); ``Busy`` (503).
        """
        try:
            attempt = await self.second_factor_throttle.attempt(user.id, client)
        except Abandoned:
            raise  # the client hung up while it waited: nothing was tried
        except Throttled:
            # A log line, no event: a refusal costs nothing, and would flood the event log.
            security_log.warning("second factor of user id %s refused: throttled", user.id)
            raise
        async with attempt:
            if await self.totp.verify(user, code):
                attempt.succeeded()
                return "otp"
            if await self.recovery_codes.use(user, code):
                attempt.succeeded()
                await self._factor_event(EventKind.RECOVERY_CODE_USED, user, client)
                return "otp"
            security_log.warning("wrong second-factor code for user id %s from %s", user.id, client)
            await self._factor_event(EventKind.TWO_FACTOR_FAILED, user, client, "wrong-code")
            raise AuthenticationFailed(BAD_CODE)

    async def _factor_event(
        self, kind: EventKind, user: User, client: str | None, reason: str | None = None
    ) -> None:
        detail = None if reason is None else {"reason": reason}
        await self.events.record(
            kind, user=user, actor=user.username, address=client, detail=detail
        )

    # -- passwords ---------------------------------------------------------

    async def authenticate(
        self, username: str, password: str, *, client: str | None, device: str | None = None
    ) -> User:
        """The user these credentials belong to, or ``AuthenticationFailed``.

        ``Throttled`` (a subclass) when this account or ``client`` address has
        failed too often lately (see ``LoginThrottle``). ``device`` is the
        browser's ``doorman_device`` cookie, if any: a browser that signed in
        to this account before is throttled on its own. An unknown user costs
        as much time as a wrong password, and gets the same answer.
        """
        user = await self.users.by_username(username)
        trusted = None if user is None else self.devices.device_for(device, user)
        async with await self._throttled_attempt(username, client, trusted, user) as attempt:
            if user is None or not user.password_hash:
                await self.hasher.burn(password)
                return await self._refuse(username, client, "bad-credentials", user)
            verdict = await self.hasher.verify(password, user.password_hash)
            if not verdict.ok:
                return await self._refuse(username, client, "bad-credentials", user)
            if not user.is_active:
                return await self._refuse(username, client, "disabled", user)
            attempt.succeeded()
        if verdict.needs_rehash:
            user = await self.users.replace_hash(user, await self.hasher.hash(password))
        return user

    async def confirm_password(
        self, user: User, password: str, *, client: str | None, device: str | None = None
    ) -> None:
        """Check a signed-in user's current password (before changing the password or the
        email address): throttled and logged like a sign-in, ``AuthenticationFailed`` or
        ``Throttled`` when it fails, so a borrowed session cannot guess it either."""
        trusted = self.devices.device_for(device, user)
        async with await self._throttled_attempt(user.username, client, trusted, user) as attempt:
            verdict = await self.hasher.verify(password, user.password_hash)
            if not verdict.ok:
                await self._refuse(user.username, client, "bad-credentials", user)
            attempt.succeeded()

    async def _throttled_attempt(
        self, username: str, client: str | None, device: str | None, user: User | None
    ) -> Attempt:
        try:
            return await self.throttle.attempt(username, client, device=device)
        except Abandoned:
            raise  # the client hung up while it waited: nothing was tried
        except Throttled:
            await self._login_failed(username, client, "throttled", user)
            raise

    async def _refuse(
        self, username: str, client: str | None, reason: LoginFailure, user: User | None
    ) -> User:
        await self._login_failed(username, client, reason, user)
        raise AuthenticationFailed(BAD_CREDENTIALS)

    async def _login_failed(
        self, username: str, client: str | None, reason: LoginFailure, user: User | None
    ) -> None:
        """Log and tell of a refused sign-in. The event log links it to ``user`` (the account
        the name belongs to, if any) and never keeps the name as typed: it may be a password
        typed in the wrong box."""
        security_log.warning("failed sign-in for %r from %s: %s", username[:150], client, reason)
        event = LoginFailedEvent(
            username=username[:150], client=client, reason=reason, at=time.time()
        )
        await self.fire("on_login_failed", event, user=user)

    async def password_problems(
        self, password: str, *, username: str | None = None, email: str | None = None
    ) -> list[str]:
        """Why ``password`` is not acceptable (empty when it is): built-in checks, then hooks."""
        problems = validate_password(
            password, username=username, email=email, min_length=self.password_min_length
        )
        for found in await all_results(
            self.plugins.hook.validate_password, doorman=self, password=password, username=username
        ):
            problems.extend([found] if isinstance(found, str) else found)
        return problems

    async def create_user(
        self,
        username: str,
        password: str | None = None,
        *,
        email: str | None = None,
        admin: bool = False,
        groups: Iterable[str] = (),
        validate: bool = True,
    ) -> User:
        """Add a user; the password must pass validation unless ``validate=False``."""
        if password is not None and validate:
            problems = await self.password_problems(password, username=username, email=email)
            if problems:
                raise PasswordRejected(problems)
        return await self.users.create(
            username, password=password, email=email, is_admin=admin, groups=groups
        )

    async def set_password(
        self, user: User, password: str, *, validate: bool = True, revoke_tokens: bool = False
    ) -> User:
        """Change a password: every session of the user ends (sign the current one in again).

        API tokens do not depend on the password and keep working, unless
        ``revoke_tokens`` (after a compromise: the intruder may have made some).
        """
        if validate:
            problems = await self.password_problems(
                password, username=user.username, email=user.email
            )
            if problems:
                raise PasswordRejected(problems)
        user = await self.users.set_password(user, password)
        await self.signins.revoke_all(user)  # the session auth hash ends them; tidy the list
        if revoke_tokens:
            await self.tokens.revoke_all(user)
        return user

    async def end_sessions(self, user: User, *, revoke_tokens: bool = False) -> User:
        """Sign the user out everywhere, in every store, signed cookies included.

        API tokens keep working, unless ``revoke_tokens``.
        """
        await self.signins.revoke_all(user)
        if revoke_tokens:
            await self.tokens.revoke_all(user)
        return await self.users.end_sessions(user)

    # -- sessions ----------------------------------------------------------

    def session_auth_hash(self, user: User) -> str:
        """What the user's sessions hold to stay signed in (``SessionAuth``).

        A new password or ``Users.end_sessions`` changes it, which ends every
        session that holds the old one, in every store.
        """
        return self.session_auth.hash(user)

    def session_auth_hash_matches(self, user: User, given: object) -> bool:
        return self.session_auth.matches(user, given)

    # -- permissions and plugins -------------------------------------------

    async def allowed(
        self, actor: Mapping[str, Any] | None, action: str, resource: str | None = None
    ) -> bool:
        """May ``actor`` do ``action`` (on ``resource``)? Hooks, then rules, then defaults."""
        return await check_permission(
            plugins=self.plugins,
            doorman=self,
            actor=dict(actor) if actor is not None else None,
            action=action,
            resource=resource,
            rules=self.rules,
        )

    async def fire(self, hook: str | None, event: object, *, user: User | None = None) -> None:
        """Write ``event`` to the security event log, then tell the plugins through ``hook``
        (None: no hook hears of it). ``user``: the account it is about, when at hand.

        Neither a failing plugin nor a failing log write is fatal: each is logged.
        """
        await self.events.record_event(event, user=user)
        if hook is None:
            return
        try:
            await all_results(getattr(self.plugins.hook, hook), doorman=self, event=event)
        except Exception:
            log.exception("a plugin's %s hook failed", hook)
