"""Passkeys through the sign-in server's JSON ceremonies, answered by a software authenticator.

Every answer is a real one (ES256 signatures, CBOR, the WebAuthn byte
layouts: ``tests/soft_authenticator.py``) and py_webauthn checks it: a wrong
origin, a wrong rp id, a reused challenge, a counter that went back, a missing
user verification, another person's passkey are each refused, 4xx, never 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from doorman import hookimpl
from doorman.accounts.passwords import PasswordHasher
from doorman.assembly import assemble
from doorman.auth.two_step import begin_second_step
from doorman.server.app import create_app
from doorman.settings import load_settings

from .helpers import client, migrated_sqlite
from .soft_authenticator import SoftAuthenticator, b64url
from .test_password_reset import BASE, PASSWORD, SECRET, Site, csrf_of, server_state, whoami

pytestmark = pytest.mark.anyio


class HalfSignIn:
    """``GET /-/test/half-signed-in?username=``: the password step of a two-step sign-in, as the
    login funnel of the two-factor work does it (``begin_second_step``)."""

    @hookimpl
    def register_routes(self, doorman: Any) -> list[tuple[str, Any]]:
        async def half(request: Request) -> JSONResponse:
            query = request.query_params
            user = await doorman.authenticate(query["username"], PASSWORD, client="test")
            enrol = query.get("enrol") == "1"
            await begin_second_step(request, user, next="/-/account?two-step", must_enrol=enrol)
            return JSONResponse({"pending": user.username})

        return [("/-/test/half-signed-in", half)]


@contextlib.asynccontextmanager
async def passkey_site(tmp_path: Path, **overrides: Any) -> AsyncIterator[Site]:
    options: dict[str, Any] = {
        "db": migrated_sqlite(tmp_path / "doorman.db"),
        "secret": SECRET,
        "public_url": BASE,
        **overrides,
    }
    found = load_settings(environ={}, overrides=options)
    doorman, store = assemble(found, [SECRET])
    doorman.hasher = doorman.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    doorman.plugins.register(HalfSignIn(), name="test-half-sign-in")
    await doorman.startup()
    await doorman.create_user("alice", PASSWORD, email="alice@example.com")
    await doorman.create_user("bob", PASSWORD, email="bob@example.com")
    app = create_app(found, doorman=doorman, store=store)
    try:
        yield Site(app, doorman, found, None)
    finally:
        await server_state(app).background.drain()
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()  # assemble's engine: the Doorman does not own it


async def post(browser: httpx.AsyncClient, path: str, body: Any, **headers: str) -> httpx.Response:
    token = await csrf_of(browser)
    return await browser.post(
        f"/-/passkeys/{path}", json=body, headers={"x-csrftoken": token, **headers}
    )


async def signed_in_as(found: Site, username: str) -> httpx.AsyncClient:
    browser = found.browser()
    form = {"username": username, "password": PASSWORD, "csrftoken": await csrf_of(browser)}
    assert (await browser.post("/-/login", data=form)).status_code == 302
    return browser


async def enrol(
    browser: httpx.AsyncClient, authenticator: SoftAuthenticator, name: str = ""
) -> httpx.Response:
    options = (await post(browser, "register/options", {})).json()
    return await post(
        browser, "register", {"credential": authenticator.register(options), "name": name}
    )


async def options_for(browser: httpx.AsyncClient, purpose: str) -> dict[str, Any]:
    answer = await post(browser, "authenticate/options", {"purpose": purpose})
    assert answer.status_code == 200, answer.text
    options: dict[str, Any] = answer.json()
    return options


async def prove(
    browser: httpx.AsyncClient, authenticator: SoftAuthenticator, purpose: str, **extra: Any
) -> httpx.Response:
    options = await options_for(browser, purpose)
    credential = authenticator.assert_(options)
    return await post(
        browser, "authenticate", {"purpose": purpose, "credential": credential, **extra}
    )


async def kinds(found: Site) -> list[str]:
    return [event.kind for event in await found.doorman.events.list()]


# -- registering ------------------------------------------------------------------------


async def test_a_registered_passkey_is_stored_with_what_the_spec_asks(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        browser = await signed_in_as(found, "alice")
        options = (await post(browser, "register/options", {})).json()
        assert options["rp"] == {"id": "auth.example.com", "name": "doorman"}
        assert options["authenticatorSelection"]["residentKey"] == "required"
        assert options["authenticatorSelection"]["userVerification"] == "preferred"
        assert options["attestation"] == "none" and options["excludeCredentials"] == []
        authenticator = SoftAuthenticator(origin=BASE)
        added = await post(
            browser,
            "register",
            {"credential": authenticator.register(options), "name": " My\x00 laptop\n"},
        )
        assert added.status_code == 201, added.text
        assert added.json()["passkey"]["name"] == "My laptop"
        (passkey,) = await found.doorman.passkeys.list(1)
        assert passkey.credential_id == b64url(authenticator.credential_id)
        assert passkey.transports == ("internal",) and passkey.sign_count == 1
        # A second one: the first is excluded, the handle is the same, the name a default.
        options = (await post(browser, "register/options", {})).json()
        assert [c["id"] for c in options["excludeCredentials"]] == [passkey.credential_id]
        assert options["user"]["id"] == passkey.user_handle
        second = SoftAuthenticator(origin=BASE)
        assert (await post(browser, "register", {"credential": second.register(options)})).json()[
            "passkey"
        ]["name"] == "Passkey 2"
        assert "passkey-added" in await kinds(found)


async def test_registering_needs_a_sign_in_and_the_csrf_token(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        visitor = found.browser()
        assert (await post(visitor, "register/options", {})).status_code == 401
        browser = await signed_in_as(found, "alice")
        refused = await browser.post("/-/passkeys/register/options", json={})
        assert refused.status_code == 403
        wrong = await browser.post(
            "/-/passkeys/register/options", json={}, headers={"x-csrftoken": "x"}
        )
        assert wrong.status_code == 403


async def test_registration_from_another_origin_or_rp_is_refused(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        browser = await signed_in_as(found, "alice")
        for authenticator in (
            SoftAuthenticator(origin="http://evil.example.com"),
            SoftAuthenticator(origin=BASE, rp_id="evil.example.com"),
        ):
            answer = await enrol(browser, authenticator)
            assert answer.status_code == 400, answer.text
        assert await found.doorman.passkeys.list(1) == []
        assert (await kinds(found)).count("passkey-failed") == 2


async def test_a_loop_of_refused_passkeys_does_not_fill_the_event_log(tmp_path: Path) -> None:
    """The origin a refused answer claims is the client's: it varies at will, and must not
    make each refusal a row of its own."""
    async with passkey_site(tmp_path) as found:
        browser = await signed_in_as(found, "alice")
        for n in range(8):
            answer = await enrol(browser, SoftAuthenticator(origin=f"http://evil{n}.example.com"))
            assert answer.status_code == 400, answer.text
        assert (await kinds(found)).count("passkey-failed") == 1
        await found.doorman.events.flush()
        [event] = [e for e in await found.doorman.events.list() if e.kind == "passkey-failed"]
        assert "evil" not in str(event.detail)


# -- signing in with a passkey alone --------------------------------------------------------


async def test_a_passkey_alone_signs_in_once_per_challenge(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        authenticator = SoftAuthenticator(origin=BASE)
        assert (await enrol(await signed_in_as(found, "alice"), authenticator)).status_code == 201
        visitor = found.browser()
        options = await options_for(visitor, "sign-in")
        assert options["userVerification"] == "required" and options["allowCredentials"] == []
        credential = authenticator.assert_(options)
        body = {"purpose": "sign-in", "credential": credential, "next": "/-/account?x=1"}
        done = await post(visitor, "authenticate", body)
        assert done.status_code == 200, done.text
        assert done.json()["redirect"] == "/-/account?x=1"
        assert await whoami(visitor) == "alice"
        methods = (await visitor.get("/-/whoami")).json()["actor"]
        assert methods["username"] == "alice"
        # The same answer again: the challenge was claimed once, in the shared counter.
        again = await post(visitor, "authenticate", body)
        assert again.status_code == 400 and "used already" in again.json()["error"]


async def test_the_login_pages_passkey_challenge_stores_no_session(tmp_path: Path) -> None:
    """Every visit of the login page on a browser with autofill asks for a challenge: a
    visitor's session kept for each would fill the store. The challenge keeps itself:
    signed, with its end, used once; one we did not sign, or past its end, is refused."""
    async with passkey_site(tmp_path) as found:
        authenticator = SoftAuthenticator(origin=BASE)
        assert (await enrol(await signed_in_as(found, "alice"), authenticator)).status_code == 201
        visitor = found.browser()
        for _ in range(5):
            asked = await visitor.post(
                "/-/passkeys/authenticate/options",
                json={"purpose": "sign-in"},
                headers={"x-csrftoken": await csrf_of(visitor)},
            )
            assert asked.status_code == 200
            assert "doorman_session" not in asked.headers.get("set-cookie", "")
        options = asked.json()
        forged = {**options, "challenge": options["challenge"][:-4] + "AAAA"}
        body = {"purpose": "sign-in", "credential": authenticator.assert_(forged)}
        refused = await post(visitor, "authenticate", body)
        assert refused.status_code == 400 and "expired" in refused.json()["error"]
        body = {"purpose": "sign-in", "credential": authenticator.assert_(options)}
        assert (await post(visitor, "authenticate", body)).status_code == 200


async def test_a_replayed_cookie_session_cannot_reuse_a_challenge(tmp_path: Path) -> None:
    """The cookie store keeps the session in the cookie: an old cookie still holds the
    challenge. The claim in the shared counter refuses it the second time."""
    async with passkey_site(tmp_path, sessions="cookie") as found:
        authenticator = SoftAuthenticator(origin=BASE)
        assert (await enrol(await signed_in_as(found, "alice"), authenticator)).status_code == 201
        visitor = found.browser()
        options = await options_for(visitor, "sign-in")
        saved = dict(visitor.cookies)
        token = await csrf_of(visitor)
        body = {"purpose": "sign-in", "credential": authenticator.assert_(options)}
        first = await visitor.post(
            "/-/passkeys/authenticate", json=body, headers={"x-csrftoken": token}
        )
        assert first.status_code == 200, first.text
        replay = client(found.app, base_url=BASE, cookies=saved)
        body["credential"] = authenticator.assert_(options)  # a fresh count, same challenge
        second = await replay.post(
            "/-/passkeys/authenticate", json=body, headers={"x-csrftoken": token}
        )
        assert second.status_code == 400 and "used already" in second.json()["error"]


async def test_passwordless_needs_user_verification_and_the_right_handle(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        authenticator = SoftAuthenticator(origin=BASE)
        assert (await enrol(await signed_in_as(found, "alice"), authenticator)).status_code == 201
        visitor = found.browser()
        authenticator.user_verified = False
        assert (await prove(visitor, authenticator, "sign-in")).status_code == 401
        authenticator.user_verified = True
        options = await options_for(visitor, "sign-in")
        wrong_handle = authenticator.assert_(options, user_handle=b"someone else")
        refused = await post(
            visitor, "authenticate", {"purpose": "sign-in", "credential": wrong_handle}
        )
        assert refused.status_code == 401
        assert await whoami(visitor) is None


async def test_a_lone_surrogate_anywhere_in_a_passkey_sign_in_is_refused_not_a_500(
    tmp_path: Path,
) -> None:
    """The attack of 2026-12-06: a JSON string may hold a lone surrogate, which is no UTF-8.
    As the credential id (no account needed), the user handle, or the page to return to,
    it was a 500 (UnicodeEncodeError); now an unknown passkey, a wrong handle, or home."""
    async with passkey_site(tmp_path) as found:
        authenticator = SoftAuthenticator(origin=BASE)
        assert (await enrol(await signed_in_as(found, "alice"), authenticator)).status_code == 201
        visitor = found.browser()

        async def authenticate(body: dict[str, Any]) -> httpx.Response:
            # json.dumps writes the surrogate as the escape \\ud800, as a client could.
            headers = {"x-csrftoken": await csrf_of(visitor), "content-type": "application/json"}
            return await visitor.post(
                "/-/passkeys/authenticate", content=json.dumps(body), headers=headers
            )

        credential = authenticator.assert_(await options_for(visitor, "sign-in"))
        credential["id"] = credential["rawId"] = "\ud800"
        body = {"purpose": "sign-in", "credential": credential}
        assert (await authenticate(body)).status_code == 401

        credential = authenticator.assert_(await options_for(visitor, "sign-in"))
        credential["response"]["userHandle"] = "\ud800"
        body = {"purpose": "sign-in", "credential": credential}
        assert (await authenticate(body)).status_code == 401
        assert await whoami(visitor) is None

        credential = authenticator.assert_(await options_for(visitor, "sign-in"))
        body = {"purpose": "sign-in", "credential": credential, "next": "/\ud800"}
        done = await authenticate(body)
        assert done.status_code == 200, done.text
        assert done.json()["redirect"] == "/-/account"  # where one with no next goes
        assert await whoami(visitor) == "alice"


async def test_wrong_origin_wrong_rp_and_a_counter_gone_back_are_refused(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        authenticator = SoftAuthenticator(origin=BASE)
        assert (await enrol(await signed_in_as(found, "alice"), authenticator)).status_code == 201
        visitor = found.browser()
        authenticator.origin = "http://auth.example.com:8080"
        assert (await prove(visitor, authenticator, "sign-in")).status_code == 401
        authenticator.origin, authenticator.rp_id = BASE, "example.com"
        assert (await prove(visitor, authenticator, "sign-in")).status_code == 401
        authenticator.rp_id = None
        assert (await prove(visitor, authenticator, "sign-in")).status_code == 200
        stored = (await found.doorman.passkeys.list(1))[0].sign_count
        authenticator.counter = 0  # a clone, which has counted less
        cloned = await prove(found.browser(), authenticator, "sign-in")
        assert cloned.status_code == 401 and "copied" in cloned.json()["error"]
        assert (await found.doorman.passkeys.list(1))[0].sign_count == stored
        assert (await kinds(found)).count("passkey-failed") == 3


async def test_an_unknown_passkey_and_a_disabled_account_sign_nobody_in(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        authenticator = SoftAuthenticator(origin=BASE)
        assert (await enrol(await signed_in_as(found, "alice"), authenticator)).status_code == 201
        stranger = SoftAuthenticator(origin=BASE, user_handle=authenticator.user_handle)
        unknown = await prove(found.browser(), stranger, "sign-in")
        assert unknown.status_code == 401
        await found.doorman.users.set_active(await found.doorman.users.require("alice"), False)
        visitor = found.browser()
        assert (await prove(visitor, authenticator, "sign-in")).status_code == 401
        assert await whoami(visitor) is None


# -- the second step, and confirming ---------------------------------------------------------


async def half_signed_in(found: Site, username: str, *, enrol: bool = False) -> httpx.AsyncClient:
    browser = found.browser()
    answer = await browser.get(
        "/-/test/half-signed-in", params={"username": username, "enrol": "1" if enrol else "0"}
    )
    assert answer.status_code == 200
    assert await whoami(browser) is None
    return browser


async def test_a_passkey_completes_a_two_step_sign_in_of_its_own_account_only(
    tmp_path: Path,
) -> None:
    async with passkey_site(tmp_path) as found:
        alices, bobs = SoftAuthenticator(origin=BASE), SoftAuthenticator(origin=BASE)
        assert (await enrol(await signed_in_as(found, "alice"), alices)).status_code == 201
        assert (await enrol(await signed_in_as(found, "bob"), bobs)).status_code == 201
        browser = await half_signed_in(found, "alice")
        options = await options_for(browser, "second-step")
        assert [c["id"] for c in options["allowCredentials"]] == [b64url(alices.credential_id)]
        bobs_answer = bobs.assert_(options)
        refused = await post(
            browser, "authenticate", {"purpose": "second-step", "credential": bobs_answer}
        )
        unknown = await prove(browser, SoftAuthenticator(origin=BASE), "second-step")
        assert refused.status_code == unknown.status_code == 401
        assert refused.json() == unknown.json()  # whose passkey it is stays unsaid
        assert await whoami(browser) is None
        done = await prove(browser, alices, "second-step")
        assert done.status_code == 200 and done.json()["redirect"] == "/-/account?two-step"
        actor = (await browser.get("/-/whoami")).json()["actor"]
        assert actor["username"] == "alice"


async def test_the_second_step_needs_a_pending_sign_in(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        visitor = found.browser()
        answer = await post(visitor, "authenticate/options", {"purpose": "second-step"})
        assert answer.status_code == 401


async def test_enrolling_a_passkey_completes_a_sign_in_that_must_enrol(tmp_path: Path) -> None:
    async with passkey_site(tmp_path, require_two_factor="everyone") as found:
        browser = await half_signed_in(found, "alice", enrol=True)
        added = await enrol(browser, SoftAuthenticator(origin=BASE))
        assert added.status_code == 200 and added.json()["redirect"] == "/-/account?two-step"
        assert await whoami(browser) == "alice"
        # Not without must_enrol: a pending sign-in cannot add a passkey to skip its step.
        other = await half_signed_in(found, "bob")
        assert (await post(other, "register/options", {})).status_code == 401


async def test_confirming_with_a_passkey_is_recorded(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        browser = await signed_in_as(found, "alice")
        authenticator = SoftAuthenticator(origin=BASE)
        assert (await enrol(browser, authenticator)).status_code == 201
        done = await prove(browser, authenticator, "confirm", next="/-/account")
        assert done.status_code == 200 and done.json() == {
            "confirmed": True,
            "redirect": "/-/account",
        }
        assert "reauthenticated" in await kinds(found)
        bobs = await signed_in_as(found, "bob")
        # bob has no passkey: nothing to confirm with, and alice's is not his.
        assert (await post(bobs, "authenticate/options", {"purpose": "confirm"})).status_code == 400


# -- naming and removing -----------------------------------------------------------------------


async def test_rename_and_remove_touch_only_ones_own_passkeys(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        alice = await signed_in_as(found, "alice")
        authenticator = SoftAuthenticator(origin=BASE)
        assert (await enrol(alice, authenticator)).status_code == 201
        (passkey,) = await found.doorman.passkeys.list(1)
        bob = await signed_in_as(found, "bob")
        headers = {"x-csrftoken": await csrf_of(bob)}
        for action in ("rename", "remove"):
            answer = await bob.post(
                f"/-/passkeys/{passkey.id}/{action}", json={"name": "mine"}, headers=headers
            )
            assert answer.status_code == 404
        token = await csrf_of(alice)
        renamed = await alice.post(
            f"/-/passkeys/{passkey.id}/rename", data={"name": "Phone", "csrftoken": token}
        )
        assert renamed.status_code == 303
        assert (await found.doorman.passkeys.list(1))[0].name == "Phone"
        page = await alice.get("/-/account/two-factor")
        assert "Phone" in page.text
        removed = await alice.post(f"/-/passkeys/{passkey.id}/remove", data={"csrftoken": token})
        assert removed.status_code == 303 and await found.doorman.passkeys.list(1) == []
        assert "passkey-removed" in await kinds(found)
        assert (await prove(found.browser(), authenticator, "sign-in")).status_code == 401


async def test_the_last_factor_stays_when_the_policy_asks_for_one(tmp_path: Path) -> None:
    async with passkey_site(tmp_path, require_two_factor="everyone") as found:
        alice = await signed_in_as(found, "alice")  # the policy: half signed in, to enrol
        assert (await alice.get("/-/whoami")).json()["actor"] is None
        enrolled = await enrol(alice, SoftAuthenticator(origin=BASE))
        assert enrolled.status_code == 200 and enrolled.json()["redirect"]  # signed in now
        assert (await alice.get("/-/whoami")).json()["actor"]["username"] == "alice"
        (passkey,) = await found.doorman.passkeys.list(1)
        answer = await alice.post(
            f"/-/passkeys/{passkey.id}/remove",
            json={},
            headers={"x-csrftoken": await csrf_of(alice)},
        )
        assert answer.status_code == 409 and "last second factor" in answer.json()["error"]
        assert len(await found.doorman.passkeys.list(1)) == 1


# -- bad input ------------------------------------------------------------------------------------


async def test_bad_input_gets_a_clear_4xx(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        browser = await signed_in_as(found, "alice")
        authenticator = SoftAuthenticator(origin=BASE)
        assert (await enrol(browser, authenticator)).status_code == 201
        token = await csrf_of(browser)
        headers = {"x-csrftoken": token, "content-type": "application/json"}
        garbage = [
            b"not json",
            b"[1, 2]",
            b'{"purpose": 7}',
            b'{"purpose": "sign-in", "credential": "x"}',
            b'{"purpose": "sign-in", "credential": {"id": 5}}',
            b'{"purpose": "sign-in", "credential": {"id": "!!!", "rawId": "%%%", "response": {}}}',
            b'{"credential": {"id": "AA", "rawId": "AA", "type": "public-key", "response": "x"}}',
            b"[" * 100_000,
            b'{"purpose": "sign-in", "credential": {"id": "' + b"A" * 70_000 + b'"}}',
        ]
        for path in ("authenticate", "register", "authenticate/options", "register/options"):
            for body in garbage:
                if path == "authenticate":
                    await post(browser, "authenticate/options", {"purpose": "sign-in"})
                answer = await browser.post(f"/-/passkeys/{path}", content=body, headers=headers)
                said = answer.json()  # ours, or BodyLimitMiddleware's 413
                assert answer.status_code < 500, (path, body[:40], said)
                if not path.endswith("options"):  # options need no credential
                    assert answer.status_code >= 400, (path, body[:40], said)
                    assert said.get("error") or said.get("detail"), said
        options = await options_for(browser, "sign-in")
        credential = authenticator.assert_(options)
        credential["response"]["signature"] = "@@not base64@@"
        answer = await post(
            browser, "authenticate", {"purpose": "sign-in", "credential": credential}
        )
        assert answer.status_code in (400, 401)


# -- the data layer ------------------------------------------------------------------------


async def test_two_uses_with_one_count_are_accepted_once(tmp_path: Path) -> None:
    async with passkey_site(tmp_path) as found:
        browser = await signed_in_as(found, "alice")
        assert (await enrol(browser, SoftAuthenticator(origin=BASE))).status_code == 201
        (passkey,) = await found.doorman.passkeys.list(1)
        results = await asyncio.gather(
            *(found.doorman.passkeys.record_use(passkey, 5, backed_up=False) for _ in range(4))
        )
        assert sorted(results) == [False, False, False, True]
        # An authenticator that does not count (0 and 0) is accepted each time.
        passkeys = found.doorman.passkeys
        zero = await passkeys.add(
            2, credential_id="zero", user_handle="h", public_key="k", sign_count=0, name="z"
        )
        assert await passkeys.record_use(zero, 0, backed_up=True)
        assert await passkeys.record_use(zero, 0, backed_up=True)
        assert (await passkeys.find("zero")).backed_up  # type: ignore[union-attr]
